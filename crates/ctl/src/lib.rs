//! Mizzen's command-line commands, as functions the `mizzen` binary wires to arguments.

pub mod analyze;
pub mod http;
pub mod proxy_config;
pub mod proxy_status;
pub mod table;
pub mod validate;
