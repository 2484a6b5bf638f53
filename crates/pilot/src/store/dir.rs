//! The directory store (local mode): config is the YAML and JSON files under a
//! directory, watched for changes; writes become files there.
//!
//! One worker thread owns the files' state. It takes filesystem events (debounced) and
//! write requests in turn, so a write and the watcher never race, and the watcher's
//! echo of the store's own write finds nothing new and is not reported again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use mizzen_api::{Object, ObjectKey};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{oneshot, watch};

use super::files::{Defined, FileSet};
use super::hub::Hub;
use super::pending::{Effect, Pending};
use super::write::{FileOp, commit, path_for, render};
use super::{ConfigStore, Problem, Snapshot, StoreError, StoreFuture, Subscription, admit};

/// Tuning of a [`DirStore`].
#[derive(Debug, Clone)]
pub struct DirStoreOptions {
    /// How long a file must see no events before it is read again.
    pub debounce: Duration,
    /// The longest a change waits to be read, even while events keep coming or a
    /// writer keeps the file open.
    pub max_wait: Duration,
}

impl Default for DirStoreOptions {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(50),
            max_wait: Duration::from_secs(2),
        }
    }
}

/// A config store backed by a watched directory of `.yaml`, `.yml` and `.json` files.
///
/// Files are read recursively, hidden ones skipped. A file is taken in whole or not at
/// all: if it does not load or validate, its last good objects stay in force and the
/// problem is reported. When two files define the same object, the first by path wins.
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
    hub: Arc<Hub>,
    inputs: mpsc::Sender<Input>,
}

/// What the worker thread is asked to do.
enum Input {
    /// The watcher saw something.
    Fs(notify::Result<notify::Event>),
    /// A write, and where to send its outcome.
    Write(WriteOp, oneshot::Sender<Result<u64, StoreError>>),
    /// The store is dropped.
    Stop,
}

/// A write request.
enum WriteOp {
    /// Create or replace these objects.
    Apply(Vec<Object>),
    /// Remove the objects with these keys.
    Delete(Vec<ObjectKey>),
}

impl DirStore {
    /// Reads and starts watching `root` with default options.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(root, DirStoreOptions::default())
    }

    /// Reads and starts watching `root`. The first snapshot (revision 1) holds what was
    /// there; it is ready when this returns.
    pub fn open_with(root: impl AsRef<Path>, options: DirStoreOptions) -> Result<Self, StoreError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, source }
        };
        let root = root.as_ref();
        let root = root.canonicalize().map_err(io(root))?;
        let (inputs, rx) = mpsc::channel();
        let events = inputs.clone();
        let watch_error = |source| StoreError::Watch {
            path: root.clone(),
            source,
        };
        // Watch before the first read, so nothing changed in between is missed.
        let mut watcher = notify::recommended_watcher(move |event| {
            // Fails only once the worker is gone, when events no longer matter.
            let _ = events.send(Input::Fs(event));
        })
        .map_err(watch_error)?;
        watcher
            .watch(&root, RecursiveMode::Recursive)
            .map_err(watch_error)?;

        let mut files = FileSet::new(root.clone());
        files.refresh([root.clone()]);
        let (objects, problems) = files.merged();
        let hub = Arc::new(Hub::new(objects, problems));

        let worker = Worker {
            root: root.clone(),
            files,
            hub: hub.clone(),
            pending: Pending::new(options.debounce, options.max_wait),
            _watcher: watcher,
        };
        std::thread::Builder::new()
            .name("mizzen-dir-store".into())
            .spawn(move || worker.run(rx))
            .map_err(io(&root))?;
        Ok(Self { root, hub, inputs })
    }

    /// The directory, as an absolute path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn write(&self, op: WriteOp) -> StoreFuture<'_, u64> {
        let (tx, rx) = oneshot::channel();
        let sent = self.inputs.send(Input::Write(op, tx));
        Box::pin(async move {
            sent.map_err(|_| StoreError::Closed)?;
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }
}

impl Drop for DirStore {
    fn drop(&mut self) {
        // The watcher's callback holds a sender too, so the channel alone never closes.
        let _ = self.inputs.send(Input::Stop);
    }
}

impl ConfigStore for DirStore {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.hub.snapshot()
    }

    fn subscribe(&self) -> Subscription {
        self.hub.subscribe()
    }

    fn problems(&self) -> watch::Receiver<Arc<[Problem]>> {
        self.hub.problems()
    }

    fn apply(&self, objects: Vec<Object>) -> StoreFuture<'_, u64> {
        self.write(WriteOp::Apply(objects))
    }

    fn delete(&self, keys: Vec<ObjectKey>) -> StoreFuture<'_, u64> {
        self.write(WriteOp::Delete(keys))
    }
}

/// The worker thread's state.
struct Worker {
    root: PathBuf,
    files: FileSet,
    hub: Arc<Hub>,
    pending: Pending,
    /// Kept alive for as long as the worker runs.
    _watcher: RecommendedWatcher,
}

