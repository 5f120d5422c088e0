//! The lifecycle events an uninstall or a revocation implies, as pure data:
//! `tokens_revoked` naming the tokens that went, and `app_uninstalled` when nothing of the
//! app is left installed in the team. The store publishes them in the uninstall's or
//! revocation's own transaction, while the installation can still authorize them, so
//! each is sent exactly once and commits with the change it reports.

use serde_json::{json, Map, Value};

/// What an uninstall needs to know about the installation going away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uninstalled<'a> {
    /// Its bot user, when it was granted bot scopes.
    pub bot_user: Option<&'a str>,
    /// Its installer, when it was granted user scopes (the user token's owner).
    pub oauth_user: Option<&'a str>,
    /// No other live installation of the app remains in the team.
    pub last_in_team: bool,
}

/// The inner events to publish to the app, in order.
pub fn on_uninstall(u: &Uninstalled<'_>) -> Vec<Map<String, Value>> {
    let object = |v: Value| match v {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let bot: Vec<&str> = u.bot_user.into_iter().collect();
    let oauth: Vec<&str> = u.oauth_user.into_iter().collect();
    let mut out = vec![object(
        json!({"type": "tokens_revoked", "tokens": {"oauth": oauth, "bot": bot}}),
    )];
    if u.last_in_team {
        out.push(object(json!({"type": "app_uninstalled"})));
    }
    out
}

/// What `auth.revoke` of one side (bot or user token) of an installation needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideRevoked<'a> {
    /// The bot user, when the bot side was revoked.
    pub bot_user: Option<&'a str>,
    /// The token's user, when the user side was revoked.
    pub oauth_user: Option<&'a str>,
    /// Nothing of the installation is left, so it is uninstalled with this revocation.
    pub uninstalls: bool,
    /// No other live installation of the app remains in the team.
    pub last_in_team: bool,
}

/// The inner events a revocation publishes, in order: one `tokens_revoked` for the side,
/// then `app_uninstalled` when the revocation uninstalls the last installation of the app
/// in the team. (The uninstall adds no second `tokens_revoked`: the other side's tokens,
/// if it had any, were reported when they were revoked.)
pub fn on_side_revoked(r: &SideRevoked<'_>) -> Vec<Map<String, Value>> {
    let u = Uninstalled {
        bot_user: r.bot_user,
        oauth_user: r.oauth_user,
        last_in_team: r.uninstalls && r.last_in_team,
    };
    on_uninstall(&u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_installation_in_a_team_also_says_the_app_is_gone() {
        let u = Uninstalled {
            bot_user: Some("U0BOT"),
            oauth_user: None,
            last_in_team: true,
        };
        let evs = on_uninstall(&u);
        assert_eq!(evs.len(), 2);
        assert_eq!(
            Value::Object(evs[0].clone()),
            json!({"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["U0BOT"]}})
        );
        assert_eq!(evs[1]["type"], "app_uninstalled");
        let others = Uninstalled {
            last_in_team: false,
            oauth_user: Some("U1"),
            ..u
        };
        let evs = on_uninstall(&others);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0]["tokens"]["oauth"], json!(["U1"]));
    }

    #[test]
    fn a_revocation_names_its_side_once_and_uninstalls_only_when_nothing_is_left() {
        let user_side = SideRevoked {
            bot_user: None,
            oauth_user: Some("U1"),
            uninstalls: false,
            last_in_team: true,
        };
        let evs = on_side_revoked(&user_side);
        assert_eq!(
            evs.iter()
                .map(|e| Value::Object(e.clone()))
                .collect::<Vec<_>>(),
            [json!({"type": "tokens_revoked", "tokens": {"oauth": ["U1"], "bot": []}})]
        );
        let last = SideRevoked {
            bot_user: Some("U0BOT"),
            oauth_user: None,
            uninstalls: true,
            last_in_team: true,
        };
        let types: Vec<Value> = on_side_revoked(&last)
            .iter()
            .map(|e| e["type"].clone())
            .collect();
        assert_eq!(types, [json!("tokens_revoked"), json!("app_uninstalled")]);
        let others_left = SideRevoked {
            last_in_team: false,
            ..last
        };
        assert_eq!(on_side_revoked(&others_left).len(), 1);
    }
}
