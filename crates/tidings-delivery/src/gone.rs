//! A Request URL that answered `410 Gone`: the app is marked as needing a new URL (its
//! URL no longer verified, so deliveries wait pending; the reason and time shown in the
//! app's answer and on the dashboard). Written only over the URL that answered, so a new
//! URL set meanwhile is not undone; setting or re-verifying a URL clears the mark.

use std::sync::Arc;

use tidings_store::{AppUpdate, Store, StoreError};

/// Marks `app` as needing a new Request URL, because `url` answered `410 Gone`.
pub async fn mark(store: &Arc<dyn Store>, app: &str, url: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let u = AppUpdate {
        expect_request_url: Some(Some(url.to_string())),
        request_url_verified: Some(false),
        request_url_gone: Some(Some(
            "the Request URL answered 410 Gone; set a new request_url to resume deliveries".into(),
        )),
        request_url_gone_at: Some(Some(now)),
        ..AppUpdate::default()
    };
    match store.update_app(app, u).await {
        Ok(_) => tracing::warn!(app, "app marked as needing a new Request URL (410 Gone)"),
        Err(StoreError::Stale(_)) => {
            tracing::info!(
                app,
                "410 Gone from a Request URL the app no longer has: ignored"
            )
        }
        Err(e) => tracing::warn!(app, error = %e, "cannot mark the app's Request URL as gone"),
    }
}
