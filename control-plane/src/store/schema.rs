//! Migrations, one set per backend under `migrations/`, embedded in the binary and run at start.

use sqlx::AnyPool;
use sqlx::migrate::Migrator;

use super::{Backend, StoreError};

static SQLITE: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("../migrations/postgres");

/// Brings the database schema up to date.
pub(super) async fn migrate(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    let migrator = match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    };
    migrator.run(pool).await?;
    Ok(())
}
