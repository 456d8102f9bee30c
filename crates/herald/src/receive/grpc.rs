//! OTLP/gRPC receiver (traces and logs, gzip accepted). Authenticates each export before
//! decoding it (UNAUTHENTICATED, PERMISSION_DENIED) and answers only after the commit: OK,
//! UNAVAILABLE (retry), INVALID_ARGUMENT (malformed) or INTERNAL.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::bytes::Buf;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::Status;
use tonic_prost::ProstEncoder;

use crate::auth::Denied;
use crate::config::ReceiveConfig;
use crate::ingest::{Ingest, IngestError};
use crate::receive::{Admission, InflightBudget, Refusal};

/// Map a refused export to the status an OTLP exporter understands: retryable ones are
/// UNAVAILABLE, which every OTLP SDK retries with backoff; auth refusals are not retried.
pub fn status_of(e: &IngestError) -> Status {
    match e {
        IngestError::Denied(denied) => denied_status(denied),
        IngestError::Write(e) if e.is_retryable() => Status::unavailable(e.to_string()),
        IngestError::Write(_) => Status::internal("the herald could not store this export; see its logs"),
    }
}

pub fn denied_status(denied: &Denied) -> Status {
    match denied {
        Denied::Unauthenticated { message, .. } => Status::unauthenticated(message.clone()),
        Denied::Forbidden { message, .. } => Status::permission_denied(message.clone()),
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// One OTLP export method: its protobuf messages, gRPC names and how ingest handles it.
pub trait Export: Send + Sync + 'static {
    type Request: Message + Default + Send + 'static;
    type Response: Message + Send + 'static;
    /// The gRPC service name (`NamedService`).
    const SERVICE: &'static str;
    /// The one method's path.
    const PATH: &'static str;
    /// The parts of an encoded request, counted before it is decoded (to price it).
    fn count(body: &[u8]) -> Result<helix_model::shape::Counts, prost::DecodeError>;
    /// `owner`: the authenticated sender's instrument (`None` when auth is off).
    fn handle(
        ingest: Arc<Ingest>,
        owner: Option<String>,
        request: Self::Request,
    ) -> BoxFuture<Result<Self::Response, Status>>;
}

/// `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
pub struct Traces;

impl Export for Traces {
    type Request = ExportTraceServiceRequest;
    type Response = ExportTraceServiceResponse;
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    fn count(body: &[u8]) -> Result<helix_model::shape::Counts, prost::DecodeError> {
        helix_model::shape::count_traces(body)
    }
    fn handle(
        ingest: Arc<Ingest>,
        owner: Option<String>,
        request: Self::Request,
    ) -> BoxFuture<Result<Self::Response, Status>> {
        Box::pin(async move {
            let accepted = ingest.traces(request, "grpc", owner.as_deref()).await.map_err(|e| status_of(&e))?;
            Ok(accepted.trace_response())
        })
    }
}

/// `opentelemetry.proto.collector.logs.v1.LogsService/Export`.
pub struct Logs;

impl Export for Logs {
    type Request = ExportLogsServiceRequest;
    type Response = ExportLogsServiceResponse;
    const SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    fn count(body: &[u8]) -> Result<helix_model::shape::Counts, prost::DecodeError> {
        helix_model::shape::count_logs(body)
    }
    fn handle(
        ingest: Arc<Ingest>,
        owner: Option<String>,
        request: Self::Request,
    ) -> BoxFuture<Result<Self::Response, Status>> {
        Box::pin(async move {
            let accepted = ingest.logs(request, owner.as_deref()).await.map_err(|e| status_of(&e))?;
            Ok(accepted.logs_response())
        })
    }
}

/// The protobuf codec of an export whose decoder answers a body that is not the method's
/// message with INVALID_ARGUMENT: the client's data is at fault and retrying cannot help
/// (tonic's own decoder calls it INTERNAL). It prices each request before decoding it and
/// admits it against the in-flight budget (OUT_OF_RANGE when it can never fit, UNAVAILABLE
/// while the budget is taken).
struct OtlpCodec<E>(InflightBudget, PhantomData<E>);

struct OtlpDecoder<E>(InflightBudget, PhantomData<E>);

/// A decoded request with its share of the in-flight budget, held until it is answered.
struct Admitted<T> {
    request: T,
    admission: Admission,
}

fn invalid(e: prost::DecodeError) -> Status {
    Status::invalid_argument(format!("the request is not a valid OTLP protobuf message: {e}"))
}

impl<E: Export> Decoder for OtlpDecoder<E> {
    type Item = Admitted<E::Request>;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        // tonic hands over the whole message in one contiguous buffer.
        let cost = E::count(buf.chunk()).map_err(invalid)?.estimated_bytes();
        let admission = self.0.admit(cost).map_err(|refusal| match refusal {
            Refusal::TooLarge { .. } => Status::out_of_range(refusal.to_string()),
            Refusal::Busy { .. } => Status::unavailable(refusal.to_string()),
        })?;
        let request = E::Request::decode(buf).map_err(invalid)?;
        Ok(Some(Admitted { request, admission }))
    }
}

