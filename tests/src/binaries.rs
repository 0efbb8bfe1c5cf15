//! Where the `control-plane` and `proxy` binaries are.
//!
//! Integration tests run from `<target>/<profile>/deps/<test>-<hash>`, so the binaries of the same
//! build are in `<target>/<profile>/`. `SWITCHYARD_BIN_DIR` overrides that directory. When a binary
//! is missing from the profile directory, `cargo build` runs once per test process, with the same
//! target dir and profile. Existing binaries are used as they are: rebuild them (`cargo build`)
//! before running the tests after changing the binaries' code.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Paths of the two binaries under test.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub control_plane: PathBuf,
    pub proxy: PathBuf,
}

static BINARIES: OnceLock<Binaries> = OnceLock::new();

/// The binaries, located (and built if needed) on first use.
pub fn binaries() -> &'static Binaries {
    BINARIES.get_or_init(locate_or_build)
}

fn in_dir(dir: &Path) -> Binaries {
    Binaries {
        control_plane: dir.join("control-plane"),
        proxy: dir.join("proxy"),
    }
}

fn both_exist(bins: &Binaries) -> bool {
    bins.control_plane.is_file() && bins.proxy.is_file()
}

fn locate_or_build() -> Binaries {
    if let Some(dir) = std::env::var_os("SWITCHYARD_BIN_DIR") {
        let bins = in_dir(Path::new(&dir));
        assert!(
            both_exist(&bins),
            "SWITCHYARD_BIN_DIR={} holds no `control-plane` and `proxy`",
            Path::new(&dir).display()
        );
        return bins;
    }
    let profile_dir = profile_dir();
    let bins = in_dir(&profile_dir);
    if !both_exist(&bins) {
        build_into(&profile_dir);
        assert!(
            both_exist(&bins),
            "cargo build succeeded but {} has no `control-plane` and `proxy`",
            profile_dir.display()
        );
    }
    bins
}

/// `<target>/<profile>`, from `<target>/<profile>/deps/<test executable>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let deps = exe.parent().expect("test executable has a parent dir");
    let profile_dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps dir has a parent")
    } else {
        deps
    };
    profile_dir.to_path_buf()
}

fn build_into(profile_dir: &Path) {
    let target_dir = profile_dir.parent().expect("profile dir has a parent");
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile dir name is UTF-8");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", target_dir)
        .args(["build", "--bin", "control-plane", "--bin", "proxy"]);
    match profile {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    eprintln!(
        "building control-plane and proxy into {}",
        profile_dir.display()
    );
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo build: {e}"));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "cargo build of control-plane and proxy failed ({}):\n{}",
            output.status,
            tail.join("\n")
        );
    }
}
