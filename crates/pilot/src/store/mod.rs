//! Config stores: where the control plane reads Istio and Kubernetes objects from.
//!
//! A store holds the objects in force as an immutable [`Snapshot`] with a revision,
//! tells subscribers what changed ([`ChangeBatch`]) and accepts writes (`mizzen apply`
//! and `mizzen delete`). Nothing invalid is ever stored: writes are checked with
//! [`admit`] and refused whole; objects read from outside (files edited by hand) that
//! fail to load or validate are reported as [`Problem`]s and leave the last good
//! objects in force.
//!
//! [`DirStore`] watches a directory of YAML files (local mode). A Kubernetes store
//! implements the same [`ConfigStore`] trait by feeding what its watchers see into the
//! same `Hub` that turns object sets into revisions and change batches.

mod dir;
mod files;
mod hub;
mod pending;
mod snapshot;
mod union;
mod write;

pub use dir::{DirStore, DirStoreOptions};
pub use snapshot::Snapshot;
pub use union::UnionStore;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use mizzen_api::validate::{Issue, Severity};
use mizzen_api::{Object, ObjectKey};
use tokio::sync::{mpsc, watch};

/// The boxed future a store's writes return, so [`ConfigStore`] stays object safe.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A source of config objects: snapshots, change notifications and writes.
///
/// Object safe, so the control plane can hold an `Arc<dyn ConfigStore>` whichever
/// mode it runs in.
pub trait ConfigStore: Send + Sync {
    /// The objects in force now.
    fn snapshot(&self) -> Arc<Snapshot>;

    /// The objects in force now and, from then on, every change, in order.
    fn subscribe(&self) -> Subscription;

    /// What is wrong with the config the store was given and could not take in
    /// (files that do not load or validate, duplicate objects); updated as it changes.
    fn problems(&self) -> watch::Receiver<Arc<[Problem]>>;

    /// Creates or replaces `objects` as one change; all are refused if any is invalid.
    /// Returns the revision that holds them (unchanged if they already were in force).
    fn apply(&self, objects: Vec<Object>) -> StoreFuture<'_, u64>;

    /// Removes the objects named by `keys` as one change; all are refused if any does
    /// not exist. Returns the revision without them.
    fn delete(&self, keys: Vec<ObjectKey>) -> StoreFuture<'_, u64>;
}

/// How one object changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// It is new.
    Added,
    /// It existed and now differs.
    Updated,
    /// It is gone.
    Removed,
}

/// One object's change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Change {
    /// Added, updated or removed.
    pub kind: ChangeKind,
    /// Which object.
    pub key: ObjectKey,
}

/// Everything that changed between two revisions, and the snapshot it led to.
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    /// The changes, ordered by key; never empty.
    pub changes: Vec<Change>,
    /// The objects in force after the changes.
    pub snapshot: Arc<Snapshot>,
}

impl ChangeBatch {
    /// The revision the changes produced.
    pub fn revision(&self) -> u64 {
        self.snapshot.revision
    }
}

/// A subscriber's view of a store: where it started and what changed since.
#[derive(Debug)]
pub struct Subscription {
    /// The snapshot at the time of subscribing; batches follow on from its revision.
    pub initial: Arc<Snapshot>,
    batches: mpsc::UnboundedReceiver<Arc<ChangeBatch>>,
}

impl Subscription {
    /// The next batch of changes; `None` once the store is gone.
    pub async fn next(&mut self) -> Option<Arc<ChangeBatch>> {
        self.batches.recv().await
    }

    /// The next batch if one is waiting, without waiting.
    pub fn try_next(&mut self) -> Option<Arc<ChangeBatch>> {
        self.batches.try_recv().ok()
    }
}

/// Something the store could not take in, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file it was found in, for stores that read files.
    pub file: Option<PathBuf>,
    /// The object concerned, when known.
    pub object: Option<ObjectKey>,
    /// What is wrong, including where (file, line, field) when known.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// An object refused by validation, with the errors found in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The object.
    pub key: ObjectKey,
    /// Its errors (warnings do not refuse an object and are not listed).
    pub issues: Vec<Issue>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.key)?;
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Some objects of a write are invalid; nothing was written.
    #[error("refused, nothing was written: {}", list(.0))]
    Invalid(Vec<Rejected>),
    /// Objects to delete do not exist; nothing was deleted.
    #[error("not found, nothing was deleted: {}", list(.0))]
    NotFound(Vec<ObjectKey>),
    /// The file holding an object does not load or validate, so rewriting it would lose
    /// the edits in it.
    #[error("{key} is defined in {}, which has problems; fix or remove that file first", .file.display())]
    FileHasProblems {
        /// The object written.
        key: ObjectKey,
        /// The file defining it.
        file: PathBuf,
    },
    /// An object could not be turned into YAML.
    #[error("{key}: cannot serialize: {source}")]
    Serialize {
        /// The object.
        key: ObjectKey,
        /// Why.
        source: serde_yaml_ng::Error,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The directory could not be watched.
    #[error("cannot watch {}: {source}", .path.display())]
    Watch {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: notify::Error,
    },
    /// The store has shut down.
    #[error("the config store has shut down")]
    Closed,
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks objects before they are stored: every object with a validation error is
/// refused, naming the object, the field and the reason.
pub fn admit(objects: &[Object]) -> Result<(), StoreError> {
    let rejected: Vec<Rejected> = objects.iter().filter_map(rejection).collect();
    if rejected.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Invalid(rejected))
    }
}

/// The object's validation errors, if it has any.
fn rejection(object: &Object) -> Option<Rejected> {
    let issues: Vec<Issue> = object
        .validate()
        .into_iter()
        .filter(|i| i.severity == Severity::Error)
        .collect();
    (!issues.is_empty()).then(|| Rejected {
        key: object.key(),
        issues,
    })
}
