//! Getting events out: the dispatcher that schedules per-app lanes ([`dispatcher`],
//! [`lane`]), one attempt as prepare → send → conclude ([`attempt`]) over a
//! [`transport::Transport`] (HTTP with its SSRF policy, or Socket Mode), outcomes written
//! in batches ([`outcomes`]), and the health tracker that disables failing apps. The
//! engine sees the store only through [`tidings_store::DeliveryQueue`], and is woken only
//! by the store's work notices. (The rate limit is counted where deliveries are
//! created, in the store's publish transaction, so it is exact.) Socket Mode joins here.
//!
//! The engine runs on a tokio runtime of its own, beside the one serving the HTTP API:
//! thousands of delivery tasks then never queue ahead of a publish call's wake-up, and
//! the operating system shares the cores between the two sets of threads.

pub mod attempt;
pub mod clock;
pub mod dispatcher;
pub mod drain;
pub mod envelope;
pub mod gone;
pub mod health;
pub mod http;
pub mod lane;
pub mod outcomes;
pub mod socket;
pub mod ssrf;
#[cfg(test)]
mod testing;
pub mod transport;

use std::sync::Arc;

use tidings_core::catalog::Catalog;
use tidings_store::Store;

/// How often the health rule re-reads every node's attempts when nodes share the store.
const HEALTH_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

pub use dispatcher::{DispatchConfig, Dispatcher};
pub use drain::Drained;
pub use health::{Health, HealthConfig};
pub use http::{HttpSender, SenderConfig};
pub use socket::{SocketConfig, SocketHub};

/// The running delivery engine, as the server sees it.
pub struct Engine {
    pub dispatcher: Arc<Dispatcher>,
    pub sender: HttpSender,
    pub health: Health,
    pub hub: Arc<SocketHub>,
    /// Where the dispatcher's tasks run; stopped when the engine is dropped.
    _runtime: EngineRuntime,
}

/// The engine's runtime. Dropping a runtime waits for its threads, which is not allowed
/// inside another runtime (where the engine is usually dropped), so it is shut down in
/// the background instead: its tasks are cancelled, and every delivery they had under
/// way is still pending on disk.
struct EngineRuntime(Option<tokio::runtime::Runtime>);

impl EngineRuntime {
    fn new() -> Result<EngineRuntime, String> {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("tidings-deliver")
            .enable_all()
            .build()
            .map(|rt| EngineRuntime(Some(rt)))
            .map_err(|e| format!("cannot start the delivery engine's runtime: {e}"))
    }

    /// Runs `f` with the engine's runtime as the current one, so what it spawns runs there.
    fn enter<T>(&self, f: impl FnOnce() -> T) -> T {
        let _entered = self.0.as_ref().map(|rt| rt.enter());
        f()
    }
}

impl Drop for EngineRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Engine {
    /// Builds the engine, rebuilds its health state from the store and starts dispatching.
    pub async fn start(
        store: Arc<dyn Store>,
        catalog: Arc<Catalog>,
        sender_cfg: SenderConfig,
        dispatch_cfg: DispatchConfig,
        health_cfg: HealthConfig,
        socket_cfg: SocketConfig,
    ) -> Result<Engine, String> {
        let runtime = EngineRuntime::new()?;
        let sender = HttpSender::new(sender_cfg)?;
        let health = Health::new(health_cfg);
        health.refresh(&store).await;
        if store.is_shared() {
            let (health, store) = (health.clone(), store.clone());
            runtime.enter(|| {
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(HEALTH_REFRESH).await;
                        health.refresh(&store).await;
                    }
                })
            });
        }
        let hub = Arc::new(SocketHub::new(socket_cfg));
        let on_attempt: dispatcher::AttemptHook = {
            let (health, store) = (health.clone(), store.clone());
            Arc::new(move |app: &str, ok: bool, first: bool| health.record(&store, app, ok, first))
        };
        let on_gone: dispatcher::GoneHook = {
            let store = store.clone();
            Arc::new(move |app: &str, url: &str| {
                let (store, app, url) = (store.clone(), app.to_string(), url.to_string());
                tokio::spawn(async move { gone::mark(&store, &app, &url).await });
            })
        };
        let parts = dispatcher::Parts {
            queue: store.delivery_queue(),
            catalog,
            http: Arc::new(transport::HttpTransport {
                sender: sender.clone(),
            }),
            socket: Arc::new(transport::SocketTransport { hub: hub.clone() }),
            on_attempt,
            on_gone,
            clock: Arc::new(clock::SystemClock),
        };
        let dispatcher = Dispatcher::new(parts, dispatch_cfg);
        runtime.enter(|| dispatcher.spawn());
        Ok(Engine {
            dispatcher,
            sender,
            health,
            hub,
            _runtime: runtime,
        })
    }
}
