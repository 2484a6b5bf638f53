//! Mizzen's command-line commands, as functions the `mizzen` binary wires to arguments.

pub mod table;
pub mod validate;
