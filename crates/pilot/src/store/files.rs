//! The config files of a directory: each file's last good objects and its problems,
//! and the objects in force once all files are put together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mizzen_api::load::{Loader, is_config_file};
use mizzen_api::{Object, ObjectKey};

use super::{Problem, rejection};

/// An object as defined in a file.
pub(super) type Defined = (ObjectKey, Arc<Object>);

/// Every config file under a root directory, as last read.
#[derive(Debug)]
pub(super) struct FileSet {
    root: PathBuf,
    loader: Loader,
    files: BTreeMap<PathBuf, FileState>,
}

#[derive(Debug, Default)]
struct FileState {
    /// The text last read, good or not; `None` if it could not be read.
    text: Option<String>,
    /// The objects of the last text that loaded and validated, in file order.
    objects: Vec<Defined>,
    /// What is wrong with the text last read; empty when `objects` came from it.
    problems: Vec<Problem>,
}

impl FileSet {
    /// No files yet under `root`.
    pub(super) fn new(root: PathBuf) -> Self {
        Self {
            root,
            loader: Loader::new(),
            files: BTreeMap::new(),
        }
    }

    /// True for paths that may hold config: under the root and not hidden (editors'
    /// swap files, the store's own temporary files).
    pub(super) fn is_watched(&self, path: &Path) -> bool {
        path.strip_prefix(&self.root).is_ok_and(|rel| {
            !rel.components()
                .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
        })
    }

    /// Reads `paths` again: files, and directories (every config file in them, or that
    /// was in them). A file that is gone loses its objects; a file that does not load or
    /// validate keeps its last good objects and gets problems.
    pub(super) fn refresh(&mut self, paths: impl IntoIterator<Item = PathBuf>) {
        let mut files = BTreeSet::new();
        for path in paths {
            if is_config_file(&path) && !path.is_dir() {
                files.insert(path);
                continue;
            }
            files.extend(self.files.keys().filter(|f| f.starts_with(&path)).cloned());
            if path.is_dir() {
                scan(&path, &mut files);
            }
        }
        for file in files {
            self.refresh_file(file);
        }
    }

    fn refresh_file(&mut self, path: PathBuf) {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.files.remove(&path);
                return;
            }
            Err(e) => {
                let problem = Problem {
                    file: Some(path.clone()),
                    object: None,
                    message: format!("{}: cannot read: {e}", path.display()),
                };
                let state = self.files.entry(path).or_default();
                state.text = None;
                state.problems = vec![problem];
                return;
            }
        };
        let previous = self.files.get(&path);
        if previous.and_then(|s| s.text.as_ref()) == Some(&text) {
            return;
        }
        let previous = previous.map_or(&[][..], |s| &s.objects[..]);
        let (objects, problems) = load(&self.loader, &text, &path, previous);
        let state = FileState {
            text: Some(text),
            objects,
            problems,
        };
        self.files.insert(path, state);
    }

    /// The objects in force (the first definition of each key, in path order) and every
    /// problem, including duplicate definitions.
    pub(super) fn merged(&self) -> (BTreeMap<ObjectKey, Arc<Object>>, Vec<Problem>) {
        let mut objects = BTreeMap::new();
        let mut owners: BTreeMap<&ObjectKey, &Path> = BTreeMap::new();
        let mut problems = Vec::new();
        for (path, state) in &self.files {
            problems.extend(state.problems.iter().cloned());
            for (key, object) in &state.objects {
                match owners.get(key) {
                    Some(first) => problems.push(Problem {
                        file: Some(path.clone()),
                        object: Some(key.clone()),
                        message: format!(
                            "{}: {key} is ignored: it is already defined in {}",
                            path.display(),
                            first.display()
                        ),
                    }),
                    None => {
                        owners.insert(key, path);
                        objects.insert(key.clone(), object.clone());
                    }
                }
            }
        }
        (objects, problems)
    }

    /// The files defining `key`, in path order; the first one's definition is in force.
    pub(super) fn definitions(&self, key: &ObjectKey) -> Vec<PathBuf> {
        self.files
            .iter()
            .filter(|(_, s)| s.objects.iter().any(|(k, _)| k == key))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// The objects `path` defines, in file order.
    pub(super) fn objects_in(&self, path: &Path) -> Vec<Defined> {
        self.files
            .get(path)
            .map(|s| s.objects.clone())
            .unwrap_or_default()
    }

    /// True when `path`'s text on disk is not what its objects came from.
    pub(super) fn has_problems(&self, path: &Path) -> bool {
        self.files.get(path).is_some_and(|s| !s.problems.is_empty())
    }
}

/// Loads and validates a file's text: its objects and no problems, or the previous
/// objects and the problems found.
fn load(
    loader: &Loader,
    text: &str,
    path: &Path,
    previous: &[Defined],
) -> (Vec<Defined>, Vec<Problem>) {
    let loaded = loader.load_str(text, Some(path));
    let mut problems: Vec<Problem> = loaded
        .errors
        .iter()
        .map(|e| Problem {
            file: Some(path.to_owned()),
            object: None,
            message: e.to_string(),
        })
        .collect();
    for l in &loaded.objects {
        if let Some(rejected) = rejection(&l.object) {
            // Point at the first offending field's line.
            let origin = l.origin.at_field(text, &rejected.issues[0].path);
            problems.push(Problem {
                file: Some(path.to_owned()),
                object: Some(rejected.key.clone()),
                message: format!("{origin}: {rejected}"),
            });
        }
    }
    if problems.is_empty() {
        let objects = loaded
            .objects
            .into_iter()
            .map(|l| (l.object.key(), Arc::new(l.object)))
            .collect();
        (objects, problems)
    } else {
        (previous.to_vec(), problems)
    }
}

/// Adds every config file under `dir` to `files`, skipping hidden entries.
fn scan(dir: &Path, files: &mut BTreeSet<PathBuf>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!("cannot list {}: {e}", dir.display());
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        match entry.file_type() {
            Ok(t) if t.is_dir() => scan(&path, files),
            Ok(_) if is_config_file(&path) => {
                files.insert(path);
            }
            _ => {}
        }
    }
}
