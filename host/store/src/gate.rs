//! sled behind a write gate, so a backup sees one instant.
//!
//! sled 0.34 has no snapshots, and iterating trees while writers go on
//! yields a state that never existed (a later write to one tree without an
//! earlier one to another). Every write in Allama goes through [`Tree`],
//! which holds the gate's shared side for the one sled operation it makes;
//! a backup holds the exclusive side while it reads every tree. What it
//! reads is then the state after some prefix of the writes — exactly what
//! a `kill -9` at that instant would leave, which every part of Allama
//! already recovers from.
//!
//! Reads never touch the gate. [`Tree`] has no way to reach the sled tree
//! underneath, so no write can bypass it.

use std::ops::RangeBounds;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use sled::{Batch, IVec};

#[derive(Default)]
pub(crate) struct Gate(RwLock<()>);

impl Gate {
    fn shared(&self) -> RwLockReadGuard<'_, ()> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The database: opens gated trees.
#[derive(Clone)]
pub struct Db {
    pub(crate) inner: sled::Db,
    pub(crate) gate: Arc<Gate>,
}

impl From<sled::Db> for Db {
    /// The database behind a gate of its own (a [`crate::SledStore`] makes
    /// one for its database; tools and tests that hold sled directly too).
    fn from(inner: sled::Db) -> Self {
        Self {
            inner,
            gate: Arc::default(),
        }
    }
}

impl Db {
    /// Writes sled's buffers out (not a write the gate holds back).
    pub fn flush(&self) -> sled::Result<usize> {
        self.inner.flush()
    }

    /// The names of every tree.
    pub fn tree_names(&self) -> Vec<IVec> {
        self.inner.tree_names()
    }

    /// Removes the tree `name` and everything in it; whether it existed.
    pub fn drop_tree(&self, name: &str) -> sled::Result<bool> {
        let _g = self.gate.shared();
        self.inner.drop_tree(name)
    }

    /// Opens (or creates) the tree `name`.
    pub fn open_tree(&self, name: &str) -> sled::Result<Tree> {
        Ok(Tree {
            inner: self.inner.open_tree(name)?,
            gate: self.gate.clone(),
        })
    }
}

/// One sled tree; writes wait while a backup reads.
#[derive(Clone)]
pub struct Tree {
    inner: sled::Tree,
    gate: Arc<Gate>,
}

impl Tree {
    /// The value at `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<IVec>> {
        self.inner.get(key)
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> sled::Iter {
        self.inner.iter()
    }

    /// The entry with the greatest key below `key`.
    pub fn get_lt(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<(IVec, IVec)>> {
        self.inner.get_lt(key)
    }

    /// The entries whose keys are in `range`.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> sled::Iter {
        self.inner.range(range)
    }

    /// The entries whose keys start with `prefix`.
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> sled::Iter {
        self.inner.scan_prefix(prefix)
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Sets `key` to `value`; the previous value.
    pub fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<IVec>,
    ) -> sled::Result<Option<IVec>> {
        let _g = self.gate.shared();
        self.inner.insert(key, value)
    }

    /// Removes `key`; the previous value.
    pub fn remove(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<IVec>> {
        let _g = self.gate.shared();
        self.inner.remove(key)
    }

    /// Applies every change in `batch` atomically. Costly in sled 0.34: it
    /// writes the log twice (`pin_log`); keep it off hot paths.
    pub fn apply_batch(&self, batch: Batch) -> sled::Result<()> {
        let _g = self.gate.shared();
        self.inner.apply_batch(batch)
    }

    /// Sets `key` to `new` if it is `old` (`None`: absent / remove).
    pub fn compare_and_swap<V: Into<IVec>>(
        &self,
        key: impl AsRef<[u8]>,
        old: Option<impl AsRef<[u8]>>,
        new: Option<V>,
    ) -> sled::Result<Result<(), sled::CompareAndSwapError>> {
        let _g = self.gate.shared();
        self.inner.compare_and_swap(key, old, new)
    }

    /// Replaces the value at `key` with `f(old)`, atomically; the new value.
    pub fn update_and_fetch<V: Into<IVec>>(
        &self,
        key: impl AsRef<[u8]>,
        f: impl FnMut(Option<&[u8]>) -> Option<V>,
    ) -> sled::Result<Option<IVec>> {
        let _g = self.gate.shared();
        self.inner.update_and_fetch(key, f)
    }
}
