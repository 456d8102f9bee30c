//! Log correlation: `tracing` events as OTLP log records carrying the entity and trace of the
//! step they were written in (docs/wire.md, "Logs").

use std::sync::{Arc, OnceLock};

use opentelemetry::logs::{AnyValue, LogRecord as _};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{InstrumentationScope, Key};
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogProcessor, SdkLogRecord, SdkLogger, SdkLoggerProvider};
use tracing_subscriber::registry::LookupSpan;

use crate::scope;
use helix_model::keys::log;

/// The correlation fields of the code running now — what every exported log line carries as
/// attributes. Outside any helixobs step every field is `""` (empty means absent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContextFields {
    /// `helix_entity_id`: the entity of the current step (or the one its child span names).
    pub entity_id: String,
    /// `helix_instrument_id`.
    pub instrument_id: String,
    /// `helix_process_name`.
    pub process_name: String,
    /// `otel_trace_id`: 32 lowercase hex digits.
    pub trace_id: String,
    /// `otel_span_id`: 16 lowercase hex digits.
    pub span_id: String,
}

impl ContextFields {
    /// The fields of the span current for the calling code.
    pub fn current() -> ContextFields {
        let (cx, state) = scope::current_state();
        ContextFields::of(&cx, state.as_deref())
    }

    fn of(cx: &opentelemetry::Context, state: Option<&scope::SpanState>) -> ContextFields {
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return ContextFields::default();
        }
        let (entity_id, instrument_id, process_name) = match state {
            Some(s) => (
                s.entity().map(|e| e.to_string()).unwrap_or_default(),
                s.instrument_id.to_owned(),
                s.process_name.unwrap_or_default().to_owned(),
            ),
            None => Default::default(),
        };
        ContextFields {
            entity_id,
            instrument_id,
            process_name,
            trace_id: sc.trace_id().to_string(),
            span_id: sc.span_id().to_string(),
        }
    }
}

/// `path#Lline` of the code that logged, or its permalink when `GITHUB_REPO` and
/// `GIT_COMMIT_SHA` are set.
fn source_of(file: &str, line: i64) -> String {
    static BASE: OnceLock<Option<String>> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        let repo = crate::config::env(&["GITHUB_REPO"])?;
        let sha = crate::config::env(&["GIT_COMMIT_SHA"])?;
        let repo = if repo.contains("://") {
            repo.trim_end_matches('/').to_owned()
        } else {
            format!("https://github.com/{}", repo.trim_matches('/'))
        };
        Some(format!("{repo}/blob/{sha}/"))
    });
    let file = file.replace('\\', "/");
    match base {
        Some(base) => format!("{base}{}#L{line}", file.trim_start_matches('/')),
        None => format!("{file}#L{line}"),
    }
}

/// Adds the correlation fields to each record as it is emitted (on the logging thread, so the
/// caller's current span is what counts), and points the record at that span.
#[derive(Debug)]
pub(crate) struct Correlate;

impl LogProcessor for Correlate {
    fn emit(&self, record: &mut SdkLogRecord, _scope: &InstrumentationScope) {
        let (cx, state) = scope::current_state();
        {
            let span = cx.span();
            let sc = span.span_context();
            if sc.is_valid() {
                record.set_trace_context(sc.trace_id(), sc.span_id(), Some(sc.trace_flags()));
            }
        }
        let fields = ContextFields::of(&cx, state.as_deref());
        let mut file = None;
        let mut line = None;
        for (k, v) in record.attributes_iter() {
            match (k.as_str(), v) {
                ("code.filepath", AnyValue::String(s)) => file = Some(s.as_str().to_owned()),
                ("code.lineno", AnyValue::Int(n)) => line = Some(*n),
                _ => {}
            }
        }
        let source = match (file, line) {
            (Some(f), Some(l)) => source_of(&f, l),
            _ => String::new(),
        };
        for (key, value) in [
            (log::ENTITY_ID, fields.entity_id),
            (log::INSTRUMENT_ID, fields.instrument_id),
            (log::PROCESS_NAME, fields.process_name),
            (log::TRACE_ID, fields.trace_id),
            (log::SPAN_ID, fields.span_id),
            (log::SOURCE, source),
        ] {
            record.add_attribute(Key::from_static_str(key), AnyValue::from(value));
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: std::time::Duration) -> OTelSdkResult {
        Ok(())
    }
}

type Bridge = OpenTelemetryTracingBridge<SdkLoggerProvider, SdkLogger>;

/// A `tracing-subscriber` layer exporting `tracing` events as OTLP log records through an
/// instrument's log pipeline, each carrying `helix_entity_id`, `helix_instrument_id`,
/// `helix_process_name`, `otel_trace_id`, `otel_span_id` and `helix_source`, and the trace and
/// span ID of the step it was written in. Made by [`tracing_layer`] or
/// [`Instrument::tracing_layer`](crate::Instrument::tracing_layer).
///
/// Events are filtered by the subscriber as usual (e.g. add an `EnvFilter`).
pub struct HelixLayer {
    fixed: Option<Arc<Bridge>>,
    lazy: OnceLock<Option<Arc<Bridge>>>,
}

impl std::fmt::Debug for HelixLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelixLayer").field("bound", &(self.fixed.is_some() || self.lazy.get().is_some())).finish()
    }
}

impl HelixLayer {
    pub(crate) fn for_provider(provider: &SdkLoggerProvider) -> HelixLayer {
        HelixLayer { fixed: Some(Arc::new(OpenTelemetryTracingBridge::new(provider))), lazy: OnceLock::new() }
    }

    fn bridge(&self) -> Option<&Bridge> {
        if let Some(b) = &self.fixed {
            return Some(b);
        }
        if let Some(b) = self.lazy.get() {
            return b.as_deref();
        }
        // Bound at the first event to the instrument built last (it may be built after the
        // subscriber is installed); events before any instrument exists are not exported.
        let instrument = crate::instrument::global()?;
        self.lazy
            .get_or_init(|| Some(Arc::new(OpenTelemetryTracingBridge::new(instrument.logger_provider()))))
            .as_deref()
    }
}

/// The `tracing` layer of the most recently built [`Instrument`](crate::Instrument): install it
/// once, e.g. `tracing_subscriber::registry().with(helixobs::tracing_layer()).init()`, and every
/// `tracing::info!` inside a tracked step is exported to the herald with the step's entity and
/// trace. The layer may be installed before the instrument is built.
pub fn tracing_layer() -> HelixLayer {
    HelixLayer { fixed: None, lazy: OnceLock::new() }
}

impl<S> tracing_subscriber::Layer<S> for HelixLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        // The exporters' own diagnostics would otherwise feed back into the export.
        if crate::export::on_export_thread() {
            return;
        }
        if let Some(bridge) = self.bridge() {
            tracing_subscriber::Layer::<S>::on_event(bridge, event, ctx);
        }
    }
}
