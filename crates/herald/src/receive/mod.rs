//! OTLP receivers: gRPC and HTTP front doors onto the one `Ingest` path.

pub mod grpc;
pub mod http;
