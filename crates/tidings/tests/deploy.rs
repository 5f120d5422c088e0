//! The files operators deploy with (`deploy/`) hold together: the Grafana dashboard and
//! the Prometheus rules name only metrics a real server exports after some traffic; the
//! systemd unit passes `systemd-analyze verify` and is hardened; the image definition and
//! the compose file refer to paths, stages and services that exist. (No container engine
//! runs here, so the image itself is not built: see README, "Deploying".)

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use support::receiver::Receiver;
use support::{bin, Server};
use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Yaml {
    YamlLoader::load_from_str(&read(rel))
        .unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{rel} is empty"))
}

#[tokio::test]
async fn the_dashboard_and_alert_rules_use_only_names_the_server_exports() {
    // Traffic: publish (one and a batch), deliver, a Web API call, a readiness probe.
    let s = Server::start();
    let r = Receiver::start().await;
    s.app_in_channel(json!({"id": "A0DASH", "name": "dash", "bot_events": ["message.channels"], "request_url": r.url}))
        .await;
    let id = s.say("for the dashboard").await;
    let (st, _) = s
        .admin("POST", "/events/batch", Some(json!({"events": [{"team_id": "T01", "event": {"type": "message", "channel": "C01", "user": "U01", "text": "b"}}]})))
        .await;
    assert_eq!(st, 200);
    s.wait_status(&id, "delivered").await;
    let ready = Server::client()
        .get(format!("{}/readyz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    // The pending gauge is refreshed every 5 s; the first refresh comes at start.
    let mut metrics = s.metrics().await;
    for _ in 0..60 {
        if metrics.contains("tidings_deliveries_pending ") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        metrics = s.metrics().await;
    }
    assert!(
        metrics.contains("tidings_store_up 1"),
        "the scrape found the store up"
    );

    let dashboard: Value =
        serde_json::from_str(&read("deploy/grafana/tidings-dashboard.json")).expect("JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard["panels"], &mut exprs);
    assert!(
        exprs.len() >= 10,
        "the dashboard has its queries: {exprs:?}"
    );
    let rules = yaml("deploy/prometheus/alerts.yml");
    let mut alerts = Vec::new();
    for group in rules["groups"].as_vec().expect("groups") {
        for rule in group["rules"].as_vec().expect("rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            assert!(
                rule["labels"]["severity"].as_str().is_some()
                    && rule["annotations"]["summary"].as_str().is_some(),
                "{name} has a severity and a summary"
            );
            alerts.push((
                name.to_string(),
                rule["expr"].as_str().expect("expr").to_string(),
            ));
        }
    }
    for wanted in [
        "TidingsAppDisabled",
        "TidingsPendingPileGrowing",
        "TidingsDeliveryLatencyHigh",
        "TidingsWriterWaitHigh",
        "TidingsStoreUnavailable",
    ] {
        assert!(alerts.iter().any(|(n, _)| n == wanted), "{wanted} is there");
    }

    let mut used = BTreeSet::new();
    for e in exprs.iter().chain(alerts.iter().map(|(_, e)| e)) {
        used.extend(metric_names(e));
        for route in route_values(e) {
            assert!(
                metrics.contains(&format!("route=\"{route}\"")),
                "route {route} (in {e}) is a label value /metrics shows"
            );
        }
    }
    let missing: Vec<&String> = used
        .iter()
        .filter(|n| {
            !metrics
                .lines()
                .any(|l| l.starts_with(&format!("{n}{{")) || l.starts_with(&format!("{n} ")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "names the dashboard or the alerts use that /metrics lacks: {missing:?}"
    );
    println!("{} metric names checked: {used:?}", used.len());

    // The queries' syntax, by Prometheus's own checker when it is installed.
    promtool_check(&exprs);
}

/// Every `expr` of every panel, rows' panels included.
fn dashboard_exprs(panels: &Value, out: &mut Vec<String>) {
    for p in panels.as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(
                t["expr"]
                    .as_str()
                    .expect("every target has an expr")
                    .to_string(),
            );
        }
        dashboard_exprs(&p["panels"], out);
    }
}

/// The `tidings_*` series a PromQL expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("tidings_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The routes a `route="…"` or `route=~"a|b"` matcher names.
fn route_values(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for m in ["route=\"", "route=~\""] {
        let mut rest = expr;
        while let Some(i) = rest.find(m) {
            let tail = &rest[i + m.len()..];
            let end = tail.find('"').expect("a closed string");
            out.extend(tail[..end].split('|').map(str::to_string));
            rest = &tail[end..];
        }
    }
    out
}

/// `promtool check rules` on the alert rules, and on the dashboard's queries made into
/// recording rules (Grafana's `$__rate_interval` as 5m); `promtool check config` on the
/// scrape configuration. Skipped with a message without promtool (Debian: prometheus).
fn promtool_check(dashboard: &[String]) {
    if Command::new("promtool").arg("--version").output().is_err() {
        eprintln!("SKIPPED: promtool is not installed (apt-get install prometheus); PromQL syntax not checked");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in dashboard.iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "5m")
            .replace("$__interval", "1m");
        rules.push_str(&format!(
            "      - record: dashboard:q{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        ));
    }
    let generated = tmp.path().join("dashboard.yml");
    std::fs::write(&generated, rules).unwrap();
    for args in [
        vec![
            "check".to_string(),
            "rules".to_string(),
            repo()
                .join("deploy/prometheus/alerts.yml")
                .display()
                .to_string(),
        ],
        vec![
            "check".into(),
            "rules".into(),
            generated.display().to_string(),
        ],
        vec![
            "check".into(),
            "config".into(),
            repo()
                .join("deploy/prometheus/prometheus.yml")
                .display()
                .to_string(),
        ],
    ] {
        let out = Command::new("promtool").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = read("deploy/systemd/tidings.service");
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let has = |k: &str, v: &str| settings.iter().any(|(a, b)| *a == k && *b == v);
    for (k, v) in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("StateDirectory", "tidings"),
    ] {
        assert!(has(k, v), "{k}={v}");
    }
    let exec = settings
        .iter()
        .find(|(k, _)| *k == "ExecStart")
        .expect("ExecStart")
        .1;
    let program = exec.split_whitespace().next().unwrap();
    assert!(exec.contains(" serve "), "{exec}");

    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "SKIPPED: systemd-analyze is not installed; the unit was checked only by reading it"
        );
        return;
    }
    // verify wants the program to exist: the one this test run built stands in.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tidings.service");
    std::fs::write(&path, unit.replace(program, bin())).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // It exits 0 after warnings about unknown keys or bad values: any line is a failure.
    let about_unit: Vec<&str> = stderr.lines().filter(|l| l.contains("tidings")).collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for tidings.service:")
                .nth(1)
        })
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level: {text}"));
    println!("systemd-analyze security: exposure {exposure} (0 safest, 10 unsafe)");
    assert!(exposure <= 2.0, "the unit is hardened: exposure {exposure}");
}

