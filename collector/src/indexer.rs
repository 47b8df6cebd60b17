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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use causeway_index::{RecordIndex, RecordReader, RecordWriter};
use causeway_model::wire::{self, Position};
use causeway_model::{Record, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::config::CollectorConfig;
use crate::error::{CollectorError, IngestError};
use crate::metrics::{Metrics, Protocol};
use crate::wal::{self, IngestLog, SegmentLog};

type Ack = oneshot::Sender<Result<(), ()>>;

/// A batch on its way to the log.
struct Job {
    batch: Batch,
    /// The batch as the log stores it.
    payload: Vec<u8>,
    /// What the batch holds of the queue's byte budget, given back when the
    /// indexer takes it.
    budget: usize,
    ack: Ack,
}

/// Records and, when their sender read them from streams, where each came
/// from ([`causeway_model::wire`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Batch {
    pub(crate) records: Vec<Record>,
    pub(crate) origins: Origins,
}

/// The streams a batch's records came from and each record's position:
/// none, or one position per record; and the content hash of each record
/// (none, or one per record) when its sender may send it again with no
/// position to tell (OTLP).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Origins {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) streams: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) positions: Vec<Position>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) hashes: Vec<u64>,
}

/// A batch in the log, on its way to the index.
struct Logged {
    seq: u64,
    batch: Batch,
    /// The batch as the log holds it when that is [`encode`]'s: each
    /// record's JSON line, stored in the index as it is rather than made
    /// again. `None` for a body kept as it came.
    encoded: Option<Vec<u8>>,
    /// Bytes it counts for in the queue.
    bytes: usize,
    acknowledged: Instant,
}

/// What an index commit says about what it holds, stored with it: how far
/// the write-ahead log is indexed, and per stream the highest position
/// indexed (with the log batch that last moved it, to drop the streams
/// quiet longest past [`MAX_STREAMS`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// The last batch of the log the commit covers.
    pub(crate) wal_seq: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) streams: BTreeMap<String, (u64, u64)>,
}

