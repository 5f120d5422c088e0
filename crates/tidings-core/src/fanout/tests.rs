//! One test per fan-out rule, over the built-in catalog.

use super::*;
use crate::catalog::Catalog;

fn app(bot: &[&str], user: &[&str]) -> AppSubscriptions {
    AppSubscriptions {
        id: "A1".into(),
        bot_events: bot.iter().map(|s| s.to_string()).collect(),
        user_events: user.iter().map(|s| s.to_string()).collect(),
        events_enabled: true,
    }
}

fn bot_grant(scopes: &[&str]) -> Grant {
    Grant {
        installation_id: "I1".into(),
        team_id: Some("T1".into()),
        enterprise_id: None,
        is_enterprise_install: false,
        installer_user_id: "U0INSTALLER".into(),
        bot_user_id: Some("U0BOT".into()),
        bot_scopes: scopes.iter().map(|s| s.to_string()).collect(),
        user_scopes: vec![],
    }
}

fn user_grant(user: &str, scopes: &[&str]) -> Grant {
    Grant {
        installation_id: format!("I_{user}"),
        team_id: Some("T1".into()),
        enterprise_id: None,
        is_enterprise_install: false,
        installer_user_id: user.into(),
        bot_user_id: None,
        bot_scopes: vec![],
        user_scopes: scopes.iter().map(|s| s.to_string()).collect(),
    }
}

fn facts<'a>(kind: &'a EventType, mentions: &'a [String]) -> EventFacts<'a> {
    EventFacts {
        kind,
        audience: kind.audience,
        actor: None,
        app_id: None,
        mentions,
    }
}

fn members(list: &'static [&'static str]) -> impl Fn(&str) -> bool {
    move |u| list.contains(&u)
}

#[test]
fn a_bot_in_the_channel_with_the_scope_gets_channel_messages() {
    let c = Catalog::builtin();
    let k = c.get("message.channels").unwrap();
    let auths = visible_authorizations(
        &facts(k, &[]),
        &app(&["message.channels"], &[]),
        &[bot_grant(&["channels:history"])],
        &members(&["U0BOT"]),
    );
    assert_eq!(auths.len(), 1);
    assert!(auths[0].is_bot);
    assert_eq!(auths[0].user_id, "U0BOT");
    assert_eq!(auths[0].team_id.as_deref(), Some("T1"));
}

#[test]
fn a_bot_outside_the_channel_does_not_see_its_messages() {
    let c = Catalog::builtin();
    let k = c.get("message.channels").unwrap();
    let auths = visible_authorizations(
        &facts(k, &[]),
        &app(&["message.channels"], &[]),
        &[bot_grant(&["channels:history"])],
        &members(&["U0OTHER"]),
    );
    assert!(auths.is_empty());
}

#[test]
fn without_the_scope_or_the_subscription_there_is_no_delivery() {
    let c = Catalog::builtin();
    let k = c.get("message.channels").unwrap();
    let m = members(&["U0BOT"]);
    assert!(visible_authorizations(
        &facts(k, &[]),
        &app(&["message.channels"], &[]),
        &[bot_grant(&["chat:write"])],
        &m
    )
    .is_empty());
    assert!(visible_authorizations(
        &facts(k, &[]),
        &app(&["reaction_added"], &[]),
        &[bot_grant(&["channels:history"])],
        &m
    )
    .is_empty());
}

#[test]
fn team_audience_events_reach_every_subscribed_bot() {
    let c = Catalog::builtin();
    let k = c.get("channel_created").unwrap();
    let auths = visible_authorizations(
        &facts(k, &[]),
        &app(&["channel_created"], &[]),
        &[bot_grant(&["channels:read"])],
        &members(&[]),
    );
    assert_eq!(auths.len(), 1);
}

#[test]
fn private_user_actions_never_reach_bots_and_reach_only_the_acting_user() {
    let c = Catalog::builtin();
    let k = c.get("channel_left").unwrap();
    assert_eq!(k.audience, Audience::User);
    let grants = [
        bot_grant(&["channels:read"]),
        user_grant("U0ALICE", &["channels:read"]),
        user_grant("U0BOB", &["channels:read"]),
    ];
    let a = app(&["channel_left"], &["channel_left"]);
    let mut f = facts(k, &[]);
    f.actor = Some("U0BOB");
    let auths = visible_authorizations(&f, &a, &grants, &members(&[]));
    assert_eq!(auths.len(), 1);
    assert_eq!(auths[0].user_id, "U0BOB");
    assert!(!auths[0].is_bot);
}

