//! Where Istio's own test inputs (samples, CRD validation corpus, analyzer cases) live,
//! for the conformance tests of every crate: `$MIZZEN_ISTIO_DATA`, else `shared/istio`
//! beside the checkout.

use std::path::{Path, PathBuf};

/// Istio's data folder, or `None` (with the reason printed) when this clone has none.
/// Under CI (`CI=true`) a missing folder is a failure, never a skip.
pub fn istio_data() -> Option<PathBuf> {
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
