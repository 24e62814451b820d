//! Offline compaction: the database copied record by record into a fresh one, which then
//! takes its place, so that the folder shrinks to what the records need.
//!
//! sled reuses the space that pruning frees but never gives it back to the file system: after
//! a large backlog is gone the folder keeps its high-water size. Compaction gives it back.
//! It needs the gateway stopped (sled's lock on the database says so, and this refuses to
//! run otherwise), free space for a second copy of the live records, and time to read and
//! write each of them once.
//!
//! The copy is made in a sibling folder (`<folder>.compacting`), marked complete once flushed;
//! everything in the folder that is not sled's own (the reserve file, the plugin cache) moves
//! with it; then the old folder is renamed aside and the new one into place, and the old one
//! is deleted. [`recover`] (run by every open) finishes or undoes a swap that a crash
//! interrupted, so the database is never left missing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::StoreError;

/// Written into the copy once it is complete and flushed.
const COMPLETE: &str = "compaction-complete";
/// Records per write batch of the copy.
const BATCH: usize = 1_000;

/// What a compaction did.
#[derive(Debug, Clone, Serialize)]
pub struct Compacted {
    /// sled's files before (bytes).
    pub before_bytes: u64,
    /// sled's files after (bytes).
    pub after_bytes: u64,
    /// Records copied.
    pub records: u64,
    /// Bytes of keys and values copied.
    pub record_bytes: u64,
    /// How long it took.
    #[serde(with = "millis")]
    pub took: Duration,
}

mod millis {
    pub(super) fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Whether `name` is one of sled's own files in its folder.
fn is_sleds(name: &str) -> bool {
    matches!(name, "conf" | "db" | "blobs") || name.starts_with("snap.")
}

/// Before the database is opened: finishes or undoes a swap that a crash interrupted. A
/// missing folder next to a complete copy gets the copy; next to the folder set aside, gets
/// it back. With the folder in place nothing is done (see [`clean_up`]).
pub(super) fn recover(path: &Path) -> std::io::Result<()> {
    let copy = sibling(path, ".compacting");
    let aside = sibling(path, ".before-compaction");
    if path.exists() {
        return Ok(());
    }
    if copy.join(COMPLETE).exists() {
        tracing::warn!(folder = %path.display(), "finishing an interrupted compaction");
        std::fs::rename(&copy, path)?;
        if aside.exists() {
            std::fs::remove_dir_all(&aside)?;
        }
    } else if aside.exists() {
        tracing::warn!(folder = %path.display(), "undoing an interrupted compaction");
        std::fs::rename(&aside, path)?;
    }
    Ok(())
}

/// Once the database is open (its lock held, so no compaction runs on it): removes what an
/// interrupted compaction left beside it, an unfinished copy or the folder set aside.
pub(super) fn clean_up(path: &Path) -> std::io::Result<()> {
    for leftover in [
        sibling(path, ".compacting"),
        sibling(path, ".before-compaction"),
    ] {
        if leftover.exists() {
            tracing::warn!(folder = %leftover.display(), "removing what an interrupted compaction left");
            std::fs::remove_dir_all(&leftover)?;
        }
    }
    match std::fs::remove_file(path.join(COMPLETE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn sled_bytes(path: &Path) -> u64 {
    fn walk(path: &Path) -> u64 {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => std::fs::read_dir(path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| walk(&e.path()))
                .sum(),
            Ok(m) => m.len(),
            Err(_) => 0,
        }
    }
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| is_sleds(&e.file_name().to_string_lossy()))
        .map(|e| walk(&e.path()))
        .sum()
}

/// Compacts the database in `path` (the gateway must be stopped). On failure (a disk too
/// full for the copy, most likely) the copy is removed and the database is as it was.
pub fn compact(path: &Path) -> Result<Compacted, StoreError> {
    let started = Instant::now();
    recover(path).map_err(sled::Error::Io)?;
    if !path.join("db").exists() {
        return Err(StoreError::Unavailable(format!(
            "no database in {}",
            path.display()
        )));
    }
    let before_bytes = sled_bytes(path);
    super::remove_unfinished_snapshots(path).map_err(sled::Error::Io)?;
    let old = sled::Config::new()
        .path(path)
        .open()
        .map_err(StoreError::from)
        .map_err(|e| {
            if e.is_locked() {
                StoreError::Unavailable(format!(
                    "the database in {} is in use: stop the gateway first",
                    path.display()
                ))
            } else {
                e
            }
        })?;
    // Its lock held: nothing else runs on it, and what an earlier attempt left can go.
    clean_up(path).map_err(sled::Error::Io)?;
    let copy = sibling(path, ".compacting");
    let copied = copy_into(&old, &copy);
    let (records, record_bytes) = match copied {
        Ok(counts) => counts,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&copy);
            return Err(e);
        }
    };
    // The swap while the old database is still open: a gateway started before it waits
    // for the lock, one started after it opens the complete copy.
    swap(path, &copy).map_err(sled::Error::Io)?;
    drop(old);
    let aside = sibling(path, ".before-compaction");
    std::fs::remove_dir_all(&aside).map_err(sled::Error::Io)?;
    std::fs::remove_file(path.join(COMPLETE)).map_err(sled::Error::Io)?;
    Ok(Compacted {
        before_bytes,
        after_bytes: sled_bytes(path),
        records,
        record_bytes,
        took: started.elapsed(),
    })
}

