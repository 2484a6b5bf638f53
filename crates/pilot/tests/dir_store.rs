//! The directory store while files are created, edited, broken, fixed and deleted by
//! hand or written through the store: every change is seen once and in order, and a
//! broken edit never takes good objects away.
//!
//! Tests wait on the change stream and the problems list, with a timeout; they never
//! sleep.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mizzen_api::load::Loader;
use mizzen_api::{Object, ObjectKey};
use mizzen_pilot::store::{
    ChangeBatch, ChangeKind, ConfigStore, DirStore, Problem, StoreError, Subscription,
};

/// Far longer than any debounce, so only a lost event fails a test.
const WAIT: Duration = Duration::from_secs(10);

fn service(name: &str, port: u32) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  ports:\n  - port: {port}\n"
    )
}

fn deployment(name: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n"
    )
}

fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

fn object(yaml: &str) -> Object {
    let mut loaded = Loader::new().load_str(yaml, None);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded.objects.remove(0).object
}

fn key(kind: &str, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: kind.into(),
        namespace: namespace.into(),
        name: name.into(),
    }
}

/// The port of the Service `default/name` in force.
fn port(store: &DirStore, name: &str) -> Option<i32> {
    match store
        .snapshot()
        .get(&key("Service", "default", name))?
        .as_ref()
    {
        Object::Service(s) => Some(s.spec.as_ref()?.ports.as_ref()?[0].port),
        other => panic!("not a Service: {other:?}"),
    }
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// The next batch, which must come within [`WAIT`].
async fn next(sub: &mut Subscription) -> Arc<ChangeBatch> {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("no change seen in time")
        .expect("store closed")
}

/// The next batch's changes as `(kind of change, "Kind ns/name")`, checking that its
/// revision follows `revision`.
async fn expect_batch(sub: &mut Subscription, revision: &mut u64) -> Vec<(ChangeKind, String)> {
    let batch = next(sub).await;
    *revision += 1;
    assert_eq!(
        batch.revision(),
        *revision,
        "revisions go up by one per batch"
    );
    batch
        .changes
        .iter()
        .map(|c| (c.kind, c.key.to_string()))
        .collect()
}

/// Waits until the problems list satisfies `pred`, and returns it.
async fn problems_until(
    store: &DirStore,
    pred: impl FnMut(&Arc<[Problem]>) -> bool,
) -> Arc<[Problem]> {
    let mut rx = store.problems();
    let seen = tokio::time::timeout(WAIT, rx.wait_for(pred))
        .await
        .expect("problems not as expected in time")
        .expect("store closed");
    seen.clone()
}

fn added(s: &str) -> (ChangeKind, String) {
    (ChangeKind::Added, s.to_owned())
}

fn updated(s: &str) -> (ChangeKind, String) {
    (ChangeKind::Updated, s.to_owned())
}

fn removed(s: &str) -> (ChangeKind, String) {
    (ChangeKind::Removed, s.to_owned())
}

#[tokio::test]
async fn a_file_created_edited_broken_fixed_and_deleted_is_seen_once_per_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::open(dir.path()).unwrap();
    let mut sub = store.subscribe();
    let mut rev = sub.initial.revision;
    assert!(sub.initial.is_empty());
    let file = dir.path().join("web.yaml");

    write(&file, &service("web", 80));
    assert_eq!(
        expect_batch(&mut sub, &mut rev).await,
        [added("Service default/web")]
    );
    assert_eq!(port(&store, "web"), Some(80));

    write(&file, &service("web", 81));
    assert_eq!(
        expect_batch(&mut sub, &mut rev).await,
        [updated("Service default/web")]
    );
    assert_eq!(port(&store, "web"), Some(81));

    // Broken YAML: reported, and the good object stays.
    write(&file, "apiVersion: v1\nkind: Service\nmetadata: [oops\n");
    let problems = problems_until(&store, |p| !p.is_empty()).await;
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0].file.as_deref(),
        Some(file.canonicalize().unwrap().as_path())
    );
    assert!(problems[0].message.contains("web.yaml"), "{}", problems[0]);
    assert!(sub.try_next().is_none(), "a broken edit changes nothing");
    assert_eq!(port(&store, "web"), Some(81));

    // Valid YAML, invalid object: reported with its field; the good object stays.
    write(&file, &service("web", 70000));
    let problems = problems_until(&store, |p| p.iter().any(|p| p.object.is_some())).await;
    assert_eq!(problems.len(), 1);
    let message = &problems[0].message;
    assert!(message.contains("Service default/web"), "{message}");
    assert!(message.contains("spec.ports[0].port"), "{message}");
    assert!(message.contains("70000"), "{message}");
    assert!(sub.try_next().is_none(), "an invalid edit changes nothing");
    assert_eq!(port(&store, "web"), Some(81));

    write(&file, &service("web", 82));
    assert_eq!(
        expect_batch(&mut sub, &mut rev).await,
        [updated("Service default/web")]
    );
    assert!(store.problems().borrow().is_empty());
    assert_eq!(port(&store, "web"), Some(82));

    std::fs::remove_file(&file).unwrap();
    assert_eq!(
        expect_batch(&mut sub, &mut rev).await,
        [removed("Service default/web")]
    );
    assert!(store.snapshot().is_empty());
}

