use super::*;

/// A custom type as an operator would write it: team audience, both lists, no scopes.
fn custom(name: &str) -> EventType {
    EventType {
        name: name.to_owned(),
        inner_type: String::new(),
        channel_type: None,
        bot_scopes: Vec::new(),
        user_scopes: Vec::new(),
        bot: true,
        user: true,
        audience: Audience::Team,
        channel_field: None,
        user_field: None,
        event_context: true,
        mention_only: false,
        sample: None,
    }
}

fn refused(entry: EventType) -> String {
    Catalog::with_custom(vec![entry])
        .expect_err("custom type should be refused")
        .to_string()
}

fn builtin(name: &str) -> EventType {
    Catalog::builtin()
        .get(name)
        .unwrap_or_else(|| panic!("{name} is not in the builtin catalog"))
        .clone()
}

/// SLACK-WIRE.md §7's three lists of events without `event_context`.
const SECTION_7: &[&str] = &[
    // about the app itself
    "app_home_opened",
    "app_uninstalled",
    "grid_migration_started",
    "grid_migration_finished",
    "team_access_granted",
    "team_access_revoked",
    "tokens_revoked",
    "workflow_step_execute",
    "workflow_step_deleted",
    "workflow_published",
    "workflow_unpublished",
    "workflow_deleted",
    // private actions of one user
    "channel_left",
    "dnd_updated",
    "im_created",
    "im_open",
    "im_close",
    "group_open",
    "group_close",
    "group_left",
    "star_added",
    "star_removed",
    "subteam_self_added",
    "subteam_self_removed",
    // public workspace actions
    "app_requested",
    "channel_created",
    "channel_deleted",
    "channel_rename",
    "channel_archive",
    "channel_unarchive",
    "dnd_updated_user",
    "email_domain_changed",
    "emoji_changed",
    "file_deleted",
    "invite_requested",
    "subteam_created",
    "subteam_updated",
    "subteam_members_changed",
    "team_join",
    "team_rename",
    "team_domain_change",
    "user_change",
];

/// §7 names that are not in §5's catalog (workflow events Slack lists but never catalogued).
const SECTION_7_NOT_IN_CATALOG: &[&str] = &[
    "workflow_step_deleted",
    "workflow_published",
    "workflow_unpublished",
    "workflow_deleted",
];

#[test]
fn builtin_catalog_parses_and_validates() {
    let types = parse_builtin().expect("builtin.toml parses");
    let catalog = Catalog::build(types, Vec::new()).expect("builtin.toml validates");
    assert_eq!(catalog.len(), 50);
    assert!(!catalog.is_empty());
    assert_eq!(Catalog::builtin().len(), 50);
}

#[test]
fn builtin_catalog_has_every_section_5_type_and_nothing_else() {
    let mut expected = vec![
        "message.channels",
        "message.groups",
        "message.im",
        "message.mpim",
        "app_mention",
        "reaction_added",
        "reaction_removed",
        "channel_created",
        "channel_deleted",
        "channel_rename",
        "channel_archive",
        "channel_unarchive",
        "channel_left",
        "member_joined_channel",
        "member_left_channel",
        "file_created",
        "file_shared",
        "file_deleted",
        "file_public",
        "team_join",
        "team_rename",
        "team_domain_change",
        "user_change",
        "emoji_changed",
        "app_home_opened",
        "app_uninstalled",
        "tokens_revoked",
        "im_created",
        "im_open",
        "im_close",
        "group_open",
        "group_close",
        "group_left",
        "star_added",
        "star_removed",
        "dnd_updated",
        "dnd_updated_user",
        "subteam_created",
        "subteam_updated",
        "subteam_members_changed",
        "subteam_self_added",
        "subteam_self_removed",
        "email_domain_changed",
        "invite_requested",
        "grid_migration_started",
        "grid_migration_finished",
        "app_requested",
        "team_access_granted",
        "team_access_revoked",
        "workflow_step_execute",
    ];
    let catalog = Catalog::builtin();
    let mut actual: Vec<&str> = catalog.iter().map(|t| t.name.as_str()).collect();
    expected.sort_unstable();
    actual.sort_unstable();
    assert_eq!(actual, expected);
}

