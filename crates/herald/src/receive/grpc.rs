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
use tokio_util::either::Either;
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

fn refused(refusal: Refusal) -> Status {
    match refusal {
        Refusal::TooLarge { .. } => Status::out_of_range(refusal.to_string()),
        Refusal::Busy { .. } => Status::unavailable(refusal.to_string()),
    }
}

pin_project_lite::pin_project! {
    /// A request body whose bytes hold their share of the in-flight budget as they arrive:
    /// tonic buffers a whole message before the decoder prices it, and eight 30 MB exports
    /// buffered at once must not sit outside the bound. Released when tonic drops the body,
    /// after decoding and before the export is processed.
    struct BudgetedBody<B> {
        #[pin]
        inner: B,
        budget: InflightBudget,
        admission: Option<Admission>,
        received: u64,
    }
}

impl<B> tonic::codegen::Body for BudgetedBody<B>
where
    B: tonic::codegen::Body,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Data = B::Data;
    // tonic hands a `Status` found in the error back to the client as it is (UNAVAILABLE, …).
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = match std::task::ready!(this.inner.poll_frame(cx)) {
            None => return Poll::Ready(None),
            Some(Err(e)) => return Poll::Ready(Some(Err(Status::from_error(e.into())))),
            Some(Ok(frame)) => frame,
        };
        if let Some(data) = frame.data_ref() {
            *this.received = this.received.saturating_add(data.remaining() as u64);
            let admitted = match this.admission.take() {
                None => this.budget.admit(*this.received),
                Some(held) => this.budget.grow(held, *this.received),
            };
            match admitted {
                Ok(admission) => *this.admission = Some(admission),
                Err(refusal) => return Poll::Ready(Some(Err(refused(refusal)))),
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
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
        let admission = self.0.admit(cost).map_err(refused)?;
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
            let mut grpc = Grpc::new(OtlpCodec::<E>(budget.clone(), PhantomData))
                .apply_compression_config(gzip, gzip)
                .apply_max_message_size_config(Some(max), None);
            let request = request.map(|inner| BudgetedBody { inner, budget, admission: None, received: 0 });
            Ok(grpc.unary(handler, request).await)
        })
    }
}

/// Serve OTLP/gRPC on an already-bound listener until `shutdown` fires; in-flight exports
/// finish. HTTP/2 keep-alive pings find dead peers, each connection has at most 64 exports in
/// flight, and at most `--max-connections` connections are open (more are closed at once).
/// With `tls`, each connection first completes a TLS handshake.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ingest: Arc<Ingest>,
    config: ReceiveConfig,
    limits: crate::connections::ConnectionLimits,
    tls: Option<Arc<crate::tls::TlsListener>>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
        .max_concurrent_streams(Some(64))
        .tcp_keepalive(Some(std::time::Duration::from_secs(60)))
        .add_service(OtlpService::<Traces>::new(ingest.clone(), &config))
        .add_service(OtlpService::<Logs>::new(ingest, &config))
        .serve_with_incoming_shutdown(capped(listener, limits, tls), async move { shutdown.cancelled().await })
        .await
}

/// Accepted connections, Nagle off (exports are small request/response exchanges), each
/// holding a place under the cap; accept errors (out of file descriptors) are waited out, not
/// passed to tonic, which would stop serving. TLS handshakes run in their own tasks, so a slow
/// one never holds up the accept loop.
fn capped(
    listener: tokio::net::TcpListener,
    limits: crate::connections::ConnectionLimits,
    tls: Option<Arc<crate::tls::TlsListener>>,
) -> impl futures_core::Stream<Item = Result<Capped, std::io::Error>> {
    let max = limits.max_connections;
    let places = Arc::new(tokio::sync::Semaphore::new(max.max(1)));
    let (ready, incoming) = tokio::sync::mpsc::channel::<Result<Capped, std::io::Error>>(64);
    tokio::spawn(async move {
        let (mut errors, mut refused) = (0u64, 0u64);
        loop {
            let accepted = tokio::select! {
                // tonic stopped serving (shutdown): stop accepting and release the port.
                () = ready.closed() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => match places.clone().try_acquire_owned() {
                    Ok(place) => {
                        let _ = stream.set_nodelay(true);
                        let info = tonic::transport::server::Connected::connect_info(&stream);
                        let ready = ready.clone();
                        let tls = tls.clone();
                        tokio::spawn(async move {
                            let stream = match tls {
                                None => Either::Left(stream),
                                Some(tls) => match tls.handshake(stream, limits.idle_timeout).await {
                                    Some(stream) => Either::Right(stream),
                                    None => return,
                                },
                            };
                            let _ = ready.send(Ok(Capped { stream, info, _place: place })).await;
                        });
                    }
                    Err(_) => {
                        refused += 1;
                        if refused.is_power_of_two() {
                            tracing::warn!(
                                listener = "otlp-grpc",
                                refused,
                                max_connections = max,
                                "connections over --max-connections closed (count since start)"
                            );
                        }
                    }
                },
                Err(e) => {
                    errors += 1;
                    if errors.is_power_of_two() {
                        tracing::warn!(listener = "otlp-grpc", error = %e, errors,
                            "cannot accept connections (raise the file limit or lower --max-connections)");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(incoming)
}

type TcpConnectInfo = <tokio::net::TcpStream as tonic::transport::server::Connected>::ConnectInfo;

/// A gRPC connection (TLS or not) and its place under `--max-connections` (given back when it closes).
struct Capped {
    stream: Either<tokio::net::TcpStream, tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
    info: TcpConnectInfo,
    _place: tokio::sync::OwnedSemaphorePermit,
}

impl tonic::transport::server::Connected for Capped {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl tokio::io::AsyncRead for Capped {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
