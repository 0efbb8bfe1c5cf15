//! Test databases: a fresh SQLite file or a fresh PostgreSQL database per test, so tests run
//! in parallel without seeing each other's data. [`control_plane`] starts a real control
//! plane; [`report_stream`] opens a report stream the way a proxy does.
#![allow(dead_code)]

pub mod control_plane;
pub mod report_stream;

/// Runs each listed async fn with a fresh SQLite store and a fresh PostgreSQL store.
#[macro_export]
macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test] async fn $case() { super::$case(super::support::sqlite_store().await).await } )* }
        mod postgres { $( #[tokio::test] async fn $case() { super::$case(super::support::postgres_store().await).await } )* }
    };
}

/// Runs each listed async fn with the URL of a fresh SQLite file and of a fresh PostgreSQL
/// database (a test may open several stores on it, as replicas do).
#[macro_export]
macro_rules! on_both_database_urls {
    ($($case:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test] async fn $case() { super::$case(super::support::sqlite_url()).await } )* }
        mod postgres { $( #[tokio::test] async fn $case() { super::$case(super::support::postgres_database_url().await).await } )* }
    };
}

use std::sync::atomic::{AtomicU32, Ordering};

use switchyard_control_plane::store::Store;

static SEQ: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// A URL of a new SQLite file in the system temp dir (created on first connect).
pub fn sqlite_url() -> String {
    let path = std::env::temp_dir().join(format!("{}.db", unique("switchyard_test")));
    format!("sqlite://{}", path.display())
}

/// A store on a new SQLite file in the system temp dir.
pub async fn sqlite_store() -> Store {
    Store::connect(&sqlite_url()).await.expect("sqlite store")
}

/// The PostgreSQL server used by tests: `SWITCHYARD_TEST_POSTGRES` or the local default.
pub fn postgres_admin_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A URL of a new, empty PostgreSQL database.
pub async fn postgres_database_url() -> String {
    use sqlx::Connection;
    let admin = postgres_admin_url();
    let name = unique("switchyard_test");
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("PostgreSQL must be running for the tests (see README)");
    drop_stale_databases(&mut conn).await;
    // `name` is generated above from digits and underscores only.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{name}")
}

/// A store on a new PostgreSQL database.
pub async fn postgres_store() -> Store {
    Store::connect(&postgres_database_url().await)
        .await
        .expect("postgres store")
}

/// Drops test databases left by test processes that have exited (their pid is in the name),
/// so repeated runs do not pile them up. Errors are ignored: another process may race us.
async fn drop_stale_databases(conn: &mut sqlx::PgConnection) {
    use sqlx::Row;
    let Ok(rows) =
        sqlx::query("SELECT datname FROM pg_database WHERE datname LIKE 'switchyard_test_%'")
            .fetch_all(&mut *conn)
            .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get("datname");
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            // `name` was checked above to be a plain identifier.
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *conn)
                .await;
        }
    }
}
