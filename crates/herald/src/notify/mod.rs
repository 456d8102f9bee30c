//! Delivery of notifications: the dispatcher claims outbox rows (recorded by the writer in the
//! transaction of their event), applies silences and rate limits, and sends through GitHub,
//! Slack and the generic webhook with retries and backoff; a digest task turns ended rate-limit
//! windows into digest rows, an auto-close task closes quiet GitHub issues. Runs beside
//! ingest, never in its way: a failing backend only delays its own rows.

pub mod github;
pub mod message;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use helix_store::notify::{now_ns, Delivery, NotifyStore, OutboxItem, OutboxKind, RateDecision, RateKey};
use helix_store::Store;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::instruments::{EventRule, Instruments, SlackRule, WebhookRule};
use crate::metrics::Metrics;
use message::Links;

/// How notifications are delivered (`--notify-*` flags).
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Waits between attempts; attempts = this many + 1.
    pub backoff: Vec<Duration>,
    /// Slack windows are at least this long.
    pub min_window: Duration,
    /// How often the outbox is looked at when it was empty.
    pub poll: Duration,
    /// How long a claimed row is held before another replica may take it.
    pub lease: Duration,
    /// How often ended windows become digests.
    pub digest_every: Duration,
    /// How often issues are checked for `auto_close_after_days`.
    pub auto_close_every: Duration,
    /// Timeout of one HTTP call.
    pub http_timeout: Duration,
    /// Rows claimed at once.
    pub claim: usize,
    pub links: Links,
    pub github_api: String,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            backoff: [2, 4, 8, 16].map(Duration::from_secs).to_vec(),
            min_window: Duration::from_secs(5),
            poll: Duration::from_millis(500),
            lease: Duration::from_secs(60),
            digest_every: Duration::from_secs(30),
            auto_close_every: Duration::from_secs(3600),
            http_timeout: Duration::from_secs(10),
            claim: 64,
            links: Links { ui_base: "http://localhost:8081".into(), grafana: None },
            github_api: "https://api.github.com".into(),
        }
    }
}

/// Why a delivery attempt did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth another attempt: a network error, a timeout, 429 or a 5xx.
    Retry(String),
    /// Not worth one: any other 4xx (bad webhook, no permission).
    Permanent(String),
}

impl Failure {
    fn text(&self) -> &str {
        match self {
            Failure::Retry(t) | Failure::Permanent(t) => t,
        }
    }
}

/// Success, or which kind of failure an HTTP status is.
pub fn classify(status: reqwest::StatusCode) -> Result<(), Failure> {
    let code = status.as_u16();
    match code {
        200..=299 => Ok(()),
        429 | 500..=599 => Err(Failure::Retry(format!("HTTP {code}"))),
        _ => Err(Failure::Permanent(format!("HTTP {code}"))),
    }
}

/// A reqwest error without its URL (a webhook URL is a secret).
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    format!("{kind}: {}", e.without_url_ref())
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let mut source = std::error::Error::source(self);
        let mut last = String::new();
        while let Some(s) = source {
            last = s.to_string();
            source = s.source();
        }
        last
    }
}

/// POST a JSON document.
async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    signature: Option<&[u8]>,
) -> Result<(), Failure> {
    let bytes = serde_json::to_vec(body).map_err(|e| Failure::Permanent(e.to_string()))?;
    let mut request = client.post(url).header("Content-Type", "application/json");
    if let Some(key) = signature {
        request = request.header("X-Helix-Signature-256", sign(key, &bytes));
    }
    let response = request.body(bytes).send().await.map_err(|e| Failure::Retry(describe(&e)))?;
    classify(response.status())
}

/// `sha256=<hex HMAC-SHA256 of the body>`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", helix_model::ids::to_hex(&mac.finalize().into_bytes()))
}

