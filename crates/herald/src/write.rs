//! The batching, durable writer: concurrent exports enqueue their records with a completion
//! handle; one task commits them in shared transactions and completes the handles only then.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

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

/// What a committed batch tells each export in it: the entities whose first creation it
/// stored (the batch may hold other exports' entities too).
pub type Committed = Arc<HashSet<String>>;

/// One export's records and the handle the writer completes after the commit.
struct WriteJob {
    records: Vec<WriteRecord>,
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
        // The channel is unbounded in jobs but bounded in records by the semaphore, which
        // is what memory is proportional to.
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = Arc::new(Semaphore::new(config.queue_records));
        let task = tokio::spawn(run(rx, store, config.clone(), metrics, shutdown, budget.clone()));
        (Writer { tx, budget, capacity: config.queue_records }, task)
    }

    /// Commit `records`; returns once they are durable (or the commit failed).
    /// Refuses at once, without waiting, when the queue is full.
    pub async fn write(&self, records: Vec<WriteRecord>) -> Result<Committed, WriteError> {
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
        self.tx.send(WriteJob { records, done, _permit: permit }).map_err(|_| WriteError::ShuttingDown)?;
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
    fn take_batch(&mut self) -> (WriteBatch, Vec<usize>) {
        let mut records = Vec::with_capacity(self.records);
        let mut sizes = Vec::with_capacity(self.jobs.len());
        for job in &mut self.jobs {
            sizes.push(job.records.len());
            records.append(&mut job.records);
        }
        (WriteBatch { records }, sizes)
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
) {
    // Backends that can commit batches side by side (PostgreSQL) get that many in flight;
    // while every slot is busy, new exports gather into the next batch.
    let slots = Arc::new(Semaphore::new(store.write_concurrency().max(1)));
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
        let (store, metrics) = (store.clone(), metrics.clone());
        commits.spawn(async move {
            commit(&*store, acc, &metrics).await;
            drop(slot);
        });
        while commits.try_join_next().is_some() {}
    }
    while commits.join_next().await.is_some() {}
    tracing::info!("writer stopped: queue drained");
}

/// Commit one accumulated batch and complete every handle in it.
async fn commit(store: &dyn Store, mut acc: Accumulator, metrics: &Metrics) {
    let started = Instant::now();
    let (batch, sizes) = acc.take_batch();
    let result = store.write(&batch).await;
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
            acc.restore(batch, &sizes);
            for job in acc.jobs {
                let single = Accumulator { records: job.records.len(), jobs: vec![job] };
                Box::pin(commit(store, single, metrics)).await;
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
                let _ = job.done.send(Err(clone_error(&e)));
            }
        }
    }
}

fn clone_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::BadCursor(m) => StoreError::BadCursor(m.clone()),
        StoreError::Schema(m) => StoreError::Schema(m.clone()),
        StoreError::Internal(m) => StoreError::Internal(m.clone()),
    }
}

fn record_outcome(metrics: &Metrics, outcome: &WriteOutcome) {
    for e in &outcome.entities_created {
        metrics.entities.with_label_values(&[e.instrument_id.as_str(), e.stage.as_str(), e.status.as_str()]).inc();
    }
    for (instrument, is_error) in &outcome.events_inserted {
        metrics.events.with_label_values(&[instrument.as_str()]).inc();
        if *is_error {
            metrics.errors.with_label_values(&[instrument.as_str()]).inc();
        }
    }
    metrics.recreations.inc_by(outcome.recreations);
    metrics.instrument_conflicts.inc_by(outcome.instrument_conflicts);
}

#[cfg(test)]
mod tests {
    use super::*;
    use helix_model::LogRecorded;

    fn log(n: i64) -> WriteRecord {
        WriteRecord::Log(LogRecorded {
            timestamp_ns: n,
            severity: "INFO".into(),
            body: String::new(),
            trace_id: None,
            span_id: None,
            entity_id: None,
            instrument_id: None,
            process_name: None,
            service_name: None,
            source: None,
            attributes: Default::default(),
        })
    }

    fn job(records: Vec<WriteRecord>, budget: &Arc<Semaphore>) -> WriteJob {
        let (done, _) = oneshot::channel();
        WriteJob { records, done, _permit: budget.clone().try_acquire_owned().unwrap() }
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
}
