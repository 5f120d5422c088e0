//! Starting a server: open the store, settle the admin token, bind the listener, build the
//! state. The binary's `serve` prints what this returns; tests call it too.

use std::path::PathBuf;
use std::sync::Arc;

use tidings_core::catalog::Catalog;
use tidings_core::token::{self, TokenKind};
use tidings_store::sql::owner_only;
use tidings_store::{PgOptions, SqlStore, Store};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::state::{AppState, Inner};

/// Attempts in flight across all apps at most.
pub const MAX_IN_FLIGHT_TOTAL: usize = 4096;

/// Where the admin token came from, for the startup message.
#[derive(Debug, Clone)]
pub enum AdminTokenSource {
    /// Set in the configuration or `TIDINGS_ADMIN_TOKEN`.
    Configured,
    /// Read from, or generated into, this file.
    File { path: PathBuf, generated: bool },
}

/// A bound, ready-to-serve server.
pub struct Booted {
    pub listener: TcpListener,
    pub state: AppState,
    pub admin_token: AdminTokenSource,
    pub store_description: String,
}

/// Opens everything `serve` needs. Errors are one clear line for the operator.
pub async fn boot(config: Config, dev: bool) -> Result<Booted, String> {
    let catalog = Catalog::with_custom(config.events.custom.clone())
        .map_err(|e| format!("event catalog: {e}"))?;
    let data_dir = config.server.data_dir.clone();
    let sql = open_store(&config).await?;
    let store_description = sql.description().to_string();
    let store: Arc<dyn Store> = Arc::new(sql);
    let (admin_token_hash, admin_token) = admin_token(&config, &data_dir)?;
    // `--dev`'s tokens, from an earlier start.
    owner_only::private_file(&data_dir.join(crate::dev::CREDENTIALS_FILE))
        .map_err(|e| e.to_string())?;
    let listener = TcpListener::bind(&config.server.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.server.listen))?;
    let bound = listener.local_addr().ok();
    let public_url = config.public_url(bound);
    let catalog = Arc::new(catalog);
    let publish_policy = tidings_store::PublishPolicy {
        catalog: catalog.clone(),
        max_event_age_secs: config.events.max_event_age.as_secs() as i64,
        max_future_skew_secs: config.events.max_future_skew.as_secs() as i64,
        rate_max: config.rate_limit.max_deliveries,
        rate_window_secs: config.rate_limit.window.as_secs() as i64,
    };
    let d = &config.delivery;
    let engine = tidings_delivery::Engine::start(
        store.clone(),
        catalog.clone(),
        tidings_delivery::SenderConfig {
            timeout: d.timeout,
            max_redirects: d.max_redirects,
            targets: tidings_delivery::ssrf::TargetPolicy {
                allow_private: d.allow_private_targets.unwrap_or(false),
                allow_loopback: d.allow_loopback_targets.unwrap_or(dev),
            },
            max_idle_per_host: MAX_IN_FLIGHT_TOTAL,
            max_retry_after: d.max_retry_after,
        },
        tidings_delivery::DispatchConfig {
            retry_schedule: d.retry_schedule.clone(),
            max_in_flight_per_app: d.max_in_flight_per_app as usize,
            max_in_flight_total: MAX_IN_FLIGHT_TOTAL,
            // Held deliveries are looked at again this often (sooner for a short hold time).
            hold_recheck: std::time::Duration::from_secs(5)
                .min(config.socket_mode.hold_time / 2)
                .max(std::time::Duration::from_millis(100)),
            socket_hold_time: config.socket_mode.hold_time,
            retry_after_budget: d.retry_after_budget,
        },
        tidings_delivery::HealthConfig {
            window: config.health.window,
            min_success_ratio: config.health.min_success_ratio,
            min_events: config.health.min_events,
        },
        tidings_delivery::SocketConfig {
            ack_timeout: config.socket_mode.ack_timeout,
            max_connections_per_app: config.socket_mode.max_connections_per_app as usize,
            ticket_ttl: config.socket_mode.ticket_ttl,
        },
    )
    .await?;
    if store.is_shared() {
        spawn_heartbeat(store.clone(), public_url.clone()).await?;
    }
    let rtm = crate::rtm::RtmHub::new(
        config.rtm.url_ttl,
        config.rtm.max_connections_per_token as usize,
    );
    // RTM connections read the deliveries each commit made: the doorbell tells them.
    let woken = rtm.clone();
    engine
        .dispatcher
        .observe_work(std::sync::Arc::new(move |apps| woken.wake(apps)));
    let replay = crate::replay::Replayer::spawn(store.clone(), config.delivery.redelivery_rate);
    let state = AppState::new(Inner {
        replay,
        store,
        config,
        admin_token_hash,
        catalog,
        publish_policy,
        public_url,
        dev,
        engine,
        rtm,
        metrics: crate::observe::prometheus(),
    });
    // After the metrics recorder is installed (in `AppState::new`'s `metrics`): the
    // pruner's series are registered at spawn, so they show from the first scrape.
    crate::retention::spawn(state.store.clone(), &state.config);
    crate::revocation::watch(state.clone());
    Ok(Booted {
        listener,
        state,
        admin_token,
        store_description,
    })
}

