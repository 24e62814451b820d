//! Counted writes: the work plane's trees wrapped so that every write updates the live-data
//! tally ([`super::tally`]) with exactly what it replaced.
//!
//! [`Counted`] offers the reads the store uses and counted versions of the writes, and
//! nothing else: a write that would bypass the count does not compile. An insert or a removal
//! learns what it replaced from sled itself, a compare-and-swap knows it; a [`Batch`] reads
//! each of its keys before it is applied (a plain write to the same key in between could be
//! counted twice, which overstates what is held until the next count from scratch). This
//! module never decides anything from the count.

use std::collections::BTreeMap;
use std::sync::Arc;

use sled::IVec;

use super::tally::{Tally, Which};

/// A work-plane tree whose every write is counted in the store's [`Tally`]. It offers the
/// reads the store uses and counted versions of the writes, and nothing else: a write that
/// would bypass the count does not compile.
#[derive(Clone)]
pub(super) struct Counted {
    tree: sled::Tree,
    which: Which,
    tally: Arc<Tally>,
}

impl Counted {
    pub(super) fn new(tree: sled::Tree, which: Which, tally: Arc<Tally>) -> Self {
        Self { tree, which, tally }
    }

    /// The tree, for counting it from scratch.
    pub(super) fn raw(&self) -> &sled::Tree {
        &self.tree
    }

    fn count(&self, key: &[u8], old: Option<usize>, new: Option<usize>) {
        self.tally.change(self.which.kind(key), key, old, new);
    }

    pub(super) fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<IVec>,
    ) -> sled::Result<Option<IVec>> {
        let key = key.as_ref();
        let value: IVec = value.into();
        let len = value.len();
        let old = self.tree.insert(key, value)?;
        self.count(key, old.as_ref().map(|v| v.len()), Some(len));
        Ok(old)
    }

    pub(super) fn remove(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<IVec>> {
        let key = key.as_ref();
        let old = self.tree.remove(key)?;
        if let Some(old) = &old {
            self.count(key, Some(old.len()), None);
        }
        Ok(old)
    }

    pub(super) fn compare_and_swap(
        &self,
        key: impl AsRef<[u8]>,
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> sled::Result<Result<(), sled::CompareAndSwapError>> {
        let key = key.as_ref();
        let swapped = self.tree.compare_and_swap(key, old, new)?;
        if swapped.is_ok() {
            self.count(key, old.map(<[u8]>::len), new.map(<[u8]>::len));
        }
        Ok(swapped)
    }

    /// Replaces the value of `key` by `f` of it (a compare-and-swap loop, so the count knows
    /// exactly what was replaced); returns the new value.
    pub(super) fn update_and_fetch(
        &self,
        key: impl AsRef<[u8]>,
        mut f: impl FnMut(Option<&[u8]>) -> Option<Vec<u8>>,
    ) -> sled::Result<Option<IVec>> {
        let key = key.as_ref();
        loop {
            let old = self.tree.get(key)?;
            let new = f(old.as_deref());
            if old.is_none() && new.is_none() {
                return Ok(None);
            }
            if self
                .compare_and_swap(key, old.as_deref(), new.as_deref())?
                .is_ok()
            {
                return Ok(new.map(IVec::from));
            }
        }
    }

    pub(super) fn apply_batch(&self, batch: Batch) -> sled::Result<()> {
        if batch.ops.is_empty() {
            return Ok(());
        }
        let mut changes = Vec::with_capacity(batch.ops.len());
        let mut applied = sled::Batch::default();
        for (key, Op { value, fresh }) in batch.ops {
            let old = if fresh {
                None
            } else {
                self.tree.get(&key)?.map(|v| v.len())
            };
            changes.push((key.clone(), old, value.as_ref().map(|v| v.len())));
            match value {
                Some(value) => applied.insert(key, value),
                None => applied.remove(key),
            }
        }
        self.tree.apply_batch(applied)?;
        for (key, old, new) in changes {
            self.count(&key, old, new);
        }
        Ok(())
    }

    pub(super) fn get(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<IVec>> {
        self.tree.get(key)
    }

    pub(super) fn contains_key(&self, key: impl AsRef<[u8]>) -> sled::Result<bool> {
        self.tree.contains_key(key)
    }

    pub(super) fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> sled::Iter {
        self.tree.scan_prefix(prefix)
    }

    pub(super) fn iter(&self) -> sled::Iter {
        self.tree.iter()
    }

    pub(super) fn range<K: AsRef<[u8]>, R: std::ops::RangeBounds<K>>(
        &self,
        range: R,
    ) -> sled::Iter {
        self.tree.range(range)
    }

    pub(super) fn len(&self) -> usize {
        self.tree.len()
    }
}

/// Writes to apply to one [`Counted`] tree atomically; the last write to a key wins, as in
/// sled's own batch.
#[derive(Debug, Default)]
pub(super) struct Batch {
    ops: BTreeMap<IVec, Op>,
}

#[derive(Debug)]
struct Op {
    /// The new value; `None` removes.
    value: Option<IVec>,
    /// The key is new to the tree, so nothing is read before the write (reading costs about
    /// as much as writing). Should it exist after all (a job written again after a crash),
    /// the count overstates what is held until the next count from scratch: the safe side.
    fresh: bool,
}

impl Batch {
    pub(super) fn insert(&mut self, key: impl Into<IVec>, value: impl Into<IVec>) {
        self.ops.insert(
            key.into(),
            Op {
                value: Some(value.into()),
                fresh: false,
            },
        );
    }

    /// Inserts under a key the caller knows is new (a job's id, its index row).
    pub(super) fn insert_new(&mut self, key: impl Into<IVec>, value: impl Into<IVec>) {
        self.ops.insert(
            key.into(),
            Op {
                value: Some(value.into()),
                fresh: true,
            },
        );
    }

    pub(super) fn remove(&mut self, key: impl Into<IVec>) {
        self.ops.insert(
            key.into(),
            Op {
                value: None,
                fresh: false,
            },
        );
    }
}
