//! `tidings trigger EVENT_TYPE --team T [--channel C] [--user U] [--app A]`: publishes the
//! catalog's sample of an event type (read from `GET /event_types`, so operator-defined
//! types with a `sample` work too), its placeholders filled in, as `stripe trigger` does.

use clap::Args;
use serde_json::{json, Value};
use tidings_core::sample::{self, Vars};

use super::client::Client;
use super::seg;

#[derive(Args, Debug)]
pub struct TriggerOpts {
    /// The subscription name (`reaction_added`, `message.channels`, `app_mention`, …).
    pub event_type: String,
    /// The team the event happens in.
    #[arg(long)]
    pub team: String,
    /// The conversation, for samples that name one.
    #[arg(long)]
    pub channel: Option<String>,
    /// The acting user, for samples that name one.
    #[arg(long)]
    pub user: Option<String>,
    /// The app an app-level event is about; also whose bot an `app_mention` mentions.
    #[arg(long)]
    pub app: Option<String>,
}

/// The bot user of `app`'s installation covering `team`.
async fn bot_of(c: &Client, app: &str, team: &str) -> Result<Option<String>, String> {
    let installs = c
        .get_all(&format!("/apps/{}/installations", seg(app)))
        .await?;
    Ok(installs
        .iter()
        .filter(|i| i["team_id"] == team || i["team_id"].is_null())
        .find_map(|i| i["bot_user_id"].as_str().map(str::to_string)))
}

pub async fn run(c: &Client, json_out: bool, o: TriggerOpts) -> Result<(), String> {
    let types = c.get_all("/event_types").await?;
    let Some(kind) = types.iter().find(|t| t["name"] == o.event_type.as_str()) else {
        return Err(format!(
            "{:?} is not an event type in the catalog (see GET /admin/v1/event_types)",
            o.event_type
        ));
    };
    let Some(sample) = kind.get("sample").filter(|s| s.is_object()) else {
        return Err(format!(
            "event type {:?} has no sample: give its [[events.custom]] entry a `sample`, or use tidings publish",
            o.event_type
        ));
    };
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut vars = Vars {
        team: o.team.clone(),
        channel: o.channel.clone(),
        user: o.user.clone(),
        bot: None,
        now: d.as_secs() as i64,
        micros: d.subsec_micros(),
    };
    if sample.to_string().contains("{bot}") {
        if let Some(app) = &o.app {
            vars.bot = bot_of(c, app, &o.team).await?;
            if vars.bot.is_none() {
                return Err(format!(
                    "app {app} has no bot user in team {}: install it with bot scopes first",
                    o.team
                ));
            }
        }
    }
    let event = sample::fill(sample, &vars)?;
    let mut body = json!({"team_id": o.team, "event": event});
    if let Some(a) = &o.app {
        body["app_id"] = Value::from(a.clone());
    }
    let r = c.post("/events", &body).await.map_err(|e| {
        if e.contains("an app event must name the app") {
            format!("{e} (add --app A…)")
        } else {
            e
        }
    })?;
    if json_out {
        println!("{r}");
    } else {
        println!(
            "{}\t{}\t{} deliveries",
            r["event_id"].as_str().unwrap_or("?"),
            o.event_type,
            r["deliveries"]
        );
    }
    Ok(())
}
