//! The cluster: which node ids exist and where each one listens.
//!
//! The cluster is the full list of nodes, this one included. It comes from a TOML file
//! (`--cluster`), from repeated `--peer ID=HOST:PORT` flags, or, with neither, the built-in
//! default of ids 1, 2, 3 at 127.0.0.1:9001..9003, so `p2p-node --id 1` (2, 3) in three
//! terminals just works. Hosts may be IPv4 or IPv6 literals (`[::1]:9001`) or names.
//!
//! Each node may carry its public key (`public_key = "..."`, `--peer ID=HOST:PORT=KEY`):
//! then only nodes proving a listed key take part ([`Auth::Keys`], see
//! [`crate::cluster::links`]). A cluster without keys runs unauthenticated only when every
//! address is a loopback address, as Redis's protected mode does; [`Auth::decide`]
//! decides, and refuses anything in between with a message saying how to make keys.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use netutil::noise::{PublicKey, SecretKey};
use serde::Deserialize;

use crate::cluster::election::NodeId;

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
    #[error("invalid --peer {input:?}: {reason} (expected ID=HOST:PORT or ID=HOST:PORT=PUBLIC_KEY, e.g. 2=127.0.0.1:9002 or 3=[::1]:9003)")]
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
    #[error("node {id}: bad public_key: {reason}")]
    BadKey { id: NodeId, reason: String },
    #[error("node {id} and node {other} list the same public key; every node needs its own")]
    SharedKey { id: NodeId, other: NodeId },
    #[error("{} no public key while others do: list every node's key, or none (loopback only); `p2p-node init-cluster DIR --nodes N` writes a cluster with keys", describe_ids(.0))]
    MissingKeys(Vec<NodeId>),
    #[error("{what} is not a loopback address, and the cluster lists no keys: anyone who can reach it could join. Make keys with `p2p-node init-cluster DIR --nodes N --host HOST` (or `p2p-node keygen FILE` per node), list each node's public_key and start each node with --key FILE")]
    KeysRequired { what: String },
    #[error("the cluster lists public keys: start this node with --key FILE, its secret key (`p2p-node keygen FILE` or `p2p-node init-cluster` make one)")]
    NoKey,
    #[error("--key was given but the cluster lists no public keys: add public_key = \"...\" to every [[node]] (or =KEY to every --peer)")]
    KeyWithoutCluster,
    #[error("the key in {path} (public key {actual}) is not node {id}'s listed key {expected}")]
    WrongKey {
        id: NodeId,
        path: PathBuf,
        actual: PublicKey,
        expected: PublicKey,
    },
}

fn describe_ids(ids: &[NodeId]) -> String {
    match ids {
        [one] => format!("node {one} has"),
        _ => format!("nodes {} have", list_ids(ids)),
    }
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
    /// The key this node proves in the handshake; None in an unauthenticated cluster.
    pub public_key: Option<PublicKey>,
}

impl NodeAddr {
    /// True when the host is a loopback address (`127.0.0.0/8`, `::1`) or `localhost`.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.host)
    }
}

fn is_loopback_host(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
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
    #[serde(default)]
    public_key: Option<String>,
}

