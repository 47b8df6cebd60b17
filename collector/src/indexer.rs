//! Making batches durable, then searchable: two threads behind a bounded
//! queue.
//!
//! - The log thread takes every batch waiting, appends them to the
//!   write-ahead log ([`crate::wal`]) and fsyncs once for all of them
//!   (group commit), then acknowledges each and hands it on. An
//!   acknowledgement means the batch is on disk, not yet in the index.
//! - The indexer thread, the only owner of the index writer, adds what the
//!   log thread hands on and commits within the commit interval; each
//!   commit stores, in the same commit, the sequence number of the last
//!   batch it covers ([`Checkpoint`]), after which the log drops the
//!   segments it no longer needs.
//!
//! On start, and again after an index write fails, the indexer reads the
//! log after the last committed batch before it takes new ones, so what was
//! acknowledged and not committed is indexed once. Both threads block
//! (fsync, commits): they never run on the async runtime.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use causeway_index::{RecordIndex, RecordWriter};
use causeway_model::Record;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::config::CollectorConfig;
use crate::error::{CollectorError, IngestError};
use crate::wal::{self, IngestLog, SegmentLog};

type Ack = oneshot::Sender<Result<(), ()>>;

/// A batch on its way to the log.
struct Job {
    records: Vec<Record>,
    /// The records as the log stores them.
    payload: Vec<u8>,
    ack: Ack,
}

/// A batch in the log, on its way to the index.
struct Logged {
    seq: u64,
    records: Vec<Record>,
}

/// What an index commit says about the write-ahead log, stored with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// The last batch of the log the commit covers.
    pub(crate) wal_seq: u64,
}

impl Checkpoint {
    fn of(index: &RecordIndex) -> Result<Self, CollectorError> {
        match index.commit_payload()? {
            // An index written before the log, or by hand: nothing of the
            // log is in it.
            None => Ok(Self::default()),
            Some(text) => serde_json::from_str(&text).map_err(|error| {
                CollectorError::Wal(std::io::Error::other(format!(
                    "the index's last commit names no write-ahead log position: {error}"
                )))
            }),
        }
    }
}

/// Most bytes of batches one group commit writes.
const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;
/// Batches logged and waiting for the indexer; when full, the log thread
/// waits and the queue in front of it fills (ingest answers 503).
const INDEX_QUEUE: usize = 16;
/// How long the indexer waits after a failed index write before reading the
/// log again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Handle to the log and indexer threads; cloning shares them.
#[derive(Debug, Clone)]
pub struct Indexer {
    tx: SyncSender<Job>,
}

/// Joins the threads; they exit after the last [`Indexer`] is dropped and
/// the final commit is done.
#[derive(Debug)]
pub struct IndexerThread {
    log: JoinHandle<()>,
    index: JoinHandle<()>,
}

impl IndexerThread {
    /// Waits for the final commit.
    pub fn join(self) {
        if self.log.join().is_err() {
            tracing::error!("write-ahead log thread panicked");
        }
        if self.index.join().is_err() {
            tracing::error!("indexer thread panicked");
        }
    }
}

impl Indexer {
    /// Opens (or creates) the index and the write-ahead log and starts the
    /// threads; the indexer first indexes what the log holds past the last
    /// commit.
    pub fn start(config: &CollectorConfig) -> Result<(Self, IndexerThread), CollectorError> {
        let index = RecordIndex::open_or_create(&config.index_dir())?;
        let checkpoint = Checkpoint::of(&index)?;
        let writer = index.writer(config.writer_heap_bytes)?;
        let wal_dir = config.wal_dir();
        let log = SegmentLog::open(&wal_dir, checkpoint.wal_seq, config.wal_segment_bytes())
            .map_err(CollectorError::Wal)?;
        let committed = Arc::new(AtomicU64::new(checkpoint.wal_seq));
        let (tx, rx) = sync_channel(config.queue_capacity.max(1));
        let (logged_tx, logged_rx) = sync_channel(INDEX_QUEUE);
        let indexing = IndexLoop {
            writer,
            rx: logged_rx,
            interval: config.commit_interval(),
            wal_dir,
            committed: committed.clone(),
            indexed: checkpoint.wal_seq,
        };
        let index = std::thread::Builder::new()
            .name("causeway-indexer".into())
            .spawn(move || indexing.run())
            .map_err(CollectorError::Thread)?;
        let log = std::thread::Builder::new()
            .name("causeway-wal".into())
            .spawn(move || log_loop(log, rx, logged_tx, &committed))
            .map_err(CollectorError::Thread)?;
        Ok((Self { tx }, IndexerThread { log, index }))
    }