#[test]
fn app_events_go_only_to_the_named_app() {
    let c = Catalog::builtin();
    let k = c.get("app_home_opened").unwrap();
    let a = app(&["app_home_opened"], &[]);
    let g = [bot_grant(&[])];
    let mut f = facts(k, &[]);
    f.app_id = Some("A_OTHER");
    assert!(visible_authorizations(&f, &a, &g, &members(&[])).is_empty());
    f.app_id = Some("A1");
    assert_eq!(visible_authorizations(&f, &a, &g, &members(&[])).len(), 1);
}

#[test]
fn app_mention_goes_only_to_apps_whose_bot_is_mentioned() {
    let c = Catalog::builtin();
    let k = c.get("app_mention").unwrap();
    let a = app(&["app_mention"], &[]);
    let g = [bot_grant(&["app_mentions:read"])];
    let m = members(&["U0BOT"]);
    let none: Vec<String> = mentions("hello <@U0OTHER>");
    assert!(visible_authorizations(&facts(k, &none), &a, &g, &m).is_empty());
    let me = mentions("hey <@U0BOT|bot> look");
    assert_eq!(me, vec!["U0BOT".to_string()]);
    assert_eq!(visible_authorizations(&facts(k, &me), &a, &g, &m).len(), 1);
}

#[test]
fn user_side_conversation_events_need_the_installer_in_the_channel() {
    let c = Catalog::builtin();
    let k = c.get("message.channels").unwrap();
    let a = app(&[], &["message.channels"]);
    let g = [
        user_grant("U0ALICE", &["channels:history"]),
        user_grant("U0BOB", &["channels:history"]),
    ];
    let auths = visible_authorizations(&facts(k, &[]), &a, &g, &members(&["U0BOB"]));
    assert_eq!(
        auths.iter().map(|a| a.user_id.as_str()).collect::<Vec<_>>(),
        vec!["U0BOB"]
    );
}

#[test]
fn the_bot_is_chosen_first_then_users_by_id() {
    let c = Catalog::builtin();
    let k = c.get("reaction_added").unwrap();
    let a = app(&["reaction_added"], &["reaction_added"]);
    let g = [
        user_grant("U0ZED", &["reactions:read"]),
        user_grant("U0AMY", &["reactions:read"]),
        bot_grant(&["reactions:read"]),
    ];
    let m = members(&["U0ZED", "U0AMY", "U0BOT"]);
    let all = visible_authorizations(&facts(k, &[]), &a, &g, &m);
    let ids: Vec<_> = all.iter().map(|a| (a.user_id.as_str(), a.is_bot)).collect();
    assert_eq!(
        ids,
        vec![("U0BOT", true), ("U0AMY", false), ("U0ZED", false)]
    );
    assert_eq!(
        delivery_authorization(&facts(k, &[]), &a, &g, &m)
            .unwrap()
            .user_id,
        "U0BOT"
    );
}

#[test]
fn a_shared_bot_user_is_listed_once() {
    let c = Catalog::builtin();
    let k = c.get("channel_created").unwrap();
    let mut second = bot_grant(&["channels:read"]);
    second.installation_id = "I2".into();
    second.installer_user_id = "U0OTHER".into();
    let auths = visible_authorizations(
        &facts(k, &[]),
        &app(&["channel_created"], &[]),
        &[bot_grant(&["channels:read"]), second],
        &members(&[]),
    );
    assert_eq!(auths.len(), 1);
}

#[test]
fn org_wide_grants_authorize_with_the_enterprise_and_no_team() {
    let c = Catalog::builtin();
    let k = c.get("team_join").unwrap();
    let mut g = bot_grant(&["users:read"]);
    g.team_id = None;
    g.enterprise_id = Some("E1".into());
    g.is_enterprise_install = true;
    let auths = visible_authorizations(
        &facts(k, &[]),
        &app(&["team_join"], &[]),
        &[g],
        &members(&[]),
    );
    assert_eq!(auths[0].team_id, None);
    assert_eq!(auths[0].enterprise_id.as_deref(), Some("E1"));
    assert!(auths[0].is_enterprise_install);
}

#[test]
fn mentions_ignore_malformed_references() {
    assert_eq!(
        mentions("<@> <@lower> <@U1> <@U2|n> <!here>"),
        vec!["U1", "U2"]
    );
    assert!(mentions("no mentions").is_empty());
}

#[test]
fn mentions_read_only_the_ids_not_the_rest_of_the_text() {
    // Half a million `<@` without a `>`: each used to search the rest of the text for one
    // (10^11 bytes read, minutes in a debug build); now each reads only its id.
    let text = "<@".repeat(500_000);
    assert!(mentions(&text).is_empty());
    let text = format!("{}<@U1>", "<@U".repeat(300_000));
    assert_eq!(mentions(&text), vec!["U1"]);
    assert_eq!(mentions("<@U1"), vec!["U1"], "at the very end of the text");
    assert_eq!(mentions("<@U1 x> <@U2x> <@U3|>"), vec!["U3"]);
}
