//! Track the data products of a scientific pipeline — where each came from, what was done to
//! it — with ordinary OpenTelemetry spans, for the helixobs herald.
//!
//! Each call emits one OTLP span with `helix.*` attributes, exactly as the Python client does
//! (the contract is the herald's `docs/wire.md`):
//!
//! * [`Instrument::create`] — stage `stage` made entity `id` from `parents`;
//! * [`Instrument::operate`] / [`Instrument::operate_deferred`] — later work on an entity;
//! * [`Instrument::child_span`] / [`Instrument::trace`] — plain spans (no entity rows).
//!
//! ```no_run
//! use helixobs::Instrument;
//!
//! # fn main() -> Result<(), helixobs::Error> {
//! let tel = Instrument::builder("my-pipeline").instrument_id("MY_INST").endpoint("localhost:4317").build()?;
//! {
//!     let token = tel.create("search", "candidate-42").parents(["block-001"]).start();
//!     token.set_attribute("score", 0.97);
//! } // completed when the guard drops; a panic unwinding through it records helix.error
//! tel.shutdown()?;
//! # Ok(())
//! # }
//! ```
//!
//! Async code runs a step around a future with `in_scope`, so it stays the current span across
//! `.await` on a multi-thread runtime and never leaks into other tasks:
//!
//! ```no_run
//! # async fn run(tel: helixobs::Instrument) {
//! tel.create("search", "candidate-42")
//!     .parents(["block-001"])
//!     .in_scope(async {
//!         let _filter = tel.child_span("filter");
//!         tokio::task::yield_now().await;
//!     })
//!     .await;
//! # }
//! ```
//!
//! The crate's README has every pattern of the user guide.
#![warn(missing_docs)]

mod auth;
mod config;
mod export;
mod instrument;
mod logs;
mod panic;
mod registry;
mod scope;
mod span;
mod token;
mod value;

pub use config::Protocol;
pub use instrument::{global, Instrument, InstrumentBuilder, DEFAULT_MAX_QUEUE_SIZE};
pub use logs::{tracing_layer, ContextFields, HelixLayer};
pub use scope::InScope;
pub use span::SpanGuard;
pub use token::{Token, TokenBuilder};
pub use value::{ArrayElement, IntoValue};

/// The attribute macros: `#[helixobs::create(stage = "search", id = block_id)]` and
/// `#[helixobs::operate(operation = "archive", entity_id = path)]`.
#[cfg(feature = "macros")]
pub use helixobs_macros::{create, operate};

/// What went wrong setting up or shutting down an instrument. The message says what to fix;
/// it never contains a credential or a token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is missing or invalid.
    #[error("helixobs: {0}")]
    Config(String),
    /// No token could be obtained from the auth endpoint.
    #[error("helixobs: {0}")]
    Auth(String),
    /// Telemetry could not be delivered.
    #[error("helixobs: {0}")]
    Export(String),
}

#[doc(hidden)]
/// Used by the attribute macros; not a stable API.
pub mod __private {
    use crate::{Instrument, Token, TokenBuilder};

    /// The instrument a macro-tracked function uses: the one it names, else the most recently
    /// built. With none the function runs untracked (telemetry never stops the pipeline).
    pub fn instrument(explicit: Option<&Instrument>) -> Option<Instrument> {
        let found = explicit.cloned().or_else(crate::global);
        if found.is_none() {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(target: "helixobs", "a #[helixobs::create]/#[helixobs::operate] function ran before any Instrument was built; it is not tracked")
            });
        }
        found
    }

    /// `create` for the macros (the ID may be any string-like value).
    pub fn create(tel: &Instrument, stage: &'static str, id: &dyn AsRef<str>) -> TokenBuilder {
        tel.create(stage, id.as_ref())
    }

    /// `operate` for the macros.
    pub fn operate(tel: &Instrument, op: &'static str, id: &dyn AsRef<str>) -> TokenBuilder {
        tel.operate(op, id.as_ref())
    }

    /// Start without making the step current (an async function makes it current with
    /// `Token::scope`).
    pub fn start_unattached(builder: TokenBuilder) -> Token {
        builder.start_unattached()
    }

    /// End the step of a tracked function: an `Err` becomes `helix.error` with the error type
    /// as `message` (the error class) and its text as `exception.message`.
    pub fn finish<T, E: std::fmt::Display>(token: Token, result: &Result<T, E>) {
        match result {
            Ok(_) => token.complete(),
            Err(e) => {
                let class = std::any::type_name::<E>();
                let class = class.split('<').next().unwrap_or(class).rsplit("::").next().unwrap_or(class);
                token.error([("message", class.to_owned()), ("exception.message", e.to_string())])
            }
        }
    }
}

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;
