//! Read-your-writes for proxies: a successful write is answered only once the config snapshot
//! streamed to proxies includes it (bounded wait), so a proxy that connects, or is asked about,
//! after the answer already has the change. The write itself is durable before this runs.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::ApiState;

/// How long a write's answer waits for the snapshot; past it the write is answered anyway
/// (it is committed, and proxies get it with the next snapshot).
pub const PUBLISH_WAIT: Duration = Duration::from_secs(2);

/// Middleware: after a successful non-GET request, waits until the published snapshot has
/// caught up with the store's newest revision.
pub async fn after_writes(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let write = !request.method().is_safe();
    let response = next.run(request).await;
    if write && response.status().is_success() {
        let head = *state.store.subscribe().borrow();
        let mut published = state.published.clone();
        let caught_up = published.wait_for(|snapshot| snapshot.revision >= head);
        if tokio::time::timeout(PUBLISH_WAIT, caught_up).await.is_err() {
            tracing::warn!(
                revision = head,
                "write answered before the config snapshot caught up"
            );
        }
    }
    response
}
