//! Forwarding to `COLLECTOR_ENDPOINT`: received spans (with the links the herald added) and
//! log records go to a downstream OTLP/gRPC receiver off the acknowledgement path, through one
//! bounded buffer with retry and backoff. A slow or dead downstream costs drops (counted),
//! never ingest.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::config::ForwardConfig;
use crate::metrics::Metrics;

/// One request to forward: an export of either signal.
#[derive(Debug, Clone)]
pub enum Forwarded {
    Traces(ExportTraceServiceRequest),
    Logs(ExportLogsServiceRequest),
}

impl Forwarded {
    /// Spans or log records it carries.
    fn items(&self) -> u64 {
        let n = match self {
            Forwarded::Traces(r) => helix_model::span_count(r),
            Forwarded::Logs(r) => helix_model::log_count(r),
        };
        n as u64
    }

    /// The counter of its signal, by result.
    fn counter<'m>(&self, metrics: &'m Metrics) -> &'m prometheus::IntCounterVec {
        match self {
            Forwarded::Traces(_) => &metrics.forward_spans,
            Forwarded::Logs(_) => &metrics.forward_logs,
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Forwarded::Traces(_) => "spans",
            Forwarded::Logs(_) => "log records",
        }
    }
}

/// Where forwarded requests go: the OTLP/gRPC clients in the herald, a scripted double in tests.
#[async_trait::async_trait]
pub trait Downstream: Send + 'static {
    async fn export(&mut self, request: Forwarded) -> Result<(), Status>;
}

/// The downstream collector: both OTLP services on one channel.
pub struct Collector {
    traces: TraceServiceClient<Channel>,
    logs: LogsServiceClient<Channel>,
}

#[async_trait::async_trait]
impl Downstream for Collector {
    async fn export(&mut self, request: Forwarded) -> Result<(), Status> {
        match request {
            Forwarded::Traces(r) => self.traces.export(r).await.map(|_| ()),
            Forwarded::Logs(r) => self.logs.export(r).await.map(|_| ()),
        }
    }
}

/// The enqueue side; the task owns the channel to the downstream.
#[derive(Clone)]
pub struct Forwarder {
    tx: mpsc::Sender<Forwarded>,
    metrics: Arc<Metrics>,
}

