//! Exit codes and start-up refusals through the real binaries, as a supervisor sees them:
//! the control plane exits 64 (EX_USAGE) for bad flags, an open xDS address without
//! `--proxy-token` or a bad `LOG_FORMAT`, 69 (EX_UNAVAILABLE) for a database it cannot reach and
//! 78 (EX_CONFIG) for a database URL it cannot use; `--help` and `--version` exit 0. Both binaries
//! read `LOG_FORMAT` the same way: `text` or `json` in any case, anything else exit 64.

use std::time::Duration;

use e2e::binaries::binaries;
use e2e::ports::free_addr;
use e2e::process::{Exit, run_to_exit};
use e2e::scratch::Scratch;
use serde_json::Value;

/// Bound on a run that must end on its own (an unreachable database takes the pool's 3 s).
const EXIT_WITHIN: Duration = Duration::from_secs(20);

/// `control-plane args…`, with a scratch SQLite file and free loopback ports for the
/// `--database-url`, `--admin-addr` and `--xds-addr` that `args` do not set.
async fn control_plane(args: &[&str], envs: &[(&str, &str)]) -> Exit {
    let scratch = Scratch::new("exit-codes");
    let defaults = [
        (
            "--database-url",
            format!("sqlite://{}", scratch.path().join("cp.db").display()),
        ),
        ("--admin-addr", free_addr().to_string()),
        ("--xds-addr", free_addr().to_string()),
    ];
    let mut all: Vec<&str> = args.to_vec();
    for (flag, value) in &defaults {
        if !args.contains(flag) {
            all.extend([*flag, value.as_str()]);
        }
    }
    run_to_exit(&binaries().control_plane, &all, envs, EXIT_WITHIN).await
}