#[test]
fn the_image_definition_and_compose_file_hold_together() {
    // Dockerfile: stages, what COPY takes from the context, who runs, what runs.
    let dockerfile = read("deploy/Dockerfile");
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let mut stages: Vec<String> = Vec::new();
    let mut last_user = None;
    let mut installed = Vec::new();
    let mut entrypoint = None;
    for line in dockerfile.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first().copied() {
            Some("FROM") => {
                let name = words
                    .iter()
                    .position(|w| w.eq_ignore_ascii_case("AS"))
                    .map(|i| words[i + 1].to_string())
                    .expect("every stage is named");
                stages.push(name);
                last_user = None;
            }
            Some("COPY") => {
                let args: Vec<&str> = words[1..]
                    .iter()
                    .copied()
                    .filter(|w| !w.starts_with("--") || w.starts_with("--from="))
                    .collect();
                let from = args.iter().find_map(|w| w.strip_prefix("--from="));
                let paths: Vec<&str> = args
                    .iter()
                    .copied()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                let (dest, sources) = paths.split_last().expect("COPY has a destination");
                match from {
                    Some(stage) => {
                        assert!(
                            stages[..stages.len() - 1].iter().any(|s| s == stage),
                            "COPY --from={stage}: an earlier stage"
                        );
                        installed.push(dest.to_string());
                    }
                    None => {
                        for src in sources {
                            assert!(repo().join(src).exists(), "COPY {src}: in the repository");
                            assert!(
                                !ignored.iter().any(|i| i == src),
                                "COPY {src}: not in .dockerignore"
                            );
                        }
                    }
                }
            }
            Some("USER") => last_user = Some(words[1].to_string()),
            Some("ENTRYPOINT") => entrypoint = Some(line.to_string()),
            _ => {}
        }
    }
    assert_eq!(
        stages.len(),
        2,
        "multi-stage: build, then runtime: {stages:?}"
    );
    let user = last_user.expect("the runtime stage names its USER");
    assert!(
        !(user.starts_with("root") || user.starts_with("0:") || user == "0"),
        "not root: {user}"
    );
    let entrypoint = entrypoint.expect("ENTRYPOINT");
    assert!(
        installed.iter().any(|d| entrypoint.contains(d.as_str())),
        "{entrypoint} runs what the runtime stage copied in: {installed:?}"
    );
    for needed in ["Cargo.toml", "Cargo.lock", "crates"] {
        assert!(
            !ignored.iter().any(|i| i == needed),
            "{needed} reaches the build"
        );
    }

    // compose: PostgreSQL and two nodes on it, built from that Dockerfile.
    let compose = yaml("deploy/compose.yaml");
    let services = compose["services"].as_hash().expect("services");
    let service = |name: &str| -> &Yaml {
        services
            .get(&Yaml::String(name.into()))
            .unwrap_or_else(|| panic!("service {name}"))
    };
    assert!(service("db")["image"]
        .as_str()
        .unwrap()
        .starts_with("postgres:"));
    assert!(service("db")["healthcheck"]["test"].as_vec().is_some());
    let build = &service("node1")["build"];
    let context = repo()
        .join("deploy")
        .join(build["context"].as_str().unwrap());
    assert!(
        context
            .join(build["dockerfile"].as_str().unwrap())
            .is_file(),
        "node1 builds deploy/Dockerfile from the repository's root"
    );
    let mut published = BTreeSet::new();
    for node in ["node1", "node2"] {
        let n = service(node);
        assert_eq!(n["image"].as_str(), Some("tidings:local"), "{node}");
        let url = n["environment"]["TIDINGS_SERVER_DATABASE_URL"]
            .as_str()
            .unwrap_or_else(|| panic!("{node} has a database URL"));
        assert!(
            url.contains("@db:5432/"),
            "{node} stores in the db service: {url}"
        );
        assert!(
            n["environment"]["TIDINGS_ADMIN_TOKEN"].as_str().is_some(),
            "{node}: nodes share one admin token"
        );
        assert_eq!(
            n["depends_on"]["db"]["condition"].as_str(),
            Some("service_healthy"),
            "{node} waits for PostgreSQL"
        );
        for p in n["ports"].as_vec().expect("ports") {
            let p = p.as_str().unwrap();
            assert!(
                p.starts_with("127.0.0.1:"),
                "{node} publishes on loopback: {p}"
            );
            published.insert(p.to_string());
        }
    }
    assert_eq!(published.len(), 2, "the nodes publish different ports");
    let prometheus = read("deploy/prometheus/prometheus.yml");
    for target in ["node1:3000", "node2:3000", "alerts.yml"] {
        assert!(prometheus.contains(target), "prometheus.yml names {target}");
    }
}

#[test]
fn the_relay_unit_verifies_and_runs_the_relay() {
    let unit = read("deploy/systemd/tidings-relay.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    assert!(
        exec.contains(" relay ") && exec.contains("--spool /var/lib/tidings-relay"),
        "{exec}"
    );
    assert!(unit.contains("\nStateDirectory=tidings-relay\n"));
    assert!(unit.contains("\nDynamicUser=yes\n"));
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: systemd-analyze is not installed");
        return;
    }
    let program = exec.split_whitespace().next().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tidings-relay.service");
    std::fs::write(&path, unit.replace(program, bin())).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let about_unit: Vec<&str> = stderr.lines().filter(|l| l.contains("tidings")).collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}
