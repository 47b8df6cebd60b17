//! The query daemon's shared state: the config, the lazily opened reader,
//! the read permits, the declared contracts and the topology learned last,
//! the alert book; and `Read`, what one read has at hand (reader, config,
//! flow context) with the flow answer built from a digest and records.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causeway_index::{DigestCursor, DigestFilter, RecordIndex, RecordReader, RecordsRead};
use causeway_model::{FlowDetail, Timestamp};
use tokio::sync::Semaphore;

use crate::alerts::Alerts;
use crate::config::QueryConfig;
use crate::error::{QueryError, RequestError};
use crate::flow::{
    FlowContext, FlowSettings, analyze, detail, received_elsewhere, sort_records, unreceived_events,
};
use crate::list::{FlowFilter, list_flows};
use crate::topology::{Contracts, Topology};

/// Digests read at once while learning the topology.
const TOPOLOGY_PAGE: usize = 512;

/// A topology and when it was learned.
type Learned = (Instant, Arc<Topology>);

/// Shared state of the API: the config, the (lazily opened) reader and
/// the topology learned last.
#[derive(Debug, Clone)]
pub struct QueryState {
    pub(crate) config: Arc<QueryConfig>,
    reader: Arc<Mutex<Option<RecordReader>>>,
    /// Index reads running or queued on the blocking pool.
    pub(crate) reads: Arc<Semaphore>,
    contracts: Arc<Contracts>,
    topology: Arc<Mutex<Option<Learned>>>,
    /// Held while the first read learns the topology; the others wait.
    first_learning: Arc<Mutex<()>>,
    /// Set while a thread learns the topology again.
    relearning: Arc<AtomicBool>,
    flow_settings: Arc<FlowSettings>,
    /// The alert rules' state, kept by `run_alerts`.
    pub(crate) alerts: Alerts,
}

impl QueryState {
    /// The state of `config`, with no declared contracts.
    pub fn new(config: QueryConfig) -> Self {
        Self {
            reads: Arc::new(Semaphore::new(config.max_concurrent_reads.max(1))),
            reader: Arc::new(Mutex::new(None)),
            contracts: Arc::new(Contracts::default()),
            topology: Arc::new(Mutex::new(None)),
            first_learning: Arc::new(Mutex::new(())),
            relearning: Arc::new(AtomicBool::new(false)),
            flow_settings: Arc::new(config.flow_settings()),
            alerts: Alerts::new(&config.alerts),
            config: Arc::new(config),
        }
    }

    /// The state of `config`, with the contracts of its `contracts_file`.
    pub fn load(config: QueryConfig) -> Result<Self, QueryError> {
        let contracts = match &config.contracts_file {
            Some(path) => Contracts::load(path)?,
            None => Contracts::default(),
        };
        Ok(Self::new(config).with_contracts(contracts))
    }

    /// The same state with these declared contracts.
    pub fn with_contracts(mut self, contracts: Contracts) -> Self {
        self.contracts = Arc::new(contracts);
        self.topology = Arc::new(Mutex::new(None));
        self
    }

    fn index_dir(&self) -> PathBuf {
        self.config.index_dir()
    }

    /// The reader, opening the index on first use. Blocking.
    fn reader(&self) -> Result<RecordReader, RequestError> {
        let mut slot = self
            .reader
            .lock()
            .map_err(|_| RequestError::Internal("reader lock poisoned".into()))?;
        if let Some(reader) = slot.as_ref() {
            return Ok(reader.clone());
        }
        let reader = RecordIndex::open_existing(&self.index_dir())?
            .reader()?
            .with_bounds(self.config.read_bounds());
        *slot = Some(reader.clone());
        Ok(reader)
    }

    /// The topology learned last. The first read learns it while others
    /// wait; after that a read that finds it older than the refresh
    /// interval starts learning it again on a thread of its own and goes on
    /// with the one it has, so no request pays for the learning. Blocking.
    fn topology(
        &self,
        reader: &RecordReader,
        now: Timestamp,
    ) -> Result<Arc<Topology>, RequestError> {
        let poisoned = || RequestError::Internal("topology lock poisoned".into());
        let current = self.topology.lock().map_err(|_| poisoned())?.clone();
        if let Some((learned_at, topology)) = current {
            let refresh = Duration::from_millis(self.config.topology_refresh_ms);
            if learned_at.elapsed() >= refresh {
                self.learn_in_background(reader);
            }
            return Ok(topology);
        }
        let _first = self.first_learning.lock().map_err(|_| poisoned())?;
        if let Some((_, topology)) = self.topology.lock().map_err(|_| poisoned())?.clone() {
            return Ok(topology);
        }
        self.learn(reader, now)
    }

