//! OpenLineage emission (`OPENLINEAGE_URL`): each first creation the store committed is also
//! sent as its run events (`crate::export::openlineage`) to an OpenLineage consumer, off the
//! acknowledgement path. One bounded queue of entity IDs; each event is POSTed to
//! `URL/api/v1/lineage` and retried with backoff until the consumer answers 2xx (or refuses
//! it with a 4xx other than 408/429), so an outage of the consumer delays events, never
//! ingest. A full queue drops IDs (logged); shutdown stops retrying.

use std::sync::Arc;
use std::time::Duration;

use helix_store::Store;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::export::{openlineage, Provenance};

/// Entity IDs waiting to be emitted.
const QUEUE: usize = 100_000;
/// First and largest wait between delivery attempts.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Deadline of one HTTP attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The handle ingest uses; cheap to clone.
#[derive(Clone)]
pub struct Emitter {
    tx: mpsc::Sender<String>,
}

impl Emitter {
    /// Start the emission task for `base_url` (checked by the config as an http(s) URL).
    pub fn spawn(
        base_url: &str,
        namespace: Arc<str>,
        store: Arc<dyn Store>,
        stop: CancellationToken,
    ) -> Result<(Emitter, tokio::task::JoinHandle<()>), String> {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .build()
            .map_err(|e| format!("OpenLineage HTTP client: {e}"))?;
        let endpoint = format!("{}/api/v1/lineage", base_url.trim_end_matches('/'));
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(rx, client, endpoint, namespace, store, stop));
        Ok((Emitter { tx }, task))
    }

    /// Queue the entities whose first creation was just committed. Never waits.
    pub fn created(&self, ids: impl IntoIterator<Item = String>) {
        for id in ids {
            if let Err(mpsc::error::TrySendError::Full(id)) = self.tx.try_send(id) {
                tracing::warn!(entity_id = %id, "OpenLineage emission queue full; run events of this entity not sent");
            }
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<String>,
    client: reqwest::Client,
    endpoint: String,
    namespace: Arc<str>,
    store: Arc<dyn Store>,
    stop: CancellationToken,
) {
    loop {
        let id = tokio::select! {
            id = rx.recv() => match id { Some(id) => id, None => return },
            () = stop.cancelled() => return,
        };
        let Some(entity) = read_entity(&*store, &id, &stop).await else { continue };
        let prov = Provenance { root: id, entities: vec![entity], operations: Vec::new() };
        for event in openlineage::run_events(&prov, &namespace) {
            if !deliver(&client, &endpoint, &event, &stop).await {
                return;
            }
        }
    }
}

/// The committed entity, retrying while the store is unavailable; `None` when stopping.
async fn read_entity(store: &dyn Store, id: &str, stop: &CancellationToken) -> Option<helix_store::Entity> {
    let mut wait = FIRST_BACKOFF;
    loop {
        match store.entity(id).await {
            Ok(found) => return found,
            Err(e) => tracing::warn!(error = %e, entity_id = %id, "OpenLineage emission: store read failed; retrying"),
        }
        if !pause(&mut wait, stop).await {
            return None;
        }
    }
}

/// POST one event until the consumer takes it (or refuses it for good). False when stopping.
async fn deliver(
    client: &reqwest::Client,
    endpoint: &str,
    event: &serde_json::Value,
    stop: &CancellationToken,
) -> bool {
    let mut wait = FIRST_BACKOFF;
    // The consumer's URL may carry credentials: logs show it redacted, errors without it.
    let shown = helix_store::redact_url(endpoint);
    loop {
        match client.post(endpoint).json(event).send().await {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) if r.status().is_client_error() && !matches!(r.status().as_u16(), 408 | 429) => {
                tracing::warn!(status = %r.status(), endpoint = %shown, "OpenLineage consumer refused a run event; not retried");
                return true;
            }
            Ok(r) => tracing::warn!(status = %r.status(), endpoint = %shown, "OpenLineage consumer answered; retrying"),
            Err(e) => {
                tracing::warn!(error = %e.without_url(), endpoint = %shown, "OpenLineage consumer unreachable; retrying")
            }
        }
        if !pause(&mut wait, stop).await {
            return false;
        }
    }
}

/// Sleep `wait` (then double it, up to the cap); false if the herald stops meanwhile.
async fn pause(wait: &mut Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(*wait) => {}
        () = stop.cancelled() => return false,
    }
    *wait = (*wait * 2).min(MAX_BACKOFF);
    true
}
