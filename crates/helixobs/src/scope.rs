//! Which span is current, on which thread, for which task — and never a finished one.
//!
//! OpenTelemetry keeps the current [`Context`] in a thread-local stack whose guards must be
//! dropped on the thread that attached them. Our guards ([`crate::Token`], [`crate::SpanGuard`])
//! are `Send`: they may be completed on another thread, and in async code the task that holds
//! one may move between threads at every `.await`. So the OpenTelemetry guard of each
//! attachment lives here, in a thread-local list, and is only ever dropped on its own thread:
//!
//! * completion on the attaching thread detaches at once (in any order: the stack supports
//!   out-of-order removal);
//! * completion elsewhere marks the attachment done; its thread drops it at its next helixobs
//!   call, and until then [`caller_context`] skips it;
//! * an attachment made inside a tokio task belongs to that task: other tasks polled on the
//!   same thread never see it as their parent;
//! * inside an [`InScope`] future (`in_scope`), attachments made during one poll are detached
//!   when the poll returns and re-attached on whatever thread polls the future next, so a
//!   guard held across `.await` stays current for that future only.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, ContextGuard};

/// The shared state of one tracked span: its context (with the span), whether it is finished
/// (also its identity in the lists below) and what a log line written while it is current
/// carries. One allocation per span, shared by its guard and its attachments.
#[derive(Debug)]
pub(crate) struct SpanState {
    /// The context with the span, as made current.
    pub(crate) cx: Context,
    done: AtomicBool,
    /// Set once something other than the guard may finish the span (`Token::scope`): only then
    /// does finishing need an atomic swap rather than a store.
    contended: AtomicBool,
    /// The entity log lines carry: the span's own entity, or the one a child span names.
    entity: Mutex<Option<Arc<str>>>,
    /// The instrument's ID and process name, which every log line carries.
    pub(crate) instrument_id: &'static str,
    pub(crate) process_name: Option<&'static str>,
}

impl SpanState {
    pub(crate) fn new(cx: Context, entity: Option<Arc<str>>, inner: &crate::instrument::Inner) -> Arc<SpanState> {
        Arc::new(SpanState {
            cx,
            done: AtomicBool::new(false),
            contended: AtomicBool::new(false),
            entity: Mutex::new(entity),
            instrument_id: inner.instrument_id,
            process_name: inner.process_name,
        })
    }

    /// Something other than the guard may now finish the span.
    pub(crate) fn mark_contended(&self) {
        self.contended.store(true, Ordering::Relaxed);
    }

    /// Mark finished; true for the first caller only (completion is idempotent). Uncontended
    /// (only the guard can finish it) a load and a store do.
    #[inline]
    pub(crate) fn finish(&self) -> bool {
        if self.contended.load(Ordering::Relaxed) {
            return !self.done.swap(true, Ordering::AcqRel);
        }
        if self.done.load(Ordering::Relaxed) {
            return false;
        }
        self.done.store(true, Ordering::Release);
        true
    }

    #[inline]
    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    pub(crate) fn entity(&self) -> Option<Arc<str>> {
        self.entity.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_entity(&self, id: Arc<str>) {
        *self.entity.lock().unwrap_or_else(|e| e.into_inner()) = Some(id);
    }
}

/// Who an attachment belongs to, i.e. for whom it may be the current span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// The innermost `InScope` future being polled when it was attached.
    Frame(u64),
    /// A tokio task (attached outside any `InScope` future).
    Task(tokio::task::Id),
    /// Plain thread code, outside any tokio task.
    Thread,
}

struct Attached {
    owner: Owner,
    state: Arc<SpanState>,
    span_id: opentelemetry::trace::SpanId,
    // Dropping it restores OpenTelemetry's current context; only ever dropped on this thread.
    guard: Option<ContextGuard>,
}

/// This thread's attachments and the `InScope` frames being polled on it (innermost last), in
/// one thread-local so that each helixobs call looks it up once. When the thread exits,
/// OpenTelemetry's own thread-local may already be gone: the guards are then forgotten, not
/// dropped (nothing is left to restore).
struct ThreadScope {
    attached: Vec<Attached>,
    frames: Vec<u64>,
}

impl Drop for ThreadScope {
    fn drop(&mut self) {
        for mut a in self.attached.drain(..) {
            std::mem::forget(a.guard.take());
        }
    }
}

impl ThreadScope {
    #[inline]
    fn owner(&self) -> Owner {
        if let Some(&frame) = self.frames.last() {
            return Owner::Frame(frame);
        }
        match tokio::task::try_id() {
            Some(task) => Owner::Task(task),
            None => Owner::Thread,
        }
    }

    /// Take out the attachments that are finished (`None`, and nothing to drop, when there are
    /// none); the caller drops them once the borrow has ended, since restoring a context may
    /// run span destructors.
    #[inline]
    fn take_finished(&mut self) -> Option<Vec<Attached>> {
        if self.attached.iter().all(|x| !x.state.is_done()) {
            return None;
        }
        Some(self.split_finished())
    }

