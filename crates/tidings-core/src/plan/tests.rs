//! The planner over a directory held in plain maps: one test per rule it owns.

use std::collections::HashMap;

use serde_json::json;

use super::*;
use crate::catalog::Catalog;

const NOW: i64 = 1_800_000_000;

#[derive(Default)]
struct MapView {
    conversations: HashMap<String, Arc<ConversationFacts>>,
    users: HashSet<String>,
    apps: HashMap<String, Arc<AppSubscriptions>>,
    grants: Vec<(String, Vec<Grant>)>,
    rates: HashMap<(String, String), RateState>,
}

impl DirectoryView for MapView {
    type Error = std::convert::Infallible;
    fn conversation(
        &mut self,
        _team: &str,
        id: &str,
    ) -> Result<Option<Arc<ConversationFacts>>, Self::Error> {
        Ok(self.conversations.get(id).cloned())
    }
    fn user_in_team(&mut self, _: &str, _: Option<&str>, user: &str) -> Result<bool, Self::Error> {
        Ok(self.users.contains(user))
    }
    fn app(&mut self, id: &str) -> Result<Option<Arc<AppSubscriptions>>, Self::Error> {
        Ok(self.apps.get(id).cloned())
    }
    fn grants(&mut self, _: &str, _: Option<&str>) -> Result<TeamGrants, Self::Error> {
        Ok(Arc::new(self.grants.clone()))
    }
    fn rate(&mut self, app: &str, team: &str, _: i64) -> Result<&mut RateState, Self::Error> {
        Ok(self
            .rates
            .entry((app.to_string(), team.to_string()))
            .or_default())
    }
}

const SCOPES: &[&str] = &[
    "channels:history",
    "channels:read",
    "groups:history",
    "users:read",
];

/// Team T1 with users U1 and U2, public channel C1 (members U1 and the bot of A1), and
/// apps A1 (bot in C1) and A2 (bot not in C1), both subscribed to channel messages and
/// membership events.
fn directory() -> MapView {
    let mut v = MapView {
        users: ["U1", "U2", "UBOT1", "UBOT2"].map(String::from).into(),
        ..MapView::default()
    };
    v.conversations.insert(
        "C1".into(),
        Arc::new(ConversationFacts {
            channel_type: "channel",
            members: ["U1", "UBOT1"].map(String::from).into(),
        }),
    );
    for (app, bot) in [("A1", "UBOT1"), ("A2", "UBOT2")] {
        v.apps.insert(
            app.into(),
            Arc::new(AppSubscriptions {
                id: app.into(),
                bot_events: [
                    "message.channels",
                    "member_joined_channel",
                    "member_left_channel",
                ]
                .map(String::from)
                .into(),
                user_events: vec![],
                events_enabled: true,
            }),
        );
        v.grants.push((
            app.into(),
            vec![Grant {
                installation_id: format!("I{app}"),
                team_id: Some("T1".into()),
                enterprise_id: None,
                is_enterprise_install: false,
                installer_user_id: "U1".into(),
                bot_user_id: Some(bot.into()),
                bot_scopes: SCOPES.iter().map(|s| s.to_string()).collect(),
                user_scopes: vec![],
            }],
        ));
    }
    v
}

fn rules(catalog: &Catalog) -> Rules<'_> {
    Rules {
        catalog,
        max_event_age_secs: 72 * 3600,
        max_future_skew_secs: 300,
        rate_max: 30_000,
        rate_window_secs: 3600,
    }
}

fn request(event: Value) -> Request<'static> {
    Request {
        team_id: "T1",
        enterprise_id: None,
        event: event.as_object().cloned().unwrap_or_default(),
        event_time: None,
        app_id: None,
        now: NOW,
        now_micros: 42,
    }
}

fn planned<'c>(r: &Rules<'c>, req: Request<'_>, v: &mut MapView) -> Plan<'c> {
    match plan(r, req, v) {
        Ok(Ok(p)) => p,
        Ok(Err(refused)) => panic!("refused: {refused:?}"),
        Err(e) => match e {},
    }
}

fn refused(r: &Rules<'_>, req: Request<'_>, v: &mut MapView) -> Refused {
    match plan(r, req, v) {
        Ok(Ok(p)) => panic!("planned: {p:?}"),
        Ok(Err(refused)) => refused,
        Err(e) => match e {},
    }
}

fn code(r: &Refused) -> &str {
    match &r.refusal {
        Refusal::Unprocessable { code, .. } => code,
        Refusal::BadRequest { .. } => "bad_request",
    }
}

fn apps<'a>(p: &'a Plan<'_>) -> Vec<&'a str> {
    p.deliveries.iter().map(|d| d.app_id.as_str()).collect()
}

#[test]
fn a_message_takes_its_channel_type_from_the_conversation_and_reaches_its_members() {
    let c = Catalog::builtin();
    let mut v = directory();
    let p = planned(
        &rules(&c),
        request(json!({"type": "message", "channel": "C1", "user": "U1", "text": "hi"})),
        &mut v,
    );
    assert_eq!(p.kind.name, "message.channels");
    assert_eq!(p.event["channel_type"], "channel");
    assert_eq!(p.event["event_ts"], format!("{NOW}.000042"));
    assert_eq!(p.event_time, NOW);
    assert_eq!(p.channel.as_deref(), Some("C1"));
    assert_eq!(p.actor.as_deref(), Some("U1"));
    assert_eq!(apps(&p), ["A1"], "A2's bot is not in the channel");
    assert_eq!(p.deliveries[0].authorization.user_id, "UBOT1");
    assert_eq!(p.deliveries[0].disposition, Disposition::Pending);
    assert!(p.change.is_none());
}

