//! A store made of several: the objects of a primary store (the user's config, which
//! takes writes) together with those of read-only overlays (the workloads `mizzen up`
//! and `mizzen run` register), published as one sequence of revisions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use mizzen_api::{Object, ObjectKey};
use tokio::sync::watch;

use super::hub::Hub;
use super::{ConfigStore, Problem, Snapshot, StoreFuture, Subscription};

/// The union of a writable primary store and read-only overlays. On a key defined in
/// both, the primary's object is in force and the overlay's is reported as a problem.
pub struct UnionStore {
    parts: Arc<Parts>,
}

struct Parts {
    primary: Arc<dyn ConfigStore>,
    overlays: Vec<Arc<dyn ConfigStore>>,
    hub: Hub,
    /// Held while merging and publishing, so a merge from older snapshots never
    /// publishes after one from newer snapshots.
    merging: Mutex<()>,
}

impl Parts {
    /// Merges the parts' current snapshots and problems and publishes the result.
    fn publish(&self) -> u64 {
        let _guard = self.merging.lock().unwrap_or_else(|e| e.into_inner());
        let (objects, problems) = self.merged();
        self.hub.publish(objects, problems)
    }

    fn merged(&self) -> (BTreeMap<ObjectKey, Arc<Object>>, Vec<Problem>) {
        let primary = self.primary.snapshot();
        let mut objects: BTreeMap<ObjectKey, Arc<Object>> = primary
            .iter()
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect();
        let mut problems: Vec<Problem> = self.primary.problems().borrow().to_vec();
        for overlay in &self.overlays {
            problems.extend(overlay.problems().borrow().iter().cloned());
            for (key, object) in overlay.snapshot().iter() {
                if objects.contains_key(key) {
                    problems.push(Problem {
                        file: None,
                        object: Some(key.clone()),
                        message: format!(
                            "{key} is registered by a local workload and also defined in the config; the config's version is in force"
                        ),
                    });
                } else {
                    objects.insert(key.clone(), object.clone());
                }
            }
        }
        (objects, problems)
    }
}

impl UnionStore {
    /// The union of `primary` and `overlays`, kept up to date by a task on the current
    /// tokio runtime for as long as the parts publish changes.
    pub fn new(primary: Arc<dyn ConfigStore>, overlays: Vec<Arc<dyn ConfigStore>>) -> Self {
        let hub = Hub::new(BTreeMap::new(), Vec::new());
        let parts = Arc::new(Parts {
            primary,
            overlays,
            hub,
            merging: Mutex::new(()),
        });
        // Subscribe before the first merge, so no change falls in between.
        let all = std::iter::once(&parts.primary).chain(&parts.overlays);
        for part in all {
            let mut changes = part.subscribe();
            let mut problems = part.problems();
            let weak = Arc::downgrade(&parts);
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        batch = changes.next() => if batch.is_none() { return },
                        changed = problems.changed() => if changed.is_err() { return },
                    }
                    let Some(parts) = weak.upgrade() else { return };
                    parts.publish();
                }
            });
        }
        parts.publish();
        Self { parts }
    }
}

impl ConfigStore for UnionStore {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.parts.hub.snapshot()
    }

    fn subscribe(&self) -> Subscription {
        self.parts.hub.subscribe()
    }

    fn problems(&self) -> watch::Receiver<Arc<[Problem]>> {
        self.parts.hub.problems()
    }

    fn apply(&self, objects: Vec<Object>) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            self.parts.primary.apply(objects).await?;
            Ok(self.parts.publish())
        })
    }

    fn delete(&self, keys: Vec<ObjectKey>) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            self.parts.primary.delete(keys).await?;
            Ok(self.parts.publish())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DirStore;

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\nspec:\n  ports: [{name: http, port: 9080}]\n";
    const ENTRY: &str = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: reviews-1, namespace: default}\nspec: {address: 127.0.9.2, labels: {app: reviews}}\n";

    fn key(kind: &str, name: &str) -> ObjectKey {
        ObjectKey {
            kind: kind.into(),
            namespace: "default".into(),
            name: name.into(),
        }
    }

    #[tokio::test]
    async fn holds_both_parts_and_follows_the_overlay() {
        let config = tempfile::tempdir().unwrap();
        let workloads = tempfile::tempdir().unwrap();
        std::fs::write(config.path().join("svc.yaml"), SERVICE).unwrap();
        let primary = Arc::new(DirStore::open(config.path()).unwrap());
        let overlay = Arc::new(DirStore::open(workloads.path()).unwrap());
        let union = UnionStore::new(primary, vec![overlay]);
        let mut changes = union.subscribe();
        assert!(changes.initial.get(&key("Service", "reviews")).is_some());

        std::fs::write(workloads.path().join("we.yaml"), ENTRY).unwrap();
        let batch = tokio::time::timeout(std::time::Duration::from_secs(20), changes.next())
            .await
            .unwrap()
            .unwrap();
        assert!(
            batch
                .snapshot
                .get(&key("WorkloadEntry", "reviews-1"))
                .is_some()
        );
        assert!(batch.snapshot.get(&key("Service", "reviews")).is_some());
    }

    #[tokio::test]
    async fn writes_go_to_the_primary() {
        let config = tempfile::tempdir().unwrap();
        let workloads = tempfile::tempdir().unwrap();
        let primary = Arc::new(DirStore::open(config.path()).unwrap());
        let overlay = Arc::new(DirStore::open(workloads.path()).unwrap());
        let union = UnionStore::new(primary, vec![overlay]);
        let object = mizzen_api::load::Loader::new()
            .load_str(SERVICE, None)
            .objects
            .remove(0)
            .object;
        let revision = union.apply(vec![object]).await.unwrap();
        assert!(union.snapshot().revision >= revision);
        assert!(union.snapshot().get(&key("Service", "reviews")).is_some());
        let in_config = std::fs::read_dir(config.path()).unwrap().count();
        let in_workloads = std::fs::read_dir(workloads.path()).unwrap().count();
        assert_eq!((in_config, in_workloads), (1, 0));
    }
}