/// Copies every tree of `old` into a new database in `to`, flushes it and marks it
/// complete; returns the records and bytes copied.
fn copy_into(old: &sled::Db, to: &Path) -> Result<(u64, u64), StoreError> {
    let new = sled::Config::new().path(to).flush_every_ms(None).open()?;
    let (mut records, mut bytes) = (0u64, 0u64);
    for name in old.tree_names() {
        let source = old.open_tree(&name)?;
        let target = new.open_tree(&name)?;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for entry in source.iter() {
            let (key, value) = entry?;
            records += 1;
            bytes += (key.len() + value.len()) as u64;
            batch.insert(key, value);
            in_batch += 1;
            if in_batch == BATCH {
                target.apply_batch(std::mem::take(&mut batch))?;
                in_batch = 0;
            }
        }
        target.apply_batch(batch)?;
    }
    new.flush()?;
    drop(new);
    std::fs::write(to.join(COMPLETE), b"").map_err(sled::Error::Io)?;
    Ok((records, bytes))
}

/// Moves what is not sled's into the copy, then puts the copy in the folder's place.
fn swap(path: &Path, copy: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let name = entry.file_name();
        if !is_sleds(&name.to_string_lossy()) {
            std::fs::rename(entry.path(), copy.join(&name))?;
        }
    }
    let aside = sibling(path, ".before-compaction");
    std::fs::rename(path, &aside)?;
    std::fs::rename(copy, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn compaction_keeps_every_record_and_gives_space_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data");
        let value = vec![7u8; 4096];
        {
            let store = Store::open(&path).expect("open");
            let tree = store.db().open_tree("events").expect("tree");
            for i in 0..4_000u32 {
                tree.insert(i.to_be_bytes(), value.as_slice())
                    .expect("insert");
            }
            store.flush().expect("flush");
            for i in 0..3_900u32 {
                tree.remove(i.to_be_bytes()).expect("remove");
            }
            store
                .db()
                .open_tree("apps")
                .expect("tree")
                .insert("a", "b")
                .expect("insert");
            std::fs::write(path.join("reserve.bin"), b"kept").expect("write");
            store.flush().expect("flush");
        }
        let done = compact(&path).expect("compact");
        assert_eq!(done.records, 101, "{done:?}");
        assert!(
            done.after_bytes * 4 < done.before_bytes,
            "the folder shrank: {done:?}"
        );
        assert_eq!(
            std::fs::read(path.join("reserve.bin")).expect("kept"),
            b"kept"
        );
        assert!(!sibling(&path, ".compacting").exists());
        assert!(!sibling(&path, ".before-compaction").exists());
        let store = Store::open(&path).expect("reopen");
        let tree = store.db().open_tree("events").expect("tree");
        assert_eq!(tree.len(), 100);
        assert_eq!(
            tree.get(3_999u32.to_be_bytes()).expect("get").as_deref(),
            Some(&value[..])
        );
        assert!(
            store
                .db()
                .open_tree("apps")
                .expect("tree")
                .contains_key("a")
                .expect("get")
        );
    }

    #[test]
    fn a_database_in_use_is_not_compacted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let refused = compact(dir.path());
        assert!(
            matches!(&refused, Err(StoreError::Unavailable(m)) if m.contains("stop the gateway")),
            "{refused:?}"
        );
        drop(store);
    }

    #[test]
    fn an_interrupted_swap_is_finished_or_undone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data");
        // Crashed between the two renames, the copy complete: the copy takes the place.
        std::fs::create_dir_all(sibling(&path, ".compacting")).expect("mkdir");
        std::fs::write(sibling(&path, ".compacting").join(COMPLETE), b"").expect("mark");
        std::fs::create_dir_all(sibling(&path, ".before-compaction")).expect("mkdir");
        recover(&path).expect("recover");
        assert!(path.join(COMPLETE).exists());
        assert!(!sibling(&path, ".before-compaction").exists());
        clean_up(&path).expect("clean up");
        assert!(!path.join(COMPLETE).exists());
        // Crashed with the copy incomplete and the folder set aside: it comes back.
        std::fs::remove_dir_all(&path).expect("rm");
        std::fs::create_dir_all(sibling(&path, ".before-compaction")).expect("mkdir");
        std::fs::write(sibling(&path, ".before-compaction").join("db"), b"x").expect("db");
        recover(&path).expect("recover");
        assert!(path.join("db").exists());
    }
}