#[test]
fn each_bad_reference_is_refused_with_its_code_and_field() {
    let c = Catalog::builtin();
    let r = rules(&c);
    let cases = [
        (json!({"channel": "C1"}), "bad_request"),
        (
            json!({"type": "nonsense", "user": "U1"}),
            "unknown_event_type",
        ),
        (
            json!({"type": "message", "channel": "C404", "user": "U1"}),
            "unknown_channel",
        ),
        (
            json!({"type": "message", "channel": "C1", "user": "U404"}),
            "unknown_user",
        ),
        (
            json!({"type": "im_created", "channel": {"id": "D1"}}),
            "missing_user",
        ),
        (json!({"type": "app_uninstalled"}), "missing_app"),
    ];
    for (event, want) in cases {
        let got = refused(&r, request(event.clone()), &mut directory());
        assert_eq!(code(&got), want, "{event}");
        assert_eq!(got.too_old, None);
    }
    let mut req = request(json!({"type": "app_uninstalled"}));
    req.app_id = Some("A404");
    assert_eq!(code(&refused(&r, req, &mut directory())), "unknown_app");
}

#[test]
fn an_event_past_the_age_limit_is_refused_and_counted_under_its_type() {
    let c = Catalog::builtin();
    let r = rules(&c);
    let mut req = request(json!({"type": "message", "channel": "C1", "user": "U1"}));
    req.event_time = Some(NOW - 72 * 3600 - 1);
    let got = refused(&r, req, &mut directory());
    assert_eq!(code(&got), "event_too_old");
    assert_eq!(got.too_old.as_deref(), Some("message.channels"));
    let mut req = request(json!({"type": "message", "channel": "C1", "user": "U1"}));
    req.event_time = Some(NOW + 301);
    let got = refused(&r, req, &mut directory());
    assert_eq!(code(&got), "event_in_future");
    assert_eq!(got.too_old, None);
}

#[test]
fn a_joining_member_sees_its_own_join_and_a_leaving_one_its_leave() {
    let c = Catalog::builtin();
    let r = rules(&c);
    let mut v = directory();
    let join = planned(
        &r,
        request(json!({"type": "member_joined_channel", "channel": "C1", "user": "UBOT2"})),
        &mut v,
    );
    assert_eq!(
        apps(&join),
        ["A1", "A2"],
        "A2's bot sees the join that adds it"
    );
    assert!(matches!(
        join.change,
        Some((DirectoryChange::Join { .. }, ChangeAt::BeforeFanout))
    ));
    let leave = planned(
        &r,
        request(json!({"type": "member_left_channel", "channel": "C1", "user": "UBOT1"})),
        &mut v,
    );
    assert_eq!(apps(&leave), ["A1"], "A1's bot still sees its own leave");
    assert!(matches!(
        leave.change,
        Some((DirectoryChange::Leave { .. }, ChangeAt::AfterFanout))
    ));
}

#[test]
fn a_directory_change_with_bad_references_is_refused_before_anything_is_planned() {
    let c = Catalog::builtin();
    let r = rules(&c);
    let bad_id = json!({"type": "channel_created", "channel": {"id": "nope", "name": "x"}});
    assert_eq!(
        code(&refused(&r, request(bad_id), &mut directory())),
        "bad_request"
    );
    let stranger =
        json!({"type": "channel_created", "channel": {"id": "C9", "name": "x", "creator": "U404"}});
    assert_eq!(
        code(&refused(&r, request(stranger), &mut directory())),
        "unknown_user"
    );
    let nowhere = json!({"type": "member_joined_channel", "channel": "C404", "user": "U2"});
    assert_eq!(
        code(&refused(&r, request(nowhere), &mut directory())),
        "unknown_channel"
    );
}

#[test]
fn a_disabled_app_gets_a_dropped_delivery_that_does_not_count_against_its_rate() {
    let c = Catalog::builtin();
    let mut v = directory();
    let mut a1 = (*v.apps["A1"]).clone();
    a1.events_enabled = false;
    v.apps.insert("A1".into(), Arc::new(a1));
    let p = planned(
        &rules(&c),
        request(json!({"type": "message", "channel": "C1", "user": "U1"})),
        &mut v,
    );
    assert_eq!(
        p.deliveries[0].disposition,
        Disposition::Dropped("app_disabled")
    );
    assert!(v.rates.is_empty());
}

#[test]
fn past_the_rate_limit_deliveries_drop_and_one_notice_goes_out_per_minute() {
    let c = Catalog::builtin();
    let mut r = rules(&c);
    r.rate_max = 2;
    let mut v = directory();
    let msg = || request(json!({"type": "message", "channel": "C1", "user": "U1"}));
    let got: Vec<(Disposition, Option<i64>)> = (0..4)
        .map(|_| {
            let p = planned(&r, msg(), &mut v);
            (p.deliveries[0].disposition, p.deliveries[0].rate_notice)
        })
        .collect();
    let minute = NOW / 60;
    assert_eq!(
        got,
        [
            (Disposition::Pending, None),
            (Disposition::Pending, None),
            (Disposition::Dropped("rate_limited"), Some(minute)),
            (Disposition::Dropped("rate_limited"), None),
        ]
    );
}
