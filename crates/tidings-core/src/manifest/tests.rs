use serde_json::json;

use super::*;

fn rules_with(catalog: &Catalog, f: impl FnOnce(&Rules)) {
    let known = |s: &str| ["chat:write", "reactions:read", "channels:history"].contains(&s);
    let url = |u: &str| (!u.starts_with("https://")).then(|| "must be https".to_string());
    let redirect = |_: &str| None;
    f(&Rules {
        catalog,
        known_scope: &known,
        request_url: &url,
        redirect_url: &redirect,
    })
}

fn full() -> Value {
    json!({
        "display_information": {"name": "Hello"},
        "features": {
            "bot_user": {"display_name": "hello"},
            "slash_commands": [{"command": "/hi", "description": "x", "url": "https://x.test/c"}]
        },
        "oauth_config": {"scopes": {"bot": ["reactions:read"]}},
        "settings": {
            "event_subscriptions": {"request_url": "https://x.test/e", "bot_events": ["reaction_added"]},
            "interactivity": {"is_enabled": true}
        }
    })
}

#[test]
fn a_valid_manifest_gives_the_fields_tidings_acts_on_and_keeps_the_rest() {
    rules_with(&Catalog::builtin(), |r| {
        let m = check(full(), r).unwrap();
        assert_eq!(m.name, "Hello");
        assert_eq!(m.bot_events, vec!["reaction_added"]);
        assert_eq!(m.request_url.as_deref(), Some("https://x.test/e"));
        assert_eq!(m.raw["features"]["slash_commands"][0]["command"], "/hi");
    });
}

#[test]
fn unknown_keys_are_reported_with_their_pointer() {
    rules_with(&Catalog::builtin(), |r| {
        let mut v = full();
        v["settings"]["event_subscriptions"]["bogus"] = json!(1);
        v["a/b"] = json!(1);
        let errs = check(v, r).unwrap_err();
        let pointers: Vec<_> = errs.iter().map(|e| e.pointer.as_str()).collect();
        assert!(pointers.contains(&"/settings/event_subscriptions/bogus"));
        assert!(pointers.contains(&"/a~1b"));
    });
}

#[test]
fn an_event_whose_scope_is_not_requested_is_refused_at_its_index() {
    rules_with(&Catalog::builtin(), |r| {
        let mut v = full();
        v["oauth_config"]["scopes"]["bot"] = json!(["chat:write"]);
        let errs = check(v, r).unwrap_err();
        assert_eq!(
            errs[0].pointer,
            "/settings/event_subscriptions/bot_events/0"
        );
        assert!(errs[0].message.contains("reactions:read"), "{errs:?}");
    });
}

#[test]
fn socket_mode_and_request_url_rules() {
    rules_with(&Catalog::builtin(), |r| {
        let mut both = full();
        both["settings"]["socket_mode_enabled"] = json!(true);
        assert_eq!(
            check(both, r).unwrap_err()[0].pointer,
            "/settings/event_subscriptions/request_url"
        );
        let mut neither = full();
        neither["settings"]["event_subscriptions"]
            .as_object_mut()
            .unwrap()
            .remove("request_url");
        assert_eq!(
            check(neither, r).unwrap_err()[0].pointer,
            "/settings/event_subscriptions"
        );
        let mut refused = full();
        refused["settings"]["event_subscriptions"]["request_url"] = json!("http://x.test/e");
        assert_eq!(check(refused, r).unwrap_err()[0].message, "must be https");
    });
}

#[test]
fn malformed_and_oversized_manifests_are_refused_at_the_root() {
    rules_with(&Catalog::builtin(), |r| {
        assert_eq!(parse("{", r).unwrap_err()[0].pointer, "/");
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_BYTES));
        assert!(parse(&big, r).unwrap_err()[0].message.contains("larger"));
        assert_eq!(parse("[]", r).unwrap_err()[0].message, "must be an object");
    });
}

#[test]
fn export_round_trips_an_untouched_manifest_and_follows_operator_changes() {
    rules_with(&Catalog::builtin(), |r| {
        let m = check(full(), r).unwrap();
        let state = AppState {
            name: m.name.clone(),
            request_url: m.request_url.clone(),
            socket_mode: false,
            bot_events: m.bot_events.clone(),
            user_events: vec![],
            redirect_urls: vec![],
            token_rotation: false,
            org_deploy: false,
        };
        assert_eq!(export(Some(full()), &state, r), full());
        let renamed = AppState {
            name: "Renamed".into(),
            ..state
        };
        let out = export(Some(full()), &renamed, r);
        assert_eq!(out["display_information"]["name"], "Renamed");
        assert_eq!(out["features"], full()["features"]);
    });
}
