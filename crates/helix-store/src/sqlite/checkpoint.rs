//! WAL checkpoints beside the writer instead of on it (docs/storage.md "Checkpoints").
//!
//! SQLite's default checkpoints after any commit that leaves 1 000 pages in the log, on the
//! committing connection: the one writer then copies every page it just wrote into the
//! database file and fsyncs it before it can start the next batch — about a fifth of its time
//! under full ingest, while the other core idles. Here a thread with its own connection runs a
//! PASSIVE checkpoint after each ingest commit (PASSIVE never waits for, nor holds up, the
//! writer or readers), and the writer's own automatic checkpoint only starts at `LOG_PAGES`: a
//! bound on the log, which then copies only what the thread has not yet copied and lets the
//! next transaction start the log again from the top. Durability is unchanged: a commit is
//! still fsynced to the log (`synchronous = FULL`) before it returns.

use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::Duration;

use rusqlite::Connection;

use crate::StoreResult;

/// Pages (4 KiB by default) the log may hold before the writer checkpoints it itself: about
/// ten ingest batches of the telescope mix, so the thread does nine tenths of the copying.
pub(super) const LOG_PAGES: u32 = 32_768;

/// The writer's side: wakes the checkpoint thread. Dropping it ends the thread.
pub(super) struct Checkpointer {
    wake: SyncSender<()>,
}

impl Checkpointer {
    /// Open the thread's connection and start it.
    pub(super) fn start(path: &Path, busy_timeout: Duration) -> StoreResult<Checkpointer> {
        let conn = super::connect(path, busy_timeout, false)?;
        // One pending wake is enough: a checkpoint copies everything committed before it.
        let (wake, asleep) = sync_channel(1);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(conn, asleep))
            .map_err(|e| crate::StoreError::io(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer { wake })
    }

    /// A commit added to the log: copy it into the database file soon. Never blocks.
    pub(super) fn committed(&self) {
        // Full: a wake is already pending. Disconnected cannot happen while the thread runs;
        // should it, the writer's own checkpoint at `LOG_PAGES` still bounds the log.
        let _ = self.wake.try_send(());
    }
}

fn run(conn: Connection, asleep: Receiver<()>) {
    while asleep.recv().is_ok() {
        // The row it answers says whether another checkpoint (the writer's own) was running;
        // either way the next wake copies what is left, so it is not read.
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if let Err(e) = result {
            tracing::warn!(error = %e, "background WAL checkpoint failed; the writer checkpoints the log itself");
        }
    }
}