    /// Hands a batch to the write-ahead log and waits until it is durable
    /// there.
    pub(crate) async fn ingest(&self, records: Vec<Record>) -> Result<(), IngestError> {
        let (records, payload) = tokio::task::spawn_blocking(move || {
            let payload = encode(&records);
            (records, payload)
        })
        .await
        .map_err(|error| IngestError::Internal(format!("encoding task: {error}")))?;
        let (ack, done) = oneshot::channel();
        match self.tx.try_send(Job {
            records,
            payload,
            ack,
        }) {
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

/// A batch as the log stores it: one JSON record per line.
fn encode(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * 512);
    for record in records {
        out.extend_from_slice(record.to_json_line().as_bytes());
        out.push(b'\n');
    }
    out
}

/// The records of a logged batch. A line that no longer reads as a record
/// (it was written by this collector, so only a bug gets here) is kept as
/// a malformed record rather than dropped.
fn decode(payload: &[u8]) -> Vec<Record> {
    String::from_utf8_lossy(payload)
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|error| {
                Record::malformed(
                    causeway_model::Timestamp::now(),
                    "causeway-collector",
                    line,
                    format!("unreadable in the write-ahead log: {error}"),
                )
            })
        })
        .collect()
}

/// The log thread: group commits until every [`Indexer`] is gone.
fn log_loop(
    mut log: SegmentLog,
    rx: Receiver<Job>,
    logged: SyncSender<Logged>,
    committed: &AtomicU64,
) {
    let mut truncated = committed.load(Ordering::Acquire);
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                truncate(&mut log, committed, &mut truncated);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut bytes = first.payload.len();
        let mut group = vec![first];
        while bytes < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(job) => {
                    bytes += job.payload.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        let payloads: Vec<&[u8]> = group.iter().map(|job| job.payload.as_slice()).collect();
        match log.append(&payloads) {
            Ok(first_seq) => {
                for (seq, job) in (first_seq..).zip(group) {
                    let _ = job.ack.send(Ok(()));
                    let handed = logged.send(Logged {
                        seq,
                        records: job.records,
                    });
                    if handed.is_err() {
                        // The indexer is gone; the log holds the batch for
                        // the next start.
                        tracing::error!(
                            seq,
                            "the indexer stopped; batches wait in the write-ahead log"
                        );
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, batches = group.len(), "writing to the write-ahead log failed");
                for job in group {
                    let _ = job.ack.send(Err(()));
                }
            }
        }
        truncate(&mut log, committed, &mut truncated);
    }
}

/// Drops the log segments the index has committed, once per new commit.
fn truncate(log: &mut SegmentLog, committed: &AtomicU64, truncated: &mut u64) {
    let now = committed.load(Ordering::Acquire);
    if now > *truncated {
        match log.truncate_through(now) {
            Ok(()) => {
                *truncated = now;
                tracing::debug!(
                    committed = now,
                    wal_bytes = log.bytes(),
                    "write-ahead log truncated"
                );
            }
            Err(error) => {
                tracing::warn!(%error, "dropping covered write-ahead log segments failed")
            }
        }
    }
}

/// The indexer thread's state.
struct IndexLoop {
    writer: RecordWriter,
    rx: Receiver<Logged>,
    interval: Duration,
    wal_dir: PathBuf,
    /// The last batch an index commit covers, shared with the log thread.
    committed: Arc<AtomicU64>,
    /// The last batch added to the writer.
    indexed: u64,
}

impl IndexLoop {
    fn run(mut self) {
        // Acknowledged before the last stop and not committed then.
        if !self.catch_up_or_give_up() {
            return;
        }
        let mut oldest_pending: Option<Instant> = None;
        loop {
            let wait = oldest_pending.map_or(Duration::from_secs(60), |t| {
                self.interval.saturating_sub(t.elapsed())
            });
            let disconnected = match self.rx.recv_timeout(wait) {
                // Read from the log already (catching up).
                Ok(batch) if batch.seq <= self.indexed => false,
                Ok(batch) => {
                    if self.add(batch.seq, &batch.records) {
                        oldest_pending.get_or_insert_with(Instant::now);
                    } else if self.recover() {
                        oldest_pending = None;
                    } else {
                        return;
                    }
                    false
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            let due = oldest_pending.is_some_and(|t| t.elapsed() >= self.interval);
            if due || (disconnected && self.writer.uncommitted() > 0) {
                if !self.commit() && !self.recover() {
                    return;
                }
                oldest_pending = None;
            }
            if disconnected {
                return;
            }
        }
    }

    fn add(&mut self, seq: u64, records: &[Record]) -> bool {
        for record in records {
            if let Err(error) = self.writer.add(record) {
                tracing::error!(%error, "adding a record to the index failed");
                return false;
            }
        }
        self.indexed = seq;
        true
    }

    /// Commits what was added, with the log position it reaches.
    fn commit(&mut self) -> bool {
        let checkpoint = Checkpoint {
            wal_seq: self.indexed,
        };
        let payload = serde_json::to_string(&checkpoint).unwrap_or_default();
        match self.writer.commit_with_payload(Some(&payload)) {
            Ok(_) => {
                self.committed.store(self.indexed, Ordering::Release);
                true
            }
            Err(error) => {
                tracing::error!(%error, "index commit failed; reading the write-ahead log again");
                false
            }
        }
    }

    /// After a failed add or commit: drops what was not committed and
    /// indexes the log again from the last commit. False when the writer
    /// is beyond use.
    fn recover(&mut self) -> bool {
        if let Err(error) = self.writer.rollback() {
            return self.give_up(&error.to_string());
        }
        self.indexed = self.committed.load(Ordering::Acquire);
        std::thread::sleep(RETRY_PAUSE);
        self.catch_up_or_give_up()
    }

    /// Catches up with the log, trying again after a pause while the
    /// writer is usable. False when it is not.
    fn catch_up_or_give_up(&mut self) -> bool {
        loop {
            if self.catch_up() {
                return true;
            }
            if let Err(error) = self.writer.rollback() {
                return self.give_up(&error.to_string());
            }
            std::thread::sleep(RETRY_PAUSE);
        }
    }

    fn give_up(&self, error: &str) -> bool {
        tracing::error!(
            %error,
            "the index writer is beyond use; indexing stops and acknowledged batches wait in \
             the write-ahead log for the next start"
        );
        false
    }

    /// Indexes and commits what the log holds after the last indexed
    /// batch; false when that failed.
    fn catch_up(&mut self) -> bool {
        let from = self.indexed;
        let mut failed = false;
        let dir = self.wal_dir.clone();
        let read = wal::read_after(&dir, from, |seq, payload| {
            if !failed && !self.add(seq, &decode(payload)) {
                failed = true;
            }
            Ok(())
        });
        match read {
            Ok(last) if !failed => {
                if last > from {
                    tracing::info!(
                        batches = last - from,
                        "indexed the write-ahead log past the last commit"
                    );
                    return self.commit();
                }
                true
            }
            Ok(_) => {
                self.indexed = from;
                false
            }
            Err(error) => {
                tracing::error!(%error, "reading the write-ahead log failed");
                self.indexed = from;
                false
            }
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
                payload: Vec::new(),
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

    #[test]
    fn a_batch_reads_back_from_its_log_form() {
        let mut record = Record::new(causeway_model::Timestamp::from_micros(5), "svc", "a\nb");
        record.level = causeway_model::Level::Warn;
        let batch = vec![record.clone(), Record::new(record.timestamp, "other", "")];
        assert_eq!(decode(&encode(&batch)), batch);
    }
}
