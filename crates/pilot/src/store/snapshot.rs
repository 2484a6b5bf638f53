//! Immutable snapshots of the objects in force, and the difference between two.

use std::collections::BTreeMap;
use std::sync::Arc;

use mizzen_api::{Kind, Object, ObjectKey};

use super::{Change, ChangeKind};

/// The objects in force at one revision. Never changes once made; share it as
/// `Arc<Snapshot>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Increases by one with every change; a store starts at 1.
    pub revision: u64,
    objects: BTreeMap<ObjectKey, Arc<Object>>,
}

impl Snapshot {
    /// A snapshot of `objects` at `revision`.
    pub fn new(revision: u64, objects: BTreeMap<ObjectKey, Arc<Object>>) -> Self {
        Self { revision, objects }
    }

    /// The object named by `key`.
    pub fn get(&self, key: &ObjectKey) -> Option<&Arc<Object>> {
        self.objects.get(key)
    }

    /// Every object, ordered by kind, namespace and name.
    pub fn iter(&self) -> impl Iterator<Item = (&ObjectKey, &Arc<Object>)> {
        self.objects.iter()
    }

    /// The objects of one kind, ordered by namespace and name.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Arc<Object>> {
        let from = ObjectKey {
            kind: kind.name().to_owned(),
            namespace: String::new(),
            name: String::new(),
        };
        self.objects
            .range(from..)
            .take_while(move |(key, _)| key.kind == kind.name())
            .map(|(_, object)| object)
    }

    /// How many objects there are.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The objects, to build the next snapshot from.
    pub(super) fn objects(&self) -> &BTreeMap<ObjectKey, Arc<Object>> {
        &self.objects
    }
}

/// What changed from `old` to `new`, ordered by key.
pub(super) fn diff(
    old: &BTreeMap<ObjectKey, Arc<Object>>,
    new: &BTreeMap<ObjectKey, Arc<Object>>,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut old_iter = old.iter().peekable();
    let mut new_iter = new.iter().peekable();
    let change = |kind, key: &ObjectKey| Change {
        kind,
        key: key.clone(),
    };
    loop {
        match (old_iter.peek(), new_iter.peek()) {
            (None, None) => break,
            (Some((k, _)), None) => {
                changes.push(change(ChangeKind::Removed, k));
                old_iter.next();
            }
            (None, Some((k, _))) => {
                changes.push(change(ChangeKind::Added, k));
                new_iter.next();
            }
            (Some((ok, ov)), Some((nk, nv))) => match ok.cmp(nk) {
                std::cmp::Ordering::Less => {
                    changes.push(change(ChangeKind::Removed, ok));
                    old_iter.next();
                }
                std::cmp::Ordering::Greater => {
                    changes.push(change(ChangeKind::Added, nk));
                    new_iter.next();
                }
                std::cmp::Ordering::Equal => {
                    if !Arc::ptr_eq(ov, nv) && ov != nv {
                        changes.push(change(ChangeKind::Updated, nk));
                    }
                    old_iter.next();
                    new_iter.next();
                }
            },
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use mizzen_api::ObjectMeta;
    use mizzen_api::k8s_openapi::api::core::v1::Namespace;

    use super::*;

    fn namespace(name: &str, label: &str) -> (ObjectKey, Arc<Object>) {
        let object = Object::Namespace(Box::new(Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([("l".to_owned(), label.to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }));
        (object.key(), Arc::new(object))
    }

    #[test]
    fn diff_reports_each_key_once_in_key_order() {
        let old = BTreeMap::from([
            namespace("a", "1"),
            namespace("b", "1"),
            namespace("c", "1"),
        ]);
        let new = BTreeMap::from([
            namespace("b", "2"),
            namespace("c", "1"),
            namespace("d", "1"),
        ]);
        let got: Vec<(ChangeKind, String)> = diff(&old, &new)
            .into_iter()
            .map(|c| (c.kind, c.key.name))
            .collect();
        assert_eq!(
            got,
            [
                (ChangeKind::Removed, "a".to_owned()),
                (ChangeKind::Updated, "b".to_owned()),
                (ChangeKind::Added, "d".to_owned()),
            ]
        );
    }

    #[test]
    fn of_kind_selects_one_kind() {
        let snapshot = Snapshot::new(
            1,
            BTreeMap::from([namespace("a", "1"), namespace("b", "1")]),
        );
        assert_eq!(snapshot.of_kind(Kind::Namespace).count(), 2);
        assert_eq!(snapshot.of_kind(Kind::Service).count(), 0);
    }
}
