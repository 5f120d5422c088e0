//! `tidings serve`: load the configuration, boot the server, print where it listens and
//! where the admin token is, and serve until SIGINT/SIGTERM, then shut down gracefully
//! (see `tidings_server::shutdown`; a second signal stops at once).

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use tidings_server::boot::{self, AdminTokenSource};
use tidings_server::config::Config;

#[derive(Args, Debug)]
pub struct ServeOpts {
    /// TOML configuration file (see tidings.example.toml).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Data directory (SQLite database, generated admin token).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:3000 (port 0 picks a free port).
    #[arg(long)]
    pub listen: Option<String>,
    /// PostgreSQL URL instead of the embedded SQLite.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Development mode: loopback Request URLs allowed, a demo workspace and app seeded.
    #[arg(long)]
    pub dev: bool,
    /// Log format.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    pub log_format: String,
}

pub async fn run(opts: ServeOpts) -> Result<(), String> {
    crate::logging::init(&opts.log_format);
    let mut config = Config::load(opts.config.as_deref(), std::env::vars())?;
    if let Some(d) = opts.data_dir {
        config.server.data_dir = d;
    }
    if let Some(l) = opts.listen {
        config.server.listen = l;
    }
    if let Some(u) = opts.database_url {
        config.server.database_url = Some(u);
    }
    if opts.dev && config.delivery.allow_loopback_targets.is_none() {
        config.delivery.allow_loopback_targets = Some(true);
    }
    config.validate()?;
    // Before anything opens files: room for max_connections clients plus deliveries.
    tidings_server::edge::open_files::raise_and_check(config.server.max_connections)?;
    let booted = boot::boot(config, opts.dev).await?;
    let addr = booted
        .listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    // These lines are the contract with people and with tests: keep their shape.
    println!("tidings listening on http://{addr}");
    println!("store: {}", booted.store_description);
    match &booted.admin_token {
        AdminTokenSource::Configured => println!("admin token: from configuration"),
        AdminTokenSource::File { path, generated } => println!(
            "admin token: {} ({})",
            path.display(),
            if *generated { "generated" } else { "existing" }
        ),
    }
    if opts.dev {
        match tidings_server::dev::seed(&booted.state).await? {
            Some(c) => println!(
                "dev workspace: team {} user {} channel {} app {}\n  bot token:  {}\n  user token: {}\n  app token:  {}\n  signing secret: {}",
                c.team_id, c.user_id, c.channel_id, c.app_id, c.bot_token, c.user_token, c.app_token, c.signing_secret
            ),
            None => println!("dev workspace: exists, but its credentials file is gone"),
        }
    }
    tidings_server::edge::upkeep::spawn(
        booted.state.metrics.clone(),
        tidings_server::edge::upkeep::EVERY,
        {
            let runtime = tokio::runtime::Handle::current();
            move || crate::memory::collect_everywhere(&runtime)
        },
    )
    .map_err(|e| format!("cannot start the upkeep thread: {e}"))?;
    let app = tidings_server::router(booted.state.clone());
    let limits = tidings_server::edge::Limits::of(&booted.state.config.server);
    // The first signal starts the shutdown (when it came bounds the grace period); a
    // second one ends the process at once.
    let (signalled_tx, signalled) = tokio::sync::watch::channel(None::<Instant>);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = signalled_tx.send(Some(Instant::now()));
        tracing::info!(
            "shutting down: stopped accepting; draining deliveries (a second signal stops at once)"
        );
        shutdown_signal().await;
        eprintln!("error: second signal: stopping at once; unfinished deliveries stay pending");
        std::process::exit(130);
    });
    let when = |mut rx: tokio::sync::watch::Receiver<Option<Instant>>| async move {
        let at = rx.wait_for(Option::is_some).await.map(|at| *at);
        match at {
            Ok(at) => at.unwrap_or_else(Instant::now),
            // The signal task is gone: never happens while the process runs.
            Err(_) => std::future::pending().await,
        }
    };
    let state = booted.state.clone();
    let drain = tokio::spawn({
        let signalled = signalled.clone();
        async move {
            let at = when(signalled).await;
            tidings_server::shutdown::run(&state, at).await
        }
    });
    tidings_server::edge::serve(booted.listener, app, limits, async move {
        when(signalled).await;
    })
    .await
    .map_err(|e| format!("server error: {e}"))?;
    let report = drain
        .await
        .map_err(|e| format!("the shutdown stopped: {e}"))?;
    tracing::info!("{report}");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
