//! One export's path through the herald, shared by every receiver:
//! (authorise) → interpret → resolve (add links) → write (durable) → forward (async) → outcome
//! for the ack. With auth on, the receiver has authenticated the sender; the export must be
//! the sender's instrument's data, checked here before anything is stored.

use std::sync::Arc;

use helix_model::interpret::{interpret_logs, interpret_traces, SpanClass};
use helix_model::shape::{drop_oversized_logs, drop_oversized_spans, ShapeLimits};
use helix_model::{attribute_logs, attribute_traces, span_records, ForeignInstrument};
use helix_store::{StoreError, WriteRecord};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use crate::auth::{Auth, Denied};
use crate::forward::{Forwarded, Forwarder};
use crate::metrics::Metrics;
use crate::resolve::Resolver;
use crate::write::{WriteError, Writer};

/// What the client is told on success: rejected items (partial success) and why.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Accepted {
    pub rejected: i64,
    pub message: String,
}

impl Accepted {
    /// The OTLP answer to a trace export: partial success only when something was rejected.
    pub fn trace_response(self) -> ExportTraceServiceResponse {
        let partial_success = (self.rejected > 0)
            .then_some(ExportTracePartialSuccess { rejected_spans: self.rejected, error_message: self.message });
        ExportTraceServiceResponse { partial_success }
    }

    /// The OTLP answer to a log export.
    pub fn logs_response(self) -> ExportLogsServiceResponse {
        let partial_success = (self.rejected > 0)
            .then_some(ExportLogsPartialSuccess { rejected_log_records: self.rejected, error_message: self.message });
        ExportLogsServiceResponse { partial_success }
    }
}

/// Everything an export needs; one per herald, shared by the gRPC and HTTP receivers.
pub struct Ingest {
    pub resolver: Resolver,
    pub writer: Writer,
    pub forwarder: Option<Forwarder>,
    pub metrics: Arc<Metrics>,
    /// Keep every span in the store (`--store-spans`); off, only entity rows are written.
    pub store_spans: bool,
    /// OpenLineage emission (`OPENLINEAGE_URL`), if configured.
    pub lineage: Option<crate::emit::Emitter>,
    /// Who may send: the receivers authenticate each export with it.
    pub auth: Arc<Auth>,
    /// The memory exports in flight may take; the receivers admit each export against it.
    pub budget: crate::receive::InflightBudget,
    /// Spans and log records over these are rejected (partial success).
    pub limits: ShapeLimits,
}

/// Why an export was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The export is not the sender's to make (PERMISSION_DENIED / 403); nothing was stored.
    #[error(transparent)]
    Denied(Denied),
    #[error(transparent)]
    Write(WriteError),
}

impl From<WriteError> for IngestError {
    fn from(e: WriteError) -> Self {
        IngestError::Write(e)
    }
}

