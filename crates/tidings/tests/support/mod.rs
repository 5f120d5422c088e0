//! Test support: start the real `tidings` binary on an ephemeral port, talk to it over
//! HTTP, kill it (SIGKILL) and start it again on the same data directory (or, with
//! `TIDINGS_TEST_DATABASE_URL` set, the same PostgreSQL schema: see [`pg`]).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

pub mod pg;
pub mod receiver;
pub mod ws;

pub const ADMIN: &str = "tdk_admin_test_token_0123456789";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tidings")
}

/// A running `tidings serve`.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// The PostgreSQL schema this server's store lives in (PostgreSQL runs only).
    pub schema: Option<std::sync::Arc<pg::Schema>>,
    env: Vec<(String, String)>,
    pub stdout_lines: Vec<String>,
}

impl Server {
    /// A fresh server with its own data directory and the test admin token.
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    pub fn start_with(env: &[(&str, &str)]) -> Server {
        Self::start_in(env, pg::url(), Stdio::inherit())
    }

    /// [`Server::start_with`] with the server's log (stderr) sent to `stderr`.
    pub fn start_logging_to(env: &[(&str, &str)], stderr: Stdio) -> Server {
        Self::start_in(env, pg::url(), stderr)
    }

    /// A fresh server on SQLite even in a PostgreSQL run (what only SQLite has: its data
    /// directory's database, backups of it).
    pub fn start_sqlite_with(env: &[(&str, &str)]) -> Server {
        Self::start_in(env, None, Stdio::inherit())
    }

