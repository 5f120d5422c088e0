//! The `insights` scenario: how fast the insight queries answer over 30 days of a busy
//! instance.
//!
//! The publish API refuses events older than 72 hours, so 30 days of history cannot be
//! published; instead the harness starts the server once (which creates its schema), stops
//! it, writes the rollups that 30 days of a busy workload leave behind straight into its
//! SQLite file, starts it again and times the operator API's insight queries. The
//! workload: `teams` teams of `users` users each, every user active 6 hours a day and
//! performing 3 of 15 event types in each active hour; 4 events per (user, type, hour).
//! Minute rows are not written (30-day queries read hours and days). The sets are written
//! in the server's format (Roaring bitmaps of user numbers).

use std::time::{Duration, Instant};

use std::collections::HashMap;

use roaring::RoaringBitmap;
use rusqlite::{params, Connection};

use crate::scenarios::{Outcome, Params};
use crate::server::{Server, ADMIN};

const TYPES: &[&str] = &[
    "message.channels",
    "message.groups",
    "message.im",
    "message.mpim",
    "reaction_added",
    "reaction_removed",
    "app_mention",
    "channel_created",
    "member_joined_channel",
    "member_left_channel",
    "file_shared",
    "pin_added",
    "star_added",
    "team_join",
    "user_change",
];
const EVENTS_PER_USER_HOUR: i64 = 4;
const QUERIES: usize = 20;

struct Shape {
    days: i64,
    teams: usize,
    users: usize,
}

fn seed(db: &std::path::Path, shape: &Shape, now: i64) -> Result<u64, String> {
    let e = |e: rusqlite::Error| e.to_string();
    let mut c = Connection::open(db).map_err(e)?;
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;")
        .map_err(e)?;
    // (granularity, team, bucket, type) → the users who performed it, as the server keeps
    // them: Roaring bitmaps of user numbers.
    let mut sets: HashMap<(i64, String, i64, &str), RoaringBitmap> = HashMap::new();
    let today = now - now.rem_euclid(86_400);
    for day in 0..shape.days {
        let day_start = today - day * 86_400;
        for t in 0..shape.teams {
            let team = format!("T{t:08}");
            for u in 0..shape.users {
                let n = (t * shape.users + u + 1) as u32;
                for j in 0..6i64 {
                    let hour = day_start + ((u as i64 * 7 + day * 3 + j * 4) % 24) * 3_600;
                    if hour > now {
                        continue;
                    }
                    for k in 0..3 {
                        let ty = TYPES[(u + j as usize * 2 + k * 5 + day as usize) % TYPES.len()];
                        for (team_key, type_key) in
                            [(team.as_str(), ty), (team.as_str(), ""), ("", ty), ("", "")]
                        {
                            for (g, b) in [(1, hour), (2, day_start)] {
                                sets.entry((g, team_key.to_string(), b, type_key))
                                    .or_default()
                                    .insert(n);
                            }
                        }
                    }
                }
            }
        }
    }
    let tx = c.transaction().map_err(e)?;
    {
        let mut ids = tx
            .prepare("INSERT INTO insight_user_ids (n, user_id) VALUES (?1, ?2)")
            .map_err(e)?;
        for t in 0..shape.teams {
            for u in 0..shape.users {
                let n = (t * shape.users + u + 1) as i64;
                ids.execute(params![n, format!("U{t:04}{u:05}")])
                    .map_err(e)?;
            }
        }
        let mut put = tx
            .prepare("INSERT INTO insight_user_sets (g, team_id, bucket, event_type, users) VALUES (?1, ?2, ?3, ?4, ?5)")
            .map_err(e)?;
        let mut count = tx
            .prepare("INSERT INTO insight_events (g, team_id, bucket, event_type, events, users) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .map_err(e)?;
        for ((g, team, b, ty), set) in &sets {
            let mut blob = Vec::new();
            set.serialize_into(&mut blob).map_err(|e| e.to_string())?;
            put.execute(params![g, team, b, ty, blob]).map_err(e)?;
            if *g == 1 {
                // Every (user, type, hour) stands for a few events.
                let users = set.len() as i64;
                count
                    .execute(params![1, team, b, ty, users * EVENTS_PER_USER_HOUR, users])
                    .map_err(e)?;
            }
        }
    }
    tx.execute_batch(
        "INSERT INTO insight_events (g, team_id, bucket, event_type, events, users)
         SELECT 2, team_id, bucket - bucket % 86400, event_type, SUM(events), 0
         FROM insight_events WHERE g = 1 GROUP BY team_id, bucket - bucket % 86400, event_type;",
    )
    .map_err(e)?;
    {
        let mut upd = tx
            .prepare("UPDATE insight_events SET users = ?5 WHERE g = ?1 AND team_id = ?2 AND bucket = ?3 AND event_type = ?4")
            .map_err(e)?;
        for ((g, team, b, ty), set) in &sets {
            if *g == 2 {
                upd.execute(params![g, team, b, ty, set.len() as i64])
                    .map_err(e)?;
            }
        }
    }
    // A hundred apps' deliveries, every hour.
    tx.execute_batch(
        "WITH RECURSIVE h(b) AS (SELECT MIN(bucket) FROM insight_events WHERE g = 1
                                UNION ALL SELECT b + 3600 FROM h WHERE b + 3600 <= (SELECT MAX(bucket) FROM insight_events WHERE g = 1)),
              a(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM a WHERE n < 99)
         INSERT INTO insight_deliveries (g, bucket, app_id, attempts, succeeded, failed, retries, delivered, l3, l4, l6)
         SELECT 1, h.b, printf('A%08d', a.n), 1000, 990, 10, 10, 990, 800, 190, 10 FROM h, a;
         INSERT INTO insight_deliveries (g, bucket, app_id, attempts, succeeded, failed, retries, delivered, l3, l4, l6)
         SELECT 2, bucket - bucket % 86400, app_id, SUM(attempts), SUM(succeeded), SUM(failed), SUM(retries),
                SUM(delivered), SUM(l3), SUM(l4), SUM(l6)
         FROM insight_deliveries WHERE g = 1 GROUP BY bucket - bucket % 86400, app_id;",
    )
    .map_err(e)?;
    let events: i64 = tx
        .query_row(
            "SELECT COALESCE(SUM(events), 0) FROM insight_events WHERE g = 2 AND team_id = '' AND event_type = ''",
            [],
            |r| r.get(0),
        )
        .map_err(e)?;
    tx.commit().map_err(e)?;
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .map_err(e)?;
    Ok(events as u64)
}

