//! Decides, when the end-to-end tests are compiled, which of their requirements this machine
//! lacks, so a test that cannot run here is marked `#[ignore = "needs ..."]` and shows up as
//! *ignored* in `cargo test`'s summary instead of passing without having run.
//!
//! For each requirement that is met it sets a cfg (`e2e_root`, `e2e_netns`, `e2e_socat`...);
//! a test says `#[cfg_attr(not(e2e_socat), ignore = "needs socat")]` and, first thing,
//! calls `e2e::require_tool("socat", ...)`, which panics with the reason when the tool is
//! missing at run time. So a decision made here that has gone stale can only turn into a
//! visible ignore or a failure that names what is missing, never into a silent pass.
//!
//! Strict mode (`CI` set, or `E2E_STRICT=1`, which `.ci/run` exports): every cfg is set, no
//! test is ignored, and a missing requirement fails its test.

use std::path::{Path, PathBuf};

/// cfg name, and the programs that must all be on the PATH ("root" means running as root).
const REQUIREMENTS: &[(&str, &[&str])] = &[
    ("e2e_root", &["root"]),
    ("e2e_netns", &["root", "ip"]),
    ("e2e_tc", &["root", "ip", "tc"]),
    ("e2e_socat", &["socat"]),
    ("e2e_nc", &["nc"]),
    ("e2e_tmux", &["tmux"]),
    ("e2e_script", &["script"]),
    ("e2e_strace", &["strace"]),
    ("e2e_chromium", &["chromium", "chromedriver"]),
];

fn main() {
    // Re-decide when the user, the strictness or the programs on the PATH change.
    for var in ["CI", "E2E_STRICT", "PATH", "USER", "SUDO_UID"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let path_dirs = path_dirs();
    for dir in &path_dirs {
        // A directory here is rescanned: installing or removing a program reruns this.
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    println!("cargo::rerun-if-changed=build.rs");

    let strict = is_strict();
    for (cfg, needs) in REQUIREMENTS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        let met = needs.iter().all(|need| match *need {
            "root" => is_root(),
            program => on_path(&path_dirs, program),
        });
        if strict || met {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}

/// True under CI: `CI` set to anything but "" / "0" / "false", or `E2E_STRICT=1`.
fn is_strict() -> bool {
    let set = |var: &str| {
        std::env::var(var)
            .map(|v| !matches!(v.trim(), "" | "0" | "false"))
            .unwrap_or(false)
    };
    set("CI") || set("E2E_STRICT")
}

fn is_root() -> bool {
    // The effective uid from /proc (no libc needed in a build script).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .map(|uid| uid == "0")
        })
        .unwrap_or(false)
}

fn path_dirs() -> Vec<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|d| d.is_absolute() && d.is_dir())
        .collect();
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

fn on_path(dirs: &[PathBuf], program: &str) -> bool {
    dirs.iter().any(|d| is_executable(&d.join(program)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
