//! The lifecycle events an uninstall implies, as pure data: `tokens_revoked` naming the
//! tokens the installation held, and `app_uninstalled` when nothing of the app is left
//! installed in the team. The store publishes them in the uninstall's own transaction,
//! while the installation can still authorize them.

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
}
