//! Subscribed name sets, kept once however many streams subscribe to them: a thousand
//! sidecars of one namespace ask for the same thousand clusters.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, Weak};

/// How many interned sets between sweeps of the sets no stream holds any more.
const SWEEP_EVERY: usize = 1024;

/// The name sets streams hold, by content.
#[derive(Debug, Default)]
pub(super) struct NameSets {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_hash: HashMap<u64, Vec<Weak<BTreeSet<String>>>>,
    since_sweep: usize,
}

impl NameSets {
    /// Replaces `names` by the set some stream already holds with the same names, or
    /// makes it the one later streams will share.
    pub(super) fn intern(&self, names: &mut Arc<BTreeSet<String>>) {
        if names.is_empty() {
            return;
        }
        let mut hasher = DefaultHasher::new();
        names.hash(&mut hasher);
        let hash = hasher.finish();

        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.since_sweep += 1;
        if inner.since_sweep >= SWEEP_EVERY {
            inner.since_sweep = 0;
            inner.by_hash.retain(|_, sets| {
                sets.retain(|set| set.strong_count() > 0);
                !sets.is_empty()
            });
        }
        let sets = inner.by_hash.entry(hash).or_default();
        sets.retain(|set| set.strong_count() > 0);
        match sets
            .iter()
            .filter_map(Weak::upgrade)
            .find(|set| set == names)
        {
            Some(same) => *names = same,
            None => sets.push(Arc::downgrade(names)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> Arc<BTreeSet<String>> {
        Arc::new(names.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn equal_sets_are_shared_and_forgotten_when_unused() {
        let sets = NameSets::default();
        let mut a = set(&["x", "y"]);
        let mut b = set(&["x", "y"]);
        let mut c = set(&["x"]);
        sets.intern(&mut a);
        sets.intern(&mut b);
        sets.intern(&mut c);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        drop((a, b));
        let mut again = set(&["x", "y"]);
        let before = Arc::as_ptr(&again);
        sets.intern(&mut again);
        assert_eq!(
            Arc::as_ptr(&again),
            before,
            "a dropped set is not resurrected"
        );
    }
}
