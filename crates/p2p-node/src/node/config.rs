//! Everything one node needs to run: its id in the cluster, where it listens, the directory
//! it shares, timings, how it serves pieces and how its links are secured. The binary
//! builds it from flags; [`crate::node::run`] runs it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cluster::config::{Auth, Cluster, ConfigError};
use crate::cluster::election::{NodeId, Timing};
use crate::swarm::serve::ServeOptions;

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
    pub serve: ServeOptions,
    /// How links are secured (see [`Auth::decide`]).
    pub auth: Auth,
}

impl NodeConfig {
    /// Checks that `id` is in the cluster.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.cluster.require(self.id).map(|_| ())
    }
}