    #[cold]
    fn split_finished(&mut self) -> Vec<Attached> {
        let (done, keep): (Vec<_>, Vec<_>) = self.attached.drain(..).partition(|x| x.state.is_done());
        self.attached = keep;
        done
    }

    /// Which context the calling code runs in, given the span OpenTelemetry has current.
    fn caller(&self, current: opentelemetry::trace::SpanId) -> Caller<'_> {
        let Some(top) = self.attached.iter().rev().find(|x| x.span_id == current) else {
            return Caller::Current(None); // not ours: a foreign span, or nothing of ours is current
        };
        let task = tokio::task::try_id();
        let valid = |a: &Attached| {
            !a.state.is_done()
                && match a.owner {
                    Owner::Frame(f) => self.frames.contains(&f),
                    Owner::Task(t) => task == Some(t),
                    Owner::Thread => task.is_none(),
                }
        };
        if valid(top) {
            return Caller::Current(Some(top));
        }
        match self.attached.iter().rev().find(|x| valid(x)) {
            Some(a) => Caller::Inner(a),
            None => Caller::Empty,
        }
    }
}

enum Caller<'a> {
    /// OpenTelemetry's current context (with our attachment of its span, if it is ours).
    Current(Option<&'a Attached>),
    /// The current span is ours but not the caller's (finished, or another task's or frame's):
    /// the innermost attachment that is the caller's.
    Inner(&'a Attached),
    /// The current span is not the caller's and no attachment is: no span.
    Empty,
}

thread_local! {
    static LOCAL: RefCell<ThreadScope> = const { RefCell::new(ThreadScope { attached: Vec::new(), frames: Vec::new() }) };
}

static NEXT_FRAME: AtomicU64 = AtomicU64::new(1);

/// Make `live`'s context current on this thread for the current owner until [`detach`] (or
/// completion).
pub(crate) fn attach(live: &Arc<SpanState>) {
    drop(LOCAL.with(|l| l.borrow_mut().take_finished()));
    attach_purged(live);
}

/// [`attach`] right after [`caller_context`] (which purged already).
#[inline]
pub(crate) fn attach_purged(live: &Arc<SpanState>) {
    let span_id = live.cx.span().span_context().span_id();
    let guard = live.cx.clone().attach();
    LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        let owner = l.owner();
        l.attached.push(Attached { owner, state: live.clone(), span_id, guard: Some(guard) });
    });
}

/// Detach `live`'s attachment if it is on this thread (no-op otherwise: its thread purges it).
pub(crate) fn detach(live: &Arc<SpanState>) {
    let removed = LOCAL.with(|l| {
        let list = &mut l.borrow_mut().attached;
        // Usually the innermost: popped without shifting the rest.
        match list.last() {
            Some(x) if Arc::ptr_eq(&x.state, live) => list.pop(),
            _ => list.iter().rposition(|x| Arc::ptr_eq(&x.state, live)).map(|i| list.remove(i)),
        }
    });
    // Dropped outside the borrow: restoring a context may run span destructors.
    drop(removed);
}

/// The context new spans of the calling code descend from: OpenTelemetry's current context,
/// unless that is an attachment of ours which is finished or belongs to another task or frame
/// — then the innermost attachment that does belong to the caller, or the empty context.
pub(crate) fn caller_context() -> Context {
    with_caller(|current, caller| match caller {
        Caller::Current(_) => current.clone(),
        Caller::Inner(a) => a.state.cx.clone(),
        Caller::Empty => Context::new(),
    })
}

/// The context and helixobs state of the span the calling code runs in, for log records: the
/// state is `None` when the current span is not one of ours (or there is none).
pub(crate) fn current_state() -> (Context, Option<Arc<SpanState>>) {
    with_caller(|current, caller| match caller {
        Caller::Current(a) => (current.clone(), a.map(|a| a.state.clone())),
        Caller::Inner(a) => (a.state.cx.clone(), Some(a.state.clone())),
        Caller::Empty => (Context::new(), None),
    })
}

