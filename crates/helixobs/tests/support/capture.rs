//! An in-process OTLP/gRPC receiver recording every export request with its `authorization`
//! metadata: what the client really puts on the wire.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};

/// Requests received, each with its `authorization` value.
type Received<T> = Arc<Mutex<Vec<(T, Option<String>)>>>;

#[derive(Clone, Default)]
pub struct Capture {
    pub traces: Received<ExportTraceServiceRequest>,
    pub logs: Received<ExportLogsServiceRequest>,
}

fn bearer<T>(request: &tonic::Request<T>) -> Option<String> {
    request.metadata().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

#[tonic::async_trait]
impl TraceService for Capture {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let auth = bearer(&request);
        self.traces.lock().unwrap().push((request.into_inner(), auth));
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Capture {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let auth = bearer(&request);
        self.logs.lock().unwrap().push((request.into_inner(), auth));
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// A capture receiver on a free loopback port, served by its own runtime thread.
pub struct Receiver {
    pub capture: Capture,
    pub addr: std::net::SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    pub fn start() -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let capture = Capture::default();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (traces, logs) = (TraceServiceServer::new(capture.clone()), LogsServiceServer::new(capture.clone()));
        runtime.spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(traces)
                .add_service(logs)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        Receiver { capture, addr, _runtime: runtime }
    }

    pub fn trace_requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.capture.traces.lock().unwrap().iter().map(|(r, _)| r.clone()).collect()
    }

    pub fn log_requests(&self) -> Vec<ExportLogsServiceRequest> {
        self.capture.logs.lock().unwrap().iter().map(|(r, _)| r.clone()).collect()
    }

    /// The `authorization` values of every trace and log export so far.
    pub fn bearers(&self) -> Vec<Option<String>> {
        let mut out: Vec<Option<String>> = self.capture.traces.lock().unwrap().iter().map(|(_, a)| a.clone()).collect();
        out.extend(self.capture.logs.lock().unwrap().iter().map(|(_, a)| a.clone()));
        out
    }

    pub fn clear(&self) {
        self.capture.traces.lock().unwrap().clear();
        self.capture.logs.lock().unwrap().clear();
    }
}
