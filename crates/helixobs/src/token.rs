//! Creations and operations: the builder ([`TokenBuilder`]) and the started step ([`Token`]).

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use helix_model::keys;
use opentelemetry::trace::{Link, Span as _, SpanBuilder, SpanContext, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, Key, KeyValue, StringValue, Value};

use crate::instrument::Inner;
use crate::registry::Registry;
use crate::scope::{self, Ending, InScope, SpanState};
use crate::value::{key_values, IntoValue};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Create,
    Operate,
}

/// A creation or operation that has not started yet: set its parents (creations) and any
/// attributes known up front, then [`start`](TokenBuilder::start) it, or run a future inside it
/// with [`in_scope`](TokenBuilder::in_scope).
///
/// Made by [`Instrument::create`](crate::Instrument::create),
/// [`Instrument::operate`](crate::Instrument::operate) and
/// [`Instrument::operate_deferred`](crate::Instrument::operate_deferred).
#[must_use = "a step is tracked once it is started: call .start() or .in_scope(..)"]
#[derive(Debug)]
pub struct TokenBuilder {
    inner: Arc<Inner>,
    kind: Kind,
    name: Cow<'static, str>,
    entity: Option<Arc<str>>,
    /// Comma-joined, as sent (`helix.parent.ids`); the herald splits on commas too.
    parents: String,
    /// How many IDs `parents` holds (so the usual single parent is looked up without a split).
    parent_count: usize,
    /// `None` until one is added: most steps have none, and dropping an empty `Vec` is not free.
    attributes: Option<Vec<KeyValue>>,
}

impl TokenBuilder {
    #[inline]
    pub(crate) fn new(inner: Arc<Inner>, kind: Kind, name: Cow<'static, str>, entity: Option<Arc<str>>) -> Self {
        TokenBuilder { inner, kind, name, entity, parents: String::new(), parent_count: 0, attributes: None }
    }

    /// The entities this one was made from, in order (every one is recorded; empty IDs are
    /// skipped). Parents may come from any process: the herald links them; those created
    /// earlier by this instrument are linked right away. Only meaningful for creations: on an
    /// operation the parents are sent but the herald does not record them as provenance.
    #[inline]
    pub fn parents<I, S>(mut self, parents: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for parent in parents {
            let parent = parent.as_ref();
            if parent.is_empty() {
                continue;
            }
            if self.parents.is_empty() {
                // Exact capacity: the usual single parent becomes the attribute without a copy.
                self.parents = parent.to_owned();
            } else {
                self.parents.push(',');
                self.parents.push_str(parent);
            }
            self.parent_count += 1;
        }
        self
    }

    /// An attribute set when the span starts (the same as `set_attribute` right after `start`).
    pub fn attribute(mut self, key: impl Into<Key>, value: impl IntoValue) -> Self {
        self.attributes.get_or_insert_with(Vec::new).push(KeyValue::new(key.into(), value.into_value()));
        self
    }

    /// Start the step now and make it the current span on this thread (so child spans, nested
    /// creations and log lines belong to it) until it ends. It ends when the returned guard is
    /// completed, errored or dropped — from any thread; a panic unwinding through the guard
    /// records `helix.error`.
    ///
    /// In async code a guard from `start()` is current for the code that runs before the next
    /// `.await` only (never for another task); use [`in_scope`](TokenBuilder::in_scope) or
    /// [`Token::scope`] to keep it current across `.await`.
    #[inline]
    pub fn start(self) -> Token {
        let parent = scope::caller_context();
        let token = self.begin(&parent);
        scope::attach_purged(&token.state);
        token
    }

    /// Run `future` inside this step: the step starts now, is current at every poll of the
    /// future (on whatever thread polls it, never in sibling tasks), and completes when the
    /// future finishes — with `helix.error` if it panics.
    pub fn in_scope<F: Future>(self, future: F) -> InScope<F> {
        let parent = scope::caller_context();
        let token = self.begin(&parent);
        let state = token.state.clone();
        InScope::new(future, state, Ending::Token(token))
    }

    /// Started, current nowhere yet (the attribute macros make it current with `Token::scope`).
    pub(crate) fn start_unattached(self) -> Token {
        let parent = scope::caller_context();
        self.begin(&parent)
    }

