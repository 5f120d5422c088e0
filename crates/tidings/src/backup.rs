//! `tidings backup` and `tidings restore`: the SQLite store copied to one file and back
//! (the work is `tidings_store::sql::backup`'s). They open the data directory's files
//! themselves, not the API, so they run on the server's machine, as a user that can read
//! its data directory. PostgreSQL is backed up with its own tools (README, "Backup and
//! restore").

use std::path::{Path, PathBuf};

use clap::Args;
use tidings_server::config::Config;
use tidings_store::sql::backup;

#[derive(Args, Debug)]
pub struct BackupOpts {
    /// The file to write (mode 0600); it must not exist unless --force.
    #[arg(long)]
    pub to: PathBuf,
    /// The server's data directory (default: from --config, else ./tidings-data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The server's configuration file, to find its data directory.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Replace the file if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct RestoreOpts {
    /// A file written by `tidings backup`.
    #[arg(long)]
    pub from: PathBuf,
    /// The data directory to restore into (default: from --config, else ./tidings-data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The server's configuration file, to find its data directory.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Replace the database already in the data directory (it is kept beside it).
    #[arg(long)]
    pub force: bool,
}

pub fn run_backup(opts: BackupOpts) -> Result<(), String> {
    let dir = data_dir(opts.config.as_deref(), opts.data_dir)?;
    let started = std::time::Instant::now();
    let info = backup::backup(&dir, &opts.to, opts.force)?;
    println!(
        "backup: {} ({}; {:.1} MB in {:.1} s)",
        opts.to.display(),
        holds(&info),
        info.bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn run_restore(opts: RestoreOpts) -> Result<(), String> {
    let dir = data_dir(opts.config.as_deref(), opts.data_dir)?;
    let r = backup::restore(&opts.from, &dir, opts.force)?;
    println!(
        "restored {} into {} ({})",
        opts.from.display(),
        r.path.display(),
        holds(&r.info)
    );
    if let Some(kept) = &r.replaced {
        println!("the database it replaced is kept as {}", kept.display());
    }
    println!(
        "start the server on it: tidings serve --data-dir {}",
        dir.display()
    );
    Ok(())
}

fn holds(info: &backup::DbInfo) -> String {
    format!(
        "schema version {}; {} events, {} pending deliveries",
        info.schema_version, info.events, info.pending_deliveries
    )
}

/// The data directory: the flag, else the configuration's (file and `TIDINGS_*`
/// environment, as `serve` reads them). A PostgreSQL store has none to copy.
fn data_dir(config: Option<&Path>, flag: Option<PathBuf>) -> Result<PathBuf, String> {
    let cfg = Config::load(config, std::env::vars())?;
    if cfg.server.database_url.is_some() && flag.is_none() {
        return Err(
            "this configuration stores in PostgreSQL: back it up with pg_dump and restore with pg_restore (README, \"Backup and restore\")".into(),
        );
    }
    Ok(flag.unwrap_or(cfg.server.data_dir))
}
