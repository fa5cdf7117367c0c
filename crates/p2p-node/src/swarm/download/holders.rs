//! Step 1 of a download: find the holders. Ask the leader for the cluster index, pick the
//! content of NAME that most holders have, and refuse to download what is already here.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::oneshot;

use super::{SwarmContext, SwarmError, SwarmEvent};
use crate::cluster::index::ClusterIndex;
use crate::wire::{ContentHash, NodeId};

/// How long to wait for the leader's index.
const INDEX_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn ask_index(ctx: &SwarmContext) -> Result<ClusterIndex, SwarmError> {
    let (tx, rx) = oneshot::channel();
    ctx.events
        .send(SwarmEvent::Index(tx))
        .await
        .map_err(|_| SwarmError::Cancelled)?;
    match tokio::time::timeout(INDEX_TIMEOUT, rx).await {
        Ok(Ok(result)) => result.map_err(SwarmError::Index),
        Ok(Err(_)) => Err(SwarmError::Cancelled),
        Err(_) => Err(SwarmError::Index(format!(
            "no answer from the leader within {INDEX_TIMEOUT:?}"
        ))),
    }
}

/// What to download and from whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub size: u64,
    pub hash: ContentHash,
    /// Holders other than this node, with whether each is partial.
    pub holders: Vec<(NodeId, bool)>,
}

/// Picks the content of `name` that most other nodes hold (complete holders count first),
/// and lists its holders.
pub fn choose(index: &ClusterIndex, me: NodeId, name: &str) -> Result<Target, SwarmError> {
    let all = index.holders(name);
    if all.is_empty() {
        return Err(SwarmError::NotIndexed(name.to_owned()));
    }
    let mut by_content: BTreeMap<(ContentHash, u64), Vec<(NodeId, bool)>> = BTreeMap::new();
    for (id, entry) in all.iter().filter(|(id, _)| *id != me) {
        by_content
            .entry((entry.hash, entry.size))
            .or_default()
            .push((*id, entry.partial));
    }
    let best = by_content.into_iter().max_by_key(|(_, holders)| {
        let complete = holders.iter().filter(|(_, partial)| !partial).count();
        (complete, holders.len())
    });
    match best {
        Some(((hash, size), holders)) => Ok(Target {
            size,
            hash,
            holders,
        }),
        None => Err(SwarmError::AlreadyHere(name.to_owned())),
    }
}

/// Refuses to download what is already here, or over a different local file of that name.
pub(super) fn check_local(
    ctx: &SwarmContext,
    name: &str,
    target: &Target,
) -> Result<(), SwarmError> {
    if let Some(s) = ctx.library.lookup(&target.hash) {
        if s.have.is_none() && s.path.exists() {
            return Err(SwarmError::AlreadyHere(s.name));
        }
    }
    if std::fs::symlink_metadata(ctx.dir.join(name)).is_ok() {
        return Err(SwarmError::Conflict(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::wire::{FileEntry, NodeFiles};

    fn entry(name: &str, hash: u8, partial: bool) -> FileEntry {
        FileEntry {
            name: name.into(),
            size: 10,
            hash: ContentHash([hash; 32]),
            partial,
        }
    }

    #[test]
    fn the_content_most_nodes_hold_is_chosen() {
        let nodes = vec![
            NodeFiles {
                id: 1,
                files: vec![entry("f", 1, false)],
            },
            NodeFiles {
                id: 2,
                files: vec![entry("f", 2, false)],
            },
            NodeFiles {
                id: 3,
                files: vec![entry("f", 2, true)],
            },
            NodeFiles {
                id: 4,
                files: vec![entry("g", 2, false)],
            },
        ];
        let index = ClusterIndex::from_wire(1, 1, nodes);
        let target = choose(&index, 9, "f").unwrap();
        assert_eq!(target.hash, ContentHash([2; 32]));
        assert_eq!(target.holders, vec![(2, false), (3, true)]);
        assert!(matches!(
            choose(&index, 9, "nope"),
            Err(SwarmError::NotIndexed(_))
        ));
        let only_me = ClusterIndex::from_wire(
            1,
            1,
            vec![NodeFiles {
                id: 1,
                files: vec![entry("f", 1, false)],
            }],
        );
        assert!(matches!(
            choose(&only_me, 1, "f"),
            Err(SwarmError::AlreadyHere(_))
        ));
    }
}