#[test]
fn nonexistent_and_generated_types_are_not_in_the_catalog() {
    let catalog = Catalog::builtin();
    for name in [
        "app_collaborator_added",
        "app_collaborator_removed",
        "app_rate_limited",
    ] {
        assert!(catalog.get(name).is_none(), "{name}");
        assert!(catalog.resolve(name, None).is_none(), "{name}");
    }
}

#[test]
fn message_resolves_by_channel_type() {
    let catalog = Catalog::builtin();
    for (channel_type, name, scope) in [
        ("channel", "message.channels", "channels:history"),
        ("group", "message.groups", "groups:history"),
        ("im", "message.im", "im:history"),
        ("mpim", "message.mpim", "mpim:history"),
    ] {
        let entry = catalog
            .resolve("message", Some(channel_type))
            .unwrap_or_else(|| panic!("message/{channel_type} does not resolve"));
        assert_eq!(entry.name, name);
        assert_eq!(entry.inner_type, "message");
        assert_eq!(entry.channel_type.as_deref(), Some(channel_type));
        assert_eq!(entry.bot_scopes, [scope]);
        assert_eq!(entry.user_scopes, [scope]);
        assert_eq!(entry.audience, Audience::Conversation);
        assert_eq!(entry.channel_field.as_deref(), Some("/channel"));
        assert_eq!(entry.user_field.as_deref(), Some("/user"));
        assert!(entry.bot && entry.user && entry.event_context);
    }
}

#[test]
fn message_without_a_known_channel_type_does_not_resolve() {
    let catalog = Catalog::builtin();
    for channel_type in [None, Some("C"), Some("channels"), Some("")] {
        assert!(
            catalog.resolve("message", channel_type).is_none(),
            "{channel_type:?}"
        );
    }
}

#[test]
fn message_subscription_names_are_not_inner_types() {
    let catalog = Catalog::builtin();
    assert!(catalog.get("message").is_none());
    assert!(catalog
        .resolve("message.channels", Some("channel"))
        .is_none());
}

#[test]
fn other_types_resolve_whatever_channel_type_says() {
    let catalog = Catalog::builtin();
    for (inner_type, channel_type) in [
        ("member_joined_channel", Some("C")),
        ("member_left_channel", Some("G")),
        ("reaction_added", None),
        ("team_join", Some("channel")),
    ] {
        let entry = catalog.resolve(inner_type, channel_type).unwrap();
        assert_eq!(entry.name, inner_type);
    }
    assert!(catalog.resolve("no_such_event", None).is_none());
}

#[test]
fn inner_type_defaults_to_name() {
    let catalog = Catalog::builtin();
    for entry in catalog.iter().filter(|t| !t.name.starts_with("message.")) {
        assert_eq!(entry.inner_type, entry.name);
        assert_eq!(entry.channel_type, None, "{}", entry.name);
    }
    let catalog = Catalog::with_custom(vec![custom("invoice_paid")]).unwrap();
    assert_eq!(
        catalog.get("invoice_paid").unwrap().inner_type,
        "invoice_paid"
    );
    assert_eq!(
        catalog.resolve("invoice_paid", None).unwrap().name,
        "invoice_paid"
    );
}

#[test]
fn events_in_section_7_carry_no_event_context() {
    assert_eq!(SECTION_7.len(), 42);
    let catalog = Catalog::builtin();
    for name in SECTION_7 {
        match catalog.get(name) {
            Some(entry) => assert!(!entry.event_context, "{name} carries event_context"),
            None => assert!(SECTION_7_NOT_IN_CATALOG.contains(name), "{name} missing"),
        }
    }
    for entry in catalog.iter().filter(|t| !t.event_context) {
        assert!(SECTION_7.contains(&entry.name.as_str()), "{}", entry.name);
    }
    let without = catalog.iter().filter(|t| !t.event_context).count();
    assert_eq!(without, SECTION_7.len() - SECTION_7_NOT_IN_CATALOG.len());
}

