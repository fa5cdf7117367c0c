//! The binaries the end-to-end tests run are built from the current sources: the first
//! time a test process asks for one, it runs `cargo build --workspace --bins` into the same
//! target directory and profile as the test itself. So `cargo test -p e2e` right after an
//! edit runs the edited program, never a stale one left in `target/`. When nothing changed,
//! the build is a no-op of about a second per test binary.
//!
//! `cargo test` releases its lock on the target directory while the tests run, so this
//! nested build does not wait for it. `--workspace` keeps the feature set the same as the
//! README's `cargo build --workspace`, so the two never rebuild each other's artifacts.
//! Set `E2E_NO_BUILD=1` to run whatever is there (e.g. binaries copied in by hand), and
//! `E2E_BUILD_VERBOSE=1` to see cargo's output.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Builds every workspace binary once per test process; returns the directory they are in.
/// Panics with cargo's output if the build fails.
pub fn fresh_bin_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = profile_dir();
        if std::env::var_os("E2E_NO_BUILD").is_none() {
            build(&dir, "--bins");
        }
        dir
    })
}

/// Builds every workspace example once per test process (`cargo build --examples`, for
/// the tests of their command lines); returns `target/<profile>/examples/`.
pub fn fresh_example_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = profile_dir();
        if std::env::var_os("E2E_NO_BUILD").is_none() {
            build(&dir, "--examples");
        }
        dir.join("examples")
    })
}

/// `target/<profile>/`, the directory of this test executable's `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target directory")
        .to_path_buf()
}

/// `cargo build --workspace WHAT` (`--bins`, `--examples`) into `profile_dir`'s target.
fn build(profile_dir: &Path, what: &str) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives in the workspace");
    let target_dir = profile_dir.parent().expect("target/<profile>");
    let profile = profile_dir
        .file_name()
        .and_then(|p| p.to_str())
        .expect("profile directory name");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // Not the variables cargo set for this test process: a build script that watches one
    // (ring's watches CARGO_MANIFEST_DIR) would rebuild on every switch between this build
    // and a plain `cargo build`.
    for (var, _) in std::env::vars_os() {
        let Some(var) = var.to_str() else { continue };
        if var.starts_with("CARGO_PKG_")
            || var.starts_with("CARGO_BIN_EXE_")
            || matches!(
                var,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            )
        {
            cmd.env_remove(var);
        }
    }
    cmd.current_dir(workspace)
        .args(["build", "--workspace", what, "--locked", "--target-dir"])
        .arg(target_dir);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the binaries under test: {e}"));
    if std::env::var_os("E2E_BUILD_VERBOSE").is_some() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(
        out.status.success(),
        "building the binaries under test failed ({cmd:?}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