#[tokio::test]
async fn fixing_a_broken_file_back_to_what_was_in_force_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yaml");
    write(&file, &service("web", 80));
    let store = DirStore::open(dir.path()).unwrap();
    let mut sub = store.subscribe();
    let mut rev = sub.initial.revision;
    assert_eq!(port(&store, "web"), Some(80));

    write(&file, "kind: [");
    problems_until(&store, |p| !p.is_empty()).await;
    write(&file, &service("web", 80));
    problems_until(&store, |p| p.is_empty()).await;
    assert!(sub.try_next().is_none());

    // The next change is the next batch: nothing was reported in between.
    write(&dir.path().join("api.yaml"), &service("api", 80));
    assert_eq!(
        expect_batch(&mut sub, &mut rev).await,
        [added("Service default/api")]
    );
}

#[tokio::test]
async fn a_file_broken_before_the_store_opens_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("bad.yaml"), &service("web", 0));
    write(&dir.path().join("good.yaml"), &service("api", 80));
    let store = DirStore::open(dir.path()).unwrap();
    let snapshot = store.snapshot();
    assert_eq!(snapshot.revision, 1);
    assert_eq!(snapshot.len(), 1);
    assert_eq!(port(&store, "api"), Some(80));
    let problems = store.problems().borrow().clone();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].object, Some(key("Service", "default", "web")));
}

#[tokio::test]
async fn objects_in_one_file_change_together_and_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::open(dir.path()).unwrap();
    let mut sub = store.subscribe();
    let mut rev = sub.initial.revision;
    let file = dir.path().join("app.yaml");

    let all = [namespace("shop"), service("web", 80), deployment("web")].join("---\n");
    write(&file, &all);
    assert_eq!(
        expect_batch(&mut sub, &mut rev).await,
        [
            added("Deployment default/web"),
            added("Namespace shop"),
            added("Service default/web")
        ]
    );

    let edited = [namespace("shop"), service("web", 8080), deployment("web")].join("---\n");
    write(&file, &edited);
    assert_eq!(
        expect_batch(&mut sub, &mut rev).await,
        [updated("Service default/web")]
    );

    // One bad document keeps the whole file as it was.
    let half_broken = [namespace("shop"), service("web", 70000)].join("---\n");
    write(&file, &half_broken);
    problems_until(&store, |p| !p.is_empty()).await;
    assert!(sub.try_next().is_none());
    assert_eq!(store.snapshot().len(), 3);

    let fewer = [namespace("shop"), service("web", 8080)].join("---\n");
    write(&file, &fewer);
    assert_eq!(
        expect_batch(&mut sub, &mut rev).await,
        [removed("Deployment default/web")]
    );
    assert!(store.problems().borrow().is_empty());
}