    fn begin(self, parent: &Context) -> Token {
        let inner = self.inner;
        let mut attributes = Vec::with_capacity(5 + self.attributes.as_ref().map_or(0, Vec::len));
        let mut links = None;
        let entity = self.entity.filter(|id| !id.is_empty());
        if let Some(id) = &entity {
            attributes.push(KeyValue::new(keys::ENTITY_ID, Value::String(StringValue::from(id.clone()))));
        }
        attributes.push(KeyValue::new(keys::INSTRUMENT_ID, inner.instrument_id));
        let new_trace;
        let parent_for_span = match self.kind {
            Kind::Create => {
                if entity.is_none() {
                    tracing::warn!(
                        target: "helixobs",
                        "create({:?}) needs a non-empty entity ID; the span is sent without one (no entity is recorded)",
                        self.name
                    );
                }
                if !self.parents.is_empty() {
                    links = parent_links(&inner.registry, &self.parents, self.parent_count);
                    attributes.push(KeyValue::new(keys::PARENT_IDS, self.parents));
                }
                parent
            }
            Kind::Operate => {
                if entity.is_some() {
                    attributes.push(KeyValue::new(keys::IS_OPERATION, "true"));
                }
                if !self.parents.is_empty() {
                    attributes.push(KeyValue::new(keys::PARENT_IDS, self.parents));
                }
                // An operation is always its own trace.
                new_trace = Context::new();
                &new_trace
            }
        };
        if let Some(process) = inner.process_name {
            attributes.push(KeyValue::new(keys::PROCESS_NAME, process));
        }
        if let Some(extra) = self.attributes {
            attributes.extend(extra);
        }
        // Filled in place: the builder is large, and each `with_*` moves it.
        let mut builder = SpanBuilder::from_name(self.name.clone());
        builder.span_kind = Some(SpanKind::Internal);
        builder.attributes = Some(attributes);
        builder.links = links;
        let span = inner.tracer.build_with_context(builder, parent_for_span);
        if self.kind == Kind::Create {
            if let Some(id) = &entity {
                inner.registry.put(id, span.span_context());
            }
        }
        let state = SpanState::new(parent.with_span(span), entity, &inner);
        Token { state, inner, kind: self.kind, name: self.name }
    }
}

/// Links to the parents this instrument created itself (each span once); `None` for none.
fn parent_links(registry: &Registry, parents: &str, count: usize) -> Option<Vec<Link>> {
    if count == 1 {
        // The usual single parent, without the splitting machinery.
        return registry.get(parents).map(|sc| vec![Link::with_context(sc)]);
    }
    let mut links: Vec<Link> = Vec::new();
    for parent in parents.split(',') {
        if let Some(sc) = registry.get(parent) {
            if !links.iter().any(|l| l.span_context == sc) {
                links.push(Link::with_context(sc));
            }
        }
    }
    Some(links).filter(|l| !l.is_empty())
}

/// A started creation or operation: one OTLP span with the `helix.*` attributes.
///
/// It ends exactly once: with [`complete`](Token::complete) /
/// [`complete_with`](Token::complete_with), with [`error`](Token::error), or when dropped
/// (a drop completes it, or records `helix.error` when a panic unwinds through it). A token is
/// `Send`: it may be completed on another thread than the one that started it.
#[derive(Debug)]
pub struct Token {
    state: Arc<SpanState>,
    /// For `set_entity_id` on a creation (the registry of created entities), and so that a
    /// step outliving every clone of its instrument is still exported when it ends.
    inner: Arc<Inner>,
    kind: Kind,
    name: Cow<'static, str>,
}

impl Token {
    /// Add metadata to the span (strings, integers, floats, booleans, arrays); the herald
    /// stores it with the entity (creations) or the operation.
    pub fn set_attribute(&self, key: impl Into<Key>, value: impl IntoValue) {
        if !self.state.is_done() {
            self.state.cx.span().set_attribute(KeyValue::new(key.into(), value.into_value()));
        }
    }

