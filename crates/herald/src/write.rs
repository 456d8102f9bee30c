//! The batching, durable writer: concurrent exports enqueue their records with a completion
//! handle; one task commits them in shared transactions and completes the handles only then.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use helix_store::notify::NotifySet;
use helix_store::{Store, StoreError, WriteBatch, WriteOutcome, WriteRecord};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::BatchConfig;
use crate::metrics::Metrics;

/// Why an export's records were not committed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The queue is full: the client should retry later.
    #[error("the herald's write queue is full ({queued} records waiting); retry later")]
    Overloaded { queued: usize },
    /// The herald is shutting down: retry against it (or a replica) later.
    #[error("the herald is shutting down; retry later")]
    ShuttingDown,
    /// The store refused or failed the commit.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WriteError {
    /// Whether the client should send the same data again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            WriteError::Overloaded { .. } | WriteError::ShuttingDown => true,
            WriteError::Store(e) => e.is_transient(),
        }
    }
}

/// The notifying (instrument, event) pairs in force, asked at each commit.
pub type NotifySource = Arc<dyn Fn() -> NotifySet + Send + Sync>;

/// What a committed batch tells each export in it: the entities whose first creation it
/// stored (the batch may hold other exports' entities too).
pub type Committed = Arc<HashSet<String>>;

/// One export's records and the handle the writer completes after the commit.
struct WriteJob {
    records: Vec<WriteRecord>,
    /// The sender is authenticated: a record on another instrument's entity refuses the job.
    refuse_conflicts: bool,
    done: oneshot::Sender<Result<Committed, StoreError>>,
    /// Holds this job's share of the queue budget until the commit is over.
    _permit: OwnedSemaphorePermit,
}

/// The handle receivers use to submit records. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<WriteJob>,
    budget: Arc<Semaphore>,
    capacity: usize,
}

impl Writer {
    /// Start the writer task on `store`. It stops after `shutdown` fires and the queue is drained.
    pub fn spawn(
        store: Arc<dyn Store>,
        config: BatchConfig,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> (Writer, tokio::task::JoinHandle<()>) {
        Writer::spawn_notifying(store, config, metrics, shutdown, Arc::new(NotifySet::default))
    }

    /// [`Writer::spawn`], recording each batch's notifying events (`notify()` at its commit) in
    /// the outbox in the batch's transaction.
    pub fn spawn_notifying(
        store: Arc<dyn Store>,
        config: BatchConfig,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        notify: NotifySource,
    ) -> (Writer, tokio::task::JoinHandle<()>) {
        // The channel is unbounded in jobs but bounded in records by the semaphore, which
        // is what memory is proportional to.
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = Arc::new(Semaphore::new(config.queue_records));
        let task = tokio::spawn(run(rx, store, config.clone(), metrics, shutdown, budget.clone(), notify));
        (Writer { tx, budget, capacity: config.queue_records }, task)
    }

    /// Commit `records`; returns once they are durable (or the commit failed).
    /// Refuses at once, without waiting, when the queue is full.
    pub async fn write(&self, records: Vec<WriteRecord>) -> Result<Committed, WriteError> {
        self.write_as(records, false).await
    }

    /// [`Writer::write`] for an authenticated sender (`refuse_conflicts`): a record on an
    /// entity of another instrument refuses this export whole
    /// (`StoreError::InstrumentConflict`), and only this one.
    pub async fn write_as(&self, records: Vec<WriteRecord>, refuse_conflicts: bool) -> Result<Committed, WriteError> {
        if records.is_empty() {
            return Ok(Committed::default());
        }
        // A request larger than the whole budget still goes through, alone.
        let want = records.len().min(self.capacity);
        let permit = self.budget.clone().try_acquire_many_owned(u32::try_from(want).unwrap_or(u32::MAX)).map_err(
            |e| match e {
                tokio::sync::TryAcquireError::Closed => WriteError::ShuttingDown,
                tokio::sync::TryAcquireError::NoPermits => {
                    WriteError::Overloaded { queued: self.capacity - self.budget.available_permits() }
                }
            },
        )?;
        let (done, result) = oneshot::channel();
        self.tx
            .send(WriteJob { records, refuse_conflicts, done, _permit: permit })
            .map_err(|_| WriteError::ShuttingDown)?;
        result.await.map_err(|_| WriteError::ShuttingDown)?.map_err(WriteError::Store)
    }
}

/// Jobs taken for one transaction, kept together so each handle learns the batch's fate.
#[derive(Default)]
struct Accumulator {
    jobs: Vec<WriteJob>,
    records: usize,
}

impl Accumulator {
    fn push(&mut self, job: WriteJob) {
        self.records += job.records.len();
        self.jobs.push(job);
    }

