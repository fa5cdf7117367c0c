//! The cluster: which node ids exist and where each one listens.
//!
//! The cluster is the full list of nodes, this one included. It comes from a TOML file
//! (`--cluster`), from repeated `--peer ID=HOST:PORT` flags, or, with neither, the built-in
//! default of ids 1, 2, 3 at 127.0.0.1:9001..9003, so `p2p-node --id 1` (2, 3) in three
//! terminals just works. Hosts may be IPv4 or IPv6 literals (`[::1]:9001`) or names.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cluster::election::{NodeId, Timing};

/// Why the configuration is unusable. Each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "node id {id} is not in the cluster; configured ids: {}",
        list_ids(configured)
    )]
    UnknownId { id: NodeId, configured: Vec<NodeId> },
    #[error("node id {0} is listed twice in the cluster")]
    DuplicateId(NodeId),
    #[error("invalid --peer {input:?}: {reason} (expected ID=HOST:PORT, e.g. 2=127.0.0.1:9002 or 3=[::1]:9003)")]
    BadPeer { input: String, reason: String },
    #[error("cannot read cluster file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid cluster file {path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    #[error("the cluster is empty")]
    Empty,
}

fn list_ids(ids: &[NodeId]) -> String {
    ids.iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where one node listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddr {
    pub id: NodeId,
    /// A host name or an IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Every node of the cluster, by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    nodes: BTreeMap<NodeId, NodeAddr>,
}

/// The TOML form: `[[node]]` tables with `id` and `addr`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    node: Vec<NodeEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeEntry {
    id: NodeId,
    addr: String,
}

impl Cluster {
    /// Ids 1, 2, 3 at 127.0.0.1:9001, 9002, 9003.
    pub fn default_cluster() -> Cluster {
        let nodes = (1..=3)
            .map(|id| {
                let addr = NodeAddr {
                    id,
                    host: "127.0.0.1".into(),
                    port: 9000 + id as u16,
                };
                (id, addr)
            })
            .collect();
        Cluster { nodes }
    }

    pub fn from_nodes(list: Vec<NodeAddr>) -> Result<Cluster, ConfigError> {
        let mut nodes = BTreeMap::new();
        for node in list {
            let id = node.id;
            if nodes.insert(id, node).is_some() {
                return Err(ConfigError::DuplicateId(id));
            }
        }
        if nodes.is_empty() {
            return Err(ConfigError::Empty);
        }
        Ok(Cluster { nodes })
    }

    /// Parses repeated `--peer ID=HOST:PORT` values.
    pub fn from_peers(peers: &[String]) -> Result<Cluster, ConfigError> {
        let list = peers
            .iter()
            .map(|p| parse_peer(p))
            .collect::<Result<Vec<_>, _>>()?;
        Cluster::from_nodes(list)
    }