#[test]
fn user_only_types_are_not_bot_subscribable() {
    let catalog = Catalog::builtin();
    for (name, scope) in [
        ("dnd_updated", "dnd:read"),
        ("group_open", "groups:read"),
        ("group_close", "groups:read"),
        ("subteam_self_added", "usergroups:read"),
        ("subteam_self_removed", "usergroups:read"),
        ("star_added", "stars:read"),
        ("star_removed", "stars:read"),
        ("invite_requested", "admin.invites:read"),
    ] {
        let entry = catalog.get(name).unwrap();
        assert!(!entry.bot && entry.user, "{name}");
        assert!(entry.bot_scopes.is_empty(), "{name}");
        assert_eq!(entry.user_scopes, [scope], "{name}");
    }
    let user_only = catalog.iter().filter(|t| !t.bot).count();
    assert_eq!(user_only, 8);
}

#[test]
fn app_events_have_app_audience_and_are_bot_only() {
    let catalog = Catalog::builtin();
    for name in [
        "app_home_opened",
        "app_uninstalled",
        "tokens_revoked",
        "grid_migration_started",
        "grid_migration_finished",
        "team_access_granted",
        "team_access_revoked",
        "workflow_step_execute",
    ] {
        let entry = catalog.get(name).unwrap();
        assert_eq!(entry.audience, Audience::App, "{name}");
        assert!(entry.bot && !entry.user, "{name}");
        assert!(entry.user_scopes.is_empty(), "{name}");
        assert!(!entry.event_context, "{name}");
    }
    assert_eq!(
        catalog.get("workflow_step_execute").unwrap().bot_scopes,
        ["workflow.steps:execute"]
    );
    assert_eq!(
        catalog
            .iter()
            .filter(|t| t.audience == Audience::App)
            .count(),
        8
    );
}

#[test]
fn conversation_types_name_their_channel_field() {
    let catalog = Catalog::builtin();
    let mut expected = vec![
        ("app_mention", "/channel"),
        ("file_shared", "/channel_id"),
        ("member_joined_channel", "/channel"),
        ("member_left_channel", "/channel"),
        ("message.channels", "/channel"),
        ("message.groups", "/channel"),
        ("message.im", "/channel"),
        ("message.mpim", "/channel"),
        ("reaction_added", "/item/channel"),
        ("reaction_removed", "/item/channel"),
    ];
    let mut actual: Vec<(&str, &str)> = catalog
        .iter()
        .filter(|t| t.audience == Audience::Conversation)
        .map(|t| (t.name.as_str(), t.channel_field.as_deref().unwrap()))
        .collect();
    expected.sort_unstable();
    actual.sort_unstable();
    assert_eq!(actual, expected);
    for entry in catalog
        .iter()
        .filter(|t| t.audience != Audience::Conversation)
    {
        assert_eq!(entry.channel_field, None, "{}", entry.name);
    }
}

#[test]
fn private_actions_of_one_user_have_user_audience() {
    let catalog = Catalog::builtin();
    let mut expected = vec![
        "channel_left",
        "dnd_updated",
        "im_created",
        "im_open",
        "im_close",
        "group_open",
        "group_close",
        "group_left",
        "star_added",
        "star_removed",
        "subteam_self_added",
        "subteam_self_removed",
    ];
    let mut actual: Vec<&str> = catalog
        .iter()
        .filter(|t| t.audience == Audience::User)
        .map(|t| t.name.as_str())
        .collect();
    expected.sort_unstable();
    actual.sort_unstable();
    assert_eq!(actual, expected);
    for name in expected {
        assert_eq!(
            catalog.get(name).unwrap().user_field.as_deref(),
            Some("/user")
        );
    }
}

#[test]
fn actors_are_named_where_the_inner_event_has_one() {
    let catalog = Catalog::builtin();
    for (name, pointer) in [
        ("team_join", "/user/id"),
        ("user_change", "/user/id"),
        ("file_created", "/user_id"),
        ("file_shared", "/user_id"),
        ("file_public", "/user_id"),
        ("reaction_added", "/user"),
        ("channel_archive", "/user"),
        ("app_home_opened", "/user"),
        ("channel_created", "/channel/creator"),
        ("app_requested", "/app_request/user/id"),
    ] {
        assert_eq!(
            catalog.get(name).unwrap().user_field.as_deref(),
            Some(pointer),
            "{name}"
        );
    }
    for name in [
        "team_rename",
        "emoji_changed",
        "file_deleted",
        "tokens_revoked",
    ] {
        assert_eq!(catalog.get(name).unwrap().user_field, None, "{name}");
    }
}