    /// Learns the topology from the flows active within its window before
    /// `now`, and keeps it.
    fn learn(&self, reader: &RecordReader, now: Timestamp) -> Result<Arc<Topology>, RequestError> {
        let window = i64::try_from(self.config.topology_window_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000);
        let filter = DigestFilter {
            active_since_us: Some(now.as_micros().saturating_sub(window)),
            ..DigestFilter::default()
        };
        // A page at a time: the whole window's digests at once would hold
        // (and leave fragmented) hundreds of megabytes for a moment.
        let mut topology =
            Topology::empty(self.config.topology_settings(), (*self.contracts).clone());
        let mut cursor = None;
        let mut learned = 0usize;
        while learned < self.config.topology_max_flows {
            let page = (self.config.topology_max_flows - learned).min(TOPOLOGY_PAGE);
            let digests = reader.flow_digests(&filter, cursor.as_ref(), page)?;
            for digest in &digests {
                topology.add(digest);
            }
            learned += digests.len();
            match digests.last() {
                Some(last) if digests.len() == page => cursor = Some(DigestCursor::after(last)),
                _ => break,
            }
        }
        topology.finish();
        let topology = Arc::new(topology);
        *self
            .topology
            .lock()
            .map_err(|_| RequestError::Internal("topology lock poisoned".into()))? =
            Some((Instant::now(), topology.clone()));
        Ok(topology)
    }

    /// Starts learning the topology again on a thread of its own, unless
    /// one already is.
    fn learn_in_background(&self, reader: &RecordReader) {
        if self.relearning.swap(true, Ordering::AcqRel) {
            return;
        }
        let state = self.clone();
        let reader = reader.clone();
        let spawned = std::thread::Builder::new()
            .name("topology".into())
            .spawn(move || {
                if let Err(error) = state.learn(&reader, Timestamp::now()) {
                    tracing::warn!(%error, "learning the topology again failed; keeping the last one");
                }
                state.relearning.store(false, Ordering::Release);
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "no thread to learn the topology again");
            self.relearning.store(false, Ordering::Release);
        }
    }

    /// Runs `f` with a read context on the blocking pool, if fewer than
    /// `max_concurrent_reads` reads are under way; otherwise answers 503
    /// with `Retry-After` at once, so reads never queue without bound.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Read<'_>) -> Result<T, RequestError> + Send + 'static,
    ) -> Result<T, RequestError> {
        let permit = self
            .reads
            .clone()
            .try_acquire_owned()
            .map_err(|_| RequestError::Busy)?;
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let reader = state.reader()?;
            let now = Timestamp::now();
            let topology = state.topology(&reader, now)?;
            f(&Read {
                reader: &reader,
                config: &state.config,
                context: FlowContext {
                    now,
                    topology: &topology,
                    settings: &state.flow_settings,
                },
            })
        })
        .await
        .map_err(|e| RequestError::Internal(format!("query task: {e}")))?
    }

    /// The flows active within `window` before `now`, analyzed as of the
    /// read, for the alert rules: the newest `max_flow_scan` of them.
    pub(crate) async fn alert_snapshot(
        &self,
        now: Timestamp,
        window: Duration,
    ) -> Result<Vec<causeway_model::FlowSummary>, String> {
        let window_us = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
        let filter = FlowFilter {
            since: Some(Timestamp::from_micros(
                now.as_micros().saturating_sub(window_us),
            )),
            ..FlowFilter::default()
        };
        let page = self
            .read(move |read| {
                let most = read.config.max_flow_scan;
                list_flows(read.reader, &filter, None, most, most, read.context)
            })
            .await
            .map_err(|error| error.to_string())?;
        if page.scan_limited || page.next_cursor.is_some() {
            tracing::warn!(
                flows = page.flows.len(),
                "alert rules saw only the newest flows of their window"
            );
        }
        Ok(page.flows)
    }

    /// Whether the index can be read; cheap once it has been opened, and
    /// never held up by reads in progress.
    pub(crate) async fn index_ready(&self) -> bool {
        let opened = self
            .reader
            .lock()
            .map(|slot| slot.is_some())
            .unwrap_or(false);
        if opened {
            return true;
        }
        let state = self.clone();
        tokio::task::spawn_blocking(move || state.reader().is_ok())
            .await
            .unwrap_or(false)
    }
}

/// Most unreceived events of one flow looked up under other flow keys.
const MAX_LOST_LOOKUPS: usize = 32;

/// What a read has at hand.
pub(crate) struct Read<'a> {
    pub(crate) reader: &'a RecordReader,
    pub(crate) config: &'a QueryConfig,
    pub(crate) context: FlowContext<'a>,
}

impl Read<'_> {
    /// The flow `key` from its digest and its newest records.
    pub(crate) fn flow(&self, key: &str) -> Result<Option<FlowDetail>, RequestError> {
        let Some(digest) = self.reader.flow_digest(key)? else {
            return Ok(None);
        };
        let RecordsRead {
            mut records,
            truncated,
        } = self
            .reader
            .records_newest(key, self.config.max_flow_records)?;
        sort_records(&mut records);
        let mut analysis = analyze(&digest, self.context);
        // Events nobody here received: did someone receive them under
        // another correlation id?
        let mut elsewhere = Vec::new();
        for event in unreceived_events(&digest, MAX_LOST_LOOKUPS) {
            let query = format!("event_id:\"{}\"", event.as_str().replace('"', "\\\""));
            let others = self.reader.flow_keys_matching(&query, 4)?;
            if let Some(other) = others.into_iter().find(|k| k != key) {
                elsewhere.push((event, other));
            }
        }
        received_elsewhere(&mut analysis, &elsewhere);
        Ok(Some(detail(analysis, records, truncated)))
    }
}
