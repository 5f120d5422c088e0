//! Bulk replay from the command line: `tidings apps redeliver A` starts a job (and with
//! `--wait` follows it to the end), `tidings redeliveries show ID` shows one.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::output::print_item;
use super::{seg, Client};

const FIELDS: &[&str] = &[
    "id",
    "app_id",
    "state",
    "total",
    "sent",
    "status",
    "since",
    "until",
    "created_at",
];

/// How often `--wait` reads the job's progress.
const POLL: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Args, Debug)]
pub struct RedeliverOpts {
    app: String,
    /// Comma-separated statuses to re-queue (default: failed).
    #[arg(long, value_delimiter = ',', value_parser = ["failed", "dropped", "delivered"])]
    status: Option<Vec<String>>,
    /// Deliveries created at or after (Unix seconds).
    #[arg(long)]
    since: Option<i64>,
    /// Deliveries created at or before (Unix seconds).
    #[arg(long)]
    until: Option<i64>,
    /// Wait until the job is done, printing its progress.
    #[arg(long)]
    wait: bool,
}

#[derive(Subcommand, Debug)]
pub enum RedeliveryCmd {
    /// A bulk replay job and its progress.
    Show { id: String },
}

pub async fn start(c: &Client, json_out: bool, o: RedeliverOpts) -> Result<(), String> {
    let mut body = json!({});
    if let Some(s) = o.status {
        body["status"] = s.into();
    }
    if let Some(s) = o.since {
        body["since"] = s.into();
    }
    if let Some(u) = o.until {
        body["until"] = u.into();
    }
    let mut job = c
        .post(&format!("/apps/{}/redeliveries", seg(&o.app)), &body)
        .await?;
    if o.wait {
        job = wait(c, json_out, job).await?;
    }
    print_item(json_out, &job, FIELDS);
    Ok(())
}

async fn wait(c: &Client, json_out: bool, mut job: Value) -> Result<Value, String> {
    let id = job["id"].as_str().unwrap_or_default().to_string();
    while job["state"] == "running" {
        if !json_out {
            eprintln!("{id}: {} of {} re-queued", job["sent"], job["total"]);
        }
        tokio::time::sleep(POLL).await;
        job = c.get(&format!("/redeliveries/{}", seg(&id))).await?;
    }
    Ok(job)
}

pub async fn run(c: &Client, json_out: bool, cmd: RedeliveryCmd) -> Result<(), String> {
    match cmd {
        RedeliveryCmd::Show { id } => {
            let v = c.get(&format!("/redeliveries/{}", seg(&id))).await?;
            print_item(json_out, &v, FIELDS);
        }
    }
    Ok(())
}