#[test]
fn member_channel_events_accept_any_of_three_read_scopes() {
    for name in ["member_joined_channel", "member_left_channel"] {
        let entry = builtin(name);
        let scopes = ["channels:read", "groups:read", "mpim:read"];
        assert_eq!(entry.bot_scopes, scopes, "{name}");
        assert_eq!(entry.user_scopes, scopes, "{name}");
        assert!(entry.event_context, "{name}");
    }
}

#[test]
fn app_mention_is_bot_only_and_mention_only() {
    let entry = builtin("app_mention");
    assert!(entry.bot && !entry.user && entry.mention_only);
    assert_eq!(entry.bot_scopes, ["app_mentions:read"]);
    assert!(entry.user_scopes.is_empty());
    let mention_only = Catalog::builtin().iter().filter(|t| t.mention_only).count();
    assert_eq!(mention_only, 1);
}

#[test]
fn custom_type_is_added_after_the_builtins() {
    let mut invoice = custom("invoice_paid");
    invoice.bot_scopes = vec!["invoices:read".to_owned()];
    let mut ticket = custom("acme:ticket.closed");
    ticket.inner_type = "ticket_closed".to_owned();
    ticket.audience = Audience::Conversation;
    ticket.channel_field = Some("/ticket/channel".to_owned());
    let catalog = Catalog::with_custom(vec![invoice.clone(), ticket]).unwrap();
    assert_eq!(catalog.len(), Catalog::builtin().len() + 2);
    assert_eq!(
        catalog.get("invoice_paid"),
        Some(&EventType {
            inner_type: "invoice_paid".to_owned(),
            ..invoice
        })
    );
    assert_eq!(
        catalog.resolve("ticket_closed", None).unwrap().name,
        "acme:ticket.closed"
    );
    assert!(catalog.resolve("acme:ticket.closed", None).is_none());
    let last: Vec<&str> = catalog.iter().skip(50).map(|t| t.name.as_str()).collect();
    assert_eq!(last, ["invoice_paid", "acme:ticket.closed"]);
}

#[test]
fn custom_message_type_without_channel_type_catches_unknown_channel_types() {
    let mut entry = custom("message.other");
    entry.inner_type = "message".to_owned();
    let catalog = Catalog::with_custom(vec![entry]).unwrap();
    assert_eq!(
        catalog.resolve("message", Some("im")).unwrap().name,
        "message.im"
    );
    assert_eq!(
        catalog.resolve("message", None).unwrap().name,
        "message.other"
    );
    assert_eq!(
        catalog.resolve("message", Some("huddle")).unwrap().name,
        "message.other"
    );
}

#[test]
fn custom_type_without_channel_field_is_refused() {
    let mut entry = custom("foo.bar");
    entry.audience = Audience::Conversation;
    assert_eq!(
        refused(entry),
        "event type \"foo.bar\": audience is conversation but channel_field is missing"
    );
}

#[test]
fn custom_type_without_user_field_is_refused() {
    let mut entry = custom("foo.bar");
    entry.audience = Audience::User;
    assert_eq!(
        refused(entry),
        "event type \"foo.bar\": audience is user but user_field is missing"
    );
}

#[test]
fn custom_type_cannot_redefine_builtin() {
    for name in ["reaction_added", "message.im", "app_home_opened"] {
        let err = Catalog::with_custom(vec![custom(name)]).unwrap_err();
        assert_eq!(
            err,
            CatalogError::RedefinesBuiltin {
                name: name.to_owned()
            }
        );
        assert!(err.to_string().contains("cannot redefine"), "{err}");
    }
}