#[tokio::test]
async fn the_same_object_in_two_files_is_a_conflict_and_the_first_file_wins() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("a.yaml");
    let second = dir.path().join("b.yaml");
    write(&first, &service("web", 80));
    write(&second, &service("web", 90));
    let store = DirStore::open(dir.path()).unwrap();
    let mut sub = store.subscribe();
    let mut rev = sub.initial.revision;
    assert_eq!(port(&store, "web"), Some(80));
    let problems = store.problems().borrow().clone();
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0].file.as_deref(),
        Some(store.root().join("b.yaml").as_path())
    );
    assert!(
        problems[0].message.contains("already defined in"),
        "{}",
        problems[0]
    );

    // The duplicate comes into force once the first definition is gone.
    std::fs::remove_file(&first).unwrap();
    assert_eq!(
        expect_batch(&mut sub, &mut rev).await,
        [updated("Service default/web")]
    );
    assert_eq!(port(&store, "web"), Some(90));
    assert!(store.problems().borrow().is_empty());
}

#[tokio::test]
async fn removing_a_directory_removes_its_objects_and_new_directories_are_watched() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::open(dir.path()).unwrap();
    let mut sub = store.subscribe();
    let mut rev = sub.initial.revision;
    let ns = dir.path().join("shop");

    write(&ns.join("deep/web.yaml"), &service("web", 80));
    assert_eq!(
        expect_batch(&mut sub, &mut rev).await,
        [added("Service default/web")]
    );
    write(&ns.join("api.yml"), &service("api", 80));
    assert_eq!(
        expect_batch(&mut sub, &mut rev).await,
        [added("Service default/api")]
    );

    std::fs::remove_dir_all(&ns).unwrap();
    let mut gone = Vec::new();
    while gone.len() < 2 {
        gone.extend(expect_batch(&mut sub, &mut rev).await);
    }
    gone.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        gone,
        [
            removed("Service default/api"),
            removed("Service default/web")
        ]
    );
}

#[tokio::test]
async fn an_editor_save_by_rename_is_one_update_and_hidden_files_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yaml");
    write(&file, &service("web", 80));
    let store = DirStore::open(dir.path()).unwrap();
    let mut sub = store.subscribe();
    let mut rev = sub.initial.revision;

    let swap = dir.path().join(".web.yaml.swp");
    write(&swap, &service("web", 81));
    std::fs::rename(&swap, &file).unwrap();
    assert_eq!(
        expect_batch(&mut sub, &mut rev).await,
        [updated("Service default/web")]
    );
    assert_eq!(port(&store, "web"), Some(81));

    write(&dir.path().join(".hidden.yaml"), &service("ghost", 80));
    write(&dir.path().join("notes.txt"), "not config");
    write(&dir.path().join("api.yaml"), &service("api", 80));
    assert_eq!(
        expect_batch(&mut sub, &mut rev).await,
        [added("Service default/api")]
    );
    assert_eq!(store.snapshot().len(), 2);
}

