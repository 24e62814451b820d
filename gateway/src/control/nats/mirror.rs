//! The in-memory copy of a watched bucket, and the task that keeps it following the bucket.
//!
//! Each row remembers the revision it was seen at, so the same change arriving twice (from
//! the initial load and from the watch, or as the echo of this instance's own write) is
//! applied once, and an older one never overwrites a newer one. A watch that fails (NATS
//! restarting, a connection lost) is opened again and the whole bucket read again, keys gone
//! meanwhile included.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::shared;
use crate::store::StoreError;

/// Pause before a failed watch is opened again.
const RETRY: Duration = Duration::from_secs(1);

/// How long each step of reading a bucket (its last revision, opening the watch and the key
/// listing, each key, each entry) may wait for an answer before the read is given up and
/// tried again: while a NATS node restarts, the consumer a read opens can land on it and stall
/// without an error, and a follower stuck in it would never hear of a change again. A limit
/// per step, not per read: a large bucket that keeps answering is read to its end.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Entries of a bucket asked for at once while it is read whole.
const READS_AT_ONCE: usize = 32;

/// How often the bucket's last revision is compared with what the watch brought. A watch can
/// fall silent without an error (its consumer lost with a NATS node that went down): a bucket
/// ahead of the mirror on two looks in a row is read again.
const CHECK: Duration = Duration::from_secs(1);

/// The rows of one bucket.
#[derive(Debug)]
pub(crate) struct Table<T> {
    rows: BTreeMap<String, Row<T>>,
    /// The highest revision of the bucket known to be applied: every change up to it is in
    /// `rows`.
    high: u64,
    /// The bucket's last revision when it was last read whole: a bucket ahead of it is read
    /// again (a watch can skip a change while a NATS node restarts, and still bring later
    /// ones, so the watch's own mark is not trusted for that).
    loaded: u64,
}

#[derive(Debug)]
struct Row<T> {
    revision: u64,
    bytes: Option<Bytes>,
    value: Option<T>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            rows: BTreeMap::new(),
            high: 0,
            loaded: 0,
        }
    }
}

impl<T: DeserializeOwned> Table<T> {
    /// Applies what the bucket holds for `key` at `revision` (`None`: deleted); whether the
    /// visible value changed.
    pub(crate) fn apply(
        &mut self,
        bucket: &str,
        key: &str,
        revision: u64,
        bytes: Option<Bytes>,
    ) -> bool {
        if self.rows.get(key).is_some_and(|r| r.revision >= revision) {
            return false;
        }
        let value = bytes.as_ref().and_then(|b| match serde_json::from_slice(b) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(bucket, key, error = %e, "an unreadable record in a shared bucket is ignored");
                None
            }
        });
        let bytes = value.as_ref().and(bytes);
        let before = self.rows.get(key).and_then(|r| r.bytes.clone());
        let changed = before != bytes;
        self.rows.insert(
            key.to_owned(),
            Row {
                revision,
                bytes,
                value,
            },
        );
        changed
    }

    /// Forgets `key`'s value after this instance deleted it (the revision of the delete is
    /// not known; the watch brings it, and finds nothing to change).
    pub(crate) fn forget(&mut self, key: &str) {
        if let Some(row) = self.rows.get_mut(key) {
            row.bytes = None;
            row.value = None;
        }
    }

    /// The keys whose values are gone from the bucket, by a whole read that found `found`
    /// after the bucket's last revision was `before`. Only rows as old as `before` can be
    /// judged by that read: a newer row (this instance's own write, or one a watch brought
    /// meanwhile) may postdate it, and forgetting it would also keep that revision from being
    /// applied again when the watch brings it.
    fn gone(&self, found: &HashSet<String>, before: u64) -> Vec<String> {
        self.rows
            .iter()
            .filter(|(k, r)| r.value.is_some() && r.revision <= before && !found.contains(*k))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Every change up to `revision` is applied.
    pub(crate) fn reached(&mut self, revision: u64) {
        self.high = self.high.max(revision);
    }

    /// The highest revision known to be applied.
    pub(crate) fn high(&self) -> u64 {
        self.high
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&T> {
        self.rows.get(key).and_then(|r| r.value.as_ref())
    }

    /// Every present row whose key starts with `prefix`, in key order.
    pub(crate) fn prefixed<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a T)> {
        self.rows
            .range(prefix.to_owned()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .filter_map(|(k, r)| r.value.as_ref().map(|v| (k.as_str(), v)))
    }
}

/// A table shared between the plane and its follower task.
pub(crate) type Shared<T> = Arc<RwLock<Table<T>>>;

fn write<T>(table: &Shared<T>) -> std::sync::RwLockWriteGuard<'_, Table<T>> {
    table.write().unwrap_or_else(|p| p.into_inner())
}

