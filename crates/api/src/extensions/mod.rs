//! `extensions.istio.io`: Wasm plugins (loaded and validated; not run by the proxy).

mod wasm_plugin;

pub use wasm_plugin::*;
