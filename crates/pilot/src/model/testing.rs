//! Helpers for the model's unit tests: config snapshots from YAML text.

use std::collections::BTreeMap;
use std::sync::Arc;

use mizzen_api::load::Loader;
use mizzen_api::validate::Severity;

use crate::store::Snapshot;

/// A snapshot of the objects in `yaml` (namespace `default` when unset), each of which
/// must load and pass validation, so that tests only use config Istio accepts.
pub(crate) fn snapshot(yaml: &str) -> Snapshot {
    let result = Loader::new().load_str(yaml, None);
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    let objects = result
        .objects
        .into_iter()
        .map(|loaded| {
            let errors: Vec<String> = loaded
                .object
                .validate()
                .into_iter()
                .filter(|i| i.severity == Severity::Error)
                .map(|i| i.to_string())
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", loaded.object.key());
            (loaded.object.key(), Arc::new(loaded.object))
        })
        .collect::<BTreeMap<_, _>>();
    Snapshot::new(1, objects)
}
