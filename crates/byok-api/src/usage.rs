//! The background usage writer: the request path never writes the database
//! synchronously. Records go through a bounded channel (a full channel makes
//! senders wait — back-pressure, not loss) to one task that inserts them in
//! batches, and that drains everything left when asked to stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use byok_store::Store;
use byok_store::usage::{self, UsageRecord};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, mpsc};

/// Records kept in memory while the database cannot take them, at most:
/// beyond this a record is dropped, with an error log line and
/// `byok_usage_records_dropped_total`.
pub const MAX_UNWRITTEN: i64 = 100_000;

/// How long a batched record may wait for others before its batch is
/// committed, by default: the most a crash can lose in `batched` mode is the
/// records of this window (plus the batch being committed).
pub const DEFAULT_BATCH_WINDOW: Duration = Duration::from_millis(100);

/// How usage records reach the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Batched in the background (group commit): a batch is committed once
    /// it is full or its first record has waited the batch window
    /// ([`DEFAULT_BATCH_WINDOW`] unless set), so a crash loses at most the
    /// records of that window and the batch being committed.
    #[default]
    Batched,
    /// Each request writes an `incomplete` record before it calls a provider
    /// and commits its final record before the last byte of its answer: a
    /// crash loses none (at the cost of two writes on the request's path).
    Strict,
}

/// What the writer is doing, as metrics.
#[derive(Debug, Clone, Default)]
pub struct UsageStats {
    /// Records queued or being retried, not yet written.
    pub unwritten: Gauge,
    /// Records written.
    pub written: Counter,
    /// Records dropped because [`MAX_UNWRITTEN`] were already waiting.
    pub dropped: Counter,
}

/// Sends usage records to the writer.
#[derive(Debug, Clone)]
pub struct UsageSender {
    tx: mpsc::Sender<UsageRecord>,
    /// For places that cannot wait (a stream's end, or its drop when the
    /// client goes away): not bounded by the queue, but by [`MAX_UNWRITTEN`].
    overflow: mpsc::UnboundedSender<UsageRecord>,
    stats: UsageStats,
    store: Store,
    durability: Durability,
}

impl UsageSender {
    /// Queues `record`, waiting while the queue is full (back-pressure).
    pub async fn record(&self, record: UsageRecord) {
        self.stats.unwritten.inc();
        if self.tx.send(record).await.is_err() {
            self.stats.unwritten.dec();
            self.stats.dropped.inc();
            tracing::error!("usage writer stopped; a usage record was not written");
        }
    }

    /// Queues `record` without waiting: the bounded queue if it has room,
    /// otherwise the overflow queue, which the writer drains as well — unless
    /// [`MAX_UNWRITTEN`] records are already waiting (the database has been
    /// away a long time): then it is dropped, loudly.
    pub fn record_now(&self, record: UsageRecord) {
        if self.stats.unwritten.get() >= MAX_UNWRITTEN {
            self.stats.dropped.inc();
            tracing::error!(
                max = MAX_UNWRITTEN,
                "usage records are waiting for the database beyond the memory bound; a record was dropped"
            );
            return;
        }
        self.stats.unwritten.inc();
        let record = match self.tx.try_send(record) {
            Ok(()) => return,
            Err(
                mpsc::error::TrySendError::Full(record) | mpsc::error::TrySendError::Closed(record),
            ) => record,
        };
        if self.overflow.send(record).is_err() {
            self.stats.unwritten.dec();
            self.stats.dropped.inc();
            tracing::error!("usage writer stopped; a usage record was not written");
        }
    }

