//! The herald as a library: everything but argument parsing, so tests reach it directly.

pub mod api;
pub mod metrics;
