//! Delivery of notifications: the dispatcher claims outbox rows (recorded by the writer in the
//! transaction of their event), applies silences and rate limits, and sends through GitHub,
//! Slack and the generic webhook with retries and backoff; a digest task turns ended rate-limit
//! windows into digest rows, an auto-close task closes quiet GitHub issues. Runs beside
//! ingest, never in its way: a failing backend only delays its own rows.

pub mod github;
pub mod message;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use helix_store::notify::{
    last_event, now_ns, Delivery, NotifyStore, OutboxItem, OutboxKind, RateDecision, RateKey, RateTake, RoundWrites,
    Settle, Silence,
};
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
    /// While exports wait for the writer, delivery waits too, at most this long (then it
    /// runs until the outbox is empty): ingest first.
    pub give_way: Duration,
    /// How long a claimed row is held before another replica may take it; renewed every
    /// third of it while the row is worked on.
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
            give_way: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            digest_every: Duration::from_secs(30),
            auto_close_every: Duration::from_secs(3600),
            http_timeout: Duration::from_secs(10),
            claim: 1000,
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

/// A batch committed this recently means ingest is under way (`Dispatcher::give_way`).
const INGEST_QUIET: Duration = Duration::from_millis(25);

/// When the writer's count of committed batches last moved, as the dispatcher saw it.
#[derive(Debug, Default)]
struct IngestActivity {
    commits: u64,
    moved: Option<std::time::Instant>,
}

impl IngestActivity {
    /// Whether a batch was committed within `INGEST_QUIET`, given the count now.
    fn committed(&mut self, commits: u64) -> bool {
        if commits != self.commits {
            self.commits = commits;
            self.moved = Some(std::time::Instant::now());
        }
        self.moved.is_some_and(|t| t.elapsed() < INGEST_QUIET)
    }
}

