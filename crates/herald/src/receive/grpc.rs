//! OTLP/gRPC receiver (traces and logs, gzip accepted). Answers only after the commit:
//! OK, UNAVAILABLE (retry), INVALID_ARGUMENT (malformed) or INTERNAL.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use crate::config::ReceiveConfig;
use crate::ingest::Ingest;
use crate::write::WriteError;

/// The gRPC face of `Ingest`.
#[derive(Clone)]
pub struct OtlpGrpc {
    ingest: Arc<Ingest>,
}

/// Map a failed write to the status an OTLP exporter understands: retryable ones are
/// UNAVAILABLE, which every OTLP SDK retries with backoff.
pub fn status_of(e: &WriteError) -> Status {
    if e.is_retryable() {
        Status::unavailable(e.to_string())
    } else {
        Status::internal("the herald could not store this export; see its logs")
    }
}

#[tonic::async_trait]
impl TraceService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let accepted = self.ingest.traces(request.into_inner(), "grpc").await.map_err(|e| status_of(&e))?;
        Ok(Response::new(accepted.trace_response()))
    }
}

#[tonic::async_trait]
impl LogsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let accepted = self.ingest.logs(request.into_inner()).await.map_err(|e| status_of(&e))?;
        Ok(Response::new(accepted.logs_response()))
    }
}

/// Serve OTLP/gRPC on an already-bound listener until `shutdown` fires; in-flight exports finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ingest: Arc<Ingest>,
    config: ReceiveConfig,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let service = OtlpGrpc { ingest };
    let traces = TraceServiceServer::new(service.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(config.max_request_bytes);
    let logs = LogsServiceServer::new(service)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(config.max_request_bytes);
    tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(malformed_is_invalid_argument))
        .add_service(traces)
        .add_service(logs)
        .serve_with_incoming_shutdown(tokio_stream_from(listener), async move { shutdown.cancelled().await })
        .await
}

/// tonic answers a body that does not decode as protobuf with INTERNAL; for the client it is
/// INVALID_ARGUMENT (its data is at fault, retrying cannot help). Our handlers never answer
/// INTERNAL with this message, so the rewrite only touches decode failures.
fn malformed_is_invalid_argument<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let internal = headers.get("grpc-status").is_some_and(|v| v.as_bytes() == b"13");
    let decode = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| m.starts_with("failed%20to%20decode") || m.starts_with("failed to decode"));
    if internal && decode {
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
    }
    response
}

/// Accepted connections with Nagle off: exports are small request/response exchanges.
fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl futures_core::Stream<Item = Result<tokio::net::TcpStream, std::io::Error>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|stream| {
            let _ = stream.set_nodelay(true);
        })
    })
}