impl Forwarder {
    /// Start the forwarding task to `config.endpoint`. It stops once `shutdown` fires and
    /// the buffer is flushed (one more attempt per remaining request).
    pub fn spawn(
        config: ForwardConfig,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<(Forwarder, tokio::task::JoinHandle<()>), String> {
        let endpoint = Endpoint::from_shared(config.endpoint.clone())
            .map_err(|e| {
                format!("COLLECTOR_ENDPOINT {:?} is not a valid URL: {e}", helix_store::redact_url(&config.endpoint))
            })?
            .connect_timeout(Duration::from_secs(5));
        let channel = endpoint.connect_lazy();
        let client =
            Collector { traces: TraceServiceClient::new(channel.clone()), logs: LogsServiceClient::new(channel) };
        Ok(Self::spawn_to(client, config, metrics, shutdown))
    }

    /// Start the forwarding task to any downstream.
    pub fn spawn_to(
        downstream: impl Downstream,
        config: ForwardConfig,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> (Forwarder, tokio::task::JoinHandle<()>) {
        // The buffer bounds the forwarder's memory whatever the downstream does.
        let (tx, rx) = mpsc::channel(config.buffer.max(1));
        let task = tokio::spawn(run(rx, downstream, config, metrics.clone(), shutdown));
        (Forwarder { tx, metrics }, task)
    }

    /// Hand a request over without waiting; when the buffer is full it is dropped and counted.
    pub fn enqueue(&self, request: Forwarded) {
        let (items, what) = (request.items(), request.what());
        let counter = request.counter(&self.metrics).clone();
        match self.tx.try_send(request) {
            Ok(()) => self.metrics.forward_queue.inc(),
            Err(mpsc::error::TrySendError::Full(_)) => {
                counter.with_label_values(&["dropped_buffer_full"]).inc_by(items);
                tracing::warn!(count = items, what, "forward buffer full: not forwarded (they are stored)");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                counter.with_label_values(&["dropped_shutdown"]).inc_by(items);
            }
        }
    }
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

/// The wait after failed attempt number `attempt` (1-based): the initial backoff, doubled
/// for each attempt since, never more than `max`.
pub fn backoff_after(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
    initial.checked_mul(factor).unwrap_or(max).min(max)
}

/// What the forwarder does after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    RetryAfter(Duration),
    GiveUp,
}

/// After attempt `attempt` failed with `code`: retry (after the backoff) only a retryable
/// answer, only while attempts remain, and never once the shutdown flush has begun.
pub fn next_step(code: Code, attempt: u32, config: &ForwardConfig, flushing: bool) -> Next {
    if flushing || !is_retryable(code) || attempt >= config.max_attempts {
        Next::GiveUp
    } else {
        Next::RetryAfter(backoff_after(attempt, config.initial_backoff, config.max_backoff))
    }
}

async fn run(
    mut rx: mpsc::Receiver<Forwarded>,
    mut downstream: impl Downstream,
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
        let (items, what, counter) = (request.items(), request.what(), request.counter(&metrics).clone());
        let mut attempt = 1;
        loop {
            let answer = tokio::time::timeout(config.attempt_timeout, downstream.export(request.clone())).await;
            let status = match answer {
                Ok(Ok(())) => {
                    counter.with_label_values(&["sent"]).inc_by(items);
                    break;
                }
                Ok(Err(status)) => status,
                Err(_) => Status::deadline_exceeded(format!("no answer within {:?}", config.attempt_timeout)),
            };
            // A shutdown during the backoff below cuts it short: the request then gets its
            // one flush attempt at once.
            match next_step(status.code(), attempt, &config, shutdown.is_cancelled()) {
                Next::RetryAfter(wait) => {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = shutdown.cancelled() => {}
                    }
                    attempt += 1;
                }
                Next::GiveUp => {
                    counter.with_label_values(&["failed"]).inc_by(items);
                    tracing::warn!(code = ?status.code(), message = status.message(), count = items, what, attempt,
                        "forwarding to COLLECTOR_ENDPOINT failed; not forwarded (they are stored)");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use helix_model::builders::{pipeline_resource, traces, SpanBuilder};
    use tokio::time::Instant;

    use super::*;

    fn config() -> ForwardConfig {
        ForwardConfig {
            endpoint: "http://unused".into(),
            buffer: 8,
            max_attempts: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(10),
        }
    }

    fn request(n: u64) -> Forwarded {
        Forwarded::Traces(traces(
            pipeline_resource("svc", "CHIME"),
            vec![SpanBuilder::creation("ingest", &format!("e-{n}"), n).build()],
        ))
    }

    /// A log export of `n` records.
    fn log_request(n: usize) -> Forwarded {
        use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        Forwarded::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs { log_records: vec![LogRecord::default(); n], ..Default::default() }],
                ..Default::default()
            }],
        })
    }

    #[derive(Clone, Copy, Debug)]
    enum Answer {
        Ok,
        Fail(Code),
        /// Never answers.
        Hang,
    }

    /// A downstream answering from a script (then `otherwise`), recording when each attempt came.
    #[derive(Clone)]
    struct Scripted {
        script: Arc<Mutex<VecDeque<Answer>>>,
        otherwise: Answer,
        calls: Arc<Mutex<Vec<Instant>>>,
        kinds: Arc<Mutex<Vec<&'static str>>>,
    }

    impl Scripted {
        fn new(script: &[Answer], otherwise: Answer) -> Scripted {
            Scripted {
                script: Arc::new(Mutex::new(script.iter().copied().collect())),
                otherwise,
                calls: Arc::default(),
                kinds: Arc::default(),
            }
        }

        /// Attempt instants relative to `t0`.
        fn calls_since(&self, t0: Instant) -> Vec<Duration> {
            self.calls.lock().unwrap().iter().map(|t| t.duration_since(t0)).collect()
        }
    }

    #[async_trait::async_trait]
    impl Downstream for Scripted {
        async fn export(&mut self, request: Forwarded) -> Result<(), Status> {
            self.calls.lock().unwrap().push(Instant::now());
            self.kinds.lock().unwrap().push(request.what());
            let answer = self.script.lock().unwrap().pop_front().unwrap_or(self.otherwise);
            match answer {
                Answer::Ok => Ok(()),
                Answer::Fail(code) => Err(Status::new(code, "scripted")),
                Answer::Hang => std::future::pending().await,
            }
        }
    }

    fn forwarded(metrics: &Metrics, result: &str) -> u64 {
        metrics.forward_spans.with_label_values(&[result]).get()
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn retryable_codes_follow_otlp() {
        assert!(is_retryable(Code::Unavailable));
        assert!(is_retryable(Code::ResourceExhausted));
        assert!(is_retryable(Code::DeadlineExceeded));
        assert!(!is_retryable(Code::InvalidArgument));
        assert!(!is_retryable(Code::Unauthenticated));
        assert!(!is_retryable(Code::Ok));
    }

    #[test]
    fn backoff_doubles_from_the_initial_wait_and_is_capped() {
        let (initial, max) = (MS(100), Duration::from_secs(10));
        let waits: Vec<Duration> = (1..=9).map(|a| backoff_after(a, initial, max)).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000].map(MS));
        // Absurd attempt numbers neither overflow nor exceed the cap.
        assert_eq!(backoff_after(64, initial, max), max);
        assert_eq!(backoff_after(u32::MAX, initial, max), max);
        assert_eq!(backoff_after(0, initial, max), initial);
    }

    #[test]
    fn only_retryable_answers_are_retried_while_attempts_remain_and_never_while_flushing() {
        let c = config();
        assert_eq!(next_step(Code::Unavailable, 1, &c, false), Next::RetryAfter(MS(100)));
        assert_eq!(next_step(Code::Unavailable, 3, &c, false), Next::RetryAfter(MS(400)));
        assert_eq!(next_step(Code::Unavailable, 4, &c, false), Next::GiveUp, "max_attempts reached");
        assert_eq!(next_step(Code::InvalidArgument, 1, &c, false), Next::GiveUp);
        assert_eq!(next_step(Code::Unavailable, 1, &c, true), Next::GiveUp, "the shutdown flush tries once");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_come_at_the_backoff_instants_until_the_downstream_answers() {
        let downstream = Scripted::new(&[Answer::Fail(Code::Unavailable); 3], Answer::Ok);
        let metrics = Arc::new(Metrics::new());
        let shutdown = CancellationToken::new();
        let t0 = Instant::now();
        let (forwarder, task) = Forwarder::spawn_to(downstream.clone(), config(), metrics.clone(), shutdown.clone());
        forwarder.enqueue(request(1));
        tokio::time::sleep(Duration::from_secs(60)).await;
        // 0, then +100 ms, +200 ms, +400 ms.
        assert_eq!(downstream.calls_since(t0), [0, 100, 300, 700].map(MS));
        assert_eq!((forwarded(&metrics, "sent"), forwarded(&metrics, "failed")), (1, 0));
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_refusal_is_not_retried_and_retries_stop_after_max_attempts() {
        let downstream = Scripted::new(&[Answer::Fail(Code::InvalidArgument)], Answer::Fail(Code::Unavailable));
        let metrics = Arc::new(Metrics::new());
        let shutdown = CancellationToken::new();
        let t0 = Instant::now();
        let (forwarder, task) = Forwarder::spawn_to(downstream.clone(), config(), metrics.clone(), shutdown.clone());
        forwarder.enqueue(request(1));
        forwarder.enqueue(request(2));
        tokio::time::sleep(Duration::from_secs(60)).await;
        // Request 1: one attempt. Request 2: four attempts, then given up.
        assert_eq!(downstream.calls_since(t0), [0, 0, 100, 300, 700].map(MS));
        assert_eq!((forwarded(&metrics, "sent"), forwarded(&metrics, "failed")), (0, 2));
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn log_exports_share_the_buffer_and_retries_and_are_counted_as_log_records() {
        let downstream = Scripted::new(&[Answer::Fail(Code::Unavailable)], Answer::Ok);
        let metrics = Arc::new(Metrics::new());
        let shutdown = CancellationToken::new();
        let (forwarder, task) = Forwarder::spawn_to(downstream.clone(), config(), metrics.clone(), shutdown.clone());
        forwarder.enqueue(log_request(3));
        forwarder.enqueue(request(1));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            *downstream.kinds.lock().unwrap(),
            ["log records", "log records", "spans"],
            "retried, then in order"
        );
        assert_eq!(metrics.forward_logs.with_label_values(&["sent"]).get(), 3);
        assert_eq!(forwarded(&metrics, "sent"), 1, "spans are counted apart");
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_attempt_times_out_and_counts_as_retryable() {
        let downstream = Scripted::new(&[Answer::Hang], Answer::Ok);
        let metrics = Arc::new(Metrics::new());
        let shutdown = CancellationToken::new();
        let t0 = Instant::now();
        let (forwarder, task) = Forwarder::spawn_to(downstream.clone(), config(), metrics.clone(), shutdown.clone());
        forwarder.enqueue(request(1));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(downstream.calls_since(t0), [MS(0), MS(10_100)], "10 s attempt timeout, then 100 ms backoff");
        assert_eq!(forwarded(&metrics, "sent"), 1);
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_downstream_holds_no_more_than_the_buffer() {
        let downstream = Scripted::new(&[], Answer::Hang);
        let metrics = Arc::new(Metrics::new());
        let shutdown = CancellationToken::new();
        let (forwarder, task) = Forwarder::spawn_to(downstream.clone(), config(), metrics.clone(), shutdown.clone());
        let mut sent = 0u64;
        // Ten minutes of virtual traffic at 100 requests a second against a downstream that never answers.
        for _ in 0..600 {
            for _ in 0..100 {
                forwarder.enqueue(request(sent));
                sent += 1;
                assert!(metrics.forward_queue.get() <= 8, "queue above the buffer: {}", metrics.forward_queue.get());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let queued = metrics.forward_queue.get() as u64;
        assert_eq!(queued, 8, "the buffer is full");
        // Besides the queued, only the one request in the task's hands is held; the rest are counted as dropped.
        let dropped = forwarded(&metrics, "dropped_buffer_full");
        let failed = forwarded(&metrics, "failed");
        assert_eq!(queued + dropped + failed + 1, sent, "every request is queued, in flight, failed or dropped");
        shutdown.cancel();
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_cuts_the_backoff_short_and_flushes_each_request_once() {
        let downstream = Scripted::new(&[], Answer::Fail(Code::Unavailable));
        let metrics = Arc::new(Metrics::new());
        let shutdown = CancellationToken::new();
        let (forwarder, task) = Forwarder::spawn_to(downstream.clone(), config(), metrics.clone(), shutdown.clone());
        for n in 0..5 {
            forwarder.enqueue(request(n));
        }
        // Request 0 has failed twice and waits 200 ms before its third attempt.
        tokio::time::sleep(MS(150)).await;
        assert_eq!(downstream.calls.lock().unwrap().len(), 2);
        let cancelled_at = Instant::now();
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(cancelled_at.elapsed(), Duration::ZERO, "no wait after cancellation (virtual time)");
        // One flush attempt for request 0 and for each of the four still queued.
        let calls = downstream.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 2 + 5);
        assert!(calls[2..].iter().all(|t| *t == cancelled_at), "the flush attempts come at once");
        assert_eq!(forwarded(&metrics, "failed"), 5);
        assert_eq!(metrics.forward_queue.get(), 0);
    }
}
