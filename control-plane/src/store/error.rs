//! Store errors: each says what the caller did wrong (a conflict, a missing reference) or that
//! the database is unavailable, so the API can map it to one HTTP status.

use crate::model::{Kind, Reference};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The resource does not exist.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// Kind looked up.
        kind: Kind,
        /// Name looked up.
        name: String,
    },
    /// `POST` of a resource that exists.
    #[error("{kind} {name:?} already exists")]
    AlreadyExists {
        /// Kind written.
        kind: Kind,
        /// Name written.
        name: String,
    },
    /// `If-Match` named a version that is no longer current.
    #[error("{kind} {name:?} is at version {current:?}, not {expected}")]
    VersionMismatch {
        /// Kind written.
        kind: Kind,
        /// Name written.
        name: String,
        /// The version the client expected.
        expected: i64,
        /// The current version (`None`: the resource does not exist).
        current: Option<i64>,
    },
    /// A put refers to resources that do not exist.
    #[error("references to missing resources: {0:?}")]
    MissingReferences(Vec<Reference>),
    /// A delete would leave resources referring to a missing one.
    #[error("{kind} {name:?} is used by {used_by:?}")]
    InUse {
        /// Kind deleted.
        kind: Kind,
        /// Name deleted.
        name: String,
        /// `kind/name` of each resource that refers to it.
        used_by: Vec<String>,
    },
    /// An API key that does not exist (or belongs to another consumer).
    #[error("consumer {consumer:?} has no key {id:?}")]
    KeyNotFound {
        /// The consumer named.
        consumer: String,
        /// The key id named.
        id: String,
    },
    /// A revision number that does not exist.
    #[error("revision {0} not found")]
    RevisionNotFound(i64),
    /// Input the store refuses whatever the database holds (e.g. an empty usage instance id).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The database could not be reached or timed out.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A bad database URL or option.
    #[error("{0}")]
    Config(String),
    /// Anything else from the database (a bug, or corrupted data).
    #[error("database error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Configuration(_) => StoreError::Config(e.to_string()),
            sqlx::Error::Database(ref db) if is_unavailable_code(db.code().as_deref()) => {
                StoreError::Unavailable(e.to_string())
            }
            other => StoreError::Internal(other.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::Execute(inner) => inner.into(),
            other => StoreError::Internal(other.to_string()),
        }
    }
}

/// PostgreSQL classes 08 (connection exception), 53 (insufficient resources, e.g. too many
/// connections), 57P (operator intervention: shutdown) and 3D000 (the database is gone);
/// SQLite BUSY / LOCKED / CANTOPEN (the file or its directory is missing or not accessible).
fn is_unavailable_code(code: Option<&str>) -> bool {
    match code {
        Some(c) => {
            c.starts_with("08")
                || c.starts_with("53")
                || c.starts_with("57P")
                || c == "3D000"
                || c == "5"
                || c == "6"
                || c == "14"
        }
        None => false,
    }
}
