//! `telemetry.istio.io`: metrics, access logging and tracing settings.

mod telemetry;

pub use telemetry::*;
