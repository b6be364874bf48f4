//! The byte-keyed trees the state is made of: the [`KvTree`] trait, sled's trees, and an
//! in-memory tree for tests. (PostgreSQL's are in `pg.rs`.)

use super::StateError;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// What [`KvTree::for_each`] calls with each key and value.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), StateError> + 'a;

/// A byte-keyed tree: the operations the snapshot needs from a store.
pub trait KvTree: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    fn insert(&self, key: &[u8], value: Vec<u8>) -> Result<(), StateError>;
    fn remove(&self, key: &[u8]) -> Result<(), StateError>;
    /// Calls `f` with every key and value, in key order. One entry at a time, not a copy of
    /// the whole tree: a snapshot of a million users is read without holding its bytes twice.
    fn for_each(&self, f: &mut Visit<'_>) -> Result<(), StateError>;
    fn name(&self) -> String;
    /// Visits the entries whose key is at least `start`, in key order or (with `rev`) from the
    /// last one down, until `visit` returns false. A range scan, where the store has them.
    fn visit(&self, start: &[u8], rev: bool, visit: Visitor<'_>) -> Result<(), StateError> {
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        self.for_each(&mut |k, v| {
            if k >= start {
                entries.push((k.to_vec(), v.to_vec()));
            }
            Ok(())
        })?;
        if rev {
            entries.reverse();
        }
        for (k, v) in &entries {
            if !visit(k, v) {
                break;
            }
        }
        Ok(())
    }
}

/// What [`KvTree::visit`] calls with each key and value; false stops the scan.
pub type Visitor<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> bool;

impl KvTree for sled::Tree {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        sled::Tree::get(self, key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(storage)
    }
    fn insert(&self, key: &[u8], value: Vec<u8>) -> Result<(), StateError> {
        sled::Tree::insert(self, key, value)
            .map(|_| ())
            .map_err(storage)
    }
    fn remove(&self, key: &[u8]) -> Result<(), StateError> {
        sled::Tree::remove(self, key).map(|_| ()).map_err(storage)
    }
    fn for_each(&self, f: &mut Visit<'_>) -> Result<(), StateError> {
        for r in self.iter() {
            let (k, v) = r.map_err(storage)?;
            f(&k, &v)?;
        }
        Ok(())
    }
    fn name(&self) -> String {
        String::from_utf8_lossy(&sled::Tree::name(self)).into_owned()
    }
    fn visit(&self, start: &[u8], rev: bool, visit: Visitor<'_>) -> Result<(), StateError> {
        let range = self.range(start.to_vec()..);
        let mut step = |r: sled::Result<(sled::IVec, sled::IVec)>| -> Result<bool, StateError> {
            let (k, v) = r.map_err(storage)?;
            Ok(visit(&k, &v))
        };
        if rev {
            for r in range.rev() {
                if !step(r)? {
                    break;
                }
            }
        } else {
            for r in range {
                if !step(r)? {
                    break;
                }
            }
        }
        Ok(())
    }
}

pub(super) fn storage(e: sled::Error) -> StateError {
    StateError::Storage(e.to_string())
}

/// An in-memory tree for tests.
#[derive(Default)]
pub struct MemTree(
    pub(super) Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    pub(super) String,
);

impl MemTree {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        // A poisoned lock only means another test thread panicked; the map itself is fine.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl KvTree for MemTree {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.map().get(key).cloned())
    }
    fn insert(&self, key: &[u8], value: Vec<u8>) -> Result<(), StateError> {
        self.map().insert(key.to_vec(), value);
        Ok(())
    }
    fn remove(&self, key: &[u8]) -> Result<(), StateError> {
        self.map().remove(key);
        Ok(())
    }
    fn for_each(&self, f: &mut Visit<'_>) -> Result<(), StateError> {
        for (k, v) in self.map().iter() {
            f(k, v)?;
        }
        Ok(())
    }
    fn name(&self) -> String {
        self.1.clone()
    }
}