    /// Writes `record` now, on the caller's path, retrying until it is
    /// committed or `until` passes (strict durability).
    ///
    /// # Errors
    /// The last database error, when `until` passed first.
    pub async fn commit(
        &self,
        record: UsageRecord,
        until: tokio::time::Instant,
    ) -> Result<(), byok_store::StoreError> {
        let record = Arc::new(vec![record]);
        let mut delay = Duration::from_millis(50);
        loop {
            let batch = record.clone();
            match self
                .store
                .run(move |c| usage::insert_batch(c, &batch))
                .await
            {
                Ok(()) => {
                    self.stats.written.inc();
                    return Ok(());
                }
                Err(error) if tokio::time::Instant::now() + delay >= until => return Err(error),
                Err(error) => {
                    tracing::warn!(%error, "usage record not committed yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Removes the record with `key` (strict durability: an attempt that
    /// ended without an answer leaves no `incomplete` record).
    pub async fn discard(&self, key: String) {
        if let Err(error) = self.store.run(move |c| usage::discard(c, &key)).await {
            tracing::warn!(%error, "an incomplete usage record could not be removed");
        }
    }

    /// How records reach the database.
    #[must_use]
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The writer's metrics.
    #[must_use]
    pub fn stats(&self) -> &UsageStats {
        &self.stats
    }
}

/// Stops the writer after it has written everything queued.
#[derive(Debug, Clone)]
pub struct UsageWriterHandle {
    stop: Arc<Notify>,
}

impl UsageWriterHandle {
    /// Asks the writer to stop taking records, write what is queued and end.
    pub fn shutdown(&self) {
        self.stop.notify_one();
    }
}

/// A writer over `store` with a queue of `capacity` records, inserting up to
/// `batch` records per transaction. Run the returned future on the runtime
/// (the server spawns it); it ends after [`UsageWriterHandle::shutdown`] once
/// the queue is empty, or when every sender is gone.
pub fn usage_writer(
    store: Store,
    capacity: usize,
    batch: usize,
) -> (
    UsageSender,
    UsageWriterHandle,
    impl Future<Output = ()> + Send + 'static,
) {
    usage_writer_with(
        store,
        capacity,
        batch,
        Durability::default(),
        DEFAULT_BATCH_WINDOW,
    )
}

/// As [`usage_writer`], with `durability` and a batch `window` (how long a
/// record may wait for others before its batch is committed; zero commits
/// whatever is queued at once).
pub fn usage_writer_with(
    store: Store,
    capacity: usize,
    batch: usize,
    durability: Durability,
    window: Duration,
) -> (
    UsageSender,
    UsageWriterHandle,
    impl Future<Output = ()> + Send + 'static,
) {
    let (tx, mut rx) = mpsc::channel::<UsageRecord>(capacity.max(1));
    let (overflow, mut overflow_rx) = mpsc::unbounded_channel::<UsageRecord>();
    let stop = Arc::new(Notify::new());
    let handle = UsageWriterHandle { stop: stop.clone() };
    let batch = batch.max(1);
    let stats = UsageStats::default();
    let sender = UsageSender {
        tx,
        overflow,
        stats: stats.clone(),
        store: store.clone(),
        durability,
    };
    let task = async move {
        let mut stopping = false;
        loop {
            let first = if stopping {
                match overflow_rx.try_recv() {
                    Ok(record) => Some(record),
                    Err(_) => rx.recv().await,
                }
            } else {
                tokio::select! {
                    record = rx.recv() => record,
                    Some(record) = overflow_rx.recv() => Some(record),
                    () = stop.notified() => {
                        stopping = true;
                        rx.close(); // no new records; drain what is queued
                        overflow_rx.close();
                        continue;
                    }
                }
            };
            let Some(first) = first else { break };
            let mut records = vec![first];
            // Group commit: gather until the batch is full or its first
            // record has waited the window (at once when stopping).
            let deadline = tokio::time::Instant::now() + window;
            while records.len() < batch {
                if let Ok(record) = overflow_rx.try_recv().or_else(|_| rx.try_recv()) {
                    records.push(record);
                    continue;
                }
                if stopping || window.is_zero() {
                    break;
                }
                let next = tokio::time::timeout_at(deadline, async {
                    tokio::select! {
                        record = rx.recv() => record,
                        Some(record) = overflow_rx.recv() => Some(record),
                    }
                })
                .await;
                match next {
                    Ok(Some(record)) => records.push(record),
                    _ => break,
                }
            }
            write(&store, records, &stats).await;
        }
        tracing::info!("usage writer flushed and stopped");
    };
    (sender, handle, task)
}

/// Inserts one batch (one transaction: group commit), retrying until the
/// database takes it. Meanwhile new records wait in the queue, bounded by
/// [`MAX_UNWRITTEN`].
async fn write(store: &Store, records: Vec<UsageRecord>, stats: &UsageStats) {
    let count = records.len();
    let records = Arc::new(records);
    let mut delay = Duration::from_millis(100);
    let mut failures = 0_u32;
    loop {
        let batch = records.clone();
        match store.run(move |c| usage::insert_batch(c, &batch)).await {
            Ok(()) => {
                let written = i64::try_from(count).unwrap_or(i64::MAX);
                stats.unwritten.dec_by(written);
                stats
                    .written
                    .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
                if failures > 0 {
                    tracing::info!(
                        count,
                        failures,
                        "usage batch written after the database came back"
                    );
                }
                return;
            }
            Err(error) => {
                failures += 1;
                // Loud at first, then every tenth try.
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::error!(
                        error = %error,
                        count,
                        waiting = stats.unwritten.get(),
                        "usage records cannot be written; retrying until the database is back"
                    );
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
