//! Forwarding to `COLLECTOR_ENDPOINT`: received spans (with the links the herald added) go to
//! a downstream OTLP/gRPC receiver off the acknowledgement path, through a bounded buffer
//! with retry and backoff. A slow or dead downstream costs drops (counted), never ingest.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use crate::config::ForwardConfig;
use crate::metrics::Metrics;

/// The enqueue side; the task owns the channel to the downstream.
#[derive(Clone)]
pub struct Forwarder {
    tx: mpsc::Sender<ExportTraceServiceRequest>,
    metrics: Arc<Metrics>,
}

impl Forwarder {
    /// Start the forwarding task. It stops once `shutdown` fires and the buffer is flushed
    /// (one attempt per remaining request).
    pub fn spawn(
        config: ForwardConfig,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<(Forwarder, tokio::task::JoinHandle<()>), String> {
        let endpoint = Endpoint::from_shared(config.endpoint.clone())
            .map_err(|e| format!("COLLECTOR_ENDPOINT {:?} is not a valid URL: {e}", config.endpoint))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10));
        let channel = endpoint.connect_lazy();
        let (tx, rx) = mpsc::channel(config.buffer);
        let task = tokio::spawn(run(rx, TraceServiceClient::new(channel), config, metrics.clone(), shutdown));
        Ok((Forwarder { tx, metrics }, task))
    }

    /// Hand a request over without waiting; when the buffer is full it is dropped and counted.
    pub fn enqueue(&self, request: ExportTraceServiceRequest) {
        let spans = span_count(&request);
        match self.tx.try_send(request) {
            Ok(()) => self.metrics.forward_queue.inc(),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.forward_spans.with_label_values(&["dropped_buffer_full"]).inc_by(spans);
                tracing::warn!(spans, "forward buffer full: spans not forwarded (they are stored)");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.metrics.forward_spans.with_label_values(&["dropped_shutdown"]).inc_by(spans);
            }
        }
    }
}

fn span_count(request: &ExportTraceServiceRequest) -> u64 {
    request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len() as u64).sum()
}

/// Whether a downstream answer is worth another attempt (the OTLP retryable codes).
pub fn is_retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::ResourceExhausted
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::Cancelled
            | Code::OutOfRange
            | Code::DataLoss
            | Code::Unknown
    )
}

async fn run(
    mut rx: mpsc::Receiver<ExportTraceServiceRequest>,
    mut client: TraceServiceClient<Channel>,
    config: ForwardConfig,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    loop {
        let request = tokio::select! {
            biased;
            r = rx.recv() => r,
            () = shutdown.cancelled() => { rx.close(); rx.recv().await }
        };
        let Some(request) = request else { break };
        metrics.forward_queue.dec();
        let spans = span_count(&request);
        let attempts = if shutdown.is_cancelled() { 1 } else { config.max_attempts };
        let mut backoff = config.initial_backoff;
        let mut attempt = 1;
        loop {
            match client.export(request.clone()).await {
                Ok(_) => {
                    metrics.forward_spans.with_label_values(&["sent"]).inc_by(spans);
                    break;
                }
                Err(status) if is_retryable(status.code()) && attempt < attempts => {
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    attempt += 1;
                }
                Err(status) => {
                    metrics.forward_spans.with_label_values(&["failed"]).inc_by(spans);
                    tracing::warn!(code = ?status.code(), message = status.message(), spans, attempt,
                        "forwarding to COLLECTOR_ENDPOINT failed; spans not forwarded (they are stored)");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_codes_follow_otlp() {
        assert!(is_retryable(Code::Unavailable));
        assert!(is_retryable(Code::ResourceExhausted));
        assert!(!is_retryable(Code::InvalidArgument));
        assert!(!is_retryable(Code::Unauthenticated));
        assert!(!is_retryable(Code::Ok));
    }
}
