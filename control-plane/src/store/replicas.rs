//! Following writes made by other control-plane replicas sharing a PostgreSQL database: every
//! write transaction sends `NOTIFY switchyard_revisions, '<number>'` (delivered on commit), and
//! each replica LISTENs and feeds the numbers into its own commit watch, so its snapshot
//! builder reacts as to a local write. Notifications missed while the listener reconnects are
//! covered by the builder's periodic check of the revision head.

use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{Any, Transaction};
use tokio::sync::watch;

use super::StoreError;

/// The notification channel.
pub(super) const CHANNEL: &str = "switchyard_revisions";

/// Announces revision `number` to the other replicas when the transaction commits.
pub(super) async fn announce(tx: &mut Transaction<'_, Any>, number: i64) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(number.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Listens until `shutdown`, raising `committed` to every announced revision.
pub(super) async fn follow(
    url: String,
    committed: watch::Sender<i64>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let listener = async {
            let mut listener = PgListener::connect(&url).await?;
            listener.listen(CHANNEL).await?;
            tracing::debug!("following other replicas' commits");
            loop {
                let notification = listener.recv().await?;
                if let Ok(number) = notification.payload().parse::<i64>() {
                    committed.send_if_modified(|head| super::raise(head, number));
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            _ = &mut shutdown => return,
            result = listener => {
                if let Err(error) = result {
                    tracing::warn!(%error, "lost the replica notification listener; reconnecting");
                }
            }
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
