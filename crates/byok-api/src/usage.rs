//! The background usage writer: the request path never writes the database
//! synchronously. Records go through a bounded channel (a full channel makes
//! senders wait — back-pressure, not loss) to one task that inserts them in
//! batches, and that drains everything left when asked to stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use byok_store::Store;
use byok_store::usage::{self, UsageRecord};
use tokio::sync::{Notify, mpsc};

/// Sends usage records to the writer.
#[derive(Debug, Clone)]
pub struct UsageSender {
    tx: mpsc::Sender<UsageRecord>,
    /// For places that cannot wait (a stream's end, or its drop when the
    /// client goes away): never full, so such a record is never lost.
    overflow: mpsc::UnboundedSender<UsageRecord>,
}

impl UsageSender {
    /// Queues `record`, waiting while the queue is full (back-pressure).
    pub async fn record(&self, record: UsageRecord) {
        if self.tx.send(record).await.is_err() {
            tracing::error!("usage writer stopped; a usage record was not written");
        }
    }

    /// Queues `record` without waiting: the bounded queue if it has room,
    /// otherwise the overflow queue, which the writer drains as well.
    pub fn record_now(&self, record: UsageRecord) {
        let record = match self.tx.try_send(record) {
            Ok(()) => return,
            Err(
                mpsc::error::TrySendError::Full(record) | mpsc::error::TrySendError::Closed(record),
            ) => record,
        };
        if self.overflow.send(record).is_err() {
            tracing::error!("usage writer stopped; a usage record was not written");
        }
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
    let (tx, mut rx) = mpsc::channel::<UsageRecord>(capacity.max(1));
    let (overflow, mut overflow_rx) = mpsc::unbounded_channel::<UsageRecord>();
    let stop = Arc::new(Notify::new());
    let handle = UsageWriterHandle { stop: stop.clone() };
    let batch = batch.max(1);
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
            while records.len() < batch {
                match overflow_rx.try_recv().or_else(|_| rx.try_recv()) {
                    Ok(record) => records.push(record),
                    Err(_) => break,
                }
            }
            write(&store, records).await;
        }
        tracing::info!("usage writer flushed and stopped");
    };
    (UsageSender { tx, overflow }, handle, task)
}

/// Inserts one batch, retrying a few times on a busy or failing database.
async fn write(store: &Store, records: Vec<UsageRecord>) {
    let count = records.len();
    let records = Arc::new(records);
    for attempt in 0..5u32 {
        let batch = records.clone();
        match store.run(move |c| usage::insert_batch(c, &batch)).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(error = %error, attempt, count, "usage batch not written yet");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1))).await;
            }
        }
    }
    tracing::error!(count, "usage batch could not be written");
}
