//! `p2p-node init-cluster`: a cluster with keys in one command, so that securing a cluster
//! is no harder than the unauthenticated loopback demo.
//!
//! Writes `DIR/nodeK.key` (node K's secret key, mode 0600) for K = 1..N and
//! `DIR/cluster.toml` listing every node's id, address (`HOST:BASE_PORT+K-1`) and public
//! key, and returns the commands that start the nodes. Nothing existing is overwritten: a
//! secret key that is replaced is an identity lost.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use netutil::noise::{KeyError, SecretKey};

use crate::cluster::config::{Cluster, ConfigError, NodeAddr};
use crate::wire::NodeId;

/// Why no cluster was written.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("--nodes must be at least 1")]
    NoNodes,
    #[error("--base-port {base} with --nodes {nodes} runs past port 65535")]
    Ports { base: u16, nodes: u32 },
    #[error("--base-port must not be 0: every node needs a fixed port others can dial")]
    PortZero,
    #[error("{0} already exists; not overwriting it (remove it, or choose another directory)")]
    Exists(PathBuf),
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("--host: {0}")]
    Config(#[from] ConfigError),
}

/// What [`init_cluster`] wrote.
#[derive(Debug)]
pub struct InitCluster {
    pub cluster_file: PathBuf,
    /// Node id and its secret key file.
    pub keys: Vec<(NodeId, PathBuf)>,
}

impl InitCluster {
    /// The command that starts each node, one per line.
    pub fn commands(&self) -> String {
        let mut out = String::new();
        for (id, key) in &self.keys {
            let _ = writeln!(
                out,
                "p2p-node --id {id} --cluster {} --key {}",
                self.cluster_file.display(),
                key.display()
            );
        }
        out
    }
}

/// Writes the keys and `cluster.toml` of a cluster of `nodes` nodes on `host`.
pub fn init_cluster(
    dir: &Path,
    nodes: u32,
    base_port: u16,
    host: &str,
) -> Result<InitCluster, InitError> {
    if nodes == 0 {
        return Err(InitError::NoNodes);
    }
    if base_port == 0 {
        return Err(InitError::PortZero);
    }
    if u32::from(base_port) + nodes - 1 > u32::from(u16::MAX) {
        return Err(InitError::Ports {
            base: base_port,
            nodes,
        });
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let cluster_file = dir.join("cluster.toml");
    let key_files: Vec<(NodeId, PathBuf)> = (1..=nodes)
        .map(|id| (id as NodeId, dir.join(format!("node{id}.key"))))
        .collect();
    for path in std::iter::once(&cluster_file).chain(key_files.iter().map(|(_, p)| p)) {
        if path.exists() {
            return Err(InitError::Exists(path.clone()));
        }
    }
    let mut list = Vec::new();
    let mut keys = Vec::new();
    for (offset, (id, _)) in key_files.iter().enumerate() {
        let key = SecretKey::generate()?;
        list.push(NodeAddr {
            id: *id,
            host: host.to_owned(),
            port: base_port + offset as u16,
            public_key: Some(key.public()),
        });
        keys.push(key);
    }
    // Checks the host the way the nodes will read it back.
    let text = render(&list);
    Cluster::from_toml(&text, &cluster_file)?;
    std::fs::create_dir_all(dir).map_err(|source| InitError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    for (key, (_, path)) in keys.iter().zip(&key_files) {
        key.write_new(path)?;
    }
    netutil::durable::write_atomic(&cluster_file, text.as_bytes()).map_err(|source| {
        InitError::Write {
            path: cluster_file.clone(),
            source,
        }
    })?;
    Ok(InitCluster {
        cluster_file,
        keys: key_files,
    })
}

/// The TOML text of a cluster file.
fn render(list: &[NodeAddr]) -> String {
    let mut out = String::from(
        "# Written by `p2p-node init-cluster`. Only nodes proving one of these keys take part;\n\
         # nodeK.key beside this file is node K's secret key: keep it on node K's host only.\n",
    );
    for node in list {
        let addr = match node.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{}]:{}", node.host, node.port),
            _ => format!("{}:{}", node.host, node.port),
        };
        let _ = write!(out, "\n[[node]]\nid = {}\naddr = \"{addr}\"\n", node.id);
        if let Some(key) = node.public_key {
            let _ = writeln!(out, "public_key = \"{key}\"");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("p2p-init-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn writes_keys_and_a_cluster_file_that_loads_back() {
        let dir = temp_dir("ok");
        let made = init_cluster(&dir, 3, 9101, "::1").unwrap();
        let cluster = Cluster::load(&made.cluster_file).unwrap();
        assert_eq!(cluster.ids(), vec![1, 2, 3]);
        assert_eq!(cluster.get(3).unwrap().to_string(), "[::1]:9103");
        for (id, path) in &made.keys {
            let key = SecretKey::read_file(path).unwrap();
            assert_eq!(cluster.get(*id).unwrap().public_key, Some(key.public()));
        }
        let commands = made.commands();
        assert_eq!(commands.lines().count(), 3);
        assert!(commands.contains(&format!(
            "p2p-node --id 2 --cluster {} --key {}",
            dir.join("cluster.toml").display(),
            dir.join("node2.key").display()
        )));
        let again = init_cluster(&dir, 3, 9101, "::1").unwrap_err();
        assert!(matches!(again, InitError::Exists(_)), "{again}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_arguments_write_nothing() {
        let dir = temp_dir("bad");
        assert!(matches!(
            init_cluster(&dir, 0, 9001, "h"),
            Err(InitError::NoNodes)
        ));
        assert!(matches!(
            init_cluster(&dir, 3, 65534, "h"),
            Err(InitError::Ports { .. })
        ));
        assert!(matches!(
            init_cluster(&dir, 3, 0, "h"),
            Err(InitError::PortZero)
        ));
        assert!(init_cluster(&dir, 2, 9001, "a:b").is_err());
        assert!(!dir.exists());
    }
}
