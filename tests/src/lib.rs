//! An end-to-end sandbox for Switchyard: it starts the real `control-plane` and `proxy` binaries
//! on 127.0.0.1 (ports picked at run time), fake upstreams inside the test's tokio runtime, and a
//! fresh SQLite file or PostgreSQL database per test, so tests run in parallel.
//!
//! # Layout
//! - [`binaries`]: finds the two binaries next to the test executable (or in `SWITCHYARD_BIN_DIR`),
//!   building them once when they are missing.
//! - [`database`]: [`Db`] (which backend) and [`Database`] (one fresh database, dropped at the end).
//! - [`process`]: a spawned child with its log file; killed by its own PID on drop, and prints its
//!   log tail when the test fails; [`process::run_to_exit`] runs one to its exit code.
//! - [`control_plane`] / [`proxy`]: the two binaries, started and waited for, with small clients
//!   for their admin APIs.
//! - [`raw`]: HTTP/1.1 written and read byte for byte (attack paths, status lines).
//! - [`upstream`]: a fake HTTP origin that says who it is and records what it saw.
//! - [`client`]: a bounded HTTP/1.1 client (hyper-util's legacy client, 5 s per request).
//! - [`resources`]: JSON builders for the REST shapes of the spec.
//! - [`wait`]: bounded polling.
//!
//! The sandbox panics with context instead of returning errors: a panic is how a test fails, and
//! every process prints the tail of its log while the panic unwinds.
//!
//! Environment: `SWITCHYARD_BIN_DIR` (where the binaries are), `SWITCHYARD_TEST_POSTGRES` (base URL of
//! a PostgreSQL server, default `postgres://postgres@127.0.0.1:5432/postgres`; `off` skips the
//! PostgreSQL variants), `RUST_LOG` (passed to the binaries, default `info`).

#![forbid(unsafe_code)]

pub mod binaries;
pub mod client;
pub mod control_plane;
pub mod database;
pub mod ports;
pub mod process;
pub mod proxy;
pub mod raw;
pub mod resources;
pub mod scratch;
pub mod upstream;
pub mod wait;

pub use client::{ClientError, HttpClient, Response};
pub use control_plane::{ApiReply, ControlPlane};
pub use database::{Database, Db};
pub use proxy::Proxy;
pub use upstream::{RecordedRequest, Upstream};
pub use wait::{wait_until, wait_until_every};

/// Runs an async scenario `fn name(db: Db)` as two tests, `name::sqlite` and `name::postgres`.
///
/// The PostgreSQL variant returns early (and says so) when `SWITCHYARD_TEST_POSTGRES=off`.
#[macro_export]
macro_rules! on_every_database {
    ($($scenario:ident),+ $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$scenario($crate::Db::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if !$crate::Db::Postgres.enabled() {
                        eprintln!("skipped: SWITCHYARD_TEST_POSTGRES=off");
                        return;
                    }
                    super::$scenario($crate::Db::Postgres).await;
                }
            }
        )+
    };
}
