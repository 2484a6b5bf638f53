//! A read-mostly concurrent map: lookups read an immutable table with no lock; a new
//! key takes a lock once and publishes a new table with it. Series and peers are few
//! and long-lived, so copying the table on the rare insert costs less than any lock
//! taken per request.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use xxhash_rust::xxh64::Xxh64;

/// Table hashing: xxh64 is fast on the short keys here and needs no random state.
type Table<K, V> = HashMap<K, Arc<V>, BuildHasherDefault<Xxh64Default>>;

/// xxh64 with seed 0, as a `Default` hasher.
#[derive(Clone)]
pub struct Xxh64Default(Xxh64);

impl Default for Xxh64Default {
    fn default() -> Self {
        Xxh64Default(Xxh64::new(0))
    }
}

impl std::hash::Hasher for Xxh64Default {
    fn finish(&self) -> u64 {
        self.0.finish()
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }
}

/// Values by key, each made once.
pub struct Interned<K, V> {
    table: ArcSwap<Table<K, V>>,
    inserting: Mutex<()>,
}

impl<K, V> Default for Interned<K, V> {
    fn default() -> Self {
        Interned {
            table: ArcSwap::from_pointee(Table::default()),
            inserting: Mutex::new(()),
        }
    }
}

impl<K: Hash + Eq + Clone, V> Interned<K, V> {
    /// The value of `key`, made by `make` if it is new.
    pub fn get_or_insert<Q>(&self, key: &Q, make: impl FnOnce() -> (K, V)) -> Arc<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(value) = self.table.load().get(key) {
            return value.clone();
        }
        let _inserting = self.inserting.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.table.load_full();
        if let Some(value) = current.get(key) {
            return value.clone();
        }
        let (key, value) = make();
        let value = Arc::new(value);
        let mut next = Table::clone(&current);
        next.insert(key, value.clone());
        self.table.store(Arc::new(next));
        value
    }

    /// How many values there are.
    pub fn len(&self) -> usize {
        self.table.load().len()
    }

    /// Every key and value, as of now.
    pub fn snapshot(&self) -> Vec<(K, Arc<V>)> {
        self.table
            .load()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// A shared value that hashes by a digest taken once, so that looking up a series
/// per request does not hash every label of it again.
#[derive(Debug)]
pub struct Digested<T> {
    value: Arc<T>,
    digest: u64,
}

impl<T> Clone for Digested<T> {
    fn clone(&self) -> Self {
        Digested {
            value: self.value.clone(),
            digest: self.digest,
        }
    }
}

impl<T: Hash> Digested<T> {
    /// Shares `value`.
    pub fn new(value: T) -> Digested<T> {
        let mut hasher = Xxh64Default::default();
        value.hash(&mut hasher);
        Digested {
            digest: std::hash::Hasher::finish(&hasher),
            value: Arc::new(value),
        }
    }
}

impl<T> std::ops::Deref for Digested<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Eq> PartialEq for Digested<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.value, &other.value)
            || (self.digest == other.digest && *self.value == *other.value)
    }
}

impl<T: Eq> Eq for Digested<T> {}

impl<T> Hash for Digested<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_and_found_after() {
        let map: Interned<String, u32> = Interned::default();
        let mut made = 0;
        let a = map.get_or_insert("a", || {
            made += 1;
            ("a".into(), 1)
        });
        let again = map.get_or_insert("a", || unreachable!("made twice"));
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!((made, map.len()), (1, 1));
    }
}
