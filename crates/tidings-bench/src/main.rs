//! `tidings-bench`: the benchmark harness. It starts a release `tidings serve` as its own
//! process with a fresh data dir and its own receiver on 127.0.0.1, drives the server only
//! through its public APIs, and reports per scenario: events published/s, deliveries/s end
//! to end, publish→arrival latency (p50/p99/max), server CPU seconds and peak RSS.
//! Every load loop is bounded in count and time and targets loopback only.

mod backlog;
mod ceiling;
mod insights;
mod receiver;
mod relay;
mod retention;
mod scenarios;
mod server;
mod socket;

use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "tidings-bench", about = "Benchmark a release tidings server")]
struct Args {
    /// The tidings binary to run (build it with `cargo build --release`).
    #[arg(long, env = "TIDINGS_BIN", default_value = "target/release/tidings")]
    tidings_bin: String,
    /// Scenarios to run (default: all).
    #[arg(long = "scenario")]
    scenarios: Vec<String>,
    /// Seconds of publishing per scenario run.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Runs per scenario; the median by deliveries/s is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// CI mode: a few seconds per scenario, one run, no bars.
    #[arg(long)]
    quick: bool,
    /// One JSON object per scenario instead of a table.
    #[arg(long)]
    json: bool,
    /// The server's `delivery.max_in_flight_per_app` (its default is 64). One app taking
    /// 20,000 deliveries/s while each attempt takes about 3 ms under load needs about 60
    /// requests in flight (Little's law), so 64 would be the lane's ceiling, not the
    /// engine's; pass 64 to measure the default.
    #[arg(long, default_value_t = 256)]
    max_in_flight_per_app: u32,
}

/// Raises the soft limit on open files to the hard limit: the `socket` scenario holds
/// 10,000 client connections. Best effort; a failure shows up as connections that fail.
fn raise_open_files_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let a = Args::parse();
    raise_open_files_limit();
    server::set_max_in_flight_per_app(a.max_in_flight_per_app);
    let (duration, runs) = if a.quick {
        (Duration::from_secs(3), 1)
    } else {
        (Duration::from_secs(a.duration), a.runs.max(1))
    };
    let params = scenarios::Params {
        bin: a.tidings_bin.clone(),
        duration,
        drain: duration.max(Duration::from_secs(20)) * 2,
        quick: a.quick,
    };
    let names: Vec<String> = if a.scenarios.is_empty() {
        scenarios::ALL.iter().map(|s| s.to_string()).collect()
    } else {
        a.scenarios.clone()
    };
    if !std::path::Path::new(&a.tidings_bin).exists() {
        eprintln!("error: {} does not exist; build it with `cargo build --release -p tidings` or pass --tidings-bin", a.tidings_bin);
        return std::process::ExitCode::FAILURE;
    }
    let mut results = Vec::new();
    for name in &names {
        let mut outs = Vec::new();
        for _ in 0..runs {
            match scenarios::run(name, &params).await {
                Ok(o) => outs.push(o),
                Err(e) => {
                    eprintln!("error: scenario {name}: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
        outs.sort_by(|x, y| x.deliveries_per_sec.total_cmp(&y.deliveries_per_sec));
        let median = outs.swap_remove(outs.len() / 2);
        if a.json {
            println!("{}", serde_json::to_string(&median).unwrap_or_default());
        }
        results.push(median);
    }
    if !a.json {
        println!(
            "{:<11} {:>9} {:>10} {:>10} {:>12} {:>8} {:>8} {:>8} {:>7} {:>8}  note",
            "scenario",
            "events",
            "deliveries",
            "events/s",
            "deliveries/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "cpu s",
            "rss MB"
        );
        for o in &results {
            println!(
                "{:<11} {:>9} {:>10} {:>10.0} {:>12.0} {:>8.1} {:>8.1} {:>8.1} {:>7.1} {:>8.1}  {}",
                o.scenario,
                o.events,
                o.deliveries,
                o.events_per_sec,
                o.deliveries_per_sec,
                o.p50_ms,
                o.p99_ms,
                o.max_ms,
                o.server_cpu_s,
                o.peak_rss_mb,
                match o.publish_p99_ms {
                    Some(p) => format!("publish call p99 {p:.1} ms; {}", o.note),
                    None => o.note.clone(),
                }
                .trim_end_matches("; ")
            );
        }
    }
    std::process::ExitCode::SUCCESS
}
