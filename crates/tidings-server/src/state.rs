//! Shared server state handed to every handler.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tidings_core::catalog::Catalog;
use tidings_store::Store;

use crate::config::Config;

/// Everything a handler may need. Cloned per request (an `Arc` inside), read-only.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Arc<dyn Store>,
    pub config: Config,
    /// SHA-256 of the operator token; compared in constant time.
    pub admin_token_hash: String,
    pub catalog: Arc<Catalog>,
    /// Catalog and time rules for publishing, from the configuration.
    pub publish_policy: tidings_store::PublishPolicy,
    /// Base URL for URLs handed out (no trailing slash).
    pub public_url: String,
    pub dev: bool,
    /// The delivery engine (dispatcher, HTTP sender, health).
    pub engine: tidings_delivery::Engine,
    /// The RTM API's URLs and connections on this node.
    pub rtm: Arc<crate::rtm::RtmHub>,
    pub metrics: PrometheusHandle,
    /// The bulk replay task (stopped first in the graceful shutdown).
    pub replay: crate::replay::Replayer,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: Inner) -> AppState {
        AppState(Arc::new(inner))
    }
}