/// `f` of OpenTelemetry's current context and of what it is for the caller, once attachments
/// finished elsewhere are detached (that restores the context they were attached over, so it
/// comes first). One look-up of the thread-local in the usual case (nothing finished).
fn with_caller<T>(f: impl Fn(&Context, Caller<'_>) -> T) -> T {
    loop {
        let found = LOCAL.with(|l| {
            let mut l = l.borrow_mut();
            if let Some(finished) = l.take_finished() {
                return Err(finished);
            }
            Ok(Context::map_current(|current| {
                if l.attached.is_empty() {
                    return f(current, Caller::Current(None));
                }
                f(current, l.caller(current.span().span_context().span_id()))
            }))
        });
        match found {
            Ok(found) => return found,
            // Dropped outside the borrow: restoring a context may run span destructors.
            Err(finished) => drop(finished),
        }
    }
}

/// An `in_scope` frame: the span it makes current during each poll, and the attachments
/// made inside it that were still open when a poll returned.
#[derive(Debug)]
pub(crate) struct Frame {
    id: u64,
    live: Arc<SpanState>,
    suspended: Mutex<Vec<Arc<SpanState>>>,
}

impl Frame {
    pub(crate) fn new(live: Arc<SpanState>) -> Frame {
        Frame { id: NEXT_FRAME.fetch_add(1, Ordering::Relaxed), live, suspended: Mutex::new(Vec::new()) }
    }

    /// Enter for one poll: the frame's context, then what was open at the end of the last poll.
    fn enter(&self) -> Entered<'_> {
        LOCAL.with(|l| l.borrow_mut().frames.push(self.id));
        attach(&self.live);
        let resumed = std::mem::take(&mut *self.suspended.lock().unwrap_or_else(|e| e.into_inner()));
        for live in resumed {
            if !live.is_done() {
                attach(&live);
            }
        }
        Entered { frame: self }
    }
}

/// Leaves a frame at the end of a poll (also when the poll panics).
struct Entered<'a> {
    frame: &'a Frame,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let id = self.frame.id;
        let mine: Vec<Attached> = LOCAL.with(|l| {
            let list = &mut l.borrow_mut().attached;
            let (mine, keep): (Vec<_>, Vec<_>) = list.drain(..).partition(|x| x.owner == Owner::Frame(id));
            *list = keep;
            mine
        });
        let mut suspended = Vec::new();
        for x in mine.iter().rev() {
            // The frame's own context is attached afresh at every poll.
            if !x.state.is_done() && !Arc::ptr_eq(&x.state, &self.frame.live) {
                suspended.push(x.state.clone());
            }
        }
        suspended.reverse();
        *self.frame.suspended.lock().unwrap_or_else(|e| e.into_inner()) = suspended;
        // Detach innermost first, so the stack unwinds in order.
        for x in mine.into_iter().rev() {
            drop(x);
        }
        LOCAL.with(|l| {
            let frames = &mut l.borrow_mut().frames;
            if let Some(i) = frames.iter().rposition(|&x| x == id) {
                frames.remove(i);
            }
        });
    }
}

/// What an [`InScope`] future ends when its inner future is done, dropped or panics.
#[derive(Debug)]
pub(crate) enum Ending {
    /// `in_scope` of a creation or operation.
    Token(crate::Token),
    /// `in_scope` of a child span or plain trace.
    Span(crate::SpanGuard),
    /// `Token::scope`: the token stays with its owner, who completes it — unless the future
    /// panics: then the span ends here with `helix.error`, and the token's own end is a no-op.
    Borrowed(Arc<SpanState>),
}

impl Ending {
    fn finish(self) {
        drop(self); // each guard completes itself on drop
    }

    fn panicked(self) {
        match self {
            Ending::Token(token) => token.fail_panicked(),
            Ending::Span(span) => span.fail_panicked(),
            Ending::Borrowed(state) => {
                if state.finish() {
                    crate::token::record_error(&state.cx, crate::value::key_values(crate::panic::error_metadata()));
                    state.cx.span().end();
                    detach(&state);
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A future that runs with a tracked span current at every poll, on whichever thread polls
    /// it, and ends the span when it finishes (a panic inside records `helix.error`). Made by
    /// `in_scope` on [`TokenBuilder`](crate::TokenBuilder), [`Token`](crate::Token) and
    /// [`SpanGuard`](crate::SpanGuard). Dropping it before it finishes ends the span too, as
    /// dropping a guard does.
    #[must_use = "futures do nothing unless awaited"]
    pub struct InScope<F> {
        #[pin]
        inner: F,
        frame: Frame,
        end: Option<Ending>,
    }

    impl<F> PinnedDrop for InScope<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(end) = this.project().end.take() {
                end.finish();
            }
        }
    }
}

impl<F> std::fmt::Debug for InScope<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InScope").field("frame", &self.frame.id).finish_non_exhaustive()
    }
}

impl<F> InScope<F> {
    pub(crate) fn new(inner: F, state: Arc<SpanState>, end: Ending) -> Self {
        InScope { inner, frame: Frame::new(state), end: Some(end) }
    }
}

/// Records a panic unwinding out of a poll (the future itself is dropped later, by which time
/// `std::thread::panicking()` is false again).
struct PanicWatch<'a> {
    end: &'a mut Option<Ending>,
}

impl Drop for PanicWatch<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(end) = self.end.take() {
                end.panicked();
            }
        }
    }
}

impl<F: Future> Future for InScope<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let watch = PanicWatch { end: this.end };
        let entered = this.frame.enter();
        let result = this.inner.poll(cx);
        drop(entered);
        if result.is_ready() {
            if let Some(end) = watch.end.take() {
                end.finish();
            }
        }
        result
    }
}