/// Most streams whose position a checkpoint keeps. A stream dropped past it
/// (the one quiet longest) has its records indexed again if they are sent
/// again.
const MAX_STREAMS: usize = 10_000;

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
    queue: Arc<QueueBudget>,
    metrics: Arc<Metrics>,
    /// Sees the index as the indexer commits it, for the metrics.
    reader: Option<RecordReader>,
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
        let writer = index.writer_with_threads(config.index_threads, config.writer_heap_bytes)?;
        let reader = index.reader().ok();
        let metrics = Arc::new(Metrics::new(&config.index_dir()));
        let queue = Arc::new(QueueBudget::new(config.max_queue_bytes, metrics.clone()));
        let wal_dir = config.wal_dir();
        let log = SegmentLog::open(&wal_dir, checkpoint.wal_seq, config.wal_segment_bytes())
            .map_err(CollectorError::Wal)?;
        let committed = Arc::new(AtomicU64::new(checkpoint.wal_seq));
        let indexed = checkpoint.wal_seq;
        let (tx, rx) = sync_channel(config.queue_capacity.max(1));
        let (logged_tx, logged_rx) = sync_channel(INDEX_QUEUE);
        let indexing = IndexLoop {
            writer,
            rx: logged_rx,
            interval: config.commit_interval(),
            wal_dir,
            committed: committed.clone(),
            indexed,
            streams: checkpoint.streams.clone(),
            checkpoint,
            metrics: metrics.clone(),
            queue: queue.clone(),
            acknowledged: Vec::new(),
            retention: config.retention.map(|r| r.duration()),
            retention_every: config.retention_check_interval(),
            next_expiry: Instant::now(),
        };
        let index = std::thread::Builder::new()
            .name("causeway-indexer".into())
            .spawn(move || indexing.run())
            .map_err(CollectorError::Thread)?;
        let log_metrics = metrics.clone();
        let log_queue = queue.clone();
        let log = std::thread::Builder::new()
            .name("causeway-wal".into())
            .spawn(move || log_loop(log, rx, logged_tx, &committed, &log_metrics, &log_queue))
            .map_err(CollectorError::Thread)?;
        Ok((
            Self {
                tx,
                queue,
                metrics,
                reader,
            },
            IndexerThread { log, index },
        ))
    }

    /// The Prometheus text exposition of the collector's metrics. Blocking.
    pub(crate) fn render_metrics(&self) -> String {
        self.metrics.render(self.reader.as_ref())
    }

    /// Whether the write-ahead log is indexed past the last commit and the
    /// index writer is usable.
    pub(crate) fn is_ready(&self) -> bool {
        self.metrics.is_ready()
    }

    /// Counts a request refused before it reached the indexer.
    pub(crate) fn rejected(&self, reason: &'static str) {
        self.metrics.rejected(reason);
    }

    /// Hands records to the write-ahead log and waits until they are
    /// durable there. Records that say where they came from are indexed
    /// once: one at or below the position its stream is indexed to, or
    /// whose content hash the index holds at its time, is dropped when
    /// indexed, so a batch sent again is indexed once.
    /// Takes what a request of `wire_bytes` (its body, inflated) may come
    /// to hold in memory out of the queue's byte budget, before it is
    /// decoded: a request the budget cannot take is refused (429) before
    /// it costs anything. See [`MEMORY_PER_WIRE_BYTE`].
    pub(crate) fn reserve(&self, wire_bytes: usize) -> Result<Reserved, IngestError> {
        let bytes = wire_bytes.saturating_mul(MEMORY_PER_WIRE_BYTE);
        if !self.queue.try_take(bytes, true) {
            self.metrics.rejected(IngestError::Overloaded.code());
            return Err(IngestError::Overloaded);
        }
        Ok(Reserved {
            queue: self.queue.clone(),
            bytes,
        })
    }

    /// Takes more for `reserved`, whose request turned out `wire_bytes`
    /// larger (a gzip body, inflated).
    pub(crate) fn grow(
        &self,
        reserved: &mut Reserved,
        wire_bytes: usize,
    ) -> Result<(), IngestError> {
        let bytes = wire_bytes.saturating_mul(MEMORY_PER_WIRE_BYTE);
        if !self.queue.try_take(bytes, false) {
            self.metrics.rejected(IngestError::Overloaded.code());
            return Err(IngestError::Overloaded);
        }
        reserved.bytes += bytes;
        Ok(())
    }

    /// Hands records to the write-ahead log and waits until they are
    /// durable there; `reserved` is what their request took of the queue's
    /// budget ([`Indexer::reserve`]), held until the indexer takes them.
    /// Records that say where they came from are indexed once: one at or
    /// below the position its stream is indexed to, or whose content hash
    /// the index holds at its time, is dropped when indexed, so a batch
    /// sent again is indexed once.
    pub(crate) async fn ingest_batch(
        &self,
        batch: Batch,
        protocol: Protocol,
        reserved: Reserved,
    ) -> Result<(), IngestError> {
        let (batch, payload) = tokio::task::spawn_blocking(move || {
            let payload = encode(&batch);
            (batch, payload)
        })
        .await
        .map_err(|error| IngestError::Internal(format!("encoding task: {error}")))?;
        self.enqueue(batch, payload, protocol, reserved).await
    }

    /// [`Indexer::ingest_batch`] for a native batch decoded from `body`:
    /// the log keeps the body as it came (inflated) rather than the
    /// records serialized again, and decodes it again on replay.
    pub(crate) async fn ingest_wire(
        &self,
        batch: Batch,
        body: &[u8],
        protocol: Protocol,
        reserved: Reserved,
    ) -> Result<(), IngestError> {
        let mut payload = Vec::with_capacity(WIRE_MARK.len() + body.len());
        payload.extend_from_slice(WIRE_MARK);
        payload.extend_from_slice(body);
        self.enqueue(batch, payload, protocol, reserved).await
    }

    async fn enqueue(
        &self,
        batch: Batch,
        payload: Vec<u8>,
        protocol: Protocol,
        reserved: Reserved,
    ) -> Result<(), IngestError> {
        let records = batch.records.len();
        let malformed = batch
            .records
            .iter()
            .filter(|r| r.malformed.is_some())
            .count();
        let bytes = payload.len();
        let (ack, done) = oneshot::channel();
        let budget = reserved.bytes;
        let queued = self.tx.try_send(Job {
            batch,
            payload,
            budget,
            ack,
        });
        if queued.is_ok() {
            // The indexer gives it back when it takes the batch.
            std::mem::forget(reserved);
        }
        let result = match queued {
            Ok(()) => match done.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(())) => Err(IngestError::IndexFailed),
                Err(_) => Err(IngestError::ShuttingDown),
            },
            Err(TrySendError::Full(_)) => Err(IngestError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(IngestError::ShuttingDown),
        };
        match &result {
            Ok(()) => self.metrics.received(protocol, records, malformed, bytes),
            Err(error) => self.metrics.rejected(error.code()),
        }
        result
    }
}

