//! The part every store shares: the snapshot in force, its subscribers and the
//! problems list. A store computes the objects it holds; the hub turns that into
//! revisions and change batches.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use mizzen_api::{Object, ObjectKey};
use tokio::sync::{mpsc, watch};

use super::snapshot::{Snapshot, diff};
use super::{ChangeBatch, Problem, Subscription};

/// Publishes snapshots to subscribers, one revision per change.
#[derive(Debug)]
pub(crate) struct Hub {
    /// One lock for the snapshot and the subscribers, so a new subscriber gets a
    /// snapshot and exactly the batches that follow it.
    state: Mutex<State>,
    problems: watch::Sender<Arc<[Problem]>>,
}

#[derive(Debug)]
struct State {
    snapshot: Arc<Snapshot>,
    subscribers: Vec<mpsc::UnboundedSender<Arc<ChangeBatch>>>,
}

impl Hub {
    /// A hub whose first revision (1) holds `objects`, with `problems`.
    pub(crate) fn new(objects: BTreeMap<ObjectKey, Arc<Object>>, problems: Vec<Problem>) -> Self {
        let hub = Self {
            state: Mutex::new(State {
                snapshot: Arc::new(Snapshot::new(1, objects)),
                subscribers: Vec::new(),
            }),
            problems: watch::Sender::new(Arc::from([])),
        };
        hub.set_problems(problems);
        hub
    }

    /// The snapshot in force.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.lock().snapshot.clone()
    }

    /// The snapshot in force and a receiver of every later batch.
    pub(crate) fn subscribe(&self) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = self.lock();
        state.subscribers.push(tx);
        Subscription {
            initial: state.snapshot.clone(),
            batches: rx,
        }
    }

    /// A receiver of the problems list.
    pub(crate) fn problems(&self) -> watch::Receiver<Arc<[Problem]>> {
        self.problems.subscribe()
    }

    /// Makes `objects` the objects in force and `problems` the problems. If the objects
    /// differ from the current ones, a new revision is made and its changes are sent to
    /// every subscriber. Returns the revision in force afterwards.
    ///
    /// The problems are updated first, so whoever receives a batch sees the problems
    /// that came with it.
    pub(crate) fn publish(
        &self,
        objects: BTreeMap<ObjectKey, Arc<Object>>,
        problems: Vec<Problem>,
    ) -> u64 {
        let mut state = self.lock();
        self.set_problems(problems);
        let changes = diff(state.snapshot.objects(), &objects);
        if changes.is_empty() {
            return state.snapshot.revision;
        }
        let snapshot = Arc::new(Snapshot::new(state.snapshot.revision + 1, objects));
        tracing::info!(
            revision = snapshot.revision,
            changes = changes.len(),
            "config changed"
        );
        let batch = Arc::new(ChangeBatch {
            changes,
            snapshot: snapshot.clone(),
        });
        state.snapshot = snapshot;
        state.subscribers.retain(|s| s.send(batch.clone()).is_ok());
        state.snapshot.revision
    }

    /// Replaces the problems list, logging the problems that are new.
    fn set_problems(&self, problems: Vec<Problem>) {
        self.problems.send_if_modified(|current| {
            if current[..] == problems[..] {
                return false;
            }
            for problem in problems.iter().filter(|p| !current.contains(p)) {
                tracing::warn!("config not taken in: {problem}");
            }
            *current = Arc::from(problems);
            true
        });
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is replaced whole, so it is consistent even after a panic elsewhere.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
