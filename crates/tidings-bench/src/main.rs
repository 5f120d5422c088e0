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
    let mut params = scenarios::Params {
        bin: a.tidings_bin.clone(),
        duration,
        drain: duration.max(Duration::from_secs(20)) * 2,
        quick: a.quick,
        ceiling_rps: None,
    };
    let names: Vec<String> = if a.scenarios.is_empty() {
        // `ceiling` first and last: the yardstick around the runs it divides.
        let mut all: Vec<String> = scenarios::ALL.iter().map(|s| s.to_string()).collect();
        all.push("ceiling".into());
        all
    } else {
        a.scenarios.clone()
    };
    if !std::path::Path::new(&a.tidings_bin).exists() {
        eprintln!("error: {} does not exist; build it with `cargo build --release -p tidings` or pass --tidings-bin", a.tidings_bin);
        return std::process::ExitCode::FAILURE;
    }
    let mut results = Vec::new();
    for name in &names {
        // The ceiling measured so far paces `tenants` (not in `--quick`: its debug server
        // could not hold that pace).
        params.ceiling_rps = Ceiling::of(&results)
            .filter(|_| !a.quick)
            .map(|c| c.requests_per_sec);
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
    let ceiling = Ceiling::of(&results);
    if a.json {
        if let Some(c) = &ceiling {
            for o in results.iter().filter(|o| o.scenario != "ceiling") {
                if let Some(r) = c.ratios(o) {
                    println!(
                        "{}",
                        serde_json::json!({"scenario": o.scenario, "vs_ceiling": r})
                    );
                }
            }
        }
    } else {
        print_table(&results, ceiling.as_ref());
        if let Some(c) = ceiling.as_ref().filter(|_| !a.quick) {
            print_bars(&results, c);
        }
    }
    std::process::ExitCode::SUCCESS
}

/// The `ceiling` runs of this invocation (the mean when it ran more than once, e.g. before
/// and after the others): what loopback HTTP alone does on this machine right now, the
/// yardstick every HTTP scenario is divided by.
struct Ceiling {
    requests_per_sec: f64,
    cpu_us_per_request: f64,
}

/// One scenario against the ceiling.
#[derive(serde::Serialize)]
struct Ratios {
    /// Server CPU µs per delivery.
    cpu_us_per_delivery: f64,
    /// Server CPU per delivery ÷ the ceiling's CPU per request (client and receiver).
    cpu_vs_ceiling: f64,
    /// Deliveries/s ÷ the ceiling's requests/s.
    rate_vs_ceiling: f64,
}

impl Ceiling {
    fn of(results: &[scenarios::Outcome]) -> Option<Ceiling> {
        let runs: Vec<_> = results.iter().filter(|o| o.scenario == "ceiling").collect();
        if runs.is_empty() {
            return None;
        }
        let n = runs.len() as f64;
        Some(Ceiling {
            requests_per_sec: runs.iter().map(|o| o.deliveries_per_sec).sum::<f64>() / n,
            cpu_us_per_request: runs
                .iter()
                .map(|o| o.server_cpu_s / o.deliveries.max(1) as f64 * 1e6)
                .sum::<f64>()
                / n,
        })
    }

    /// Only for scenarios whose deliveries are HTTP requests from the server.
    fn ratios(&self, o: &scenarios::Outcome) -> Option<Ratios> {
        if !HTTP_SCENARIOS.contains(&o.scenario.as_str()) || o.deliveries == 0 {
            return None;
        }
        let cpu_us_per_delivery = o.server_cpu_s / o.deliveries as f64 * 1e6;
        Some(Ratios {
            cpu_us_per_delivery,
            cpu_vs_ceiling: cpu_us_per_delivery / self.cpu_us_per_request.max(1e-9),
            rate_vs_ceiling: o.deliveries_per_sec / self.requests_per_sec.max(1e-9),
        })
    }
}

/// Scenarios whose deliveries are HTTP POSTs from the server to the receiver.
const HTTP_SCENARIOS: &[&str] = &[
    "throughput",
    "latency",
    "fanout",
    "tenants",
    "retries",
    "relay",
];

fn print_table(results: &[scenarios::Outcome], ceiling: Option<&Ceiling>) {
    println!(
        "{:<11} {:>9} {:>10} {:>10} {:>12} {:>8} {:>8} {:>8} {:>7} {:>8} {:>7} {:>6} {:>6}  note",
        "scenario",
        "events",
        "deliveries",
        "events/s",
        "deliveries/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "cpu s",
        "rss MB",
        "us/dlv",
        "cpu×c",
        "rate×c"
    );
    for o in results {
        let r = ceiling.and_then(|c| c.ratios(o));
        let (us, cpu, rate) = match &r {
            Some(r) => (
                format!("{:.0}", r.cpu_us_per_delivery),
                format!("{:.2}", r.cpu_vs_ceiling),
                format!("{:.2}", r.rate_vs_ceiling),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "{:<11} {:>9} {:>10} {:>10.0} {:>12.0} {:>8.1} {:>8.1} {:>8.1} {:>7.1} {:>8.1} {:>7} {:>6} {:>6}  {}",
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
            us,
            cpu,
            rate,
            match o.publish_p99_ms {
                Some(p) => format!("publish call p99 {p:.1} ms; {}", o.note),
                None => o.note.clone(),
            }
            .trim_end_matches("; ")
        );
    }
}

/// Issue 22's bars, each judged from this invocation's numbers alone.
fn print_bars(results: &[scenarios::Outcome], c: &Ceiling) {
    println!(
        "\nceiling: {:.0} requests/s, {:.1} us of CPU per request (client + receiver)",
        c.requests_per_sec, c.cpu_us_per_request
    );
    let mut bars: Vec<(String, bool)> = Vec::new();
    for o in results {
        let Some(r) = c.ratios(o) else { continue };
        match o.scenario.as_str() {
            "throughput" => {
                bars.push((
                    format!(
                        "throughput: server CPU per delivery {:.2} × ceiling ≤ 1.2",
                        r.cpu_vs_ceiling
                    ),
                    r.cpu_vs_ceiling <= 1.2,
                ));
                bars.push((
                    format!(
                        "throughput: {:.2} × ceiling deliveries/s ≥ 0.6",
                        r.rate_vs_ceiling
                    ),
                    r.rate_vs_ceiling >= 0.6,
                ));
            }
            "fanout" => bars.push((
                format!(
                    "fanout: {:.2} × ceiling deliveries/s ≥ 0.5",
                    r.rate_vs_ceiling
                ),
                r.rate_vs_ceiling >= 0.5,
            )),
            "tenants" => {
                bars.push((
                    format!(
                        "tenants: {:.2} × ceiling deliveries/s ≥ 0.5",
                        r.rate_vs_ceiling
                    ),
                    r.rate_vs_ceiling >= 0.5,
                ));
                if let Some(p) = o.publish_p99_ms {
                    bars.push((
                        format!("tenants: publish call p99 {p:.1} ms ≤ 10"),
                        p <= 10.0,
                    ));
                }
            }
            "latency" => bars.push((
                format!("latency: p99 {:.1} ms ≤ 5", o.p99_ms),
                o.p99_ms <= 5.0,
            )),
            _ => {}
        }
    }
    for (text, met) in bars {
        println!("  [{}] {text}", if met { "met" } else { "NOT met" });
    }
}