pub async fn run(p: &Params) -> Result<Outcome, String> {
    let shape = if p.quick {
        Shape {
            days: 30,
            teams: 2,
            users: 20,
        }
    } else {
        Shape {
            days: 30,
            teams: 20,
            users: 200,
        }
    };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let data = dir.path().join("data");
    drop(Server::start_in(&p.bin, &data, &[])?);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs() as i64;
    let t0 = Instant::now();
    let events = seed(&data.join("tidings.db"), &shape, now)?;
    let seed_secs = t0.elapsed().as_secs_f64();
    let server = Server::start_in(&p.bin, &data, &[])?;
    let c = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    for t in 0..shape.teams {
        let res = c
            .post(format!("{}/admin/v1/teams", server.url))
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({"id": format!("T{t:08}"), "name": format!("team {t}"), "domain": format!("team-{t}")}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("creating team {t}: {}", res.status()));
        }
    }
    for ty in ["app_mention", "file_shared", "reaction_added"] {
        c.put(format!("{}/admin/v1/key_events/{ty}", server.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .map_err(|e| e.to_string())?;
    }
    let from = now - 30 * 86_400;
    let queries = [
        format!("/insights/events?from={from}"),
        format!("/insights/events?from={from}&team_id=T00000001"),
        format!("/insights/events?from={from}&granularity=hour"),
        format!("/insights/key_events?from={from}"),
        format!("/insights/deliveries?from={from}"),
    ];
    let cpu0 = server.cpu_seconds();
    let mut times: Vec<f64> = Vec::new();
    let mut per_kind: Vec<Vec<f64>> = vec![Vec::new(); queries.len()];
    let mut checked = false;
    for _ in 0..QUERIES {
        for (i, q) in queries.iter().enumerate() {
            let t = Instant::now();
            let res = c
                .get(format!("{}/admin/v1{q}", server.url))
                .bearer_auth(ADMIN)
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = res.status();
            let body: serde_json::Value = res.json().await.map_err(|e| e.to_string())?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            times.push(ms);
            per_kind[i].push(ms);
            if !status.is_success() {
                return Err(format!("{q} answered {status}: {body}"));
            }
            if !checked && q.starts_with("/insights/events?") {
                let counted = body["totals"]["events"].as_u64().unwrap_or(0);
                if counted != events {
                    return Err(format!(
                        "{q} counted {counted} events, {events} were seeded"
                    ));
                }
                let users = body["totals"]["users"].as_u64().unwrap_or(0);
                let seeded = (shape.teams * shape.users) as u64;
                if users != seeded {
                    return Err(format!(
                        "{q} counted {users} active users, {seeded} were seeded"
                    ));
                }
                checked = true;
            }
        }
    }
    times.sort_by(f64::total_cmp);
    let medians: Vec<String> = queries
        .iter()
        .zip(per_kind.iter_mut())
        .map(|(q, v)| {
            v.sort_by(f64::total_cmp);
            let path = q
                .split('?')
                .next()
                .unwrap_or(q)
                .trim_start_matches("/insights/");
            let extra = if q.contains("team_id") {
                " (one team)"
            } else if q.contains("granularity=hour") {
                " (hourly)"
            } else {
                ""
            };
            format!("{path}{extra} {:.0} ms", v[v.len() / 2])
        })
        .collect();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok(Outcome {
        scenario: "insights".into(),
        events,
        deliveries: 0,
        events_per_sec: 0.0,
        deliveries_per_sec: 0.0,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: at(1.0),
        server_cpu_s: server.cpu_seconds() - cpu0,
        peak_rss_mb: server.peak_rss_mb(),
        publish_p99_ms: None,
        idle_rss_mb: None,
        note: format!(
            "30-day insight queries over {} teams x {} users (seeded in {seed_secs:.0} s); medians: {}",
            shape.teams,
            shape.users,
            medians.join(", ")
        ),
    })
}
