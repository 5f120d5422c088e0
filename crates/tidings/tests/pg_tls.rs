//! TLS to PostgreSQL: `sslmode` from the database URL, against a PostgreSQL cluster this
//! test makes for itself (initdb + pg_ctl on a free port in a temporary directory, `ssl=on`
//! with a CA and server certificate generated here), so the machine's shared PostgreSQL
//! is untouched. Its pg_hba.conf lets the role `postgres` in over TLS only and the role
//! `plain` over plain text only, so a server that starts proves which one it used.
//!
//! Skipped with a message when PostgreSQL's server binaries are not installed; under
//! `CI=true` that is a failure.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{bin, Server, ADMIN};

#[tokio::test]
async fn sslmode_from_the_url_decides_tls_and_what_is_checked() {
    let Some(pg) = Cluster::start() else { return };
    let base = |host: &str, user: &str| {
        format!(
            "postgres://{user}@{host}:{}/postgres?connect_timeout=5",
            pg.port
        )
    };
    let ca = pg.dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap();

    // verify-full with the CA from [database] ca_file and the name the certificate holds.
    let s = serve_ok(&[
        (
            "TIDINGS_SERVER_DATABASE_URL",
            &format!("{}&sslmode=verify-full", base("localhost", "postgres")),
        ),
        ("TIDINGS_DATABASE_CA_FILE", ca),
    ]);
    assert!(
        store_line(&s).ends_with("(TLS, sslmode=verify-full)"),
        "{:?}",
        s.stdout_lines
    );
    let (st, team) = s
        .admin(
            "POST",
            "/teams",
            Some(json!({"name": "Secure", "domain": "secure"})),
        )
        .await;
    assert_eq!(st, 201, "writes go through: {team}");
    drop(s);

    // The CA named in the URL (sslrootcert), as libpq reads it.
    let s = serve_ok(&[(
        "TIDINGS_SERVER_DATABASE_URL",
        &format!(
            "{}&sslmode=verify-full&sslrootcert={ca}",
            base("localhost", "postgres")
        ),
    )]);
    assert!(store_line(&s).ends_with("(TLS, sslmode=verify-full)"));
    drop(s);

    // The same certificate reached as 127.0.0.1: it names only localhost.
    let err = serve_fails(&[
        (
            "TIDINGS_SERVER_DATABASE_URL",
            &format!("{}&sslmode=verify-full", base("127.0.0.1", "postgres")),
        ),
        ("TIDINGS_DATABASE_CA_FILE", ca),
    ]);
    assert!(
        err.contains("certificate does not match the host name"),
        "{err}"
    );

    // verify-ca checks the chain, not the name.
    let s = serve_ok(&[
        (
            "TIDINGS_SERVER_DATABASE_URL",
            &format!("{}&sslmode=verify-ca", base("127.0.0.1", "postgres")),
        ),
        ("TIDINGS_DATABASE_CA_FILE", ca),
    ]);
    assert!(store_line(&s).ends_with("(TLS, sslmode=verify-ca)"));
    drop(s);

    // verify-full against the system's roots: the test CA is not among them.
    let err = serve_fails(&[(
        "TIDINGS_SERVER_DATABASE_URL",
        &format!("{}&sslmode=verify-full", base("localhost", "postgres")),
    )]);
    assert!(err.contains("not signed by a trusted CA"), "{err}");

    // require: encrypted, the certificate not checked.
    let s = serve_ok(&[(
        "TIDINGS_SERVER_DATABASE_URL",
        &format!("{}&sslmode=require", base("127.0.0.1", "postgres")),
    )]);
    assert!(store_line(&s).ends_with("(TLS, sslmode=require)"));
    drop(s);

    // disable: plain text, which pg_hba.conf allows only for `plain`.
    let s = serve_ok(&[(
        "TIDINGS_SERVER_DATABASE_URL",
        &format!("{}&sslmode=disable", base("127.0.0.1", "plain")),
    )]);
    assert!(store_line(&s).ends_with("(no TLS, sslmode=disable)"));
    drop(s);
    let err = serve_fails(&[(
        "TIDINGS_SERVER_DATABASE_URL",
        &format!("{}&sslmode=disable", base("127.0.0.1", "postgres")),
    )]);
    assert!(
        err.contains("no encryption"),
        "pg_hba.conf refused it: {err}"
    );

    // An sslmode the driver does not know is named before anything connects.
    let err = serve_fails(&[(
        "TIDINGS_SERVER_DATABASE_URL",
        &format!("{}&sslmode=verify_full", base("localhost", "postgres")),
    )]);
    assert!(err.contains("sslmode=\"verify_full\""), "{err}");
}