    /// Parses a cluster file:
    ///
    /// ```toml
    /// [[node]]
    /// id = 1
    /// addr = "127.0.0.1:9001"
    /// ```
    pub fn from_toml(text: &str, path: &Path) -> Result<Cluster, ConfigError> {
        let bad = |reason: String| ConfigError::BadFile {
            path: path.to_owned(),
            reason,
        };
        let file: ClusterFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let list = file
            .node
            .into_iter()
            .map(|entry| {
                let (host, port) = split_host_port(&entry.addr)
                    .map_err(|reason| bad(format!("node {}: {reason}", entry.id)))?;
                Ok(NodeAddr {
                    id: entry.id,
                    host,
                    port,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Cluster::from_nodes(list)
    }

    pub fn load(path: &Path) -> Result<Cluster, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        Cluster::from_toml(&text, path)
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.nodes.contains_key(&id)
    }

    pub fn get(&self, id: NodeId) -> Option<&NodeAddr> {
        self.nodes.get(&id)
    }

    /// This node's entry, or the error listing the configured ids.
    pub fn require(&self, id: NodeId) -> Result<&NodeAddr, ConfigError> {
        self.nodes.get(&id).ok_or_else(|| ConfigError::UnknownId {
            id,
            configured: self.ids(),
        })
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// Parses `ID=HOST:PORT`.
pub fn parse_peer(input: &str) -> Result<NodeAddr, ConfigError> {
    let bad = |reason: &str| ConfigError::BadPeer {
        input: input.to_owned(),
        reason: reason.to_owned(),
    };
    let (id, addr) = input.split_once('=').ok_or_else(|| bad("no '='"))?;
    let id: NodeId = id
        .trim()
        .parse()
        .map_err(|_| bad("the id is not a non-negative integer"))?;
    let (host, port) = split_host_port(addr).map_err(|reason| bad(&reason))?;
    Ok(NodeAddr { id, host, port })
}

/// Splits `host:port`, `[v6]:port` or `v4:port`.
fn split_host_port(addr: &str) -> Result<(String, u16), String> {
    let addr = addr.trim();
    if let Ok(sock) = addr.parse::<SocketAddr>() {
        return Ok((sock.ip().to_string(), sock.port()));
    }
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| "no port".to_owned())?;
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(':') && host.parse::<IpAddr>().is_err() {
        return Err(format!("bad host {host:?}"));
    }
    Ok((host.to_owned(), port))
}

/// Everything a node needs to run.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: NodeId,
    pub cluster: Cluster,
    /// Where to listen; None means this node's cluster address.
    pub listen: Option<SocketAddr>,
    /// The directory whose files this node shares.
    pub dir: PathBuf,
    /// Where the leader writes the cluster index.
    pub index_log: PathBuf,
    pub timing: Timing,
    /// How often the directory is rescanned for changes.
    pub rescan: Duration,
    /// How pieces are served to downloaders.
    pub serve: crate::swarm::serve::ServeOptions,
}

impl NodeConfig {
    /// Checks that `id` is in the cluster.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.cluster.require(self.id).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn default_cluster_is_three_local_nodes() {
        let c = Cluster::default_cluster();
        assert_eq!(c.ids(), vec![1, 2, 3]);
        assert_eq!(c.get(2).unwrap().to_string(), "127.0.0.1:9002");
    }

    #[test]
    fn peers_parse_v4_v6_and_names() {
        let c = Cluster::from_peers(&[
            "1=127.0.0.1:9001".into(),
            "2=[::1]:9002".into(),
            "3=node3.local:9003".into(),
        ])
        .unwrap();
        assert_eq!(c.get(1).unwrap().host, "127.0.0.1");
        assert_eq!(c.get(2).unwrap().host, "::1");
        assert_eq!(c.get(2).unwrap().to_string(), "[::1]:9002");
        assert_eq!(c.get(3).unwrap().host, "node3.local");
        assert_eq!(c.get(3).unwrap().port, 9003);
    }

    #[test]
    fn bad_peers_say_why() {
        for bad in ["1", "x=127.0.0.1:1", "1=127.0.0.1", "1=host:99999", "1=:5"] {
            let err = Cluster::from_peers(&[bad.into()]).unwrap_err();
            assert!(err.to_string().contains("ID=HOST:PORT"), "{bad}: {err}");
        }
        let err = Cluster::from_peers(&["1=a:1".into(), "1=b:2".into()]).unwrap_err();
        assert!(matches!(err, ConfigError::DuplicateId(1)));
    }

    #[test]
    fn unknown_id_lists_the_configured_ones() {
        let err = Cluster::default_cluster().require(7).unwrap_err();
        assert_eq!(
            err.to_string(),
            "node id 7 is not in the cluster; configured ids: 1, 2, 3"
        );
    }

    #[test]
    fn toml_file_parses() {
        let text = "[[node]]\nid = 1\naddr = \"127.0.0.1:9001\"\n[[node]]\nid = 5\naddr = \"[::1]:9005\"\n";
        let c = Cluster::from_toml(text, Path::new("c.toml")).unwrap();
        assert_eq!(c.ids(), vec![1, 5]);
        let err = Cluster::from_toml("[[node]]\nid = 1\n", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("c.toml"), "{err}");
    }
}
