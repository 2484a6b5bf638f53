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

/// Table hashing: the keys are mostly digests and small numbers, which folding hashes in
/// a few instructions each; no random state is needed.
type Table<K, V> = HashMap<K, Arc<V>, BuildHasherDefault<Fold>>;

/// A multiply-fold hasher (rustc's Fx): a word costs a rotate, a xor and a multiply,
/// where a streaming hash such as xxh64 buffers every field a derived `Hash` writes.
/// Its output is weak, which the tables tolerate: their keys are few, and a series'
/// labels reach them as xxh64 digests ([`Digested`]).
#[derive(Clone, Copy, Default)]
pub struct Fold(u64);

impl Fold {
    fn add(&mut self, word: u64) {
        const K: u64 = 0xf135_7aea_2e62_a9c5;
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl std::hash::Hasher for Fold {
    fn finish(&self) -> u64 {
        // The multiply leaves its best bits high; the table indexes by the low ones.
        self.0.rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        let mut word = [0; 8];
        word[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(word) ^ ((bytes.len() as u64) << 56));
    }

    fn write_u8(&mut self, n: u8) {
        self.add(n.into());
    }

    fn write_u16(&mut self, n: u16) {
        self.add(n.into());
    }

    fn write_u32(&mut self, n: u32) {
        self.add(n.into());
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

/// xxh64 with seed 0, as a `Default` hasher: digests that tell values apart.
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

    #[test]
    fn folding_tells_byte_strings_apart_by_content_and_length() {
        let hash = |bytes: &[u8]| {
            let mut h = Fold::default();
            std::hash::Hasher::write(&mut h, bytes);
            std::hash::Hasher::finish(&h)
        };
        let long = b"CjYKCkNMVVNURVJfSUQSKBomS3ViZXJuZXRlcw==";
        let copy = long.to_vec();
        assert_eq!(hash(long), hash(&copy));
        assert_ne!(hash(long), hash(&long[..long.len() - 1]));
        assert_ne!(hash(b"a"), hash(b"a\0"));
        assert_ne!(hash(b"abcdefgh"), hash(b"abcdefgi"));
    }
}