impl<E: Export> Codec for OtlpCodec<E> {
    type Encode = E::Response;
    type Decode = Admitted<E::Request>;
    type Encoder = ProstEncoder<E::Response>;
    type Decoder = OtlpDecoder<E>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        OtlpDecoder(self.0.clone(), PhantomData)
    }
}

/// The unary handler tonic's `Grpc` calls with the decoded request, and the sender's instrument.
struct Handler<E>(Arc<Ingest>, Option<String>, PhantomData<E>);

impl<E: Export> UnaryService<Admitted<E::Request>> for Handler<E> {
    type Response = E::Response;
    type Future = BoxFuture<Result<tonic::Response<E::Response>, Status>>;

    fn call(&mut self, request: tonic::Request<Admitted<E::Request>>) -> Self::Future {
        let Admitted { request, admission } = request.into_inner();
        let handled = E::handle(self.0.clone(), self.1.take(), request);
        Box::pin(async move {
            let answer = handled.await.map(tonic::Response::new);
            drop(admission);
            answer
        })
    }
}

/// The gRPC service of one export method, gzip accepted and sent, bounded request size.
pub struct OtlpService<E> {
    ingest: Arc<Ingest>,
    max_request_bytes: usize,
    _export: PhantomData<E>,
}

impl<E> Clone for OtlpService<E> {
    fn clone(&self) -> Self {
        OtlpService { ingest: self.ingest.clone(), max_request_bytes: self.max_request_bytes, _export: PhantomData }
    }
}

impl<E: Export> OtlpService<E> {
    pub fn new(ingest: Arc<Ingest>, config: &ReceiveConfig) -> Self {
        OtlpService { ingest, max_request_bytes: config.max_request_bytes, _export: PhantomData }
    }
}

impl<E: Export> NamedService for OtlpService<E> {
    const NAME: &'static str = E::SERVICE;
}

impl<E, B> tower::Service<http::Request<B>> for OtlpService<E>
where
    E: Export,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != E::PATH {
            return Box::pin(async {
                Ok(Status::unimplemented("this OTLP service has one method: Export").into_http())
            });
        }
        // Authenticated before the body is read: an unauthenticated client costs no decoding.
        let owner = match self.ingest.auth.writer(request.headers()) {
            Ok(owner) => owner,
            Err(denied) => return Box::pin(async move { Ok(denied_status(&denied).into_http()) }),
        };
        let handler = Handler::<E>(self.ingest.clone(), owner, PhantomData);
        let max = self.max_request_bytes;
        let budget = self.ingest.budget.clone();
        Box::pin(async move {
            let mut gzip = EnabledCompressionEncodings::default();
            gzip.enable(CompressionEncoding::Gzip);
            // Oversized requests are refused by the framing with OUT_OF_RANGE, before decoding.
            let mut grpc = Grpc::new(OtlpCodec::<E>(budget, PhantomData))
                .apply_compression_config(gzip, gzip)
                .apply_max_message_size_config(Some(max), None);
            Ok(grpc.unary(handler, request).await)
        })
    }
}

/// Serve OTLP/gRPC on an already-bound listener until `shutdown` fires; in-flight exports finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ingest: Arc<Ingest>,
    config: ReceiveConfig,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(OtlpService::<Traces>::new(ingest.clone(), &config))
        .add_service(OtlpService::<Logs>::new(ingest, &config))
        .serve_with_incoming_shutdown(tokio_stream_from(listener), async move { shutdown.cancelled().await })
        .await
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
