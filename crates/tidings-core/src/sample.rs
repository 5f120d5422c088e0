//! Filling in a catalog entry's `sample` (the inner event `tidings trigger` publishes):
//! `{team}`, `{channel}`, `{user}`, `{bot}` and `{ts}` inside strings, and a string that is
//! exactly `{now}` turned into Unix seconds. A placeholder the caller has no value for is
//! an error naming what to supply.

use serde_json::Value;

/// The values placeholders stand for.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    pub team: String,
    pub channel: Option<String>,
    pub user: Option<String>,
    /// The bot user an `app_mention` sample mentions.
    pub bot: Option<String>,
    /// Unix seconds.
    pub now: i64,
    /// The microseconds of `{ts}` (`now.micros`).
    pub micros: u32,
}

/// The placeholders a sample uses that `vars` has no value for, by the option that
/// supplies them (`--channel`, `--user`, `--app` for `{bot}`).
pub fn missing(sample: &Value, vars: &Vars) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |needle: &str, have: bool, option: &'static str| {
        if !have && mentions(sample, needle) && !out.contains(&option) {
            out.push(option);
        }
    };
    check("{channel}", vars.channel.is_some(), "--channel");
    check("{user}", vars.user.is_some(), "--user");
    check("{bot}", vars.bot.is_some(), "--app");
    out
}

fn mentions(v: &Value, needle: &str) -> bool {
    match v {
        Value::String(s) => s.contains(needle),
        Value::Array(a) => a.iter().any(|x| mentions(x, needle)),
        Value::Object(o) => o.values().any(|x| mentions(x, needle)),
        _ => false,
    }
}

/// The sample with every placeholder filled in; `Err` names the options still needed.
pub fn fill(sample: &Value, vars: &Vars) -> Result<Value, String> {
    let need = missing(sample, vars);
    if !need.is_empty() {
        return Err(format!(
            "this event type's sample needs {}",
            need.join(", ")
        ));
    }
    Ok(fill_value(sample, vars))
}

fn fill_value(v: &Value, vars: &Vars) -> Value {
    match v {
        Value::String(s) if s == "{now}" => Value::from(vars.now),
        Value::String(s) => {
            let ts = format!("{}.{:06}", vars.now, vars.micros % 1_000_000);
            let mut out = s.replace("{team}", &vars.team).replace("{ts}", &ts);
            for (needle, value) in [
                ("{channel}", &vars.channel),
                ("{user}", &vars.user),
                ("{bot}", &vars.bot),
            ] {
                if let Some(x) = value {
                    out = out.replace(needle, x);
                }
            }
            Value::String(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| fill_value(x, vars)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), fill_value(x, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use serde_json::json;

    fn vars() -> Vars {
        Vars {
            team: "T1".into(),
            channel: Some("C1".into()),
            user: Some("U1".into()),
            bot: Some("UBOT".into()),
            now: 1_700_000_000,
            micros: 42,
        }
    }

    #[test]
    fn placeholders_are_filled_inside_strings_and_now_becomes_a_number() {
        let s = json!({"type": "app_mention", "text": "<@{bot}> hi", "channel": "{channel}",
                       "ts": "{ts}", "created": "{now}", "ids": ["{user}", "{team}"]});
        assert_eq!(
            fill(&s, &vars()).unwrap(),
            json!({"type": "app_mention", "text": "<@UBOT> hi", "channel": "C1",
                   "ts": "1700000000.000042", "created": 1_700_000_000, "ids": ["U1", "T1"]})
        );
    }

    #[test]
    fn a_missing_value_names_the_option_to_supply() {
        let s = json!({"type": "app_mention", "text": "<@{bot}>", "channel": "{channel}"});
        let v = Vars {
            channel: None,
            bot: None,
            ..vars()
        };
        assert_eq!(
            fill(&s, &v).unwrap_err(),
            "this event type's sample needs --channel, --app"
        );
    }

    #[test]
    fn every_builtin_type_has_a_sample_of_its_inner_type() {
        for k in Catalog::builtin().iter() {
            let s = k
                .sample
                .as_ref()
                .unwrap_or_else(|| panic!("{} has no sample", k.name));
            let filled = fill(s, &vars()).unwrap();
            assert_eq!(filled["type"], k.inner_type.as_str(), "{}", k.name);
            assert!(!filled.to_string().contains("{channel}"), "{}", k.name);
        }
    }
}
