//! Getting events out: the envelope each delivery sends, the dispatcher with its per-app
//! lanes and Slack's retry schedule, the HTTP sender with its SSRF policy, and the health
//! tracker that disables failing apps. (The rate limit is counted where deliveries are
//! created, in the store's publish transaction, so it is exact.) Socket Mode joins here.

pub mod dispatcher;
pub mod envelope;
pub mod health;
pub mod http;
pub mod lane;
pub mod socket;
pub mod ssrf;

use std::sync::Arc;

use tidings_core::catalog::Catalog;
use tidings_store::Store;

/// How often the health rule re-reads every node's attempts when nodes share the store.
const HEALTH_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

pub use dispatcher::{DispatchConfig, Dispatcher};
pub use health::{Health, HealthConfig};
pub use http::{HttpSender, SenderConfig};
pub use socket::{SocketConfig, SocketHub};

/// The running delivery engine, as the server sees it.
pub struct Engine {
    pub dispatcher: Arc<Dispatcher>,
    pub sender: HttpSender,
    pub health: Health,
    pub hub: Arc<SocketHub>,
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
        let sender = HttpSender::new(sender_cfg)?;
        let health = Health::new(health_cfg);
        health.refresh(&store).await;
        if store.is_shared() {
            let (health, store) = (health.clone(), store.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(HEALTH_REFRESH).await;
                    health.refresh(&store).await;
                }
            });
        }
        let hub = Arc::new(SocketHub::new(socket_cfg));
        let dispatcher = Dispatcher::new(
            store,
            catalog,
            sender.clone(),
            hub.clone(),
            dispatch_cfg,
            health.clone(),
        );
        dispatcher.spawn();
        Ok(Engine {
            dispatcher,
            sender,
            health,
            hub,
        })
    }
}
