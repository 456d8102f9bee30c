//! The herald as a library: everything but argument parsing, so tests reach it directly.
//! Data flow: receive → ingest (interpret, resolve) → write → forward; api reads the store.

pub mod api;
pub mod auth;
pub mod canary;
pub mod config;
pub mod connections;
pub mod emit;
pub mod export;
pub mod forward;
pub mod ingest;
pub mod inspector;
pub mod instruments;
pub mod metered;
pub mod metrics;
pub mod notify;
pub mod receive;
pub mod resolve;
pub mod server;
pub mod simulate;
pub mod tls;
pub mod write;
