//! One fresh database per test: a SQLite file in a scratch dir, or a PostgreSQL database created
//! with `psql` on the server of `SWITCHYARD_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and dropped again at the end.
//!
//! Control planes hold an `Arc<Database>`, so the database outlives every process using it.

use std::fmt;
use std::process::Command;
use std::sync::Arc;

use crate::scratch::{Scratch, unique_suffix};

const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Which database backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    /// False for PostgreSQL when `SWITCHYARD_TEST_POSTGRES=off`.
    pub fn enabled(self) -> bool {
        match self {
            Db::Sqlite => true,
            Db::Postgres => postgres_base().is_some(),
        }
    }
}

impl fmt::Display for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Db::Sqlite => "sqlite",
            Db::Postgres => "postgres",
        })
    }
}

fn postgres_base() -> Option<String> {
    match std::env::var("SWITCHYARD_TEST_POSTGRES") {
        Ok(value) if value == "off" => None,
        Ok(value) if !value.is_empty() => Some(value),
        _ => Some(DEFAULT_POSTGRES.to_owned()),
    }
}

/// A database made for one test.
#[derive(Debug)]
pub struct Database {
    kind: Db,
    url: String,
    /// Base URL and name of a PostgreSQL database to drop at the end.
    postgres: Option<(String, String)>,
    /// Holds the SQLite file.
    _scratch: Option<Scratch>,
}

impl Database {
    /// Creates an empty database of `kind`.
    pub fn create(kind: Db) -> Arc<Self> {
        let database = match kind {
            Db::Sqlite => {
                let scratch = Scratch::new("sqlite");
                let url = format!(
                    "sqlite://{}",
                    scratch.path().join("switchyard.db").display()
                );
                Database {
                    kind,
                    url,
                    postgres: None,
                    _scratch: Some(scratch),
                }
            }
            Db::Postgres => {
                let base = postgres_base()
                    .expect("PostgreSQL tests are off (SWITCHYARD_TEST_POSTGRES=off)");
                let name = format!("switchyard_e2e_{}", unique_suffix());
                psql(&base, &format!("CREATE DATABASE {name}"));
                let url = with_database(&base, &name).expect("a PostgreSQL URL");
                Database {
                    kind,
                    url,
                    postgres: Some((base, name)),
                    _scratch: None,
                }
            }
        };
        Arc::new(database)
    }

    pub fn kind(&self) -> Db {
        self.kind
    }

    /// The `--database-url` for the control plane.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some((base, name)) = &self.postgres {
            // Best effort: a leftover database only costs disk space.
            let _ = run_psql(
                base,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

/// `base` with its database name (the URL path) replaced by `name`.
fn with_database(base: &str, name: &str) -> Result<String, url::ParseError> {
    let mut url = url::Url::parse(base)?;
    url.set_path(name);
    Ok(url.into())
}

fn psql(base: &str, sql: &str) {
    if let Err(message) = run_psql(base, sql) {
        panic!(
            "{message}\n(the PostgreSQL tests need a server at {base}; set SWITCHYARD_TEST_POSTGRES \
             to another base URL, or to `off` to skip them)"
        );
    }
}

fn run_psql(base: &str, sql: &str) -> Result<(), String> {
    let output = Command::new("psql")
        .args([base, "-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "psql `{sql}` failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x").unwrap(),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x").unwrap(),
            "postgres://h:5432/x"
        );
    }
}
