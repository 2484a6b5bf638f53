//! Istio's own goldens for the tests: the filters its authz builder emits.

use std::path::{Path, PathBuf};

use mizzen_xds::pb::envoy::config::listener::v3::{Filter, filter};
use mizzen_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use mizzen_xds::pb::google::protobuf::Any;

/// Istio's data folder (`$MIZZEN_ISTIO_DATA`, else `shared/istio` beside the checkout);
/// `None` with the reason printed when absent, a failure under CI.
pub(crate) fn istio_data() -> Option<PathBuf> {
    let dir = std::env::var_os("MIZZEN_ISTIO_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/istio"));
    if dir.is_dir() {
        return Some(dir);
    }
    let reason = format!(
        "Istio data not found at {} (set MIZZEN_ISTIO_DATA)",
        dir.display()
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{reason}");
    eprintln!("skipped: {reason}");
    None
}

/// One filter of a golden file.
pub(crate) struct Golden {
    /// The file's name.
    pub(crate) file: String,
    /// The filter's name.
    pub(crate) name: String,
    /// Its `typed_config`.
    pub(crate) config: Any,
}

/// The filters of Istio's authz builder goldens (`testdata/<kind>/*-out*.yaml`), HTTP
/// filters for `http`, network ones for `tcp`, in file name order.
pub(crate) fn istio_filters(kind: &str) -> Vec<Golden> {
    let Some(data) = istio_data() else {
        return Vec::new();
    };
    let dir = data
        .join("xds/pilot/pkg/security/authz/builder/testdata")
        .join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains("-out"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let (name, config) = if kind == "http" {
                let f: HttpFilter = mizzen_xds::json::from_yaml(&text).unwrap();
                match f.config_type {
                    Some(http_filter::ConfigType::TypedConfig(any)) => (f.name, any),
                    _ => panic!("{file}: no typed_config"),
                }
            } else {
                let f: Filter = mizzen_xds::json::from_yaml(&text).unwrap();
                match f.config_type {
                    Some(filter::ConfigType::TypedConfig(any)) => (f.name, any),
                    _ => panic!("{file}: no typed_config"),
                }
            };
            Golden { file, name, config }
        })
        .collect()
}