#[track_caller]
fn assert_exit(exit: &Exit, code: i32, mentions: &[&str], what: &str) {
    assert_eq!(exit.code, Some(code), "{what}: output:\n{}", exit.output);
    for word in mentions {
        assert!(
            exit.output.contains(word),
            "{what}: the output names {word:?}:\n{}",
            exit.output
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_are_usage_errors_and_help_is_not() {
    let exit = control_plane(&["--bogus"], &[]).await;
    assert_exit(&exit, 64, &["--bogus"], "an unknown flag");
    let exit = control_plane(&["--admin-addr", "nowhere"], &[]).await;
    assert_exit(&exit, 64, &["--admin-addr"], "an unparseable address");
    let exit = control_plane(&["--first-sync-budget-mib", "0"], &[]).await;
    assert_exit(
        &exit,
        64,
        &["--first-sync-budget-mib"],
        "a value out of range",
    );
    let exit = control_plane(&["--proxy-ttl", "soon"], &[]).await;
    assert_exit(&exit, 64, &["--proxy-ttl"], "an unparseable --proxy-ttl");
    let exit = control_plane(&["--proxy-ttl", "0s"], &[]).await;
    assert_exit(&exit, 64, &["--proxy-ttl"], "a zero --proxy-ttl");
    let exit = control_plane(&[], &[("PROXY_TTL", "forever")]).await;
    assert_exit(
        &exit,
        64,
        &["--proxy-ttl"],
        "PROXY_TTL is read like the flag",
    );
    let exit = control_plane(&["--usage-retention", "30s"], &[]).await;
    assert_exit(
        &exit,
        64,
        &["--usage-retention", "1m"],
        "a --usage-retention under a minute",
    );
    let exit = control_plane(&[], &[("USAGE_RETENTION", "a week")]).await;
    assert_exit(
        &exit,
        64,
        &["--usage-retention"],
        "USAGE_RETENTION is read like the flag",
    );

    let exit = run_to_exit(&binaries().control_plane, &["--help"], &[], EXIT_WITHIN).await;
    assert_exit(&exit, 0, &["--proxy-ttl", "PROXY_TTL"], "--help");
    let exit = run_to_exit(&binaries().control_plane, &["--version"], &[], EXIT_WITHIN).await;
    assert_exit(&exit, 0, &["control-plane"], "--version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_listeners_need_their_tokens() {
    // Refused before anything binds, so no port on the network is ever opened.
    let exit = control_plane(&["--xds-addr", "0.0.0.0:18000"], &[]).await;
    assert_exit(
        &exit,
        64,
        &["--proxy-token", "--xds-addr", "0.0.0.0:18000"],
        "xDS on every interface without --proxy-token",
    );
    let exit = control_plane(&["--admin-addr", "0.0.0.0:8080"], &[]).await;
    assert_exit(
        &exit,
        64,
        &["--admin-token"],
        "the admin API on every interface without --admin-token",
    );
    let exit = control_plane(&["--proxy-token", ""], &[]).await;
    // clap treats an empty value as given: the control plane refuses it.
    assert_exit(&exit, 64, &["--proxy-token"], "an empty --proxy-token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_urls_it_cannot_use_or_reach() {
    for (url, code, what) in [
        ("mysql://127.0.0.1/x", 78, "an unknown scheme"),
        ("switchyard.db", 78, "no scheme at all"),
        ("postgres://:::bad/x", 78, "an unparseable PostgreSQL URL"),
        (
            "postgres://postgres@127.0.0.1:5432/x?sslmode=sometimes",
            78,
            "an unknown URL option",
        ),
    ] {
        let exit = control_plane(&["--database-url", url], &[]).await;
        assert_exit(&exit, code, &[], what);
    }

    // Nothing listens on this port: the sandbox never hands it out again.
    let closed = free_addr();
    let url = format!("postgres://postgres@{closed}/switchyard");
    let exit = control_plane(&["--database-url", &url], &[]).await;
    assert_exit(
        &exit,
        69,
        &["unavailable"],
        "a PostgreSQL server that is down",
    );
    let exit = control_plane(
        &[
            "--database-url",
            "sqlite:///nonexistent-switchyard-dir/cp.db",
        ],
        &[],
    )
    .await;
    assert_exit(
        &exit,
        69,
        &["unavailable"],
        "a SQLite file that cannot be opened",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_is_read_the_same_way_by_both() {
    let exit = control_plane(&[], &[("LOG_FORMAT", "xml")]).await;
    assert_exit(
        &exit,
        64,
        &["LOG_FORMAT", "xml"],
        "control plane, LOG_FORMAT=xml",
    );
    let exit = proxy(&[("LOG_FORMAT", "xml")], EXIT_WITHIN).await;
    assert_exit(&exit, 64, &["LOG_FORMAT", "xml"], "proxy, LOG_FORMAT=xml");

    // `JSON` in any case: the control plane's failure is one JSON log line.
    let exit = control_plane(
        &["--database-url", "mysql://127.0.0.1/x"],
        &[("LOG_FORMAT", "JSON")],
    )
    .await;
    assert_exit(&exit, 78, &[], "control plane, LOG_FORMAT=JSON");
    assert_json_lines(&exit.output, "control plane, LOG_FORMAT=JSON");
    // The proxy runs (with no control plane to reach) and logs JSON until it is stopped.
    let exit = proxy(&[("LOG_FORMAT", "Json")], Duration::from_secs(2)).await;
    assert_eq!(exit.code, None, "the proxy keeps running:\n{}", exit.output);
    assert_json_lines(&exit.output, "proxy, LOG_FORMAT=Json");
    // Text stays the default, in any case too.
    let exit = control_plane(
        &["--database-url", "mysql://127.0.0.1/x"],
        &[("LOG_FORMAT", "Text")],
    )
    .await;
    assert_exit(&exit, 78, &["ERROR"], "control plane, LOG_FORMAT=Text");
    assert!(
        serde_json::from_str::<Value>(exit.output.lines().last().unwrap_or("")).is_err(),
        "text logs are not JSON:\n{}",
        exit.output
    );
}

/// A proxy pointed at a control plane that is not there.
async fn proxy(envs: &[(&str, &str)], within: Duration) -> Exit {
    let (listen, admin) = (free_addr().to_string(), free_addr().to_string());
    let cp = format!("http://{}", free_addr());
    let args = [
        "--control-plane",
        &cp,
        "--listen",
        &listen,
        "--admin-addr",
        &admin,
        "--node-id",
        "exit-codes",
    ];
    run_to_exit(&binaries().proxy, &args, envs, within).await
}

#[track_caller]
fn assert_json_lines(output: &str, what: &str) {
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "{what}: some log output");
    for line in lines {
        let json: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{what}: a JSON log line ({e}): {line}\n{output}"));
        assert!(json["level"].is_string(), "{what}: a level in {line}");
    }
}