/// How many bytes of memory a byte of a request may come to take while it
/// waits: the body itself, its decoded records (two to three times their
/// JSON) and their encoding for the log. The queue's byte budget
/// (`max_queue_bytes`) counts this estimate, taken before the body is
/// decoded, so that it bounds what the waiting requests hold.
pub(crate) const MEMORY_PER_WIRE_BYTE: usize = 4;

/// A request's share of the queue's byte budget; given back when dropped,
/// unless its batch was queued (then the indexer gives it back).
#[derive(Debug)]
pub(crate) struct Reserved {
    queue: Arc<QueueBudget>,
    bytes: usize,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.queue.give_back(self.bytes);
    }
}

/// A batch as the log stores it: its [`Origins`] as JSON on the first line,
/// then one JSON record per line.
fn encode(batch: &Batch) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.records.len() * 512 + 64);
    out.extend_from_slice(
        serde_json::to_string(&batch.origins)
            .unwrap_or_else(|_| "{}".into())
            .as_bytes(),
    );
    out.push(b'\n');
    for record in &batch.records {
        out.extend_from_slice(record.to_json_line().as_bytes());
        out.push(b'\n');
    }
    out
}

/// The record lines of a batch [`encode`] wrote, one per record (a
/// record's JSON line has no line break in it); `None` if they are not
/// `records` lines of text, which only a bug could make.
fn record_lines(encoded: &[u8], records: usize) -> Option<Vec<&str>> {
    let text = std::str::from_utf8(encoded).ok()?;
    let lines: Vec<&str> = text.lines().skip(1).filter(|l| !l.is_empty()).collect();
    (lines.len() == records).then_some(lines)
}

/// A logged batch. A line that no longer reads (it was written by this
/// collector, so only a bug gets here) is kept as a malformed record
/// rather than dropped, and unreadable origins are none.
fn decode(payload: &[u8]) -> Batch {
    if let Some(body) = payload.strip_prefix(WIRE_MARK) {
        return decode_wire(body);
    }
    let text = String::from_utf8_lossy(payload);
    let mut lines = text.lines();
    let origins = lines
        .next()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_default();
    let records = lines
        .filter(|line| !line.is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|error| {
                Record::malformed(
                    Timestamp::now(),
                    "causeway-collector",
                    line,
                    format!("unreadable in the write-ahead log: {error}"),
                )
            })
        })
        .collect();
    let mut batch = Batch { records, origins };
    if batch.origins.positions.len() != batch.records.len() {
        batch.origins.streams.clear();
        batch.origins.positions.clear();
    }
    if batch.origins.hashes.len() != batch.records.len() {
        batch.origins.hashes.clear();
    }
    batch
}

