//! `tidings`: the server (`tidings serve`) and a command-line client for the operator API
//! (`tidings apps|teams|users|conversations|install …`). The client holds no server logic:
//! it sends requests and prints answers.

mod backup;
mod cli;
mod listen;
mod logging;
mod memory;
mod relay;
mod serve;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc, not glibc's malloc: the delivery path allocates many short-lived buffers on
/// several threads, and glibc's arenas spent about a sixth of the server's CPU on
/// `malloc`/`free`/`malloc_consolidate` in the throughput benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs file and database work off the async threads.
async fn blocking(f: impl FnOnce() -> Result<(), String> + Send + 'static) -> Result<(), String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("the command stopped: {e}"))?
}

fn main() -> ExitCode {
    memory::use_small_pages();
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(memory::collect_when_idle)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match args.command {
            cli::Command::Serve(opts) => serve::run(opts).await,
            cli::Command::Listen(opts) => listen::run(args.global, opts).await,
            cli::Command::Relay(opts) => relay::run(opts).await,
            cli::Command::Backup(opts) => blocking(move || backup::run_backup(opts)).await,
            cli::Command::Restore(opts) => blocking(move || backup::run_restore(opts)).await,
            other => cli::run(args.global, other).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