    fn is_full(&self, max: usize) -> bool {
        self.records >= max
    }

    /// Move every job's records into one batch; `sizes` remembers where each job's records are.
    /// The batch refuses conflicts when any job does: a refusal then isolates the jobs, and
    /// each is retried alone under its own rule.
    fn take_batch(&mut self) -> (WriteBatch, Vec<usize>) {
        let mut records = Vec::with_capacity(self.records);
        let mut sizes = Vec::with_capacity(self.jobs.len());
        for job in &mut self.jobs {
            sizes.push(job.records.len());
            records.append(&mut job.records);
        }
        let refuse_conflicts = self.jobs.iter().any(|j| j.refuse_conflicts);
        (WriteBatch { records, refuse_conflicts, notify: Default::default() }, sizes)
    }

    /// Give each job its records back (after a failed commit), in the order `take_batch` took them.
    fn restore(&mut self, batch: WriteBatch, sizes: &[usize]) {
        let mut records = batch.records.into_iter();
        for (job, n) in self.jobs.iter_mut().zip(sizes) {
            job.records = records.by_ref().take(*n).collect();
        }
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<WriteJob>,
    store: Arc<dyn Store>,
    config: BatchConfig,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    budget: Arc<Semaphore>,
    notify: NotifySource,
) {
    // Backends that can commit batches side by side (PostgreSQL) get that many in flight;
    // while every slot is busy, new exports gather into the next batch.
    let slots = Arc::new(Semaphore::new(store.write_concurrency().max(1)));
    let config_queue = config.queue_records;
    let mut commits = tokio::task::JoinSet::new();
    loop {
        // A slot frees only when a commit ends, so this cannot wait forever.
        let Ok(slot) = slots.clone().acquire_owned().await else { break };
        let first = tokio::select! {
            biased;
            job = rx.recv() => job,
            () = shutdown.cancelled() => {
                // Stop taking new work, then drain what was already accepted.
                budget.close();
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { break };
        let mut acc = Accumulator::default();
        acc.push(first);
        // Group commit: whatever arrived while the previous commits ran joins this one.
        while !acc.is_full(config.max_batch_records) {
            match rx.try_recv() {
                Ok(job) => acc.push(job),
                Err(_) => break,
            }
        }
        metrics.write_queue_records.set((config.queue_records - budget.available_permits()) as i64);
        let (store, metrics, notify, budget) = (store.clone(), metrics.clone(), notify(), budget.clone());
        commits.spawn(async move {
            let spent = commit(&*store, acc, &metrics, &notify).await;
            // The batch's permits are back: the gauge must not keep showing it while idle.
            metrics.write_queue_records.set((config_queue - budget.available_permits()) as i64);
            drop(slot);
            // Freeing a large batch takes a while: the next commit need not wait for it.
            drop(spent);
        });
        while commits.try_join_next().is_some() {}
    }
    while commits.join_next().await.is_some() {}
    tracing::info!("writer stopped: queue drained");
}

/// Commit one accumulated batch and complete every handle in it. Returns the committed
/// batch, for the caller to free.
async fn commit(store: &dyn Store, mut acc: Accumulator, metrics: &Metrics, notify: &NotifySet) -> Arc<WriteBatch> {
    let started = Instant::now();
    let (mut batch, sizes) = acc.take_batch();
    batch.notify = notify.clone();
    let batch = Arc::new(batch);
    let result = store.write_shared(batch.clone()).await;
    metrics.write_batch_seconds.observe(started.elapsed().as_secs_f64());
    match result {
        Ok(outcome) => {
            metrics.write_batch_records.observe(acc.records as f64);
            record_outcome(metrics, &outcome);
            let created: Committed = Arc::new(outcome.entities_created.into_iter().map(|e| e.entity_id).collect());
            for job in acc.jobs {
                let _ = job.done.send(Ok(created.clone()));
            }
        }
        Err(e) if !e.is_transient() && acc.jobs.len() > 1 => {
            // One export's bad data must not fail the others sharing its transaction:
            // retry each alone so only the culprit is refused.
            metrics.write_failures.with_label_values(&["isolating"]).inc();
            tracing::warn!(error = %e, jobs = acc.jobs.len(), "batch commit failed; retrying its exports one by one");
            // The store has let go of its share; a copy only if it has not.
            acc.restore(Arc::unwrap_or_clone(batch), &sizes);
            for job in acc.jobs {
                let single = Accumulator { records: job.records.len(), jobs: vec![job] };
                Box::pin(commit(store, single, metrics, notify)).await;
            }
            return Arc::default();
        }
        Err(e @ StoreError::InstrumentConflict(_)) => {
            // A refusal of the sender's data, not a failure of the store: ingest answers it
            // (PERMISSION_DENIED), logs and counts it.
            for job in acc.jobs {
                let _ = job.done.send(Err(e.clone()));
            }
        }
        Err(e) => {
            let kind = if e.is_transient() { "transient" } else { "permanent" };
            metrics.write_failures.with_label_values(&[kind]).inc();
            if e.is_transient() {
                tracing::warn!(error = %e, records = acc.records, "commit failed; clients were told to retry");
            } else {
                tracing::error!(error = %e, records = acc.records, "commit failed permanently; exports refused");
            }
            for job in acc.jobs {
                let _ = job.done.send(Err(e.clone()));
            }
        }
    }
    batch
}

fn record_outcome(metrics: &Metrics, outcome: &WriteOutcome) {
    for e in &outcome.entities_created {
        metrics.entities.with_label_values(&[e.instrument_id.as_str(), e.stage.as_str(), e.status.as_str()]).inc();
    }
    for event in &outcome.events_inserted {
        let name = metrics.event_names.value(&event.event_name);
        metrics.events.with_label_values(&[event.instrument_id.as_str(), name]).inc();
        if event.is_error() {
            metrics.errors.with_label_values(&[event.instrument_id.as_str()]).inc();
        }
    }
    metrics.operations.inc_by(outcome.operations_inserted);
    metrics.spans_stored.inc_by(outcome.spans_inserted);
    metrics.recreations.inc_by(outcome.recreations);
    metrics.instrument_conflicts.inc_by(outcome.instrument_conflicts);
    notify_overflow(metrics, outcome);
}

/// Whether notifying events are being coalesced now (logged once per such period).
static OUTBOX_FULL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn notify_overflow(metrics: &Metrics, outcome: &WriteOutcome) {
    use std::sync::atomic::Ordering;
    if outcome.notifications_coalesced > 0 {
        metrics.notify.channel_drops.inc_by(outcome.notifications_coalesced);
        if !OUTBOX_FULL.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                limit = metrics.notify.outbox_limit.get(),
                "the notification outbox is full: new notifying events are counted per error class and delivered \
                 as one \"N more\" message each (helix_notification_channel_drops_total); check that Slack, GitHub \
                 and the webhooks answer, or raise --notify-outbox-max"
            );
        }
    } else if outcome.notifications_recorded > 0 && OUTBOX_FULL.swap(false, Ordering::Relaxed) {
        tracing::info!("the notification outbox has room again: events are notified one by one");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use helix_model::LogRecorded;

    fn log(n: i64) -> WriteRecord {
        WriteRecord::Log(LogRecorded {
            timestamp_ns: n,
            observed_ns: n,
            severity: "INFO".into(),
            severity_number: 9,
            body: String::new(),
            trace_id: None,
            span_id: None,
            entity_id: None,
            instrument_id: None,
            process_name: None,
            service_name: None,
            source: None,
            attributes: Default::default(),
            resource: Default::default(),
        })
    }

    fn job(records: Vec<WriteRecord>, budget: &Arc<Semaphore>) -> WriteJob {
        let (done, _) = oneshot::channel();
        WriteJob { records, refuse_conflicts: false, done, _permit: budget.clone().try_acquire_owned().unwrap() }
    }

    #[test]
    fn batch_keeps_record_order_and_failed_batches_give_each_job_its_records_back() {
        let budget = Arc::new(Semaphore::new(10));
        let mut acc = Accumulator::default();
        acc.push(job(vec![log(1), log(2)], &budget));
        acc.push(job(vec![], &budget));
        acc.push(job(vec![log(3)], &budget));
        assert!(acc.is_full(3) && !acc.is_full(4));
        let (batch, sizes) = acc.take_batch();
        assert_eq!(batch.records, vec![log(1), log(2), log(3)]);
        assert_eq!(sizes, vec![2, 0, 1]);
        acc.restore(batch, &sizes);
        let per_job: Vec<Vec<WriteRecord>> = acc.jobs.iter().map(|j| j.records.clone()).collect();
        assert_eq!(per_job, vec![vec![log(1), log(2)], vec![], vec![log(3)]]);
    }

    // ---- the writer task against a scriptable store

    use std::collections::{HashMap, VecDeque};
    use std::sync::Mutex;

    use helix_model::{EntityEvent, SpanRef, Status};
    use helix_store::{
        Descendants, Entity, EntityCount, EntityFilter, EventQuery, Graph, GraphQuery, Lineage, LineageQuery,
        MonitorPoints, MonitorQuery, Operation, Page, PageRequest, StageBucket, StageHistogramQuery, StageSummary,
        StoreResult,
    };

    /// What the scripted store does with one `write` call.
    enum Step {
        Commit(WriteOutcome),
        Fail(StoreError),
        /// Commit once the test releases the gate (a commit the test can hold in progress).
        CommitWhenReleased(oneshot::Receiver<()>),
        /// Never return (a commit stuck in the database).
        Hang,
    }

    /// A `Store` whose `write` calls follow a script (then commit with an empty outcome) and
    /// are recorded; reads are not part of the writer and answer "unavailable".
    #[derive(Default)]
    struct ScriptedStore {
        script: Mutex<VecDeque<Step>>,
        calls: Mutex<Vec<Vec<WriteRecord>>>,
    }

    impl ScriptedStore {
        fn new(script: Vec<Step>) -> Arc<ScriptedStore> {
            Arc::new(ScriptedStore { script: Mutex::new(script.into()), calls: Mutex::default() })
        }

        fn calls(&self) -> Vec<Vec<WriteRecord>> {
            self.calls.lock().unwrap().clone()
        }
    }

    fn no_reads<T>() -> StoreResult<T> {
        Err(StoreError::unavailable("the scripted store answers no reads"))
    }

    #[async_trait::async_trait]
    impl Store for ScriptedStore {
        fn backend(&self) -> &'static str {
            "scripted"
        }
        async fn write(&self, batch: &WriteBatch) -> StoreResult<WriteOutcome> {
            self.calls.lock().unwrap().push(batch.records.clone());
            let step = self.script.lock().unwrap().pop_front();
            match step {
                None => Ok(WriteOutcome::default()),
                Some(Step::Commit(outcome)) => Ok(outcome),
                Some(Step::Fail(e)) => Err(e),
                Some(Step::CommitWhenReleased(gate)) => {
                    let _ = gate.await;
                    Ok(WriteOutcome::default())
                }
                Some(Step::Hang) => std::future::pending().await,
            }
        }
        async fn span_refs(&self, _: &[String]) -> StoreResult<HashMap<String, SpanRef>> {
            no_reads()
        }
        async fn check_ready(&self) -> StoreResult<()> {
            no_reads()
        }
        async fn entity(&self, _: &str) -> StoreResult<Option<Entity>> {
            no_reads()
        }
        async fn children_count(&self, _: &str) -> StoreResult<u64> {
            no_reads()
        }
        async fn events(&self, _: &str, _: &PageRequest) -> StoreResult<Page<EntityEvent>> {
            no_reads()
        }
        async fn operations(&self, _: &str, _: &PageRequest) -> StoreResult<Page<Operation>> {
            no_reads()
        }
        async fn lineage(&self, _: &LineageQuery) -> StoreResult<Option<Lineage>> {
            no_reads()
        }
        async fn descendants(&self, _: &str, _: Option<u32>, _: usize) -> StoreResult<Option<Descendants>> {
            no_reads()
        }
        async fn graph(&self, _: &str, _: &GraphQuery) -> StoreResult<Option<Graph>> {
            no_reads()
        }
        async fn search(&self, _: &EntityFilter, _: &PageRequest) -> StoreResult<Page<Entity>> {
            no_reads()
        }
        async fn instruments(&self) -> StoreResult<Vec<String>> {
            no_reads()
        }
        async fn stages(&self, _: &str) -> StoreResult<Vec<StageSummary>> {
            no_reads()
        }
        async fn log_search(&self, _: &helix_store::LogFilter, _: &PageRequest) -> StoreResult<Page<LogRecorded>> {
            no_reads()
        }
        async fn log_values(&self, _: helix_store::LogField, _: i64, _: i64, _: usize) -> StoreResult<Vec<String>> {
            no_reads()
        }
        async fn entities(&self, _: &[String]) -> StoreResult<Vec<Entity>> {
            no_reads()
        }
        async fn add_flag(&self, _: &helix_store::NewFlag) -> StoreResult<helix_store::FlagAdded> {
            no_reads()
        }
        async fn clear_flag(&self, _: &str, _: &str, _: &str) -> StoreResult<helix_store::Cleared> {
            no_reads()
        }
        async fn flags(&self, _: &[String], _: bool) -> StoreResult<Vec<helix_store::Flag>> {
            no_reads()
        }
        async fn instrument_events(&self, _: &EventQuery, _: &PageRequest) -> StoreResult<Page<EntityEvent>> {
            no_reads()
        }
        async fn numeric_fields(&self, _: &str, _: i64, _: i64, _: usize) -> StoreResult<Vec<String>> {
            no_reads()
        }
        async fn monitor_points(&self, _: &MonitorQuery) -> StoreResult<MonitorPoints> {
            no_reads()
        }
        async fn stage_histogram(&self, _: &StageHistogramQuery) -> StoreResult<Vec<StageBucket>> {
            no_reads()
        }
        async fn trace(&self, _: &str, _: usize) -> StoreResult<Option<helix_store::StoredTrace>> {
            no_reads()
        }
        async fn traces(
            &self,
            _: &helix_store::TraceFilter,
            _: &PageRequest,
        ) -> StoreResult<Page<helix_store::TraceSummary>> {
            no_reads()
        }
        async fn prune_logs(&self, _: std::time::Duration, _: i64) -> StoreResult<u64> {
            no_reads()
        }
        async fn span_entities(&self, _: &[(String, Option<String>)]) -> StoreResult<Vec<Option<String>>> {
            no_reads()
        }
        async fn prune_spans(&self, _: &helix_store::SpanRetention, _: i64) -> StoreResult<u64> {
            no_reads()
        }
    }

    struct Harness {
        writer: Writer,
        task: tokio::task::JoinHandle<()>,
        shutdown: CancellationToken,
        metrics: Arc<Metrics>,
    }

    fn start(store: Arc<ScriptedStore>) -> Harness {
        let metrics = Arc::new(Metrics::new());
        let shutdown = CancellationToken::new();
        let config = BatchConfig { queue_records: 1_000, max_batch_records: 1_000 };
        let (writer, task) = Writer::spawn(store, config, metrics.clone(), shutdown.clone());
        Harness { writer, task, shutdown, metrics }
    }

    type Pending = tokio::task::JoinHandle<Result<Committed, WriteError>>;

    impl Harness {
        /// Records accepted and not yet through their commit.
        fn held(&self) -> usize {
            self.writer.capacity - self.writer.budget.available_permits()
        }

        /// Submit one export and return once the writer holds it (so exports queue in order).
        async fn submit(&self, records: Vec<WriteRecord>) -> Pending {
            let before = self.held();
            let want = records.len();
            let writer = self.writer.clone();
            let pending = tokio::spawn(async move { writer.write(records).await });
            while self.held() < before + want && !pending.is_finished() {
                tokio::task::yield_now().await;
            }
            pending
        }
    }

    /// Let every other task run until `store` has seen `n` write calls.
    async fn until_calls(store: &ScriptedStore, n: usize) {
        while store.calls.lock().unwrap().len() < n {
            tokio::task::yield_now().await;
        }
    }

    fn created(id: &str) -> EntityCount {
        EntityCount { entity_id: id.into(), instrument_id: "CHIME".into(), stage: "ingest".into(), status: Status::Ok }
    }

    fn store_error(result: Result<Committed, WriteError>) -> WriteError {
        match result {
            Ok(c) => panic!("expected a refusal, got a commit ({c:?})"),
            Err(e) => e,
        }
    }

    #[tokio::test]
    async fn a_failed_batch_is_retried_export_by_export_and_each_export_learns_its_own_fate() {
        let (release, gate) = oneshot::channel();
        let store = ScriptedStore::new(vec![
            // The first export's commit is held so the next four gather into one batch.
            Step::CommitWhenReleased(gate),
            Step::Fail(StoreError::internal("constraint violated somewhere in the batch")),
            // Then one export at a time.
            Step::Commit(WriteOutcome { entities_created: vec![created("a")], ..Default::default() }),
            Step::Fail(StoreError::internal("this export's record is bad")),
            Step::Fail(StoreError::unavailable("database locked")),
            Step::Commit(WriteOutcome::default()),
        ]);
        let h = start(store.clone());
        let first = h.submit(vec![log(0)]).await;
        until_calls(&store, 1).await;
        let good = h.submit(vec![log(1)]).await;
        let bad = h.submit(vec![log(2), log(3)]).await;
        let unlucky = h.submit(vec![log(4)]).await;
        let last = h.submit(vec![log(5)]).await;
        release.send(()).unwrap();

        assert!(first.await.unwrap().unwrap().is_empty());
        assert_eq!(*good.await.unwrap().unwrap(), HashSet::from(["a".to_owned()]), "its own commit's creations");
        let permanent = store_error(bad.await.unwrap());
        assert!(matches!(permanent, WriteError::Store(_)) && !permanent.is_retryable(), "{permanent:?}");
        let transient = store_error(unlucky.await.unwrap());
        assert!(matches!(transient, WriteError::Store(ref e) if e.is_transient()), "{transient:?}");
        assert!(transient.is_retryable());
        assert!(last.await.unwrap().unwrap().is_empty());

        assert_eq!(
            store.calls(),
            vec![
                vec![log(0)],
                vec![log(1), log(2), log(3), log(4), log(5)],
                vec![log(1)],
                vec![log(2), log(3)],
                vec![log(4)],
                vec![log(5)],
            ],
            "the batch, then each of its exports alone, with its own records in order"
        );
        let failures = |kind: &str| h.metrics.write_failures.with_label_values(&[kind]).get();
        assert_eq!((failures("isolating"), failures("permanent"), failures("transient")), (1, 1, 1));
    }

    #[tokio::test]
    async fn a_transient_batch_failure_tells_every_export_to_retry_without_isolating() {
        let (release, gate) = oneshot::channel();
        let store = ScriptedStore::new(vec![
            Step::CommitWhenReleased(gate),
            Step::Fail(StoreError::unavailable("database locked")),
        ]);
        let h = start(store.clone());
        let first = h.submit(vec![log(0)]).await;
        until_calls(&store, 1).await;
        let a = h.submit(vec![log(1)]).await;
        let b = h.submit(vec![log(2)]).await;
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        for refused in [a.await.unwrap(), b.await.unwrap()] {
            let e = store_error(refused);
            assert!(e.is_retryable(), "{e:?}");
        }
        // A retry of each alone would hit the same outage: the batch is tried once.
        assert_eq!(store.calls().len(), 2);
        // And the writer carries on.
        h.submit(vec![log(3)]).await.await.unwrap().unwrap();
        assert_eq!(store.calls().len(), 3);
    }

    #[tokio::test]
    async fn no_export_is_acknowledged_before_its_commit_returns() {
        let (release, gate) = oneshot::channel();
        let store = ScriptedStore::new(vec![Step::CommitWhenReleased(gate)]);
        let h = start(store.clone());
        let pending = h.submit(vec![log(1), log(2)]).await;
        until_calls(&store, 1).await;
        // The records are in the store's hands, but the commit has not returned.
        for _ in 0..1_000 {
            tokio::task::yield_now().await;
        }
        assert!(!pending.is_finished(), "acknowledged while its commit was still running");
        release.send(()).unwrap();
        pending.await.unwrap().unwrap();
        assert_eq!(store.calls(), vec![vec![log(1), log(2)]]);
    }

    #[tokio::test]
    async fn aborting_a_stuck_writer_acknowledges_nothing_it_held() {
        // What `run` does when the writer misses its shutdown deadline.
        let store = ScriptedStore::new(vec![Step::Hang]);
        let h = start(store.clone());
        let in_commit = h.submit(vec![log(1)]).await;
        until_calls(&store, 1).await;
        let queued = h.submit(vec![log(2)]).await;
        h.shutdown.cancel();
        h.task.abort();
        for refused in [in_commit.await.unwrap(), queued.await.unwrap()] {
            let e = store_error(refused);
            assert!(matches!(e, WriteError::ShuttingDown), "{e:?}");
            assert!(e.is_retryable());
        }
    }

    #[tokio::test]
    async fn shutdown_commits_what_was_accepted_then_refuses_new_exports() {
        let (release, gate) = oneshot::channel();
        let store = ScriptedStore::new(vec![Step::CommitWhenReleased(gate)]);
        let h = start(store.clone());
        let in_commit = h.submit(vec![log(1)]).await;
        until_calls(&store, 1).await;
        let queued = h.submit(vec![log(2)]).await;
        h.shutdown.cancel();
        release.send(()).unwrap();
        in_commit.await.unwrap().unwrap();
        queued.await.unwrap().unwrap();
        h.task.await.unwrap();
        assert_eq!(store.calls(), vec![vec![log(1)], vec![log(2)]]);
        let late = store_error(h.writer.write(vec![log(3)]).await);
        assert!(matches!(late, WriteError::ShuttingDown), "{late:?}");
    }

    #[tokio::test]
    async fn operations_are_counted_as_the_store_inserted_them() {
        let store = ScriptedStore::new(vec![
            Step::Commit(WriteOutcome { operations_inserted: 3, ..Default::default() }),
            // A re-sent batch: nothing new.
            Step::Commit(WriteOutcome { operations_inserted: 0, ..Default::default() }),
            Step::Fail(StoreError::internal("refused")),
        ]);
        let h = start(store.clone());
        h.submit(vec![log(1)]).await.await.unwrap().unwrap();
        h.submit(vec![log(1)]).await.await.unwrap().unwrap();
        assert!(h.submit(vec![log(2)]).await.await.unwrap().is_err());
        assert_eq!(h.metrics.operations.get(), 3);
    }
}