/// The first line of a logged native batch kept as it came: the body
/// follows. (A batch logged as records starts with its origins, a JSON
/// object, so the two never meet.)
const WIRE_MARK: &[u8] = b"#causeway-wire\n";

/// A native batch's body, decoded as ingest decoded it (a line that does
/// not read is a malformed record here too; a body that no longer reads
/// at all is kept whole as one).
fn decode_wire(body: &[u8]) -> Batch {
    let text = String::from_utf8_lossy(body);
    match wire::decode_numbered(&text, Timestamp::now(), usize::MAX) {
        Ok(decoded) => Batch {
            records: decoded.records,
            origins: Origins {
                streams: decoded.header.streams,
                positions: decoded.header.positions,
                hashes: Vec::new(),
            },
        },
        Err(error) => Batch {
            records: vec![Record::malformed(
                Timestamp::now(),
                "causeway-collector",
                wire::cut_raw(&text),
                format!("unreadable in the write-ahead log: {error}"),
            )],
            origins: Origins::default(),
        },
    }
}

/// The log thread: group commits until every [`Indexer`] is gone.
fn log_loop(
    mut log: impl IngestLog,
    rx: Receiver<Job>,
    logged: SyncSender<Logged>,
    committed: &AtomicU64,
    metrics: &Metrics,
    queue: &QueueBudget,
) {
    metrics.wal(log.bytes(), log.segments());
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
                metrics.wal(log.bytes(), log.segments());
                let acknowledged = Instant::now();
                for (seq, job) in (first_seq..).zip(group) {
                    let _ = job.ack.send(Ok(()));
                    let encoded = (!job.payload.starts_with(WIRE_MARK)).then_some(job.payload);
                    let handed = logged.send(Logged {
                        seq,
                        bytes: job.budget,
                        batch: job.batch,
                        encoded,
                        acknowledged,
                    });
                    if handed.is_err() {
                        // The indexer is gone; the log holds the batch for
                        // the next start. Its bytes stay taken: once the
                        // budget is spent, ingest answers 429 rather than
                        // filling the disk with what nobody indexes.
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
                    queue.give_back(job.payload.len());
                    let _ = job.ack.send(Err(()));
                }
            }
        }
        truncate(&mut log, committed, &mut truncated);
        metrics.wal(log.bytes(), log.segments());
    }
}

/// Drops the log segments the index has committed, once per new commit.
fn truncate(log: &mut impl IngestLog, committed: &AtomicU64, truncated: &mut u64) {
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
    /// Per stream, the highest position added to the writer.
    streams: BTreeMap<String, (u64, u64)>,
    /// What the last commit holds.
    checkpoint: Checkpoint,
    metrics: Arc<Metrics>,
    queue: Arc<QueueBudget>,
    /// When each batch added since the last commit was acknowledged.
    acknowledged: Vec<Instant>,
    /// How long records are kept; `None`: for ever.
    retention: Option<Duration>,
    retention_every: Duration,
    /// When retention next deletes what it let go of.
    next_expiry: Instant,
}