#[test]
fn custom_types_with_the_same_name_are_refused() {
    let err = Catalog::with_custom(vec![custom("invoice_paid"), custom("invoice_paid")]);
    assert_eq!(
        err.unwrap_err().to_string(),
        "event type \"invoice_paid\": defined more than once"
    );
}

#[test]
fn custom_types_resolving_alike_are_refused() {
    let mut im = custom("message.direct");
    im.inner_type = "message".to_owned();
    im.channel_type = Some("im".to_owned());
    let err = Catalog::with_custom(vec![im]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "event type \"message.direct\": resolves from the same inner type \"message\" and \
         channel_type \"im\" as \"message.im\""
    );

    let mut alias = custom("team_joined");
    alias.inner_type = "team_join".to_owned();
    assert!(matches!(
        Catalog::with_custom(vec![alias]),
        Err(CatalogError::SameResolution { other, .. }) if other == "team_join"
    ));

    let mut second = custom("invoice_paid.v2");
    second.inner_type = "invoice_paid".to_owned();
    let err = Catalog::with_custom(vec![custom("invoice_paid"), second]).unwrap_err();
    assert!(err.to_string().contains("(any)"), "{err}");
}

#[test]
fn custom_type_needs_bot_or_user() {
    let mut entry = custom("invoice_paid");
    entry.bot = false;
    entry.user = false;
    assert_eq!(
        refused(entry),
        "event type \"invoice_paid\": neither bot nor user is set, so no app could subscribe to it"
    );
}

#[test]
fn mention_only_requires_bot() {
    let mut entry = custom("invoice_mention");
    entry.bot = false;
    entry.mention_only = true;
    assert!(matches!(
        Catalog::with_custom(vec![entry]),
        Err(CatalogError::MentionOnlyWithoutBot { .. })
    ));
}

#[test]
fn custom_type_names_are_restricted() {
    for name in [
        "",
        "Invoice",
        "invoice paid",
        "invoice/paid",
        "façade",
        "a\"b",
    ] {
        let err = Catalog::with_custom(vec![custom(name)]).unwrap_err();
        assert_eq!(
            err,
            CatalogError::InvalidName {
                name: name.to_owned()
            },
            "{name:?}"
        );
    }
    for name in ["a", "acme:invoice.paid-v2_1", "0"] {
        Catalog::with_custom(vec![custom(name)]).unwrap();
    }
    let mut entry = custom("invoice_paid");
    entry.inner_type = "Invoice".to_owned();
    assert!(refused(entry).contains("inner_type \"Invoice\""));
}

#[test]
fn generated_payload_names_are_reserved() {
    for name in ["app_rate_limited", "url_verification", "event_callback"] {
        assert!(matches!(
            Catalog::with_custom(vec![custom(name)]),
            Err(CatalogError::Reserved { .. })
        ));
    }
    let mut entry = custom("rate_limited");
    entry.inner_type = "app_rate_limited".to_owned();
    assert!(refused(entry).contains("generated by Tidings"));
}

#[test]
fn fields_must_be_json_pointers() {
    for (channel_field, user_field) in [
        (Some("channel"), None),
        (Some("/channel"), Some("user")),
        (Some(""), None),
        (Some("/a~2b"), None),
        (Some("/a~"), None),
    ] {
        let mut entry = custom("invoice_paid");
        entry.audience = Audience::Conversation;
        entry.channel_field = channel_field.map(str::to_owned);
        entry.user_field = user_field.map(str::to_owned);
        let err = Catalog::with_custom(vec![entry]).unwrap_err();
        assert!(
            matches!(err, CatalogError::InvalidPointer { .. }),
            "{channel_field:?} {user_field:?}: {err}"
        );
    }
    let mut entry = custom("invoice_paid");
    entry.user_field = Some("/user".to_owned());
    entry.channel_field = Some("/a~0b/c~1d".to_owned());
    Catalog::with_custom(vec![entry]).unwrap();

    let mut entry = custom("invoice_paid");
    entry.user_field = Some("user".to_owned());
    assert_eq!(
        refused(entry),
        "event type \"invoice_paid\": user_field \"user\" is not a JSON pointer (it must start \
         with \"/\", and '~' must be followed by 0 or 1)"
    );
}