    fn start_in(env: &[(&str, &str)], pg_url: Option<String>, stderr: Stdio) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !env.iter().any(|(k, _)| k == "TIDINGS_ADMIN_TOKEN") {
            env.push(("TIDINGS_ADMIN_TOKEN".into(), ADMIN.into()));
        }
        // Receivers live on 127.0.0.1, which `--dev`'s setting opens; the SSRF tests set
        // their own policy.
        if !env.iter().any(|(k, _)| {
            k == "TIDINGS_DELIVERY_ALLOW_PRIVATE_TARGETS"
                || k == "TIDINGS_DELIVERY_ALLOW_LOOPBACK_TARGETS"
        }) {
            env.push((
                "TIDINGS_DELIVERY_ALLOW_LOOPBACK_TARGETS".into(),
                "true".into(),
            ));
        }
        let schema = match pg_url {
            Some(base) if !env.iter().any(|(k, _)| k == "TIDINGS_SERVER_DATABASE_URL") => {
                let schema = std::sync::Arc::new(pg::Schema::create(&base));
                env.push(("TIDINGS_SERVER_DATABASE_URL".into(), schema.url()));
                if !env
                    .iter()
                    .any(|(k, _)| k == "TIDINGS_DATABASE_MAX_CONNECTIONS")
                {
                    env.push(("TIDINGS_DATABASE_MAX_CONNECTIONS".into(), "5".into()));
                }
                // A restarted node is a new node: what the killed one had claimed waits
                // for its lease to end. Tests keep that short (the default is 30 s).
                // (A test that sets its own delivery timeout keeps the default lease.)
                if !env
                    .iter()
                    .any(|(k, _)| k == "TIDINGS_DATABASE_LEASE" || k == "TIDINGS_DELIVERY_TIMEOUT")
                {
                    env.push(("TIDINGS_DATABASE_LEASE".into(), "4s".into()));
                }
                // Test machines run many servers on few cores: a batch may take longer
                // than the 1 s default there. Tests of the timeout itself set their own.
                if !env
                    .iter()
                    .any(|(k, _)| k == "TIDINGS_DATABASE_STATEMENT_TIMEOUT")
                {
                    env.push(("TIDINGS_DATABASE_STATEMENT_TIMEOUT".into(), "3s".into()));
                }
                Some(schema)
            }
            _ => None,
        };
        let mut s = Self::spawn_logging_to(&dir, env, &[], stderr);
        s._tmp = Some(tmp);
        s.schema = schema;
        s
    }

    /// Another node on the same PostgreSQL schema (same configuration, its own data
    /// directory and port). PostgreSQL runs only.
    pub fn peer(&self) -> Server {
        assert!(self.schema.is_some(), "peers share a PostgreSQL store");
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = Self::spawn(&tmp.path().join("data"), self.env.clone(), &[]);
        s._tmp = Some(tmp);
        s.schema = self.schema.clone();
        s
    }

    /// Whether this test run stores in PostgreSQL.
    pub fn on_postgres() -> bool {
        pg::url().is_some()
    }

    /// Starts the binary on `dir` with exactly `env` (plus a quiet log level).
    pub fn spawn(dir: &Path, env: Vec<(String, String)>, args: &[&str]) -> Server {
        Self::spawn_logging_to(dir, env, args, Stdio::inherit())
    }

    /// [`Server::spawn`] with the server's stderr (its log) sent to `stderr`.
    pub fn spawn_logging_to(
        dir: &Path,
        env: Vec<(String, String)>,
        args: &[&str],
        stderr: Stdio,
    ) -> Server {
        Self::spawn_listening(dir, env, args, stderr, "127.0.0.1:0")
    }

    /// [`Server::spawn_logging_to`] on a given listen address.
    pub fn spawn_listening(
        dir: &Path,
        env: Vec<(String, String)>,
        args: &[&str],
        stderr: Stdio,
        listen: &str,
    ) -> Server {
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .env_remove("TIDINGS_ADMIN_TOKEN")
            .env("TIDINGS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning tidings");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        let url = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("tidings did not print its listening line within 20 s");
            lines.push(line.clone());
            if let Some(rest) = line.strip_prefix("tidings listening on ") {
                break rest.trim().to_string();
            }
        };
        // Keep reading the rest of the startup block without blocking the test.
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(150)) {
            lines.push(l);
        }
        Server {
            child: Some(child),
            url,
            data_dir: dir.to_path_buf(),
            _tmp: None,
            schema: None,
            env,
            stdout_lines: lines,
        }
    }

    /// Keeps `tmp` (the data directory's parent) until the server is dropped.
    pub fn hold_tempdir(&mut self, tmp: tempfile::TempDir) {
        self._tmp = Some(tmp);
    }

    /// The server process's id (for /proc/<pid>/status).
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("the server is running")
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe {
                libc::kill(c.id() as i32, libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }

    /// Sends `signal` (SIGTERM, SIGINT) to the server; the graceful shutdown runs.
    pub fn signal(&self, signal: i32) {
        if let Some(c) = &self.child {
            unsafe {
                libc::kill(c.id() as i32, signal);
            }
        }
    }

    /// Waits up to `within` for the process to exit (after [`Server::signal`]) and returns
    /// its exit status; `None` if it was still running then (it is killed).
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let until = std::time::Instant::now() + within;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if std::time::Instant::now() >= until {
                self.kill();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process and starts a new one on the same data directory.
    pub fn restart(mut self) -> Server {
        self.kill();
        let mut s = Self::spawn(&self.data_dir, self.env.clone(), &[]);
        s._tmp = self._tmp.take();
        s.schema = self.schema.take();
        s
    }

    /// [`Server::restart`] listening on the same address, so clients keep their URL.
    pub fn restart_on_same_port(mut self) -> Server {
        self.kill();
        let addr = self.url.trim_start_matches("http://").to_string();
        let mut s = Self::spawn_listening(
            &self.data_dir,
            self.env.clone(),
            &[],
            Stdio::inherit(),
            &addr,
        );
        s._tmp = self._tmp.take();
        s.schema = self.schema.take();
        s
    }

    pub fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
    }

    /// An operator API call with the admin token: (status, JSON body or Null).
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.admin_as(ADMIN, method, path, body).await
    }

    pub async fn admin_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = Self::client()
            .request(m, format!("{}/admin/v1{}", self.url, path))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A Slack Web API call with a form body and a bearer token.
    pub async fn api(
        &self,
        method: &str,
        token: Option<&str>,
        form: &[(&str, &str)],
    ) -> (reqwest::header::HeaderMap, Value) {
        let mut req = Self::client()
            .post(format!("{}/api/{}", self.url, method))
            .form(form);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.expect("request");
        assert_eq!(res.status(), 200, "Web API answers 200 even for errors");
        let headers = res.headers().clone();
        (headers, res.json().await.expect("json"))
    }

    /// Team + user + app + installation; returns ids and tokens.
    pub async fn workspace(
        &self,
        bot_events: &[&str],
        bot_scopes: &[&str],
        user_scopes: &[&str],
    ) -> Workspace {
        let (st, team) = self
            .admin(
                "POST",
                "/teams",
                Some(json!({"name": "Acme", "domain": unique_domain()})),
            )
            .await;
        assert_eq!(st, 201, "{team}");
        let team_id = team["id"].as_str().unwrap().to_string();
        let (st, user) = self
            .admin(
                "POST",
                &format!("/teams/{team_id}/users"),
                Some(json!({"name": "alice"})),
            )
            .await;
        assert_eq!(st, 201, "{user}");
        let (st, app) = self
            .admin(
                "POST",
                "/apps",
                Some(json!({"name": "Test App", "bot_events": bot_events})),
            )
            .await;
        assert_eq!(st, 201, "{app}");
        let app_id = app["id"].as_str().unwrap().to_string();
        let user_id = user["id"].as_str().unwrap().to_string();
        let (st, inst) = self
            .admin(
                "POST",
                &format!("/apps/{app_id}/installations"),
                Some(json!({"team_id": team_id, "installer_user_id": user_id, "bot_scopes": bot_scopes, "user_scopes": user_scopes})),
            )
            .await;
        assert_eq!(st, 201, "{inst}");
        Workspace {
            team_id,
            user_id,
            app_id,
            app,
            installation: inst,
        }
    }
}