impl IndexLoop {
    fn run(mut self) {
        // Acknowledged before the last stop and not committed then.
        if !self.catch_up_or_give_up() {
            return;
        }
        self.metrics.set_ready(true);
        let mut oldest_pending: Option<Instant> = None;
        loop {
            let mut wait = oldest_pending.map_or(Duration::from_secs(60), |t| {
                self.interval.saturating_sub(t.elapsed())
            });
            if self.retention.is_some() {
                wait = wait.min(self.next_expiry.saturating_duration_since(Instant::now()));
            }
            let disconnected = match self.rx.recv_timeout(wait) {
                // Read from the log already (catching up).
                Ok(logged) if logged.seq <= self.indexed => {
                    self.queue.give_back(logged.bytes);
                    false
                }
                Ok(logged) => {
                    self.queue.give_back(logged.bytes);
                    self.acknowledged.push(logged.acknowledged);
                    let lines = logged
                        .encoded
                        .as_deref()
                        .and_then(|encoded| record_lines(encoded, logged.batch.records.len()));
                    if self.add(logged.seq, &logged.batch, lines.as_deref()) {
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
            // A batch whose records were all dropped (sent again) still
            // moves the checkpoint, so a restart does not read it again.
            if due || (disconnected && oldest_pending.is_some()) {
                if !self.commit() && !self.recover() {
                    return;
                }
                oldest_pending = None;
            }
            if disconnected {
                return;
            }
            if let Some(keep) = self.retention
                && Instant::now() >= self.next_expiry
            {
                if !self.expire(keep) && !self.recover() {
                    return;
                }
                oldest_pending = None;
            }
        }
    }

    /// Deletes the records older than `keep`, and the flows whose last
    /// record is, after committing what was added; false when that failed.
    fn expire(&mut self, keep: Duration) -> bool {
        self.next_expiry = Instant::now() + self.retention_every;
        if self.writer.uncommitted() > 0 && !self.commit() {
            return false;
        }
        let keep_us = i64::try_from(keep.as_micros()).unwrap_or(i64::MAX);
        let cutoff = Timestamp::now().as_micros().saturating_sub(keep_us);
        let expired = match self.writer.expire_before(cutoff) {
            Ok(expired) => expired,
            Err(error) => {
                tracing::error!(%error, "deleting records past their retention failed");
                return false;
            }
        };
        if expired.records == 0 && expired.flows == 0 {
            return true;
        }
        if !self.commit() {
            return false;
        }
        self.metrics.expired(expired.records, expired.flows);
        tracing::info!(
            records = expired.records,
            flows = expired.flows,
            before = %Timestamp::from_micros(cutoff),
            "deleted what is past its retention"
        );
        if let Err(error) = self.writer.collect_garbage() {
            tracing::warn!(%error, "removing the files of dropped index segments failed");
        }
        true
    }

    /// Adds the records of logged batch `seq` that are past their
    /// stream's position.
    fn add(&mut self, seq: u64, batch: &Batch, lines: Option<&[&str]>) -> bool {
        let Origins {
            streams,
            positions,
            hashes,
        } = &batch.origins;
        let mut dropped = 0usize;
        for (i, record) in batch.records.iter().enumerate() {
            if let Some(&Position(stream, offset)) = positions.get(i) {
                let Some(name) = streams.get(stream as usize) else {
                    continue;
                };
                let mark = self.streams.get(name).map_or(0, |&(at, _)| at);
                if offset <= mark {
                    dropped += 1;
                    continue;
                }
                self.streams.insert(name.clone(), (offset, seq));
            }
            let line = lines.and_then(|lines| lines.get(i).copied());
            let added = match (hashes.get(i), line) {
                (hash, Some(line)) => self.writer.add_serialized(record, hash.copied(), line),
                (Some(&hash), None) => self.writer.add_once(record, hash),
                (None, None) => self.writer.add(record).map(|()| true),
            };
            match added {
                Ok(true) => {}
                Ok(false) => dropped += 1,
                Err(error) => {
                    tracing::error!(%error, "adding a record to the index failed");
                    return false;
                }
            }
        }
        if dropped > 0 {
            self.metrics.duplicates(dropped);
            tracing::info!(
                seq,
                dropped,
                "records sent again were indexed before; dropped"
            );
        }
        self.indexed = seq;
        true
    }

    /// Commits what was added, with the log position and the stream
    /// positions it reaches.
    fn commit(&mut self) -> bool {
        forget_quietest(&mut self.streams);
        let checkpoint = Checkpoint {
            wal_seq: self.indexed,
            streams: self.streams.clone(),
        };
        let payload = serde_json::to_string(&checkpoint).unwrap_or_default();
        let started = Instant::now();
        match self.writer.commit_with_payload(Some(&payload)) {
            Ok(_) => {
                let done = Instant::now();
                self.metrics.committed(
                    done - started,
                    self.acknowledged.drain(..).map(|at| done - at),
                );
                self.committed.store(self.indexed, Ordering::Release);
                self.checkpoint = checkpoint;
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
        self.back_to_checkpoint();
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
            self.back_to_checkpoint();
            std::thread::sleep(RETRY_PAUSE);
        }
    }

    /// Forgets what was added since the last commit (rolled back).
    fn back_to_checkpoint(&mut self) {
        self.acknowledged.clear();
        self.indexed = self.checkpoint.wal_seq;
        self.streams = self.checkpoint.streams.clone();
    }

    fn give_up(&self, error: &str) -> bool {
        self.metrics.set_ready(false);
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
        let read = wal::read_after(&dir, from, |seq, payload: &[u8]| {
            if !failed && !self.add(seq, &decode(payload), None) {
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
            Ok(_) => false,
            Err(error) => {
                tracing::error!(%error, "reading the write-ahead log failed");
                false
            }
        }
    }
}

/// The bytes of the batches between acceptance and the indexer, bounded by
/// `max_queue_bytes`; shown as the queue metrics.
#[derive(Debug)]
struct QueueBudget {
    used: AtomicUsize,
    max: usize,
    metrics: Arc<Metrics>,
}

impl QueueBudget {
    fn new(max: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            used: AtomicUsize::new(0),
            max,
            metrics,
        }
    }

    /// Takes `bytes` for a batch (`new_batch`: a batch not counted yet),
    /// unless that would pass the bound while something is queued (a batch
    /// alone always gets in, so no size is refused forever).
    fn try_take(&self, bytes: usize, new_batch: bool) -> bool {
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            if used > 0 && used.saturating_add(bytes) > self.max {
                return false;
            }
            match self.used.compare_exchange_weak(
                used,
                used + bytes,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.metrics.queued(i64::from(new_batch), bytes as i64);
                    return true;
                }
                Err(now) => used = now,
            }
        }
    }

    /// A batch left the queue.
    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        self.metrics.queued(-1, -(bytes as i64));
    }
}

/// Drops the streams quiet longest past [`MAX_STREAMS`].
fn forget_quietest(streams: &mut BTreeMap<String, (u64, u64)>) {
    let excess = streams.len().saturating_sub(MAX_STREAMS);
    if excess == 0 {
        return;
    }
    let mut by_age: Vec<(u64, String)> = streams
        .iter()
        .map(|(name, &(_, seq))| (seq, name.clone()))
        .collect();
    by_age.sort_unstable();
    for (_, name) in by_age.into_iter().take(excess) {
        streams.remove(&name);
    }
    tracing::warn!(
        dropped = excess,
        "more than {MAX_STREAMS} streams: the positions of those quiet longest are forgotten"
    );
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// An empty batch through `indexer`.
    async fn ingest_nothing(indexer: &Indexer) -> Result<(), IngestError> {
        let reserved = indexer.reserve(0).unwrap();
        indexer
            .ingest_batch(Batch::default(), Protocol::Causeway, reserved)
            .await
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_not_buffered() {
        // A queue of one that nobody drains: the first batch fills it.
        let (tx, _rx) = sync_channel(1);
        let metrics = Arc::new(Metrics::new(Path::new("/nonexistent")));
        let indexer = Indexer {
            tx,
            queue: Arc::new(QueueBudget::new(1 << 20, metrics.clone())),
            metrics,
            reader: None,
        };
        let (ack, _done) = oneshot::channel();
        indexer
            .tx
            .try_send(Job {
                batch: Batch::default(),
                payload: Vec::new(),
                budget: 0,
                ack,
            })
            .unwrap();
        assert!(matches!(
            ingest_nothing(&indexer).await,
            Err(IngestError::Overloaded)
        ));
    }

    #[test]
    fn the_record_lines_of_an_encoded_batch_are_its_records_json_lines() {
        let records: Vec<Record> = ["one", "two\nlines"]
            .into_iter()
            .map(|m| Record::new(Timestamp::from_micros(5), "svc", m))
            .collect();
        let batch = Batch {
            records: records.clone(),
            origins: Origins::default(),
        };
        let encoded = encode(&batch);
        let lines = record_lines(&encoded, 2).unwrap();
        let expected: Vec<String> = records.iter().map(Record::to_json_line).collect();
        assert_eq!(lines, expected);
        assert_eq!(record_lines(&encoded, 3), None, "a count that differs");
        assert_eq!(record_lines(b"{}\n\xff\n", 1), None, "not text");
    }

    #[test]
    fn a_request_takes_its_share_of_the_budget_before_decoding_and_gives_it_back() {
        let (tx, _rx) = sync_channel(1);
        let metrics = Arc::new(Metrics::new(Path::new("/nonexistent")));
        let queue = Arc::new(QueueBudget::new(1_000, metrics.clone()));
        let indexer = Indexer {
            tx,
            queue: queue.clone(),
            metrics,
            reader: None,
        };
        let used = || queue.used.load(Ordering::Acquire);
        let mut first = indexer.reserve(100).unwrap();
        assert_eq!(used(), 100 * MEMORY_PER_WIRE_BYTE);
        // What the first will hold leaves no room for a second this size.
        assert!(matches!(indexer.reserve(200), Err(IngestError::Overloaded)));
        // A gzip body grows once inflated.
        indexer.grow(&mut first, 50).unwrap();
        assert_eq!(used(), 150 * MEMORY_PER_WIRE_BYTE);
        assert!(indexer.grow(&mut first, 200).is_err());
        drop(first);
        assert_eq!(
            used(),
            0,
            "a request refused or failed gives its share back"
        );
        // Alone, any request gets in.
        let big = indexer.reserve(10_000).unwrap();
        drop(big);
        assert_eq!(used(), 0);
    }

    #[tokio::test]
    async fn a_stopped_indexer_says_so() {
        let (tx, rx) = sync_channel(1);
        drop(rx);
        let metrics = Arc::new(Metrics::new(Path::new("/nonexistent")));
        let indexer = Indexer {
            tx,
            queue: Arc::new(QueueBudget::new(1 << 20, metrics.clone())),
            metrics,
            reader: None,
        };
        assert!(matches!(
            ingest_nothing(&indexer).await,
            Err(IngestError::ShuttingDown)
        ));
    }

    #[test]
    fn the_queue_refuses_bytes_past_its_bound_but_never_a_batch_alone() {
        let queue = QueueBudget::new(100, Arc::new(Metrics::new(Path::new("/nonexistent"))));
        assert!(queue.try_take(60, true));
        assert!(queue.try_take(40, true));
        assert!(!queue.try_take(1, true));
        queue.give_back(60);
        assert!(!queue.try_take(61, true));
        assert!(queue.try_take(60, true));
        queue.give_back(60);
        queue.give_back(40);
        assert!(queue.try_take(1_000, true), "alone, any batch gets in");
        assert!(!queue.try_take(1, true));
    }

    #[test]
    fn a_native_body_logged_as_it_came_reads_back_as_ingest_decoded_it() {
        let records = [
            Record::new(Timestamp::from_micros(5), "svc", "a"),
            Record::new(Timestamp::from_micros(9), "svc", "b"),
        ];
        let logged = |body: &str| {
            let mut payload = WIRE_MARK.to_vec();
            payload.extend_from_slice(body.as_bytes());
            decode(&payload)
        };
        // With positions: records and origins as ingest read them.
        let streams = vec!["host:fp".to_owned()];
        let positions = [Position(0, 4), Position(0, 9)];
        let body = wire::encode_positioned("agent@host", &records, &streams, &positions);
        let batch = logged(&body);
        assert_eq!(batch.records, records);
        assert_eq!(batch.origins.streams, streams);
        assert_eq!(batch.origins.positions, positions);
        // A line that does not read is the same malformed record.
        let body = wire::encode("agent@host", &records).replace("\"count\":2", "\"count\":3")
            + "not json\n";
        let batch = logged(&body);
        let live = wire::decode_numbered(&body, Timestamp::from_micros(1), usize::MAX).unwrap();
        assert_eq!(batch.records[..2], live.records[..2]);
        assert_eq!(batch.records[2].malformed.as_ref().unwrap().raw, "not json");
        // A body that no longer reads is kept whole, as one record.
        let kept = logged("{\"causeway_batch\":99}\n");
        assert_eq!(kept.records.len(), 1);
        assert!(kept.records[0].malformed.is_some());
    }

    #[test]
    fn a_batch_reads_back_from_its_log_form() {
        let mut record = Record::new(Timestamp::from_micros(5), "svc", "a\nb");
        record.level = causeway_model::Level::Warn;
        let records = vec![record.clone(), Record::new(record.timestamp, "other", "")];
        let plain = Batch {
            records: records.clone(),
            origins: Origins::default(),
        };
        assert_eq!(decode(&encode(&plain)), plain);
        let positioned = Batch {
            records,
            origins: Origins {
                streams: vec!["host:fp".into()],
                positions: vec![Position(0, 4), Position(0, 9)],
                hashes: vec![7, u64::MAX],
            },
        };
        assert_eq!(decode(&encode(&positioned)), positioned);
    }

    fn positioned(offsets: &[u64]) -> Batch {
        Batch {
            records: offsets
                .iter()
                .map(|o| Record::new(Timestamp::from_micros(*o as i64), "svc", format!("at {o}")))
                .collect(),
            origins: Origins {
                streams: vec!["host:fp".into()],
                positions: offsets.iter().map(|&o| Position(0, o)).collect(),
                hashes: Vec::new(),
            },
        }
    }

    #[test]
    fn records_at_or_below_their_streams_position_are_dropped_and_a_rollback_restores_it() {
        let dir = tempfile::tempdir().unwrap();
        let index = RecordIndex::open_or_create(&dir.path().join("index")).unwrap();
        let (_tx, rx) = sync_channel(1);
        let mut indexing = IndexLoop {
            writer: index.writer(15_000_000).unwrap(),
            rx,
            interval: Duration::from_millis(10),
            wal_dir: dir.path().join("wal"),
            committed: Arc::default(),
            indexed: 0,
            streams: BTreeMap::new(),
            checkpoint: Checkpoint::default(),
            metrics: Arc::new(Metrics::new(dir.path())),
            queue: Arc::new(QueueBudget::new(
                1 << 20,
                Arc::new(Metrics::new(dir.path())),
            )),
            acknowledged: Vec::new(),
            retention: None,
            retention_every: Duration::from_secs(60),
            next_expiry: Instant::now(),
        };
        assert!(indexing.add(1, &positioned(&[10, 20, 30]), None));
        assert!(indexing.commit());
        // Sent again with one more record, cut differently.
        assert!(indexing.add(2, &positioned(&[20, 30, 40]), None));
        assert!(indexing.commit());
        let reader = index.reader().unwrap();
        reader.reload().unwrap();
        assert_eq!(reader.record_count().unwrap(), 4);
        let stored = Checkpoint::of(&index).unwrap();
        assert_eq!(stored.wal_seq, 2);
        assert_eq!(stored.streams["host:fp"], (40, 2));
        // Added, rolled back: the position goes back with the records.
        assert!(indexing.add(3, &positioned(&[50]), None));
        indexing.writer.rollback().unwrap();
        indexing.back_to_checkpoint();
        assert!(indexing.add(3, &positioned(&[50]), None));
        assert_eq!(indexing.streams["host:fp"], (50, 3));
    }
}
