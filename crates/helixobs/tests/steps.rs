//! What the spans of a step carry, read straight from the SDK's export (no herald): the links
//! to parents created earlier in this process, and how a step ends when a future running
//! inside it with `Token::scope` panics.

use std::sync::{Arc, Mutex};

use opentelemetry::trace::Status;
use opentelemetry::Value;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::SpanData;

/// Keeps every exported span.
#[derive(Clone, Debug, Default)]
struct Collect(Arc<Mutex<Vec<SpanData>>>);

impl opentelemetry_sdk::trace::SpanExporter for Collect {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

fn instrument() -> (helixobs::Instrument, Collect) {
    let spans = Collect::default();
    let tel = helixobs::Instrument::builder("steps")
        .instrument_id("STEPS")
        .span_exporter(spans.clone())
        .build()
        .expect("instrument");
    (tel, spans)
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| &kv.value)
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no span {name}"))
}

#[test]
fn a_creation_renamed_with_set_entity_id_is_linked_from_its_children_under_the_new_id() {
    let (tel, spans) = instrument();
    let search = tel.create("search", "provisional-id").start();
    search.set_entity_id("cand-late");
    let parent = search.span_context();
    search.complete();
    tel.create("classify", "class-1").parents(["cand-late"]).start().complete();
    tel.create("unlinked", "class-2").parents(["never-created-here"]).start().complete();
    tel.flush().expect("flush");

    let spans = spans.0.lock().unwrap();
    let classify = named(&spans, "classify");
    assert_eq!(attribute(classify, "helix.parent.ids"), Some(&Value::from("cand-late")));
    let links: Vec<_> = classify.links.iter().map(|l| l.span_context.clone()).collect();
    assert_eq!(links, vec![parent]);
    // A parent this process never created is left for the herald to link.
    assert!(named(&spans, "unlinked").links.is_empty());
    tel.shutdown().expect("shutdown");
}

#[test]
fn a_panic_in_a_token_scope_ends_the_step_once_with_helix_error() {
    let (tel, spans) = instrument();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let token = tel.create("search", "cand-scope").start();
    let future = token.scope(async {
        tokio::task::yield_now().await;
        panic!("bad block 9");
    });
    // Polled on the runtime's threads, so the step is ended on another thread than its own.
    let joined = runtime.block_on(runtime.spawn(future));
    assert!(joined.unwrap_err().is_panic());
    // The step has ended already: this changes nothing.
    token.complete_with([("late", "ignored")]);
    tel.flush().expect("flush");

    let spans = spans.0.lock().unwrap();
    let searches: Vec<_> = spans.iter().filter(|s| s.name == "search").collect();
    assert_eq!(searches.len(), 1, "exported once");
    let search = searches[0];
    assert!(matches!(&search.status, Status::Error { description } if description == "panic"));
    let errors: Vec<_> = search.events.iter().filter(|e| e.name == "helix.error").collect();
    assert_eq!(errors.len(), 1);
    let message = errors[0].attributes.iter().find(|kv| kv.key.as_str() == "exception.message");
    assert_eq!(message.map(|kv| &kv.value), Some(&Value::from("bad block 9")));
    assert!(attribute(search, "late").is_none());
    drop(spans);
    tel.shutdown().expect("shutdown");
}

#[test]
fn a_step_ended_after_every_clone_of_its_instrument_is_dropped_is_still_exported() {
    let (tel, spans) = instrument();
    let token = tel.create("search", "cand-outlives").start();
    drop(tel);
    // Completed on another thread, with no instrument handle left anywhere.
    std::thread::spawn(move || token.complete()).join().unwrap();
    let spans = spans.0.lock().unwrap();
    assert_eq!(spans.iter().filter(|s| s.name == "search").count(), 1);
}