/// A server on the given store that must start.
fn serve_ok(env: &[(&str, &str)]) -> Server {
    let tmp = tempfile::tempdir().unwrap();
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.push(("TIDINGS_ADMIN_TOKEN".into(), ADMIN.into()));
    let mut s = Server::spawn(&tmp.path().join("data"), env, &[]);
    s.hold_tempdir(tmp);
    s
}

/// `tidings serve` on the given store must exit non-zero, with one line on stderr: that
/// line.
fn serve_fails(env: &[(&str, &str)]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .env("TIDINGS_ADMIN_TOKEN", ADMIN)
        .env("TIDINGS_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("tidings serve kept running for 30 s with {env:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "it should have refused: {env:?}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    eprintln!("refused as it should be: {}", err.trim());
    err
}

fn store_line(s: &Server) -> &str {
    s.stdout_lines
        .iter()
        .find_map(|l| l.strip_prefix("store: "))
        .unwrap_or_else(|| panic!("no store line: {:?}", s.stdout_lines))
}

/// A PostgreSQL cluster of this test's own, stopped and removed when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Running as root: PostgreSQL's tools must run as the `postgres` user.
    as_user: Option<String>,
}

impl Cluster {
    /// `None` (after saying why) when PostgreSQL's server binaries are missing.
    fn start() -> Option<Cluster> {
        let Some(bin) = server_bin_dir() else {
            let msg = "PostgreSQL's server binaries (initdb, pg_ctl) are not installed; the TLS test is skipped";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
            eprintln!("SKIPPED: {msg}");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let as_user = is_root().then(|| "postgres".to_string());
        let owner = as_user.as_deref().map(uid_gid);
        if owner.is_some() {
            set_mode(dir.path(), 0o755);
        }
        write_certificates(dir.path(), owner);
        let port = free_port();
        let c = Cluster {
            dir,
            bin,
            port,
            as_user,
        };
        // The cluster's files, its socket and its log, in directories its user owns.
        let (data, run) = (c.dir.path().join("data"), c.dir.path().join("run"));
        for d in [&data, &run] {
            std::fs::create_dir(d).unwrap();
            set_mode(d, 0o700);
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(d, Some(uid), Some(gid)).unwrap();
            }
        }
        c.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
        );
        let d = c.dir.path().display();
        let r = run.display();
        append(
            &data.join("postgresql.conf"),
            &format!(
                "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{r}'\n\
                 ssl = on\nssl_cert_file = '{d}/server.crt'\nssl_key_file = '{d}/server.key'\n\
                 fsync = off\nmax_connections = 60\n"
            ),
        );
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostnossl all plain 127.0.0.1/32 trust\n\
             hostssl all postgres 127.0.0.1/32 trust\n",
        )
        .unwrap();
        c.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                &format!("{r}/postgres.log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        // `plain` may log in over plain text (see pg_hba.conf above).
        c.run(
            "psql",
            &[
                "-h",
                &r.to_string(),
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-q",
                "-c",
                "CREATE ROLE plain LOGIN SUPERUSER",
            ],
        );
        Some(c)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let path = self.bin.join(tool);
        let mut cmd = match &self.as_user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let path = self.bin.join("pg_ctl");
        let mut cmd = match &self.as_user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let _ = cmd
            .args(["-D", data.to_str().unwrap_or(""), "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Where initdb and pg_ctl are: `pg_config --bindir`, Debian's versioned directory, PATH.
fn server_bin_dir() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            candidates.push(PathBuf::from(
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
            ));
        }
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("bin")).collect();
        versions.sort();
        candidates.extend(versions.into_iter().rev());
    }
    candidates
        .into_iter()
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
}

/// A CA, and a server certificate it signs for the name `localhost` only.
fn write_certificates(dir: &Path, owner: Option<(u32, u32)>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Tidings test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate().unwrap();
    let cert = params
        .signed_by(&key, &Issuer::new(ca_params, ca_key))
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.crt"), cert.pem()).unwrap();
    let key_path = dir.join("server.key");
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    // PostgreSQL refuses a key anyone but its owner may read.
    set_mode(&key_path, 0o600);
    if let Some((uid, gid)) = owner {
        for f in ["server.crt", "server.key"] {
            std::os::unix::fs::chown(dir.join(f), Some(uid), Some(gid)).unwrap();
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn uid_gid(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, user]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no user {user} to run PostgreSQL as (running as root)"))
    };
    (id("-u"), id("-g"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