/// Owns delivery for one herald; several heralds on one PostgreSQL database share the work.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    instruments: Arc<Instruments>,
    metrics: Arc<Metrics>,
    config: NotifyConfig,
    http: reqwest::Client,
    github: github::GitHub,
    /// This replica's lease owner name.
    owner: String,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        instruments: Arc<Instruments>,
        metrics: Arc<Metrics>,
        config: NotifyConfig,
    ) -> Result<Dispatcher, String> {
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .connect_timeout(config.http_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("notification HTTP client: {e}"))?;
        let github = github::GitHub { client: http.clone(), api: config.github_api.trim_end_matches('/').to_owned() };
        let owner = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        Ok(Dispatcher { store, instruments, metrics, config, http, github, owner })
    }

    fn notify_store(&self) -> Option<&dyn NotifyStore> {
        self.store.notify()
    }

    /// Deliver until `shutdown`; rows in flight then are released by their lease.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        if self.notify_store().is_none() {
            return;
        }
        let digests = tokio::spawn(self.clone().digest_loop(shutdown.clone()));
        let closer = tokio::spawn(self.clone().auto_close_loop(shutdown.clone()));
        loop {
            let busy = tokio::select! {
                busy = self.round() => busy,
                () = shutdown.cancelled() => break,
            };
            if !busy {
                tokio::select! {
                    () = tokio::time::sleep(self.config.poll) => {}
                    () = shutdown.cancelled() => break,
                }
            }
        }
        let _ = tokio::join!(digests, closer);
    }

    /// One claim and its deliveries; whether anything was claimed.
    async fn round(&self) -> bool {
        let Some(store) = self.notify_store() else { return false };
        let now = now_ns();
        let lease = i64::try_from(self.config.lease.as_nanos()).unwrap_or(i64::MAX);
        if let Ok(depth) = store.outbox_depth().await {
            self.metrics.notify.outbox_depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
        }
        let items = match store.claim_outbox(&self.owner, now, lease, self.config.claim).await {
            Ok(items) => items,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the notification outbox; retrying");
                return false;
            }
        };
        if items.is_empty() {
            return false;
        }
        // One class at a time (in order), classes side by side: a burst of one error never
        // races itself to GitHub.
        let mut groups: BTreeMap<(String, String), Vec<OutboxItem>> = BTreeMap::new();
        for item in items {
            groups.entry((item.instrument_id.clone(), item.fingerprint.clone())).or_default().push(item);
        }
        let silences = store.active_silences(now).await;
        let silences = match silences {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read silences; the claimed notifications wait");
                for item in groups.into_values().flatten() {
                    let _ = store.retry_outbox(item.id, &self.owner, item.attempts, now, "silences unreadable").await;
                }
                return false;
            }
        };
        let mut active: BTreeMap<&str, i64> = BTreeMap::new();
        for s in &silences {
            *active.entry(s.instrument_id.as_str()).or_default() += 1;
        }
        self.metrics.notify.silences_active.reset();
        for (instrument, n) in active {
            self.metrics.notify.silences_active.with_label_values(&[instrument]).set(n);
        }
        let silences = &silences;
        // Rows still waiting when half the lease is gone are handed back, so no row is ever
        // worked on after its lease lets another replica take it.
        let started = std::time::Instant::now();
        let budget = self.config.lease / 2;
        let work = groups.into_values().map(|group| async move {
            for item in group {
                if started.elapsed() > budget {
                    let _ = store.retry_outbox(item.id, &self.owner, item.attempts, now_ns(), "handed back").await;
                    continue;
                }
                self.deliver(store, item, silences).await;
            }
        });
        futures_util::future::join_all(work).await;
        true
    }

    async fn log(&self, store: &dyn NotifyStore, item: &OutboxItem, channel: &str, outcome: &str, detail: &str) {
        let delivery = Delivery {
            at_ns: now_ns(),
            instrument_id: item.instrument_id.clone(),
            event_name: item.event_name.clone(),
            fingerprint: item.fingerprint.clone(),
            channel: channel.to_owned(),
            outcome: outcome.to_owned(),
            detail: detail.to_owned(),
        };
        if let Err(e) = store.log_delivery(&delivery).await {
            tracing::debug!(error = %e, "delivery log not written");
        }
    }

    async fn deliver(&self, store: &dyn NotifyStore, mut item: OutboxItem, silences: &[helix_store::notify::Silence]) {
        let now = now_ns();
        let snapshot = self.instruments.snapshot();
        let config = snapshot.get(&item.instrument_id);
        if item.kind == OutboxKind::Digest {
            let result = self.digest(&item, config.map(|c| &c.notifications.events)).await;
            return self.settle(store, item, result).await;
        }
        let Some(rule) = config.and_then(|c| c.notifications.events.get(&item.event_name)).cloned() else {
            // The file changed since: nothing to send any more.
            self.log(store, &item, "none", "skipped", "no longer configured").await;
            let _ = store.finish_outbox(item.id, &self.owner, false, Some("no longer configured"), now).await;
            return;
        };
        if silences.iter().any(|s| s.covers(&item.instrument_id, &item.event_name, &item.fingerprint, now)) {
            self.metrics.notify.suppressed.with_label_values(&[&item.instrument_id, "silence", &item.event_name]).inc();
            self.log(store, &item, "silence", "suppressed", "a silence covers it").await;
            let _ = store.finish_outbox(item.id, &self.owner, false, None, now).await;
            return;
        }
        let result = self.event(store, &mut item, &rule).await;
        self.settle(store, item, result).await;
    }

    /// Finish, retry later or give up on a row after an attempt.
    async fn settle(&self, store: &dyn NotifyStore, item: OutboxItem, result: Result<(), (String, Failure)>) {
        let now = now_ns();
        match result {
            Ok(()) => {
                let _ = store.finish_outbox(item.id, &self.owner, false, None, now).await;
            }
            Err((channel, failure)) => {
                let attempts = item.attempts + 1;
                let backoff = self.config.backoff.get(item.attempts as usize).copied();
                match (&failure, backoff) {
                    (Failure::Retry(why), Some(wait)) => {
                        let _ = store.save_progress(item.id, &self.owner, &item.progress).await;
                        self.metrics.notify.retries.with_label_values(&[&item.instrument_id, &channel]).inc();
                        self.log(store, &item, &channel, "retrying", why).await;
                        let next = now.saturating_add(i64::try_from(wait.as_nanos()).unwrap_or(i64::MAX));
                        let _ = store.retry_outbox(item.id, &self.owner, attempts, next, why).await;
                    }
                    _ => {
                        let why = failure.text();
                        self.metrics.notify.errors.with_label_values(&[&item.instrument_id, &channel]).inc();
                        self.log(store, &item, &channel, "failed", why).await;
                        tracing::error!(instrument = %item.instrument_id, channel = %channel, error = %why,
                            attempts, "notification not delivered; giving up (see the delivery log)");
                        let _ = store.finish_outbox(item.id, &self.owner, true, Some(why), now).await;
                    }
                }
            }
        }
    }

    /// The steps of one event not done yet: GitHub, then Slack (with the issue links), then
    /// the webhook; each step's completion is saved so a retry never repeats it.
    async fn event(
        &self,
        store: &dyn NotifyStore,
        item: &mut OutboxItem,
        rule: &EventRule,
    ) -> Result<(), (String, Failure)> {
        let links = &self.config.links;
        let lease = i64::try_from(self.config.lease.as_nanos()).unwrap_or(i64::MAX);
        if let Some(gh) = rule.github.as_ref().filter(|_| !item.progress.github_done) {
            let started = std::time::Instant::now();
            let result = github::dispatch(&self.github, store, gh, item, links, now_ns(), lease).await;
            self.metrics.notify.send_seconds.with_label_values(&["github"]).observe(started.elapsed().as_secs_f64());
            match result {
                Ok(url) => {
                    self.metrics
                        .notify
                        .sent
                        .with_label_values(&[&item.instrument_id, "github", &item.event_name])
                        .inc();
                    self.log(store, item, "github", "sent", &url).await;
                    item.progress.issue_urls.push(url);
                }
                Err(Failure::Permanent(why)) => {
                    // The other backends still deliver; GitHub's refusal is logged and counted.
                    self.metrics.notify.errors.with_label_values(&[&item.instrument_id, "github"]).inc();
                    self.log(store, item, "github", "failed", &why).await;
                    tracing::error!(instrument = %item.instrument_id, repo = %gh.repo, error = %why,
                        "GitHub refused the issue; check the token's repo scope and the repository");
                }
                Err(e) => return Err(("github".into(), e)),
            }
            item.progress.github_done = true;
            let _ = store.save_progress(item.id, &self.owner, &item.progress).await;
        }
        let text = message::text(item, rule.message_template.as_deref(), links);
        if let Some(slack) = rule.slack.as_ref().filter(|_| !item.progress.slack_done) {
            self.slack(store, item, slack, &text).await?;
            item.progress.slack_done = true;
            // The last step needs no save: finishing the row follows.
            if rule.webhook.is_some() {
                let _ = store.save_progress(item.id, &self.owner, &item.progress).await;
            }
        }
        if let Some(hook) = rule.webhook.as_ref().filter(|_| !item.progress.webhook_done) {
            let body = message::webhook_document(item, &text, &item.progress.issue_urls, links);
            self.send("webhook", item, hook_url(hook), &body, hook.secret.as_ref().map(|s| s.expose().as_bytes()))
                .await
                .map_err(|e| ("webhook".to_owned(), e))?;
            self.log(store, item, "webhook", "sent", "").await;
            item.progress.webhook_done = true;
        }
        Ok(())
    }

    async fn slack(
        &self,
        store: &dyn NotifyStore,
        item: &mut OutboxItem,
        slack: &SlackRule,
        text: &str,
    ) -> Result<(), (String, Failure)> {
        let allowed = match item.progress.slack_allowed {
            Some(a) => a,
            None => {
                let key = RateKey {
                    instrument_id: item.instrument_id.clone(),
                    fingerprint: item.fingerprint.clone(),
                    destination: slack.webhook_env.clone(),
                };
                let window = slack.sample_window.max(self.config.min_window);
                let window_ns = i64::try_from(window.as_nanos()).unwrap_or(i64::MAX);
                let decision = store
                    .rate_take(&key, now_ns(), window_ns, slack.max_per_window, item)
                    .await
                    .map_err(|e| ("slack".to_owned(), Failure::Retry(format!("store: {e}"))))?;
                let allowed = decision == RateDecision::Send;
                // Saved with the row's next save (a failed send saves it before the retry).
                item.progress.slack_allowed = Some(allowed);
                allowed
            }
        };
        if !allowed {
            // Counted, and summed up in the window's digest (which the delivery log shows).
            self.metrics.notify.suppressed.with_label_values(&[&item.instrument_id, "slack", &item.event_name]).inc();
            return Ok(());
        }
        let body = message::slack_message(item, text, &item.progress.issue_urls, &self.config.links);
        self.send("slack", item, slack.webhook.expose(), &body, None).await.map_err(|e| ("slack".to_owned(), e))?;
        self.metrics.notify.sent.with_label_values(&[&item.instrument_id, "slack", &item.event_name]).inc();
        self.log(store, item, "slack", "sent", &slack.channel).await;
        Ok(())
    }

    async fn send(
        &self,
        channel: &str,
        item: &OutboxItem,
        url: &str,
        body: &serde_json::Value,
        key: Option<&[u8]>,
    ) -> Result<(), Failure> {
        let started = std::time::Instant::now();
        let result = post(&self.http, url, body, key).await;
        self.metrics.notify.send_seconds.with_label_values(&[channel]).observe(started.elapsed().as_secs_f64());
        if channel == "webhook" && result.is_ok() {
            self.metrics.notify.sent.with_label_values(&[&item.instrument_id, "webhook", &item.event_name]).inc();
        }
        result
    }

    /// A digest row: to the webhook its window counted on (found by its variable in the
    /// instrument's current rules).
    async fn digest(
        &self,
        item: &OutboxItem,
        rules: Option<&BTreeMap<String, EventRule>>,
    ) -> Result<(), (String, Failure)> {
        let slack = rules
            .into_iter()
            .flat_map(|r| r.values())
            .filter_map(|r| r.slack.as_ref())
            .find(|s| s.webhook_env == item.destination);
        let Some(slack) = slack else {
            return Err((
                "slack".into(),
                Failure::Permanent(format!("no Slack rule uses {} any more", item.destination)),
            ));
        };
        let body = message::slack_digest(item, &self.config.links);
        self.send("slack", item, slack.webhook.expose(), &body, None).await.map_err(|e| ("slack".to_owned(), e))?;
        self.metrics.notify.digest_sent.with_label_values(&[&item.instrument_id, "slack"]).inc();
        if let Some(store) = self.notify_store() {
            self.log(store, item, "slack", "digest", &format!("{} more", item.digest_count)).await;
        }
        Ok(())
    }

    async fn digest_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.config.digest_every.max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => return,
            }
            if let Some(store) = self.notify_store() {
                if let Err(e) = store.flush_windows(now_ns()).await {
                    tracing::warn!(error = %e, "rate-limit windows not flushed; retrying at the next tick");
                }
            }
        }
    }

    async fn auto_close_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.config.auto_close_every.max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => return,
            }
            self.auto_close_pass().await;
        }
    }

    async fn auto_close_pass(&self) {
        let Some(store) = self.notify_store() else { return };
        let Ok(records) = store.issues(None).await else { return };
        let snapshot = self.instruments.snapshot();
        let now = now_ns();
        for record in records.iter().filter(|r| !r.closed && r.issue_number > 0) {
            let Some(config) = snapshot.get(&record.instrument_id) else { continue };
            let rule = config
                .notifications
                .events
                .values()
                .filter_map(|e| e.github.as_ref())
                .find(|g| g.repo == record.repo && g.auto_close_after.is_some());
            let Some((rule, after)) = rule.and_then(|g| g.auto_close_after.map(|a| (g, a))) else { continue };
            let quiet = now.saturating_sub(record.last_updated_ns);
            if quiet < i64::try_from(after.as_nanos()).unwrap_or(i64::MAX) {
                continue;
            }
            match github::auto_close(&self.github, store, rule, record, after).await {
                Ok(true) => tracing::info!(instrument = %record.instrument_id, repo = %record.repo,
                    issue = record.issue_number, "GitHub issue closed: no recurrence"),
                Ok(false) => {}
                Err(e) => tracing::warn!(instrument = %record.instrument_id, repo = %record.repo,
                    error = %e.text(), "GitHub issue not closed; trying again at the next pass"),
            }
        }
    }
}

fn hook_url(hook: &WebhookRule) -> &str {
    hook.url.expose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_4xx_other_than_429_is_permanent_and_the_rest_retry() {
        use reqwest::StatusCode;
        assert_eq!(classify(StatusCode::OK), Ok(()));
        assert_eq!(classify(StatusCode::NO_CONTENT), Ok(()));
        assert!(matches!(classify(StatusCode::TOO_MANY_REQUESTS), Err(Failure::Retry(_))));
        assert!(matches!(classify(StatusCode::INTERNAL_SERVER_ERROR), Err(Failure::Retry(_))));
        assert!(matches!(classify(StatusCode::BAD_GATEWAY), Err(Failure::Retry(_))));
        assert!(matches!(classify(StatusCode::NOT_FOUND), Err(Failure::Permanent(_))));
        assert!(matches!(classify(StatusCode::FORBIDDEN), Err(Failure::Permanent(_))));
    }

    #[test]
    fn the_signature_is_the_hmac_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