impl Worker {
    fn run(mut self, inputs: mpsc::Receiver<Input>) {
        loop {
            let input = match self.pending.deadline() {
                Some(deadline) => {
                    match inputs.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                        Ok(input) => input,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            self.take_in_ready();
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                None => match inputs.recv() {
                    Ok(input) => input,
                    Err(mpsc::RecvError) => return,
                },
            };
            match input {
                Input::Fs(Ok(event)) => self.note(event),
                Input::Fs(Err(e)) => {
                    tracing::warn!(
                        "watching {}: {e}; reading it all again",
                        self.root.display()
                    );
                    self.pending
                        .add(self.root.clone(), Effect::Changed, Instant::now());
                }
                Input::Write(op, reply) => {
                    let outcome = match op {
                        WriteOp::Apply(objects) => self.apply(objects),
                        WriteOp::Delete(keys) => self.delete(keys),
                    };
                    // The caller may have stopped waiting; the write stands regardless.
                    let _ = reply.send(outcome);
                }
                Input::Stop => return,
            }
        }
    }

    /// Records a filesystem event for debouncing.
    fn note(&mut self, event: notify::Event) {
        let now = Instant::now();
        if event.need_rescan() {
            self.pending.add(self.root.clone(), Effect::Changed, now);
        }
        let Some(effect) = Effect::of(&event.kind) else {
            return;
        };
        for path in event.paths {
            if self.files.is_watched(&path) {
                self.pending.add(path, effect, now);
            }
        }
    }

    /// Reads the paths whose events have settled and publishes the result.
    fn take_in_ready(&mut self) {
        let ready = self.pending.take_ready(Instant::now());
        if !ready.is_empty() {
            self.files.refresh(ready);
            self.publish();
        }
    }

    /// Publishes the objects in force and the problems.
    fn publish(&self) -> u64 {
        let (objects, problems) = self.files.merged();
        self.hub.publish(objects, problems)
    }

    fn apply(&mut self, objects: Vec<Object>) -> Result<u64, StoreError> {
        admit(&objects)?;
        let keys: Vec<ObjectKey> = objects.iter().map(Object::key).collect();
        self.catch_up(&keys);
        let mut edits = Edits::default();
        for (key, object) in keys.into_iter().zip(objects) {
            let file = match self.files.definitions(&key).into_iter().next() {
                Some(file) => file,
                None => path_for(&self.root, &key),
            };
            let contents = edits.file(&self.files, &key, file)?;
            let object = Arc::new(object);
            match contents.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = object,
                None => contents.push((key, object)),
            }
        }
        self.carry_out(edits)
    }

    fn delete(&mut self, keys: Vec<ObjectKey>) -> Result<u64, StoreError> {
        self.catch_up(&keys);
        let missing: Vec<ObjectKey> = keys
            .iter()
            .filter(|k| self.files.definitions(k).is_empty())
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(StoreError::NotFound(missing));
        }
        let mut edits = Edits::default();
        for key in keys {
            // Every definition goes, so a duplicate does not come into force instead.
            for file in self.files.definitions(&key) {
                edits
                    .file(&self.files, &key, file)?
                    .retain(|(k, _)| *k != key);
            }
        }
        self.carry_out(edits)
    }

    /// Reads the files defining `keys` now, rather than when their events settle, so a
    /// write starts from what is on disk.
    fn catch_up(&mut self, keys: &[ObjectKey]) {
        let files: BTreeSet<PathBuf> = keys
            .iter()
            .flat_map(|k| self.files.definitions(k))
            .collect();
        self.files.refresh(files);
    }

    /// Writes the edited files, reads them back and publishes one revision for it all.
    fn carry_out(&mut self, edits: Edits) -> Result<u64, StoreError> {
        let mut ops = Vec::new();
        for (path, contents) in &edits.files {
            if *contents == self.files.objects_in(path) {
                continue;
            }
            ops.push(if contents.is_empty() {
                FileOp::Remove { path: path.clone() }
            } else {
                FileOp::Write {
                    path: path.clone(),
                    text: render(contents)?,
                }
            });
        }
        let written = commit(ops);
        // Even after a failure, what did change on disk is taken in.
        self.files.refresh(edits.files.into_keys());
        let revision = self.publish();
        written.map(|()| revision)
    }
}

/// The new contents of the files a write changes.
#[derive(Default)]
struct Edits {
    files: BTreeMap<PathBuf, Vec<Defined>>,
}

impl Edits {
    /// The contents of `file` being edited for `key`, starting from its objects in force.
    /// A file with problems is refused: rewriting it would lose what is in it.
    fn file(
        &mut self,
        files: &FileSet,
        key: &ObjectKey,
        file: PathBuf,
    ) -> Result<&mut Vec<Defined>, StoreError> {
        if files.has_problems(&file) {
            return Err(StoreError::FileHasProblems {
                key: key.clone(),
                file,
            });
        }
        Ok(self
            .files
            .entry(file)
            .or_insert_with_key(|f| files.objects_in(f)))
    }
}