/// Reads `table` (a poisoned lock still holds consistent rows: every write is one insert).
pub(crate) fn read<T>(table: &Shared<T>) -> std::sync::RwLockReadGuard<'_, Table<T>> {
    table.read().unwrap_or_else(|p| p.into_inner())
}

/// Opens a watch on `bucket`, then reads every key into `table`; the watch continues from
/// there (changes made during the read come through both, and are applied once). Calls
/// `changed` for each key whose value changed, keys gone since the last read included.
pub(crate) async fn load<T: DeserializeOwned>(
    bucket: &kv::Store,
    table: &Shared<T>,
    changed: &(dyn Fn(&str) + Send + Sync),
) -> Result<kv::Watch, StoreError> {
    let name = bucket.name.clone();
    let before = step(&name, last_revision(bucket)).await??;
    let watch = step(&name, bucket.watch_all())
        .await?
        .map_err(|e| shared(&name, e))?;
    // A key can come twice when the listing takes several pages and the bucket changes.
    let mut listed = keys(bucket, usize::MAX).await?;
    listed.sort_unstable();
    listed.dedup();
    let count = listed.len();
    // Each key's entry from the leader, several asked at once: the listing names deleted keys
    // too, so a bucket that saw many removals has many more keys than values.
    let mut entries = futures_util::stream::iter(listed)
        .map(|key| step(&name, bucket.entry(key)))
        .buffered(READS_AT_ONCE);
    let mut found = HashSet::new();
    while let Some(entry) = entries.next().await {
        let Some(entry) = entry?.map_err(|e| shared(&name, e))? else {
            // Listed, then gone before its entry was read (its last message removed): as
            // absent as a key the listing did not name.
            continue;
        };
        found.insert(entry.key.clone());
        if apply(&name, table, &entry) {
            changed(&entry.key);
        }
    }
    let gone = read(table).gone(&found, before);
    for key in gone {
        write(table).forget(&key);
        changed(&key);
    }
    // Everything up to the revision read first is in the table now (deletes of keys never
    // seen included, which the read of the keys does not list).
    let mut t = write(table);
    t.reached(before);
    t.loaded = t.loaded.max(before);
    tracing::debug!(bucket = %name, before, keys = count, loaded = t.loaded, high = t.high, "read a shared bucket whole");
    drop(t);
    Ok(watch)
}

/// The keys of `bucket` (at most `limit`), deleted ones included, as the stream's leader
/// lists them; each request given up after [`READ_TIMEOUT`].
///
/// Not `kv::Store::keys`: that listing is an ordered consumer, which the server may place on
/// a replica still catching up after a restart, and its short list would pass for the whole
/// bucket (a mirror would forget the keys missing from it, and count their revisions as read).
pub(crate) async fn keys(bucket: &kv::Store, limit: usize) -> Result<Vec<String>, StoreError> {
    let name = &bucket.name;
    let mut subjects = step(
        name,
        bucket
            .stream
            .info_with_subjects(format!("{}>", bucket.prefix)),
    )
    .await?
    .map_err(|e| shared(name, e))?;
    let mut keys = Vec::new();
    while keys.len() < limit
        && let Some(subject) = step(name, subjects.next()).await?
    {
        let (subject, _) = subject.map_err(|e| shared(name, e))?;
        if let Some(key) = subject.strip_prefix(bucket.prefix.as_str()) {
            keys.push(key.to_owned());
        }
    }
    Ok(keys)
}