#[tokio::test]
async fn apply_writes_one_file_per_object_and_is_seen_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::open(dir.path()).unwrap();
    let mut sub = store.subscribe();
    let mut rev = sub.initial.revision;

    let written = store
        .apply(vec![
            object(&service("web", 80)),
            object(&namespace("shop")),
        ])
        .await
        .unwrap();
    assert_eq!(
        expect_batch(&mut sub, &mut rev).await,
        [added("Namespace shop"), added("Service default/web")]
    );
    assert_eq!(written, rev);
    let file = store.root().join("default/service-web.yaml");
    assert!(file.is_file());
    assert!(store.root().join("namespace-shop.yaml").is_file());
    assert_eq!(
        object(&std::fs::read_to_string(&file).unwrap()),
        object(&service("web", 80))
    );

    // An update goes to the file that defines the object.
    let written = store
        .apply(vec![object(&service("web", 81))])
        .await
        .unwrap();
    assert_eq!(
        expect_batch(&mut sub, &mut rev).await,
        [updated("Service default/web")]
    );
    assert_eq!(written, rev);
    assert_eq!(port(&store, "web"), Some(81));

    // Applying what is in force changes nothing.
    let same = store
        .apply(vec![object(&service("web", 81))])
        .await
        .unwrap();
    assert_eq!(same, rev);

    // The watcher's echo of those writes was not reported: the next batch is this one.
    write(&dir.path().join("api.yaml"), &service("api", 80));
    assert_eq!(
        expect_batch(&mut sub, &mut rev).await,
        [added("Service default/api")]
    );

    let deleted = store
        .delete(vec![key("Service", "default", "web")])
        .await
        .unwrap();
    assert_eq!(
        expect_batch(&mut sub, &mut rev).await,
        [removed("Service default/web")]
    );
    assert_eq!(deleted, rev);
    assert!(!file.exists());
    write(&dir.path().join("db.yaml"), &service("db", 80));
    assert_eq!(
        expect_batch(&mut sub, &mut rev).await,
        [added("Service default/db")]
    );
}

#[tokio::test]
async fn apply_and_delete_edit_a_multi_object_file_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.yaml");
    write(
        &file,
        &[service("web", 80), deployment("web")].join("---\n"),
    );
    let store = DirStore::open(dir.path()).unwrap();
    let mut sub = store.subscribe();
    let mut rev = sub.initial.revision;

    store
        .apply(vec![object(&service("web", 81))])
        .await
        .unwrap();
    assert_eq!(
        expect_batch(&mut sub, &mut rev).await,
        [updated("Service default/web")]
    );
    let reloaded = Loader::new().load_path(&file);
    assert_eq!(reloaded.objects.len(), 2, "both objects stay in the file");
    assert_eq!(reloaded.objects[0].object, object(&service("web", 81)));

    store
        .delete(vec![key("Deployment", "default", "web")])
        .await
        .unwrap();
    assert_eq!(
        expect_batch(&mut sub, &mut rev).await,
        [removed("Deployment default/web")]
    );
    let reloaded = Loader::new().load_path(&file);
    assert_eq!(reloaded.objects.len(), 1);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no file left behind"
    );
}

#[tokio::test]
async fn apply_refuses_a_batch_with_an_invalid_object_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::open(dir.path()).unwrap();
    let mut sub = store.subscribe();

    let err = store
        .apply(vec![
            object(&service("web", 80)),
            object(&service("bad", 70000)),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(r) if r.len() == 1),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("Service default/bad"), "{message}");
    assert!(
        message.contains("spec.ports[0].port: port must be between 1-65535, got 70000"),
        "{message}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
    assert!(sub.try_next().is_none());
    assert_eq!(store.snapshot().revision, 1);
}

#[tokio::test]
async fn delete_refuses_objects_that_do_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("web.yaml"), &service("web", 80));
    let store = DirStore::open(dir.path()).unwrap();

    let err = store
        .delete(vec![
            key("Service", "default", "web"),
            key("Service", "default", "nope"),
        ])
        .await
        .unwrap_err();
    assert!(matches!(&err, StoreError::NotFound(k) if k == &[key("Service", "default", "nope")]));
    assert!(err.to_string().contains("Service default/nope"), "{err}");
    assert_eq!(store.snapshot().len(), 1, "nothing deleted");
}

#[tokio::test]
async fn apply_refuses_to_rewrite_a_file_with_problems() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.yaml");
    write(
        &file,
        &[service("web", 80), deployment("web")].join("---\n"),
    );
    let store = DirStore::open(dir.path()).unwrap();
    write(&file, "half: [edited");
    problems_until(&store, |p| !p.is_empty()).await;

    let err = store
        .apply(vec![object(&service("web", 81))])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::FileHasProblems { .. }), "{err:?}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "half: [edited",
        "the edit is kept"
    );
}