/// How links are secured, decided once at start by [`Auth::decide`].
#[derive(Debug, Clone)]
pub enum Auth {
    /// No keys: plain TCP, anyone who reaches the port may take part. Loopback only.
    Open,
    /// Every link runs the Noise handshake with this node's secret key, and only nodes
    /// proving a listed key take part.
    Keys(Arc<SecretKey>),
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
                    public_key: None,
                };
                (id, addr)
            })
            .collect();
        Cluster { nodes }
    }

    pub fn from_nodes(list: Vec<NodeAddr>) -> Result<Cluster, ConfigError> {
        let mut nodes = BTreeMap::new();
        let mut keys = BTreeMap::new();
        for node in list {
            let id = node.id;
            if let Some(key) = node.public_key {
                if let Some(other) = keys.insert(key, id) {
                    return Err(ConfigError::SharedKey { id, other });
                }
            }
            if nodes.insert(id, node).is_some() {
                return Err(ConfigError::DuplicateId(id));
            }
        }
        if nodes.is_empty() {
            return Err(ConfigError::Empty);
        }
        let missing: Vec<NodeId> = nodes
            .values()
            .filter(|n| n.public_key.is_none())
            .map(|n| n.id)
            .collect();
        if !keys.is_empty() && !missing.is_empty() {
            return Err(ConfigError::MissingKeys(missing));
        }
        Ok(Cluster { nodes })
    }

    /// True when every node lists its public key (checked at construction: all or none).
    pub fn has_keys(&self) -> bool {
        self.nodes.values().all(|n| n.public_key.is_some())
    }

    /// The node whose listed key is `key`.
    pub fn member_with_key(&self, key: &PublicKey) -> Option<NodeId> {
        self.nodes
            .values()
            .find(|n| n.public_key.as_ref() == Some(key))
            .map(|n| n.id)
    }

    /// Parses repeated `--peer ID=HOST:PORT[=PUBLIC_KEY]` values.
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
    /// public_key = "..."   # optional: all nodes or none
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
                let public_key = entry
                    .public_key
                    .map(|text| parse_key(entry.id, &text))
                    .transpose()?;
                Ok(NodeAddr {
                    id: entry.id,
                    host,
                    port,
                    public_key,
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

fn parse_key(id: NodeId, text: &str) -> Result<PublicKey, ConfigError> {
    text.parse()
        .map_err(|e: netutil::noise::KeyError| ConfigError::BadKey {
            id,
            reason: e.to_string(),
        })
}

/// Parses `ID=HOST:PORT` or `ID=HOST:PORT=PUBLIC_KEY`.
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
    // A base64 key may end in '=', but a host and port never contain one.
    let (addr, key) = match addr.split_once('=') {
        Some((addr, key)) => (addr, Some(key)),
        None => (addr, None),
    };
    let (host, port) = split_host_port(addr).map_err(|reason| bad(&reason))?;
    let public_key = key
        .map(|k| {
            k.parse()
                .map_err(|_| bad("the public key is not 44 characters of base64"))
        })
        .transpose()?;
    Ok(NodeAddr {
        id,
        host,
        port,
        public_key,
    })
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

impl Auth {
    /// Decides how node `id` secures its links, from the cluster, the `--listen` address
    /// and the secret key read from `key_path`:
    /// * the cluster lists keys: the key must be given and be this node's listed key;
    /// * no keys anywhere: allowed only when every address (and `listen`) is loopback;
    /// * a key without listed keys, or keys for some nodes only: refused.
    pub fn decide(
        cluster: &Cluster,
        id: NodeId,
        listen: Option<SocketAddr>,
        key: Option<(&Path, SecretKey)>,
    ) -> Result<Auth, ConfigError> {
        let own = cluster.require(id)?;
        match (key, own.public_key) {
            (Some((path, key)), Some(expected)) => {
                if key.public() != expected {
                    return Err(ConfigError::WrongKey {
                        id,
                        path: path.to_owned(),
                        actual: key.public(),
                        expected,
                    });
                }
                Ok(Auth::Keys(Arc::new(key)))
            }
            (None, Some(_)) => Err(ConfigError::NoKey),
            (Some(_), None) => Err(ConfigError::KeyWithoutCluster),
            (None, None) => {
                if let Some(node) = cluster.nodes.values().find(|n| !n.is_loopback()) {
                    return Err(ConfigError::KeysRequired {
                        what: format!("node {}'s address {node}", node.id),
                    });
                }
                if let Some(listen) = listen.filter(|a| !is_loopback_host(&a.ip().to_string())) {
                    return Err(ConfigError::KeysRequired {
                        what: format!("--listen {listen}"),
                    });
                }
                Ok(Auth::Open)
            }
        }
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

    fn key() -> SecretKey {
        SecretKey::generate().unwrap()
    }

    fn keyed(hosts: &[&str], keys: &[&SecretKey]) -> Cluster {
        let peers: Vec<String> = hosts
            .iter()
            .zip(keys)
            .enumerate()
            .map(|(i, (host, key))| format!("{}={host}:{}={}", i + 1, 9001 + i, key.public()))
            .collect();
        Cluster::from_peers(&peers).unwrap()
    }

    #[test]
    fn peers_and_toml_carry_public_keys() {
        let (a, b) = (key(), key());
        let c = keyed(&["127.0.0.1", "[::1]"], &[&a, &b]);
        assert!(c.has_keys());
        assert_eq!(c.get(2).unwrap().public_key, Some(b.public()));
        assert_eq!(c.get(2).unwrap().port, 9002);
        assert_eq!(c.member_with_key(&a.public()), Some(1));
        assert_eq!(c.member_with_key(&key().public()), None);
        let text = format!(
            "[[node]]\nid = 1\naddr = \"10.0.0.1:9001\"\npublic_key = \"{}\"\n",
            a.public()
        );
        let c = Cluster::from_toml(&text, Path::new("c.toml")).unwrap();
        assert_eq!(c.get(1).unwrap().public_key, Some(a.public()));
        let err = Cluster::from_toml(
            "[[node]]\nid = 1\naddr = \"h:1\"\npublic_key = \"xyz\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("node 1: bad public_key"), "{err}");
        let err = Cluster::from_peers(&["1=h:1=short".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("base64"), "{err}");
    }

    #[test]
    fn keys_are_all_or_nothing_and_each_node_has_its_own() {
        let a = key();
        let err = Cluster::from_peers(&[
            format!("1=h:1={}", a.public()),
            "2=h:2".into(),
            "3=h:3".into(),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string().split(':').next().unwrap(),
            "nodes 2, 3 have no public key while others do"
        );
        let err = Cluster::from_peers(&[
            format!("1=h:1={}", a.public()),
            format!("2=h:2={}", a.public()),
        ])
        .unwrap_err();
        assert!(
            matches!(err, ConfigError::SharedKey { id: 2, other: 1 }),
            "{err}"
        );
    }

    #[test]
    fn a_cluster_without_keys_runs_open_on_loopback_only() {
        let local = Cluster::from_peers(&[
            "1=127.0.0.1:1".into(),
            "2=[::1]:2".into(),
            "3=localhost:3".into(),
        ])
        .unwrap();
        assert!(matches!(
            Auth::decide(&local, 1, None, None),
            Ok(Auth::Open)
        ));
        let wide: SocketAddr = "0.0.0.0:9001".parse().unwrap();
        let err = Auth::decide(&local, 1, Some(wide), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--listen 0.0.0.0:9001 is not a loopback address"),
            "{err}"
        );
        for remote in ["10.0.0.2:2", "node2.lan:2", "[2001:db8::1]:2"] {
            let c = Cluster::from_peers(&["1=127.0.0.1:1".into(), format!("2={remote}")]).unwrap();
            let err = Auth::decide(&c, 1, None, None).unwrap_err().to_string();
            assert!(
                err.contains("node 2's address") && err.contains("p2p-node init-cluster"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_keyed_cluster_needs_this_nodes_own_key() {
        let (a, b) = (key(), key());
        let c = keyed(&["10.0.0.1", "10.0.0.2"], &[&a, &b]);
        let path = Path::new("node1.key");
        assert!(matches!(
            Auth::decide(&c, 1, None, Some((path, a.clone()))),
            Ok(Auth::Keys(_))
        ));
        assert!(matches!(
            Auth::decide(&c, 1, None, None),
            Err(ConfigError::NoKey)
        ));
        let err = Auth::decide(&c, 1, None, Some((path, b.clone()))).unwrap_err();
        assert!(matches!(err, ConfigError::WrongKey { id: 1, .. }), "{err}");
        let open = Cluster::default_cluster();
        let err = Auth::decide(&open, 1, None, Some((path, a))).unwrap_err();
        assert!(matches!(err, ConfigError::KeyWithoutCluster), "{err}");
    }
}
