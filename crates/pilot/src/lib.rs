//! Control plane.

pub mod store;