/// `future`, one step of reading `bucket`, given up after [`READ_TIMEOUT`].
async fn step<F: std::future::Future>(bucket: &str, future: F) -> Result<F::Output, StoreError> {
    tokio::time::timeout(READ_TIMEOUT, future)
        .await
        .map_err(|_| {
            shared(
                bucket,
                format!("no answer within {}s", READ_TIMEOUT.as_secs()),
            )
        })
}

/// The bucket's last revision, asked of the server.
pub(crate) async fn last_revision(bucket: &kv::Store) -> Result<u64, StoreError> {
    let mut stream = bucket.stream.clone();
    let info = stream.info().await.map_err(|e| shared(&bucket.name, e))?;
    Ok(info.state.last_sequence)
}

fn apply<T: DeserializeOwned>(bucket: &str, table: &Shared<T>, entry: &kv::Entry) -> bool {
    let bytes = match entry.operation {
        kv::Operation::Put => Some(entry.value.clone()),
        kv::Operation::Delete | kv::Operation::Purge => None,
    };
    write(table).apply(bucket, &entry.key, entry.revision, bytes)
}

/// [`follow`] on a task of its own, its log lines naming `instance` (several instances can
/// share a process, in tests).
pub(crate) fn spawn<T: DeserializeOwned + Send + Sync + 'static>(
    bucket: &kv::Store,
    table: &Shared<T>,
    watch: kv::Watch,
    changed: Arc<dyn Fn(&str) + Send + Sync>,
    shutdown: &CancellationToken,
    instance: &str,
) {
    let span = tracing::info_span!("mirror", instance = %instance);
    let run = follow(
        bucket.clone(),
        table.clone(),
        watch,
        changed,
        shutdown.clone(),
    );
    tokio::spawn(tracing::Instrument::instrument(run, span));
}

