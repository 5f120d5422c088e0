//! `tidings publish`: one event from an argument or a file, or NDJSON from stdin sent in
//! batches. Each line is a publish body (`{"team_id", "event", …}`) or, with `--team`, a
//! bare inner event. Sent with `tidings-client`'s [`Publisher`] (typed refusals).

use std::io::BufRead;

use clap::Args;
use serde_json::{json, Value};

use tidings_client::{ItemResult, PublishError, Publisher};

use super::client::Client;

#[derive(Args, Debug)]
pub struct PublishOpts {
    /// The inner event as JSON (with --team), or a whole publish body. Omit to read NDJSON
    /// from stdin (or use --file).
    pub event: Option<String>,
    /// Team the event happened in (lets lines be bare inner events).
    #[arg(long)]
    pub team: Option<String>,
    /// File with one JSON event, or NDJSON ("-" for stdin).
    #[arg(long)]
    pub file: Option<String>,
    /// App an app-level event is about.
    #[arg(long)]
    pub app: Option<String>,
    #[arg(long)]
    pub event_time: Option<i64>,
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Events per batch request when reading many.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub batch_size: u32,
}

/// Turns one input object into a publish body.
fn body(o: &PublishOpts, v: Value) -> Result<Value, String> {
    if !v.is_object() {
        return Err("each event must be a JSON object".into());
    }
    let mut b = if v.get("event").is_some() {
        v
    } else {
        let team = o
            .team
            .as_ref()
            .ok_or("a bare event needs --team (or give a full body with team_id and event)")?;
        json!({"team_id": team, "event": v})
    };
    if let Some(a) = &o.app {
        b["app_id"] = a.clone().into();
    }
    if let Some(t) = o.event_time {
        b["event_time"] = t.into();
    }
    if let Some(k) = &o.idempotency_key {
        b["idempotency_key"] = k.clone().into();
    }
    Ok(b)
}

fn report(json_out: bool, line: usize, r: &Value) -> bool {
    let ok = r.get("error").is_none();
    if json_out {
        println!("{r}");
    } else if ok {
        println!(
            "{}\t{} deliveries{}",
            r["event_id"].as_str().unwrap_or("?"),
            r["deliveries"],
            if r["duplicate"] == true {
                " (duplicate)"
            } else {
                ""
            }
        );
    } else {
        eprintln!(
            "event {line}: {}",
            r["error"]["detail"].as_str().unwrap_or("refused")
        );
    }
    ok
}

pub async fn run(c: &Client, json_out: bool, o: PublishOpts) -> Result<(), String> {
    let single = match (&o.event, &o.file) {
        (Some(text), _) => Some(text.clone()),
        (None, Some(f)) if f != "-" => {
            let text = std::fs::read_to_string(f).map_err(|e| format!("cannot read {f}: {e}"))?;
            // A file holding one JSON document is one event; otherwise NDJSON.
            match serde_json::from_str::<Value>(&text) {
                Ok(_) => Some(text),
                Err(_) => return many(c, json_out, &o, Box::new(std::io::Cursor::new(text))).await,
            }
        }
        _ => None,
    };
    match single {
        Some(text) => {
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| format!("the event is not valid JSON: {e}"))?;
            let p = c.publisher()?;
            let r = p.publish(&body(&o, v)?).await.map_err(|e| describe(&e))?;
            report(json_out, 1, &json!(r));
            Ok(())
        }
        None => {
            many(
                c,
                json_out,
                &o,
                Box::new(std::io::BufReader::new(std::io::stdin())),
            )
            .await
        }
    }
}

/// One line for a refusal or an unreachable server.
fn describe(e: &PublishError) -> String {
    match e {
        PublishError::Refused {
            status,
            code,
            detail,
        } => format!("{status} {code}: {detail}"),
        other => other.to_string(),
    }
}

async fn many(
    c: &Client,
    json_out: bool,
    o: &PublishOpts,
    input: Box<dyn BufRead>,
) -> Result<(), String> {
    let p: Publisher = c.publisher()?;
    let (mut ok, mut failed, mut n) = (0usize, 0usize, 0usize);
    let mut batch: Vec<(usize, Value)> = Vec::new();
    let mut lines = input.lines();
    loop {
        let line = lines
            .next()
            .transpose()
            .map_err(|e| format!("reading input: {e}"))?;
        let done = line.is_none();
        if let Some(l) = line {
            if l.trim().is_empty() {
                continue;
            }
            n += 1;
            match serde_json::from_str::<Value>(&l)
                .map_err(|e| format!("not valid JSON: {e}"))
                .and_then(|v| body(o, v))
            {
                Ok(b) => batch.push((n, b)),
                Err(e) => {
                    eprintln!("event {n}: {e}");
                    failed += 1;
                }
            }
        }
        if batch.len() >= o.batch_size as usize || (done && !batch.is_empty()) {
            let events: Vec<Value> = batch.iter().map(|(_, b)| b.clone()).collect();
            let results = p.publish_batch(&events).await.map_err(|e| describe(&e))?;
            for ((line, _), res) in batch.drain(..).zip(results) {
                let res = match res {
                    ItemResult::Published(r) => json!(r),
                    ItemResult::Refused(e) => json!({"error": {"detail": describe(&e)}}),
                };
                if report(json_out, line, &res) {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
        }
        if done {
            break;
        }
    }
    eprintln!("published {ok}, refused {failed}");
    if failed > 0 {
        return Err(format!("{failed} of {n} events were refused"));
    }
    Ok(())
}
