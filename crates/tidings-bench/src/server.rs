//! The server under test: a release `tidings serve` in its own process with a fresh data
//! dir, and its CPU time, resident set and peak resident set read from /proc.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const ADMIN: &str = "tdk_admin_bench_token_0123456789";

/// `delivery.max_in_flight_per_app` for every server the harness starts.
static MAX_IN_FLIGHT_PER_APP: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// Sets the lane width every server starts with (once, from the command line).
pub fn set_max_in_flight_per_app(n: u32) {
    let _ = MAX_IN_FLIGHT_PER_APP.set(n.max(1));
}

pub struct Server {
    child: Child,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    pub fn start(bin: &str, env: &[(&str, &str)]) -> Result<Server, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut s = Server::start_in(bin, &dir.path().join("data"), env)?;
        s._dir = Some(dir);
        Ok(s)
    }

    /// Starts on an existing data dir (kept when the server stops).
    pub fn start_in(
        bin: &str,
        data_dir: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Result<Server, String> {
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("TIDINGS_ADMIN_TOKEN", ADMIN)
            .env("TIDINGS_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
            // The benchmark measures the engine, not Slack's hourly quota.
            .env("TIDINGS_RATE_LIMIT_MAX_DELIVERIES", "4000000000")
            .env(
                "TIDINGS_DELIVERY_MAX_IN_FLIGHT_PER_APP",
                MAX_IN_FLIGHT_PER_APP
                    .get()
                    .copied()
                    .unwrap_or(64)
                    .to_string(),
            )
            // `socket` opens 1,000 Socket Mode connections beside its publishers: more than
            // the default cap of 1,024 client connections leaves room for.
            .env("TIDINGS_SERVER_MAX_CONNECTIONS", "4096")
            .env("TIDINGS_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {bin}: {e}"))?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .map_err(|_| "tidings did not start".to_string())?;
            if let Some(url) = line.strip_prefix("tidings listening on ") {
                return Ok(Server {
                    child,
                    url: url.trim().to_string(),
                    _dir: None,
                });
            }
        }
    }

    /// CPU seconds used so far (user + system).
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may contain spaces) start after ')'.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / 100.0
    }

    /// Peak resident set size in MB (VmHWM).
    pub fn peak_rss_mb(&self) -> f64 {
        self.status_mb("VmHWM:")
    }

    /// Resident set size now, in MB (VmRSS).
    pub fn rss_mb(&self) -> f64 {
        self.status_mb("VmRSS:")
    }

    /// A `… kB` field of /proc/PID/status, in MB (0 if unreadable).
    fn status_mb(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