/// Follows `bucket` into `table` until `shutdown`, starting from `watch` (from [`load`]).
pub(crate) async fn follow<T: DeserializeOwned + Send + Sync + 'static>(
    bucket: kv::Store,
    table: Shared<T>,
    mut watch: kv::Watch,
    changed: Arc<dyn Fn(&str) + Send + Sync>,
    shutdown: CancellationToken,
) {
    let name = bucket.name.clone();
    let mut check = tokio::time::interval(CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut behind = false;
    loop {
        let next = tokio::select! {
            next = watch.next() => Some(next),
            _ = check.tick() => None,
            () = shutdown.cancelled() => return,
        };
        let next = match next {
            Some(next) => next,
            None => {
                // The bucket's last revision, and whether the watch has brought it.
                let (ahead, watched) = match step(&name, last_revision(&bucket)).await {
                    Ok(Ok(last)) => {
                        let t = read(&table);
                        (last > t.loaded, last <= t.high)
                    }
                    Ok(Err(e)) | Err(e) => {
                        tracing::debug!(bucket = %name, error = %e, "cannot look at a shared bucket's last revision");
                        (false, true)
                    }
                };
                if !(ahead && behind) {
                    behind = ahead;
                    continue;
                }
                behind = false;
                // Every change since the last whole read is confirmed by reading again: the
                // usual case (the watch brought it) is no news, a watch short of it is.
                if watched {
                    tracing::debug!(bucket = %name, "reading a shared bucket again after changes");
                } else {
                    tracing::warn!(bucket = %name, "the watch of a shared bucket fell behind; reading it again");
                }
                match load(&bucket, &table, changed.as_ref()).await {
                    Ok(w) => watch = w,
                    Err(e) => {
                        tracing::warn!(bucket = %name, error = %e, "cannot read a shared bucket yet");
                    }
                }
                continue;
            }
        };
        match next {
            Some(Ok(entry)) => {
                tracing::debug!(bucket = %name, key = %entry.key, revision = entry.revision, "watched");
                if apply(&name, &table, &entry) {
                    changed(&entry.key);
                }
                // After `changed`: whoever sees the mark past this revision also sees the
                // change counted (`fresh.rs`). The watch brings changes in revision order, so
                // every one up to it is applied.
                write(&table).reached(entry.revision);
                continue;
            }
            Some(Err(e)) => {
                tracing::warn!(bucket = %name, error = %e, "watching a shared bucket failed; reading it again")
            }
            None => {
                tracing::warn!(bucket = %name, "the watch of a shared bucket ended; reading it again")
            }
        }
        // Open the watch again and read everything, until that works.
        loop {
            tokio::select! {
                () = tokio::time::sleep(RETRY) => {}
                () = shutdown.cancelled() => return,
            }
            match load(&bucket, &table, changed.as_ref()).await {
                Ok(w) => {
                    watch = w;
                    break;
                }
                Err(e) => {
                    tracing::warn!(bucket = %name, error = %e, "cannot read a shared bucket yet")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_applied_once_and_an_older_one_never_wins() {
        let mut t: Table<u32> = Table::default();
        assert!(t.apply("b", "k", 5, Some(Bytes::from_static(b"1"))));
        assert!(
            !t.apply("b", "k", 5, Some(Bytes::from_static(b"1"))),
            "the same revision again"
        );
        assert!(
            !t.apply("b", "k", 4, Some(Bytes::from_static(b"9"))),
            "an older revision"
        );
        assert_eq!(t.get("k"), Some(&1));
        assert!(
            !t.apply("b", "k", 6, Some(Bytes::from_static(b"1"))),
            "same value, newer: no change"
        );
        assert!(t.apply("b", "k", 7, None), "deleted");
        assert_eq!(t.get("k"), None);
        assert!(
            !t.apply("b", "x", 8, None),
            "a delete of something never seen changes nothing"
        );
        assert!(
            !t.apply("b", "bad", 9, Some(Bytes::from_static(b"not json"))),
            "unreadable: absent"
        );
    }

    #[test]
    fn a_whole_read_forgets_only_rows_it_can_judge() {
        let mut t: Table<u32> = Table::default();
        t.apply("b", "old", 1, Some(Bytes::from_static(b"1")));
        t.apply("b", "kept", 1, Some(Bytes::from_static(b"2")));
        // Written here (or watched) after the read looked at the bucket's revision (1).
        t.apply("b", "new", 2, Some(Bytes::from_static(b"3")));
        let found: HashSet<String> = ["kept".to_owned()].into();
        assert_eq!(
            t.gone(&found, 1),
            vec!["old".to_owned()],
            "a row newer than the read may postdate its listing"
        );
        assert_eq!(t.gone(&found, 2), vec!["new".to_owned(), "old".to_owned()]);
    }

    #[test]
    fn a_local_delete_is_not_undone_by_its_echo_and_prefixes_select_rows() {
        let mut t: Table<u32> = Table::default();
        t.apply("b", "a.1", 1, Some(Bytes::from_static(b"1")));
        t.apply("b", "a.2", 2, Some(Bytes::from_static(b"2")));
        t.apply("b", "ab.3", 3, Some(Bytes::from_static(b"3")));
        t.forget("a.1");
        assert!(
            !t.apply("b", "a.1", 4, None),
            "the echo of the delete changes nothing"
        );
        let rows: Vec<_> = t.prefixed("a.").map(|(k, v)| (k.to_owned(), *v)).collect();
        assert_eq!(rows, vec![("a.2".to_owned(), 2)]);
    }
}
