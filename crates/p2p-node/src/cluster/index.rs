//! The leader's view of the whole cluster: which node shares which files.
//!
//! [`ClusterIndex`] is the leader's value: node id → files. [`ClusterIndex::render`] is the
//! `Peer_files.log` text and `netutil::durable::write_atomic` writes it (temp file, fsync, rename, fsync of
//! the directory), so a reader sees either the old or the new log, never half of one.
//! Each node's own list comes from its shared directory ([`crate::swarm::share`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::cluster::election::{NodeId, Term};
use crate::wire::{FileEntry, NodeFiles, MAX_FILES};

/// The node's own state in its directory: the highest election term it has seen (see
/// `node`), with its temp files. Never shared as a file.
pub const TERM_FILE: &str = ".p2p-node.term";

/// The leader's cluster index: which node holds which files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterIndex {
    pub leader: NodeId,
    pub term: Term,
    nodes: BTreeMap<NodeId, Vec<FileEntry>>,
}

impl ClusterIndex {
    pub fn new(leader: NodeId, term: Term) -> Self {
        ClusterIndex {
            leader,
            term,
            nodes: BTreeMap::new(),
        }
    }

    /// Records `node`'s list; true when it changed anything.
    pub fn set(&mut self, node: NodeId, files: Vec<FileEntry>) -> bool {
        self.nodes.insert(node, files.clone()) != Some(files)
    }

    /// Drops a node (found dead); true when it was there.
    pub fn remove(&mut self, node: NodeId) -> bool {
        self.nodes.remove(&node).is_some()
    }

    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    pub fn files_of(&self, node: NodeId) -> Option<&[FileEntry]> {
        self.nodes.get(&node).map(Vec::as_slice)
    }

    /// Every node holding a file called `name`, with its entry (sizes and hashes may differ
    /// between holders: same name, different content).
    pub fn holders(&self, name: &str) -> Vec<(NodeId, &FileEntry)> {
        self.nodes
            .iter()
            .filter_map(|(&id, files)| files.iter().find(|f| f.name == name).map(|f| (id, f)))
            .collect()
    }

    /// As sent to followers: at most [`MAX_FILES`] entries in all; true when some were cut.
    pub fn to_wire(&self) -> (Vec<NodeFiles>, bool) {
        let mut budget = MAX_FILES;
        let mut truncated = false;
        let nodes = self
            .nodes
            .iter()
            .map(|(&id, files)| {
                let take = files.len().min(budget);
                truncated |= take < files.len();
                budget -= take;
                NodeFiles {
                    id,
                    files: files[..take].to_vec(),
                }
            })
            .collect();
        (nodes, truncated)
    }

    /// Rebuilds an index received from the leader.
    pub fn from_wire(leader: NodeId, term: Term, nodes: Vec<NodeFiles>) -> Self {
        ClusterIndex {
            leader,
            term,
            nodes: nodes.into_iter().map(|n| (n.id, n.files)).collect(),
        }
    }

    /// The `Peer_files.log` text: the leader first, then the others by id.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let order = self
            .nodes
            .keys()
            .copied()
            .filter(|&id| id == self.leader)
            .chain(self.nodes.keys().copied().filter(|&id| id != self.leader));
        for id in order {
            if id == self.leader {
                let _ = writeln!(out, "Leader Node {id} files:");
            } else {
                let _ = writeln!(out, "Node {id} files:");
            }
            let files = self.nodes.get(&id).map(Vec::as_slice).unwrap_or_default();
            if files.is_empty() {
                out.push_str("  (no files)\n");
            }
            for f in files {
                let partial = if f.partial { ", partial" } else { "" };
                let _ = writeln!(
                    out,
                    "  {} ({} bytes, id {}{partial})",
                    f.name, f.size, f.hash
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::wire::ContentHash;

    fn entry(name: &str, size: u64) -> FileEntry {
        FileEntry {
            name: name.into(),
            size,
            hash: ContentHash([size as u8; 32]),
            partial: false,
        }
    }

    #[test]
    fn render_lists_the_leader_first() {
        let mut index = ClusterIndex::new(2, 4);
        assert!(index.set(3, vec![entry("c", 3)]));
        assert!(index.set(2, vec![entry("a", 1), entry("b", 2)]));
        assert!(index.set(1, vec![]));
        assert!(!index.set(1, vec![]));
        let text = index.render();
        let expected_start = "Leader Node 2 files:\n  a (1 bytes, id 0101";
        assert!(text.starts_with(expected_start), "{text}");
        let node1 = text.find("Node 1 files:\n  (no files)\n").unwrap();
        let node3 = text.find("Node 3 files:\n  c (3 bytes").unwrap();
        assert!(node1 < node3);
        assert!(index.remove(3));
        assert!(!index.render().contains("Node 3"));
        assert_eq!(index.holders("a").len(), 1);
    }

    #[test]
    fn wire_form_is_bounded() {
        let mut index = ClusterIndex::new(1, 3);
        index.set(1, vec![entry("a", 1); MAX_FILES]);
        index.set(2, vec![entry("b", 1); 5]);
        let (nodes, truncated) = index.to_wire();
        assert!(truncated);
        assert_eq!(
            nodes.iter().map(|n| n.files.len()).sum::<usize>(),
            MAX_FILES
        );
    }
}
