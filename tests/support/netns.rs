//! Throw-away Linux network namespaces for tests of what crosses a network.
//!
//! Each [`Netns`] has a name unique to this process and test, so tests in parallel never
//! share one, and it is deleted (with its `/etc/netns/NAME` directory) when dropped.
//! Creating one needs root and `ip` (iproute2): a test that makes one is marked
//! `#[cfg_attr(not(e2e_netns), ignore = "needs root: network namespaces")]`, and
//! [`Netns::new`] fails it with the reason when it runs without them (see `require.rs`).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::require::{require_root, require_tool};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace that exists for as long as this value does.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates a namespace named `e2e-<tag>-<pid>-<n>` with loopback up; panics with the
    /// reason when that is not possible here.
    pub fn new(tag: &str) -> Netns {
        require_root("network namespaces");
        require_tool("ip", "iproute2");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("e2e-{tag}-{}-{n}", std::process::id());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap_or_else(|e| panic!("cannot run ip (iproute2): {e}"));
        assert!(
            out.status.success(),
            "ip netns add {name} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `ip ARGS` inside the namespace and panics on failure.
    pub fn ip(&self, args: &[&str]) -> Output {
        self.exec("ip", args)
    }

    /// Runs a program inside the namespace (`ip netns exec`) and panics on failure.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        let out = self
            .command(program, args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} in {} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A command that runs inside the namespace, for spawning long-lived processes.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]).args(args);
        cmd
    }

    /// Gives the namespace its own `/etc/hosts` (bind-mounted by `ip netns exec`).
    pub fn set_hosts(&self, contents: &str) {
        let dir = self.etc_dir();
        std::fs::create_dir_all(&dir).expect("create /etc/netns dir");
        std::fs::write(dir.join("hosts"), contents).expect("write netns hosts");
    }

    fn etc_dir(&self) -> PathBuf {
        PathBuf::from("/etc/netns").join(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(self.etc_dir());
    }
}
