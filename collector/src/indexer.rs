//! The indexer thread: the only owner of the index writer.
//!
//! Batches arrive over a bounded channel, each with a one-shot reply. A
//! batch is acknowledged only after the commit that made it durable, and a
//! commit happens within the commit interval of the first pending batch. It
//! runs on its own OS thread because commits block (fsync); it must never
//! run on the async runtime.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use causeway_index::{RecordIndex, RecordWriter};
use causeway_model::Record;
use tokio::sync::oneshot;

use crate::config::CollectorConfig;
use crate::error::{CollectorError, IngestError};

type Ack = oneshot::Sender<Result<(), ()>>;

struct Job {
    records: Vec<Record>,
    ack: Ack,
}

/// Handle to the indexer thread; cloning shares the same thread.
#[derive(Debug, Clone)]
pub struct Indexer {
    tx: SyncSender<Job>,
}

/// Joins the indexer thread; it exits after the last [`Indexer`] is dropped
/// and its final commit is done.
#[derive(Debug)]
pub struct IndexerThread(JoinHandle<()>);

impl IndexerThread {
    /// Waits for the final commit.
    pub fn join(self) {
        if self.0.join().is_err() {
            tracing::error!("indexer thread panicked");
        }
    }
}

impl Indexer {
    /// Opens (or creates) the index and starts the indexer thread.
    pub fn start(config: &CollectorConfig) -> Result<(Self, IndexerThread), CollectorError> {
        let index = RecordIndex::open_or_create(&config.index_dir())?;
        let writer = index.writer(config.writer_heap_bytes)?;
        let (tx, rx) = sync_channel(config.queue_capacity.max(1));
        let interval = config.commit_interval();
        let thread = std::thread::Builder::new()
            .name("causeway-indexer".into())
            .spawn(move || index_loop(writer, rx, interval))
            .map_err(CollectorError::Thread)?;
        Ok((Self { tx }, IndexerThread(thread)))
    }

    /// Hands a batch to the indexer and waits until it is durable.
    pub(crate) async fn ingest(&self, records: Vec<Record>) -> Result<(), IngestError> {
        let (ack, done) = oneshot::channel();
        match self.tx.try_send(Job { records, ack }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(IngestError::Overloaded),
            Err(TrySendError::Disconnected(_)) => return Err(IngestError::ShuttingDown),
        }
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(())) => Err(IngestError::IndexFailed),
            Err(_) => Err(IngestError::ShuttingDown),
        }
    }
}

fn index_loop(mut writer: RecordWriter, rx: Receiver<Job>, interval: Duration) {
    let mut pending: Vec<Ack> = Vec::new();
    let mut oldest_pending: Option<Instant> = None;
    loop {
        let wait = oldest_pending.map_or(Duration::from_secs(60), |t| {
            interval.saturating_sub(t.elapsed())
        });
        let disconnected = match rx.recv_timeout(wait) {
            Ok(job) => {
                let mut added = Ok(());
                for record in &job.records {
                    if let Err(error) = writer.add(record) {
                        tracing::error!(%error, "adding record to the index failed");
                        added = Err(());
                        break;
                    }
                }
                match added {
                    Ok(()) => {
                        pending.push(job.ack);
                        oldest_pending.get_or_insert_with(Instant::now);
                    }
                    // Nothing of a failed batch is acknowledged; the sender retries it.
                    Err(()) => {
                        let _ = job.ack.send(Err(()));
                    }
                }
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        let due = oldest_pending.is_some_and(|t| t.elapsed() >= interval);
        if due || (disconnected && writer.uncommitted() > 0) {
            let result = writer.commit().map(|_| ()).map_err(|error| {
                tracing::error!(%error, "index commit failed");
            });
            for ack in pending.drain(..) {
                let _ = ack.send(result);
            }
            oldest_pending = None;
        }
        if disconnected {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_is_refused_not_buffered() {
        // A queue of one that nobody drains: the first batch fills it.
        let (tx, _rx) = sync_channel(1);
        let indexer = Indexer { tx };
        let (ack, _done) = oneshot::channel();
        indexer
            .tx
            .try_send(Job {
                records: Vec::new(),
                ack,
            })
            .unwrap();
        assert!(matches!(
            indexer.ingest(Vec::new()).await,
            Err(IngestError::Overloaded)
        ));
    }

    #[tokio::test]
    async fn a_stopped_indexer_says_so() {
        let (tx, rx) = sync_channel(1);
        drop(rx);
        let indexer = Indexer { tx };
        assert!(matches!(
            indexer.ingest(Vec::new()).await,
            Err(IngestError::ShuttingDown)
        ));
    }
}