impl Server {
    /// Team T01 ("Acme") with user U01 (alice) and public channel C01 holding U01; made
    /// once per server.
    pub async fn acme(&self) {
        if self.admin("GET", "/teams/T01", None).await.0 == 200 {
            return;
        }
        assert_eq!(
            self.admin(
                "POST",
                "/teams",
                Some(json!({"id": "T01", "name": "Acme", "domain": "acme"}))
            )
            .await
            .0,
            201
        );
        assert_eq!(
            self.admin(
                "POST",
                "/teams/T01/users",
                Some(json!({"id": "U01", "name": "alice"}))
            )
            .await
            .0,
            201
        );
        assert_eq!(
            self.admin(
                "PUT",
                "/teams/T01/conversations/C01",
                Some(json!({"name": "general", "kind": "public", "members": ["U01"]}))
            )
            .await
            .0,
            201
        );
    }

    /// In [`Server::acme`]'s workspace: creates the app described by `app` (operator API
    /// body), installs it for U01 with `channels:history`, and puts its bot in C01.
    /// Returns the app as created.
    pub async fn app_in_channel(&self, app: Value) -> Value {
        self.acme().await;
        let id = app["id"]
            .as_str()
            .expect("the app body names its id")
            .to_string();
        let (st, created) = self.admin("POST", "/apps", Some(app)).await;
        assert_eq!(st, 201, "{created}");
        let (st, inst) = self
            .admin("POST", &format!("/apps/{id}/installations"), Some(json!({"team_id": "T01", "installer_user_id": "U01", "bot_scopes": ["channels:history"]})))
            .await;
        assert_eq!(st, 201, "{inst}");
        assert_eq!(
            self.admin(
                "POST",
                "/teams/T01/conversations/C01/members",
                Some(json!({"user": inst["bot_user_id"]}))
            )
            .await
            .0,
            200
        );
        created
    }

    /// Waits (up to 20 s) until the app has no pending delivery; panics with what is left.
    pub async fn wait_none_pending(&self, app: &str) {
        let mut last = Value::Null;
        for _ in 0..200 {
            let (_, p) = self
                .admin(
                    "GET",
                    &format!("/apps/{app}/deliveries?status=pending&limit=5"),
                    None,
                )
                .await;
            if p["items"].as_array().is_some_and(|a| a.is_empty()) {
                return;
            }
            last = p;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("deliveries left pending: {last}");
    }

    /// Publishes a message from U01 in C01; returns its event id.
    pub async fn say(&self, text: &str) -> String {
        let (st, r) = self
            .admin("POST", "/events", Some(json!({"team_id": "T01", "event": {"type": "message", "channel": "C01", "user": "U01", "text": text}})))
            .await;
        assert_eq!(st, 202, "{r}");
        r["event_id"].as_str().expect("event id").to_string()
    }

    /// Publishes `n` messages from U01 in C01 (texts `{tag}-0`, `{tag}-1`, …) through
    /// the batch endpoint, 100 a call; returns their event ids in order.
    pub async fn say_many(&self, n: usize, tag: &str) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
            let events: Vec<Value> = chunk
                .iter()
                .map(|i| json!({"team_id": "T01", "event": {"type": "message", "channel": "C01", "user": "U01", "text": format!("{tag}-{i}")}}))
                .collect();
            let (st, body) = self
                .admin("POST", "/events/batch", Some(json!({"events": events})))
                .await;
            assert_eq!(st, 200, "{body}");
            for r in body["results"].as_array().expect("results") {
                ids.push(r["event_id"].as_str().expect("accepted").to_string());
            }
        }
        ids
    }

    /// The server's Prometheus text from `/metrics` (no token needed).
    pub async fn metrics(&self) -> String {
        Self::client()
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits (up to 10 s) until the event's first delivery has `status`; returns it.
    pub async fn wait_status(&self, event_id: &str, status: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..500 {
            let (_, ev) = self
                .admin("GET", &format!("/events/{event_id}"), None)
                .await;
            last = ev["deliveries"][0].clone();
            if last["status"] == status {
                return last;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the delivery of {event_id} never became {status}: {last}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Workspace {
    pub team_id: String,
    pub user_id: String,
    pub app_id: String,
    pub app: Value,
    pub installation: Value,
}

impl Workspace {
    pub fn bot_token(&self) -> &str {
        self.installation["bot_token"].as_str().expect("bot token")
    }
    pub fn user_token(&self) -> &str {
        self.installation["user_token"]
            .as_str()
            .expect("user token")
    }
    pub fn bot_user_id(&self) -> &str {
        self.installation["bot_user_id"].as_str().expect("bot user")
    }
}

/// A workspace domain no other test in this process uses.
pub fn unique_domain() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "team-{}-{}",
        std::process::id() % 100000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}