    /// Add a span event. Events named `helix.event.<name>` (and `helix.error`) are stored as
    /// entity events with their own timestamp; other names stay on the span only.
    pub fn add_event<K, V>(&self, name: impl Into<Cow<'static, str>>, attributes: impl IntoIterator<Item = (K, V)>)
    where
        K: Into<Key>,
        V: IntoValue,
    {
        if !self.state.is_done() {
            self.state.cx.span().add_event(name, key_values(attributes));
        }
    }

    /// Record a `helix.error` event with `metadata` and set the span's status to error; the
    /// step stays open. `metadata["message"]` is the error class the herald groups by.
    pub fn add_error<K, V>(&self, metadata: impl IntoIterator<Item = (K, V)>)
    where
        K: Into<Key>,
        V: IntoValue,
    {
        if !self.state.is_done() {
            record_error(&self.state.cx, key_values(metadata));
        }
    }

    /// Name the entity once it is known (an operation started with
    /// [`operate_deferred`](crate::Instrument::operate_deferred)); log lines from now on carry
    /// it. An operation that ends without an entity ID is sent as a plain span.
    pub fn set_entity_id(&self, entity_id: impl AsRef<str>) {
        let id: Arc<str> = Arc::from(entity_id.as_ref());
        if id.is_empty() {
            tracing::warn!(target: "helixobs", "set_entity_id(\"\") ignored: an entity ID must not be empty");
            return;
        }
        if self.state.is_done() {
            return;
        }
        let span = self.state.cx.span();
        span.set_attribute(KeyValue::new(keys::ENTITY_ID, Value::String(StringValue::from(id.clone()))));
        match self.kind {
            Kind::Operate => span.set_attribute(KeyValue::new(keys::IS_OPERATION, "true")),
            Kind::Create => self.inner.registry.put(&id, span.span_context()),
        }
        self.state.set_entity(id);
    }

    /// The entity this step creates or operates on (`None` for a deferred ID not set yet).
    pub fn entity_id(&self) -> Option<Arc<str>> {
        self.state.entity()
    }

    /// The span's trace and span IDs.
    pub fn span_context(&self) -> SpanContext {
        self.state.cx.span().span_context().clone()
    }

    /// The OpenTelemetry context with this step's span, e.g. to parent spans of other
    /// instrumentation explicitly.
    pub fn context(&self) -> &Context {
        &self.state.cx
    }

    /// Run `future` with this step current at every poll (on whatever thread polls it), for
    /// async code that needs the token itself; the token is not completed by the future.
    pub fn scope<F: Future>(&self, future: F) -> InScope<F> {
        self.state.mark_contended();
        InScope::new(future, self.state.clone(), Ending::Borrowed(self.state.clone()))
    }

    /// End the step successfully.
    pub fn complete(self) {
        self.finish(None, None);
    }

    /// End the step successfully, with `metadata` added to the span first.
    pub fn complete_with<K, V>(self, metadata: impl IntoIterator<Item = (K, V)>)
    where
        K: Into<Key>,
        V: IntoValue,
    {
        self.finish(Some(key_values(metadata)), None);
    }

    /// End the step as failed: a `helix.error` event carrying `metadata` (its `message` is the
    /// error class), status error. The herald marks the entity — for an operation, the
    /// operated entity — as having an error.
    pub fn error<K, V>(self, metadata: impl IntoIterator<Item = (K, V)>)
    where
        K: Into<Key>,
        V: IntoValue,
    {
        self.finish(None, Some(key_values(metadata)));
    }

    pub(crate) fn fail_panicked(self) {
        self.finish(None, Some(key_values(crate::panic::error_metadata())));
    }

    fn finish(&self, metadata: Option<Vec<KeyValue>>, error: Option<Vec<KeyValue>>) {
        if !self.state.finish() {
            return;
        }
        let span = self.state.cx.span();
        if let Some(metadata) = metadata.filter(|m| !m.is_empty()) {
            span.set_attributes(metadata);
        }
        if let Some(error) = error {
            record_error(&self.state.cx, error);
        }
        if self.kind == Kind::Operate && self.state.entity().is_none() {
            tracing::warn!(
                target: "helixobs",
                "operation {:?} ended without entity_id; exported as a plain span (no operation is recorded)",
                self.name
            );
        }
        span.end();
        scope::detach(&self.state);
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if self.state.is_done() {
            return;
        }
        if std::thread::panicking() {
            self.finish(None, Some(key_values(crate::panic::error_metadata())));
        } else {
            self.finish(None, None);
        }
    }
}

/// A `helix.error` event and status error, with the event's `message` (or `exception.message`)
/// as the status description.
pub(crate) fn record_error(cx: &Context, attributes: Vec<KeyValue>) {
    let message = ["message", "exception.message"]
        .iter()
        .find_map(|k| attributes.iter().find(|kv| kv.key.as_str() == *k))
        .map(|kv| kv.value.as_str().into_owned());
    let span = cx.span();
    span.add_event(keys::ERROR_EVENT, attributes);
    span.set_status(Status::error(message.unwrap_or_default()));
}
