//! Plain spans: sub-steps of an entity's work (`child_span`) and infrastructure work with no
//! entity (`trace`). The herald stores them as spans only — they never make entity rows.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use opentelemetry::trace::{SpanContext, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, Key, KeyValue};

use crate::instrument::Inner;
use crate::scope::{self, Ending, InScope, SpanState};
use crate::value::{key_values, IntoValue};

/// A started plain span, current on this thread until it ends; it ends when dropped (or with
/// [`end`](SpanGuard::end)). A panic unwinding through it sets its status to error. Made by
/// [`Instrument::child_span`](crate::Instrument::child_span),
/// [`Instrument::child_span_of`](crate::Instrument::child_span_of) and
/// [`Instrument::trace`](crate::Instrument::trace).
#[must_use = "the span ends when this guard is dropped: bind it, e.g. `let _filter = tel.child_span(\"filter\");`"]
#[derive(Debug)]
pub struct SpanGuard {
    state: Arc<SpanState>,
}

impl SpanGuard {
    /// Start a span under `parent` (not yet current anywhere).
    pub(crate) fn begin(
        tracer: &opentelemetry_sdk::trace::SdkTracer,
        name: Cow<'static, str>,
        parent: &Context,
        caller: &Context,
        attributes: Vec<KeyValue>,
        log_entity: Option<Arc<str>>,
        inner: &Inner,
    ) -> SpanGuard {
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .with_attributes(attributes)
            .start_with_context(tracer, parent);
        SpanGuard { state: SpanState::new(caller.with_span(span), log_entity, inner) }
    }

    pub(crate) fn attached(self) -> SpanGuard {
        scope::attach_purged(&self.state);
        self
    }

    /// Add an attribute to the span.
    pub fn set_attribute(&self, key: impl Into<Key>, value: impl IntoValue) {
        if !self.state.is_done() {
            self.state.cx.span().set_attribute(KeyValue::new(key.into(), value.into_value()));
        }
    }

    /// Add a span event (it stays on the span: plain spans make no entity events).
    pub fn add_event<K, V>(&self, name: impl Into<Cow<'static, str>>, attributes: impl IntoIterator<Item = (K, V)>)
    where
        K: Into<Key>,
        V: IntoValue,
    {
        if !self.state.is_done() {
            self.state.cx.span().add_event(name, key_values(attributes));
        }
    }

    /// The span's trace and span IDs.
    pub fn span_context(&self) -> SpanContext {
        self.state.cx.span().span_context().clone()
    }

    /// The OpenTelemetry context with this span.
    pub fn context(&self) -> &Context {
        &self.state.cx
    }

    /// Run `future` inside this span (current at every poll, on whatever thread polls it) and
    /// end the span when the future finishes.
    pub fn in_scope<F: Future>(self, future: F) -> InScope<F> {
        // Current for the future only, not for the code around it.
        scope::detach(&self.state);
        let state = self.state.clone();
        InScope::new(future, state, Ending::Span(self))
    }

    /// End the span now.
    pub fn end(self) {}

    pub(crate) fn fail_panicked(self) {
        self.close(true);
    }

    fn close(&self, panicked: bool) {
        if !self.state.finish() {
            return;
        }
        let span = self.state.cx.span();
        if panicked {
            let message = crate::panic::error_metadata().pop().map(|(_, m)| m).unwrap_or_default();
            span.set_status(Status::error(format!("panic: {message}")));
        }
        span.end();
        scope::detach(&self.state);
    }
}

impl Drop for SpanGuard {
    fn drop(&mut self) {
        self.close(std::thread::panicking());
    }
}