#[test]
fn scopes_for_a_list_the_type_is_not_in_are_refused() {
    let mut entry = custom("invoice_paid");
    entry.bot = false;
    entry.bot_scopes = vec!["invoices:read".to_owned()];
    assert_eq!(
        refused(entry),
        "event type \"invoice_paid\": bot_scopes are given but bot is false, so they could never \
         apply"
    );
    let mut entry = custom("invoice_paid");
    entry.user_scopes = vec!["invoices read".to_owned()];
    assert!(matches!(
        Catalog::with_custom(vec![entry]),
        Err(CatalogError::InvalidScope {
            field: "user_scopes",
            ..
        })
    ));
    let mut entry = custom("invoice_paid");
    entry.channel_type = Some(String::new());
    assert!(matches!(
        Catalog::with_custom(vec![entry]),
        Err(CatalogError::EmptyChannelType { .. })
    ));
}

#[test]
fn custom_types_deserialize_from_the_config_shape() {
    #[derive(Deserialize)]
    struct Events {
        custom: Vec<EventType>,
    }
    let events: Events = toml::from_str(
        r#"
        [[custom]]
        name = "invoice_paid"
        bot_scopes = ["invoices:read"]
        user_scopes = ["invoices:read"]
        bot = true
        user = true
        audience = "team"
        user_field = "/user"
        event_context = true
        "#,
    )
    .unwrap();
    let catalog = Catalog::with_custom(events.custom).unwrap();
    let entry = catalog.get("invoice_paid").unwrap();
    assert_eq!(entry.inner_type, "invoice_paid");
    assert_eq!(entry.audience, Audience::Team);
    assert!(!entry.mention_only);

    let unknown_field = toml::from_str::<Events>(
        r#"
        [[custom]]
        name = "invoice_paid"
        bot = true
        user = true
        audience = "team"
        event_context = true
        scopes = ["invoices:read"]
        "#,
    );
    assert!(unknown_field.is_err());
}

#[test]
fn audience_serializes_in_snake_case() {
    for (audience, text) in [
        (Audience::App, "\"app\""),
        (Audience::User, "\"user\""),
        (Audience::Team, "\"team\""),
        (Audience::Conversation, "\"conversation\""),
    ] {
        assert_eq!(serde_json::to_string(&audience).unwrap(), text);
        assert_eq!(serde_json::from_str::<Audience>(text).unwrap(), audience);
    }
}

#[test]
fn builtin_pointers_find_ids_in_slack_shaped_events() {
    let catalog = Catalog::builtin();
    let pointer = |name: &str, field: fn(&EventType) -> Option<&str>, event: serde_json::Value| {
        let entry = catalog.get(name).unwrap();
        event
            .pointer(field(entry).unwrap())
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    fn channel(t: &EventType) -> Option<&str> {
        t.channel_field.as_deref()
    }
    fn user(t: &EventType) -> Option<&str> {
        t.user_field.as_deref()
    }
    let reaction = serde_json::json!({
        "type": "reaction_added", "user": "U1", "reaction": "thumbsup",
        "item": {"type": "message", "channel": "C1", "ts": "1.2"}
    });
    assert_eq!(
        pointer("reaction_added", channel, reaction).as_deref(),
        Some("C1")
    );
    // A file reaction has no conversation: the caller falls back to team audience.
    let file_reaction = serde_json::json!({
        "type": "reaction_added", "user": "U1", "item": {"type": "file", "file": "F1"}
    });
    assert_eq!(pointer("reaction_added", channel, file_reaction), None);
    let shared = serde_json::json!({"type": "file_shared", "file_id": "F1", "user_id": "U2", "channel_id": "C2"});
    assert_eq!(
        pointer("file_shared", channel, shared.clone()).as_deref(),
        Some("C2")
    );
    assert_eq!(pointer("file_shared", user, shared).as_deref(), Some("U2"));
    let join = serde_json::json!({"type": "team_join", "user": {"id": "U3", "name": "x"}});
    assert_eq!(pointer("team_join", user, join).as_deref(), Some("U3"));
}
