//! Writing config files: where a new object goes, its YAML, and changing several files
//! so that each is either wholly old or wholly new (temporary file, then rename).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use mizzen_api::ObjectKey;
use tempfile::NamedTempFile;

use super::StoreError;
use super::files::Defined;

/// One file's change.
#[derive(Debug)]
pub(super) enum FileOp {
    /// Replace (or create) the file with this text.
    Write {
        /// The file.
        path: PathBuf,
        /// Its new content.
        text: String,
    },
    /// Remove the file.
    Remove {
        /// The file.
        path: PathBuf,
    },
}

/// The file a new object is written to: `<root>/<namespace>/<kind>-<name>.yaml`, or
/// `<root>/<kind>-<name>.yaml` for cluster-scoped objects.
pub(super) fn path_for(root: &Path, key: &ObjectKey) -> PathBuf {
    let kind: String = key
        .kind
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let file = format!("{kind}-{}.yaml", key.name);
    if key.namespace.is_empty() {
        root.join(file)
    } else {
        root.join(&key.namespace).join(file)
    }
}

/// The YAML text of `objects`, one document each.
pub(super) fn render(objects: &[Defined]) -> Result<String, StoreError> {
    let mut text = String::new();
    for (i, (key, object)) in objects.iter().enumerate() {
        if i > 0 {
            text.push_str("---\n");
        }
        let yaml = serde_yaml_ng::to_string(&**object).map_err(|source| StoreError::Serialize {
            key: key.clone(),
            source,
        })?;
        text.push_str(&yaml);
    }
    Ok(text)
}

/// Carries out `ops`. Every new text is written to a temporary file beside its target
/// and synced before any target changes, so a failure leaves most files untouched;
/// each target is then replaced by a rename, which readers see whole or not at all.
pub(super) fn commit(ops: Vec<FileOp>) -> Result<(), StoreError> {
    let mut staged = Vec::new();
    let mut removals = Vec::new();
    for op in ops {
        match op {
            FileOp::Write { path, text } => {
                let temp = stage(&path, &text).map_err(|source| StoreError::Io {
                    path: path.clone(),
                    source,
                })?;
                staged.push((temp, path));
            }
            FileOp::Remove { path } => removals.push(path),
        }
    }
    for (temp, path) in staged {
        temp.persist(&path).map_err(|e| StoreError::Io {
            path,
            source: e.error,
        })?;
    }
    for path in removals {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(StoreError::Io { path, source: e });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Writes `text` to a hidden temporary file in `path`'s directory (created if needed),
/// so the watcher ignores it and the rename stays within one filesystem.
fn stage(path: &Path, text: &str) -> std::io::Result<NamedTempFile> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".mizzen-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    temp.write_all(text.as_bytes())?;
    temp.as_file().sync_all()?;
    Ok(temp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: &str, namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    #[test]
    fn new_objects_go_to_one_file_each_by_namespace() {
        let root = Path::new("/cfg");
        assert_eq!(
            path_for(root, &key("VirtualService", "bookinfo", "reviews")),
            Path::new("/cfg/bookinfo/virtualservice-reviews.yaml")
        );
        assert_eq!(
            path_for(root, &key("Namespace", "", "bookinfo")),
            Path::new("/cfg/namespace-bookinfo.yaml")
        );
        assert_eq!(
            path_for(root, &key("../Odd", "ns", "x")),
            Path::new("/cfg/ns/---odd-x.yaml")
        );
    }

    #[test]
    fn commit_replaces_and_removes_files() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("a/kept.yaml");
        let gone = dir.path().join("gone.yaml");
        std::fs::write(&gone, "x").unwrap();
        commit(vec![
            FileOp::Write {
                path: kept.clone(),
                text: "new".into(),
            },
            FileOp::Remove { path: gone.clone() },
        ])
        .unwrap();
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "new");
        assert!(!gone.exists());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("a")).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }
}