/// SQLite in the data directory, or PostgreSQL when `database_url` is set.
async fn open_store(config: &Config) -> Result<SqlStore, String> {
    match &config.server.database_url {
        None => {
            tidings_store::sql::sqlite::open(&config.server.data_dir).map_err(|e| e.to_string())
        }
        Some(url) => {
            let options = PgOptions {
                url: url.clone(),
                max_connections: config.database.max_connections as usize,
                lease: config.database.lease,
                connect_timeout: config.database.connect_timeout,
                statement_timeout: config.database.statement_timeout,
                ca_file: config.database.ca_file.clone(),
            };
            // The PostgreSQL driver blocks (it runs its own small runtime).
            tokio::task::spawn_blocking(move || tidings_store::sql::postgres::open(&options))
                .await
                .map_err(|e| format!("cannot open the store: {e}"))?
                .map_err(|e| e.to_string())
        }
    }
}

/// Registers this node, then renews its heartbeat so other nodes count its Socket Mode
/// connections.
async fn spawn_heartbeat(store: Arc<dyn Store>, public_url: String) -> Result<(), String> {
    store
        .heartbeat(&public_url)
        .await
        .map_err(|e| format!("cannot register this node: {e}"))?;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(tidings_store::sql::cluster::HEARTBEAT).await;
            if let Err(e) = store.heartbeat(&public_url).await {
                tracing::warn!(error = %e, "cannot renew this node's heartbeat");
            }
        }
    });
    Ok(())
}

/// The configured admin token, or the one in `<data_dir>/admin-token`, generating it
/// (mode 0600) on first start.
fn admin_token(
    config: &Config,
    data_dir: &std::path::Path,
) -> Result<(String, AdminTokenSource), String> {
    if let Some(t) = &config.server.admin_token {
        return Ok((token::hash(t), AdminTokenSource::Configured));
    }
    // The data directory holds this secret: owner-only, like the database beside it.
    owner_only::private_dir(data_dir).map_err(|e| e.to_string())?;
    let path = data_dir.join("admin-token");
    owner_only::private_file(&path).map_err(|e| e.to_string())?;
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let t = text.trim();
            if t.is_empty() {
                return Err(format!(
                    "{} is empty; delete it to generate a new admin token",
                    path.display()
                ));
            }
            Ok((
                token::hash(t),
                AdminTokenSource::File {
                    path,
                    generated: false,
                },
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let t = token::generate(TokenKind::Admin, None);
            write_secret_file(&path, &t)?;
            Ok((
                token::hash(&t),
                AdminTokenSource::File {
                    path,
                    generated: true,
                },
            ))
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes a secret to a new file readable by its owner only.
pub fn write_secret_file(path: &std::path::Path, contents: &str) -> Result<(), String> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    // An existing file keeps its mode through `open`: tighten it before writing.
    owner_only::private_file(path).map_err(|e| e.to_string())?;
    f.write_all(format!("{contents}\n").as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
