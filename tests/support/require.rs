//! What a test needs from the machine (root, a program on the PATH), checked when the test
//! starts: a missing requirement fails the test at once with the reason, never a silent pass.
//!
//! Where such a test cannot run, `tests/build.rs` has already marked it
//! `#[cfg_attr(not(e2e_...), ignore = "needs ...")]`, so `cargo test` reports it as ignored
//! (with the reason in `--list --ignored`); under CI (`CI` or `E2E_STRICT=1`) nothing is
//! ignored and these checks turn a missing requirement into a failure.

use std::path::Path;

/// True when running as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Panics with the reason unless the tests run as root; `why` says what needs it
/// ("network namespaces").
#[track_caller]
pub fn require_root(why: &str) {
    assert!(
        is_root(),
        "needs root ({why}): run the tests as root, as .ci/run does"
    );
}

/// Panics with the reason unless `program` is on the PATH; `package` is the Debian package
/// that provides it.
#[track_caller]
pub fn require_tool(program: &str, package: &str) {
    assert!(
        on_path(program),
        "needs {program}, which is not on the PATH: apt-get install {package} \
         (.ci/run installs it)"
    );
}

/// True when an executable `program` is in one of the PATH's directories.
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(Path::new(&dir).join(program))
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}
