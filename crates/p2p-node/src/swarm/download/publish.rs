//! The last step: make the download durable and visible (fsync, move `NAME.part` to
//! `NAME` without ever replacing a file that appeared meanwhile, fsync the directory,
//! delete the record).

use std::io;
use std::path::Path;

use super::state::Download;
use super::{local_io, SwarmError};

/// Makes the download durable and visible: fsync, move `NAME.part` to `NAME` (never over a
/// file that appeared there meanwhile), fsync the directory, delete the record.
pub(super) async fn finish(
    download: &Download,
    part: &Path,
    record: &Path,
    dir: &Path,
    name: &str,
) -> Result<(), SwarmError> {
    let (file, part, record, dir, target, name) = (
        download.file.clone(),
        part.to_owned(),
        record.to_owned(),
        dir.to_owned(),
        dir.join(name),
        name.to_owned(),
    );
    let done = tokio::task::spawn_blocking(move || {
        file.sync_all().map_err(|e| local_io(&part, e))?;
        publish(&part, &target).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => SwarmError::Conflict(name),
            _ => local_io(&target, e),
        })?;
        netutil::durable::sync_dir(&dir).map_err(|e| local_io(&dir, e))?;
        let _ = std::fs::remove_file(&record);
        Ok(())
    })
    .await;
    done.unwrap_or(Err(SwarmError::Cancelled))
}

/// Moves the finished `part` to `target` unless something took that name during the
/// download (a file the user put there must not be overwritten, and `rename` would): a hard
/// link fails when the name exists. Where hard links are not supported, renames after
/// checking the name is still free.
fn publish(part: &Path, target: &Path) -> io::Result<()> {
    match std::fs::hard_link(part, target) {
        Ok(()) => std::fs::remove_file(part),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) if std::fs::symlink_metadata(target).is_err() => std::fs::rename(part, target),
        Err(_) => Err(io::ErrorKind::AlreadyExists.into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_finished_download_never_replaces_a_file_that_appeared_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let (part, target) = (dir.path().join("f.part"), dir.path().join("f"));
        std::fs::write(&part, b"downloaded").unwrap();
        std::fs::write(&target, b"the user's own").unwrap();
        let err = publish(&part, &target).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&target).unwrap(), b"the user's own");
        assert_eq!(
            std::fs::read(&part).unwrap(),
            b"downloaded",
            "kept to resume"
        );
        std::fs::remove_file(&target).unwrap();
        publish(&part, &target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"downloaded");
        assert!(!part.exists());
    }
}