/// Claimed rows with their rule (`None`: a digest).
type Work = Vec<(OutboxItem, Option<EventRule>)>;

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
        // When delivery started giving way to a busy ingest; reset once the outbox is empty.
        let mut giving_way: Option<std::time::Instant> = None;
        let mut ingest = IngestActivity::default();
        loop {
            if let Some(wait) = self.give_way(&mut giving_way, &mut ingest) {
                tokio::select! {
                    () = tokio::time::sleep(wait) => continue,
                    () = shutdown.cancelled() => break,
                }
            }
            let busy = tokio::select! {
                busy = self.round() => busy,
                () = shutdown.cancelled() => break,
            };
            if !busy {
                giving_way = None;
                tokio::select! {
                    () = tokio::time::sleep(self.config.poll) => {}
                    () = shutdown.cancelled() => break,
                }
            }
        }
        let _ = tokio::join!(digests, closer);
    }

    /// How long to wait before the next round: ingest comes first. While exports wait for the
    /// writer or it committed a batch in the last `INGEST_QUIET`, a burst's notifications wait
    /// (at most `give_way` in a row, then rounds run until the outbox is empty), and are then
    /// delivered in a few large rounds instead of taking the writer from the exports while
    /// they arrive.
    fn give_way(&self, since: &mut Option<std::time::Instant>, ingest: &mut IngestActivity) -> Option<Duration> {
        if self.config.give_way.is_zero() {
            return None;
        }
        // The queue alone is empty for a moment between two batches of a burst (each export
        // waits for its acknowledgement before the next): the commits tell that it goes on.
        let committed = ingest.committed(self.metrics.write_batch_seconds.get_sample_count());
        if self.metrics.write_queue_records.get() <= 0 && !committed {
            return None;
        }
        let left = self.config.give_way.checked_sub(since.get_or_insert_with(std::time::Instant::now).elapsed())?;
        Some(left.min(Duration::from_millis(10)))
    }

    fn lease_ns(&self) -> i64 {
        i64::try_from(self.config.lease.as_nanos()).unwrap_or(i64::MAX)
    }

    /// One claim and its deliveries; whether anything was claimed. The round's store writes are
    /// few whatever its size: the claim, one transaction with the rate-limit verdicts (rows
    /// suppressed or silenced with nothing left to send are finished in it), and one with the
    /// outcomes of the sends (more only while a round runs for longer than a second).
    async fn round(&self) -> bool {
        let Some(store) = self.notify_store() else { return false };
        let now = now_ns();
        let lease = self.lease_ns();
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
        let leased_until = AtomicI64::new(now.saturating_add(lease));
        let silences = match store.active_silences(now).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read silences; the claimed notifications wait");
                self.hand_back(store, items, "silences unreadable").await;
                return false;
            }
        };
        self.count_silences(&silences);
        let (mut work, writes, takes) = self.plan(items, &silences, now);
        let decisions = match store.write_round(&self.owner, now, &writes).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot record the rate limits of notifications; retrying");
                self.hand_back(store, work.into_iter().map(|(item, _)| item).collect(), "store unavailable").await;
                return false;
            }
        };
        let mut finished = vec![false; work.len()];
        for ((decision, take), &index) in decisions.iter().zip(&writes.takes).zip(&takes) {
            let item = &mut work[index].0;
            item.progress.slack_allowed = Some(*decision == RateDecision::Send);
            if *decision == RateDecision::Suppress {
                // Counted, and summed up in the window's digest (which the delivery log shows).
                self.metrics
                    .notify
                    .suppressed
                    .with_label_values(&[&item.instrument_id, "slack", &item.event_name])
                    .inc();
                finished[index] = take.finish_if_suppressed;
            }
        }
        // One class at a time (in order), classes side by side: a burst of one error never
        // races itself to GitHub.
        let mut groups: BTreeMap<(String, String), Work> = BTreeMap::new();
        for ((item, rule), done) in work.into_iter().zip(finished) {
            if !done {
                groups.entry((item.instrument_id.clone(), item.fingerprint.clone())).or_default().push((item, rule));
            }
        }
        if groups.is_empty() {
            return true;
        }
        let pending = Mutex::new(RoundWrites::default());
        let (pending_ref, leased_ref) = (&pending, &leased_until);
        let work = groups.into_values().map(|group| async move {
            for (item, rule) in group {
                // Never start on a row whose lease may lapse before its send ends.
                if leased_ref.load(Ordering::SeqCst).saturating_sub(now_ns()) < lease / 2 {
                    lock(pending_ref).settle.push(Settle::Retry {
                        id: item.id,
                        attempts: item.attempts,
                        next_ns: now_ns(),
                        error: "handed back".into(),
                        progress: item.progress.clone(),
                    });
                    continue;
                }
                self.deliver(store, pending_ref, item, rule.as_ref()).await;
            }
        });
        let mut all = std::pin::pin!(futures_util::future::join_all(work));
        // While the sends run: their outcomes are written every second (so a crash repeats
        // little), and the leases renewed every third of a lease (so no row is taken over
        // mid-send, however slow its backend).
        let tick = Duration::from_secs(1).min(self.config.lease / 3).max(Duration::from_millis(10));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
        loop {
            tokio::select! {
                _ = &mut all => break,
                _ = ticker.tick() => {
                    self.flush(store, &pending).await;
                    let until = now_ns().saturating_add(lease);
                    match store.renew_leases(&self.owner, until).await {
                        Ok(_) => leased_until.store(until, Ordering::SeqCst),
                        Err(e) => tracing::warn!(error = %e, "notification leases not renewed; rows not started are handed back"),
                    }
                }
            }
        }
        self.flush(store, &pending).await;
        true
    }

    /// Sort claimed rows: rows finished without a send (no longer configured, silenced) go
    /// into the writes; rows whose Slack verdict is still to take get a take (`takes[i]` is
    /// the index in `work` of `writes.takes[i]`).
    fn plan(&self, items: Vec<OutboxItem>, silences: &[Silence], now: i64) -> (Work, RoundWrites, Vec<usize>) {
        let snapshot = self.instruments.snapshot();
        let mut writes = RoundWrites::default();
        let mut work = Vec::with_capacity(items.len());
        let mut takes = Vec::new();
        for item in items {
            if item.kind == OutboxKind::Digest {
                work.push((item, None));
                continue;
            }
            let rule = snapshot.get(&item.instrument_id).and_then(|c| c.notifications.events.get(&item.event_name));
            let Some(rule) = rule else {
                // The file changed since: nothing to send any more.
                writes.log.push(delivery(&item, "none", "skipped", "no longer configured"));
                writes.settle.push(Settle::Finish { id: item.id });
                continue;
            };
            if silences.iter().any(|s| s.covers(&item.instrument_id, &item.event_name, &item.fingerprint, now)) {
                self.metrics
                    .notify
                    .suppressed
                    .with_label_values(&[&item.instrument_id, "silence", &item.event_name])
                    .inc();
                writes.log.push(delivery(&item, "silence", "suppressed", "a silence covers it"));
                writes.settle.push(Settle::Finish { id: item.id });
                continue;
            }
            // An overflow row is the count of what was not sent: no rate limit holds it back.
            let counted = item.kind == OutboxKind::Event;
            if let Some(slack) = rule
                .slack
                .as_ref()
                .filter(|_| counted && item.progress.slack_allowed.is_none() && !item.progress.slack_done)
            {
                let window = slack.sample_window.max(self.config.min_window);
                writes.takes.push(RateTake {
                    id: item.id,
                    key: RateKey {
                        instrument_id: item.instrument_id.clone(),
                        fingerprint: item.fingerprint.clone(),
                        destination: slack.webhook_env.clone(),
                    },
                    window_ns: i64::try_from(window.as_nanos()).unwrap_or(i64::MAX),
                    max_per_window: slack.max_per_window,
                    last: last_event(&item),
                    progress: item.progress.clone(),
                    finish_if_suppressed: (rule.github.is_none() || item.progress.github_done)
                        && (rule.webhook.is_none() || item.progress.webhook_done),
                });
                takes.push(work.len());
            }
            work.push((item, Some(rule.clone())));
        }
        (work, writes, takes)
    }

    fn count_silences(&self, silences: &[Silence]) {
        let mut active: BTreeMap<&str, i64> = BTreeMap::new();
        for s in silences {
            *active.entry(s.instrument_id.as_str()).or_default() += 1;
        }
        self.metrics.notify.silences_active.reset();
        for (instrument, n) in active {
            self.metrics.notify.silences_active.with_label_values(&[instrument]).set(n);
        }
    }

    /// Release claimed rows untouched, for the next round (or another replica).
    async fn hand_back(&self, store: &dyn NotifyStore, items: Vec<OutboxItem>, why: &str) {
        let now = now_ns();
        let writes = RoundWrites {
            settle: items
                .into_iter()
                .map(|i| Settle::Retry {
                    id: i.id,
                    attempts: i.attempts,
                    next_ns: now,
                    error: why.to_owned(),
                    progress: i.progress,
                })
                .collect(),
            ..RoundWrites::default()
        };
        // When the store refuses this too, the leases run out and free the rows.
        let _ = store.write_round(&self.owner, now, &writes).await;
    }

    /// Write the outcomes gathered so far; kept for the next flush if the store refuses them.
    async fn flush(&self, store: &dyn NotifyStore, pending: &Mutex<RoundWrites>) {
        let writes = lock(pending).take();
        if writes.is_empty() {
            return;
        }
        if let Err(e) = store.write_round(&self.owner, now_ns(), &writes).await {
            tracing::warn!(error = %e, "notification outcomes not recorded yet; retrying");
            let mut p = lock(pending);
            let newer = p.take();
            *p = writes;
            p.settle.extend(newer.settle);
            p.log.extend(newer.log);
        }
    }

    async fn deliver(
        &self,
        store: &dyn NotifyStore,
        pending: &Mutex<RoundWrites>,
        mut item: OutboxItem,
        rule: Option<&EventRule>,
    ) {
        let result = match rule {
            Some(rule) if item.kind == OutboxKind::Overflow => self.overflow(pending, &mut item, rule).await,
            Some(rule) => self.event(store, pending, &mut item, rule).await,
            None => {
                let snapshot = self.instruments.snapshot();
                let rules = snapshot.get(&item.instrument_id).map(|c| &c.notifications.events);
                self.digest(pending, &item, rules).await
            }
        };
        self.settle(pending, item, result);
    }

    /// Finish, retry later or give up on a row after an attempt.
    fn settle(&self, pending: &Mutex<RoundWrites>, item: OutboxItem, result: Result<(), (String, Failure)>) {
        let now = now_ns();
        let mut p = lock(pending);
        match result {
            Ok(()) => p.settle.push(Settle::Finish { id: item.id }),
            Err((channel, failure)) => {
                let attempts = item.attempts + 1;
                let backoff = self.config.backoff.get(item.attempts as usize).copied();
                match (&failure, backoff) {
                    (Failure::Retry(why), Some(wait)) => {
                        self.metrics.notify.retries.with_label_values(&[&item.instrument_id, &channel]).inc();
                        p.log.push(delivery(&item, &channel, "retrying", why));
                        let next = now.saturating_add(i64::try_from(wait.as_nanos()).unwrap_or(i64::MAX));
                        p.settle.push(Settle::Retry {
                            id: item.id,
                            attempts,
                            next_ns: next,
                            error: why.clone(),
                            progress: item.progress,
                        });
                    }
                    _ => {
                        let why = failure.text();
                        self.metrics.notify.errors.with_label_values(&[&item.instrument_id, &channel]).inc();
                        p.log.push(delivery(&item, &channel, "failed", why));
                        tracing::error!(instrument = %item.instrument_id, channel = %channel, error = %why,
                            attempts, "notification not delivered; giving up (see the delivery log)");
                        p.settle.push(Settle::Finish { id: item.id });
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
        pending: &Mutex<RoundWrites>,
        item: &mut OutboxItem,
        rule: &EventRule,
    ) -> Result<(), (String, Failure)> {
        let links = &self.config.links;
        let lease = self.lease_ns();
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
                    lock(pending).log.push(delivery(item, "github", "sent", &url));
                    item.progress.issue_urls.push(url);
                }
                Err(Failure::Permanent(why)) => {
                    // The other backends still deliver; GitHub's refusal is logged and counted.
                    self.metrics.notify.errors.with_label_values(&[&item.instrument_id, "github"]).inc();
                    lock(pending).log.push(delivery(item, "github", "failed", &why));
                    tracing::error!(instrument = %item.instrument_id, repo = %gh.repo, error = %why,
                        "GitHub refused the issue; check the token's repo scope and the repository");
                }
                Err(e) => return Err(("github".into(), e)),
            }
            item.progress.github_done = true;
            // Saved at once: a repeated GitHub step would count the occurrence twice.
            let _ = store.save_progress(item.id, &self.owner, &item.progress).await;
        }
        let text = message::text(item, rule.message_template.as_deref(), links);
        if let Some(slack) = rule.slack.as_ref().filter(|_| !item.progress.slack_done) {
            self.slack(pending, item, slack, &text).await?;
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
            lock(pending).log.push(delivery(item, "webhook", "sent", ""));
            item.progress.webhook_done = true;
        }
        Ok(())
    }

    /// An overflow row: one "N more" message through the rule's Slack and webhook (GitHub's
    /// issue is updated by the class's next notified event).
    async fn overflow(
        &self,
        pending: &Mutex<RoundWrites>,
        item: &mut OutboxItem,
        rule: &EventRule,
    ) -> Result<(), (String, Failure)> {
        let links = &self.config.links;
        let more = format!("{} more (outbox full)", item.digest_count);
        if let Some(slack) = rule.slack.as_ref().filter(|_| !item.progress.slack_done) {
            let body = message::slack_digest(item, links);
            self.send("slack", item, slack.webhook.expose(), &body, None).await.map_err(|e| ("slack".to_owned(), e))?;
            self.metrics.notify.digest_sent.with_label_values(&[&item.instrument_id, "slack"]).inc();
            lock(pending).log.push(delivery(item, "slack", "digest", &more));
            item.progress.slack_done = true;
        }
        if let Some(hook) = rule.webhook.as_ref().filter(|_| !item.progress.webhook_done) {
            let text = message::slack_digest(item, links)["text"].as_str().unwrap_or_default().to_owned();
            let body = message::webhook_document(item, &text, &[], links);
            self.send("webhook", item, hook_url(hook), &body, hook.secret.as_ref().map(|s| s.expose().as_bytes()))
                .await
                .map_err(|e| ("webhook".to_owned(), e))?;
            lock(pending).log.push(delivery(item, "webhook", "digest", &more));
            item.progress.webhook_done = true;
        }
        Ok(())
    }

    /// Send to Slack unless the round's rate-limit verdict suppressed it.
    async fn slack(
        &self,
        pending: &Mutex<RoundWrites>,
        item: &mut OutboxItem,
        slack: &SlackRule,
        text: &str,
    ) -> Result<(), (String, Failure)> {
        if item.progress.slack_allowed == Some(false) {
            return Ok(());
        }
        let body = message::slack_message(item, text, &item.progress.issue_urls, &self.config.links);
        self.send("slack", item, slack.webhook.expose(), &body, None).await.map_err(|e| ("slack".to_owned(), e))?;
        self.metrics.notify.sent.with_label_values(&[&item.instrument_id, "slack", &item.event_name]).inc();
        lock(pending).log.push(delivery(item, "slack", "sent", &slack.channel));
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
        pending: &Mutex<RoundWrites>,
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
        lock(pending).log.push(delivery(item, "slack", "digest", &format!("{} more", item.digest_count)));
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

/// A line of the delivery log about `item`.
fn delivery(item: &OutboxItem, channel: &str, outcome: &str, detail: &str) -> Delivery {
    Delivery {
        at_ns: now_ns(),
        instrument_id: item.instrument_id.clone(),
        event_name: item.event_name.clone(),
        fingerprint: item.fingerprint.clone(),
        channel: channel.to_owned(),
        outcome: outcome.to_owned(),
        detail: detail.to_owned(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