impl Ingest {
    /// Handle one trace export from `owner`'s pipeline (`None` when auth is off). `Ok` means
    /// every storable span is committed.
    pub async fn traces(
        &self,
        mut request: ExportTraceServiceRequest,
        transport: &str,
        owner: Option<&str>,
    ) -> Result<Accepted, IngestError> {
        let started = std::time::Instant::now();
        if let Some(owner) = owner {
            attribute_traces(&mut request, owner).map_err(|f| self.foreign(owner, f))?;
        }
        let oversized = drop_oversized_spans(&mut request, &self.limits);
        let interpretation = interpret_traces(&request);
        self.metrics
            .spans_received
            .with_label_values(&[transport])
            .inc_by((interpretation.spans.len() + oversized.len()) as u64);

        if let Err(e) = self.resolver.link_parents(&mut request, &interpretation).await {
            // Links are an enrichment: an unreachable store fails the export only if writing
            // would fail too, which the writer reports below.
            tracing::warn!(error = %e, "parent lookup in the store failed; spans forwarded without those links");
        }

        let created = Resolver::creations(&interpretation);
        // Every kept span, as resolved (with its links), commits with the entity rows of its
        // export: an acknowledged export has both or neither.
        let spans = if self.store_spans { span_records(&request, &interpretation) } else { Vec::new() };
        let mut records = Vec::with_capacity(interpretation.spans.len() + spans.len());
        let mut rejected = oversized;
        let mut passthrough = 0u64;
        // Entity spans per instrument, for the processing-time histogram.
        let mut entity_spans: std::collections::HashMap<String, u64> = Default::default();
        for at in interpretation.spans {
            match at.class {
                SpanClass::Passthrough => passthrough += 1,
                SpanClass::Creation(c) => {
                    *entity_spans.entry(c.instrument_id.clone()).or_default() += 1;
                    records.push(WriteRecord::Created(c))
                }
                SpanClass::Operation(o) => {
                    *entity_spans.entry(o.instrument_id.clone()).or_default() += 1;
                    records.push(WriteRecord::Operation(o))
                }
                SpanClass::Rejected(why) => rejected.push(why),
            }
        }
        records.extend(spans.into_iter().map(WriteRecord::Span));
        let committed = self.write(records, owner).await?;
        let seconds = started.elapsed().as_secs_f64();
        for (instrument, spans) in entity_spans {
            let histogram = self.metrics.span_processing.with_label_values(&[instrument.as_str()]);
            for _ in 0..spans {
                histogram.observe(seconds);
            }
        }
        // Only first creations become link targets: a re-creation's span is not the one the
        // store (and so every other replica) resolves the entity to.
        let created: Vec<_> = created.into_iter().filter(|(id, _)| committed.contains(id)).collect();
        if let Some(lineage) = &self.lineage {
            // A creation this export committed first: its run events, once (an export may
            // repeat a creation span).
            let ids: std::collections::BTreeSet<String> = created.iter().map(|(id, _)| id.clone()).collect();
            lineage.created(ids);
        }
        self.resolver.remember(created);
        self.metrics.spans_passthrough.inc_by(passthrough);
        self.metrics.spans_rejected.inc_by(rejected.len() as u64);
        if !rejected.is_empty() {
            tracing::warn!(count = rejected.len(), first = %rejected[0], "spans rejected as malformed or over the limits");
        }
        if let Some(forwarder) = &self.forwarder {
            forwarder.enqueue(Forwarded::Traces(request));
        }
        Ok(Accepted { rejected: rejected.len() as i64, message: summarize(&rejected) })
    }

    /// Handle one log export from `owner`'s pipeline. `Ok` means every record is committed.
    pub async fn logs(
        &self,
        mut request: ExportLogsServiceRequest,
        owner: Option<&str>,
    ) -> Result<Accepted, IngestError> {
        if let Some(owner) = owner {
            attribute_logs(&mut request, owner).map_err(|f| self.foreign(owner, f))?;
        }
        let oversized = drop_oversized_logs(&mut request, &self.limits);
        let records: Vec<WriteRecord> = interpret_logs(&request).into_iter().map(WriteRecord::Log).collect();
        let count = records.len() as u64;
        self.write(records, owner).await?;
        self.metrics.logs_received.inc_by(count);
        if !oversized.is_empty() {
            tracing::warn!(count = oversized.len(), first = %oversized[0], "log records rejected: over the limits");
        }
        if let Some(forwarder) = &self.forwarder {
            forwarder.enqueue(Forwarded::Logs(request));
        }
        Ok(Accepted { rejected: oversized.len() as i64, message: summarize(&oversized) })
    }

    /// Commit an export's records; an authenticated sender's records on entities of another
    /// instrument refuse the export whole (the store checks ownership in the commit's own
    /// transaction, so the check costs no extra query).
    async fn write(
        &self,
        records: Vec<WriteRecord>,
        owner: Option<&str>,
    ) -> Result<crate::write::Committed, IngestError> {
        match self.writer.write_as(records, owner.is_some()).await {
            Ok(committed) => Ok(committed),
            Err(WriteError::Store(StoreError::InstrumentConflict(c))) => {
                let token = owner.unwrap_or(&c.instrument);
                Err(IngestError::Denied(self.auth.refuse(Denied::foreign_entity(token, &c.entity_id, &c.owner))))
            }
            Err(e) => {
                self.refused(&e);
                Err(e.into())
            }
        }
    }

    fn foreign(&self, owner: &str, foreign: ForeignInstrument) -> IngestError {
        IngestError::Denied(self.auth.refuse(Denied::foreign_instrument(owner, &foreign.named)))
    }

    fn refused(&self, e: &WriteError) {
        let reason = match e {
            WriteError::Overloaded { .. } => "overloaded",
            WriteError::ShuttingDown => "shutting_down",
            WriteError::Store(e) if e.is_transient() => "store_unavailable",
            WriteError::Store(_) => "store_error",
        };
        self.metrics.exports_refused.with_label_values(&[reason]).inc();
    }
}

/// One message for partial success: the first few reasons, and how many more.
fn summarize(rejected: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut message = rejected.iter().take(SHOWN).map(String::as_str).collect::<Vec<_>>().join("; ");
    if rejected.len() > SHOWN {
        message.push_str(&format!("; and {} more", rejected.len() - SHOWN));
    }
    message
}
