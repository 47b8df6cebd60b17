//! [`Corpus`]: a seeded stream of realistic causeway records, the input of
//! every causeway benchmark.
//!
//! Flows are causal cascades over the sagas of `catalogue.rs`, generated
//! whole by `flow.rs`: a service publishes an event (`published`), each
//! consumer group takes it (`received`), writes a few log lines, and ends
//! `handled` or `failed`; a failure is redelivered (`received`, `retried`)
//! and after three failures `dead_lettered`; a consumer that handled its
//! event publishes the next ones; a cancellation makes the services that
//! published earlier in the flow write `compensated`. This module keeps
//! [`CorpusConfig::flows_in_flight`] flows under way at once and hands out
//! their records merged in non-decreasing timestamp order, so that flows
//! interleave as in a real log stream; a finished flow is replaced by a new
//! one at once.
//!
//! Every number comes from one ChaCha8 stream seeded from
//! [`CorpusConfig::seed`] (ChaCha8 is portable and value-stable, unlike
//! `SmallRng`): the same config gives the same records, byte for byte, on
//! any machine, and a shorter corpus is a prefix of a longer one. It reads
//! no clock, does no I/O and never fails.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::ops::RangeInclusive;

use causeway_model::{Record, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::flow::{Odds, World, log_normal};

/// 2026-11-23T08:00:00Z, the default start of the stream.
const DEFAULT_START_MICROS: i64 = 1_795_420_800_000_000;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusConfig {
    /// Same seed, same records.
    pub seed: u64,
    /// How many records the stream yields.
    pub records: u64,
    /// Flows under way at any moment; their records interleave.
    pub flows_in_flight: usize,
    /// The time of the first flow.
    pub start: Timestamp,
    /// Instances (pods) of each service.
    pub instances_per_service: usize,
    /// Chance that a first delivery's handler fails.
    pub failure_ratio: f64,
    /// Chance that a redelivery fails again.
    pub retry_failure_ratio: f64,
    /// Share of failures whose `error_message` carries a 2-4 KB stack trace.
    pub stack_trace_ratio: f64,
    /// Share of flows that switch to a second trace id midway (a hop that
    /// did not propagate `traceparent`).
    pub second_trace_ratio: f64,
    /// Share of handlers that take 1-8 s instead of 1-500 ms.
    pub slow_ratio: f64,
    /// Flow keys kept by [`Corpus::flow_sample`], for each of its lists.
    pub sample_size: usize,
    /// The record counts of the flows in [`FlowSample::sized`].
    pub sized_records: RangeInclusive<usize>,
    /// Added to every business (order) number, and so to `order-<n>` flow
    /// keys: a stream with another offset names none of this one's flows.
    /// It takes no draw, so the rest of the stream is unchanged.
    pub order_no_offset: u64,
}

impl Default for CorpusConfig {
    fn default() -> Self {
        Self {
            seed: 7,
            records: 100_000,
            flows_in_flight: 200,
            start: Timestamp::from_micros(DEFAULT_START_MICROS),
            instances_per_service: 3,
            failure_ratio: 0.03,
            retry_failure_ratio: 0.45,
            stack_trace_ratio: 0.3,
            second_trace_ratio: 0.03,
            slow_ratio: 0.002,
            sample_size: 1_000,
            sized_records: 40..=60,
            order_no_offset: 0,
        }
    }
}

/// One finished flow: its key and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampledFlow {
    pub key: String,
    pub records: usize,
    pub events: usize,
}

/// A uniform sample of the flows that finished within the stream (a flow
/// still under way when the stream ends is not in it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowSample {
    pub seed: u64,
    /// The record counts of the flows in `sized`.
    pub sized_records: RangeInclusive<usize>,
    /// Flows with a record count in `sized_records`.
    pub sized: Vec<SampledFlow>,
    /// Flows of any size.
    pub any: Vec<SampledFlow>,
    /// Flows finished so far.
    pub finished_flows: u64,
    /// Of those, the ones with a record count in `sized_records`.
    pub finished_sized: u64,
}

/// The deterministic record stream; see the module docs.
#[derive(Debug)]
pub struct Corpus {
    config: CorpusConfig,
    odds: Odds,
    rng: ChaCha8Rng,
    /// Draws for the sample only, so that sampling never shifts the corpus.
    sample_rng: ChaCha8Rng,
    world: World,
    queue: BinaryHeap<Pending>,
    flows: Vec<FlowSlot>,
    seq: u64,
    emitted: u64,
    order_no: u64,
    sample: FlowSample,
}

#[derive(Debug, Default)]
struct FlowSlot {
    key: String,
    records: usize,
    events: usize,
    left: usize,
}

/// A record waiting for its time; the heap pops the earliest first, in
/// generation order among equal times.
#[derive(Debug)]
struct Pending {
    at: i64,
    seq: u64,
    slot: usize,
    record: Record,
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: `BinaryHeap` is a max-heap.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Pending {}

impl Corpus {
    pub fn new(config: CorpusConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let sample_rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x5a4d_504c_4521);
        let world = World::new(&mut rng, config.instances_per_service);
        let order_no = config.order_no_offset + rng.random_range(100_000..900_000);
        let odds = Odds {
            failure: config.failure_ratio.clamp(0.0, 1.0),
            retry_failure: config.retry_failure_ratio.clamp(0.0, 1.0),
            stack_trace: config.stack_trace_ratio.clamp(0.0, 1.0),
            second_trace: config.second_trace_ratio.clamp(0.0, 1.0),
            slow: config.slow_ratio.clamp(0.0, 1.0),
        };
        let sample = FlowSample {
            seed: config.seed,
            sized_records: config.sized_records.clone(),
            sized: Vec::new(),
            any: Vec::new(),
            finished_flows: 0,
            finished_sized: 0,
        };
        let mut corpus = Self {
            flows: (0..config.flows_in_flight.max(1))
                .map(|_| FlowSlot::default())
                .collect(),
            config,
            odds,
            rng,
            sample_rng,
            world,
            queue: BinaryHeap::new(),
            seq: 0,
            emitted: 0,
            order_no,
            sample,
        };
        let start = corpus.config.start.as_micros();
        for slot in 0..corpus.flows.len() {
            // Staggered over the first second, as if the stream were cut
            // out of a running system.
            let at = start + corpus.rng.random_range(0..1_000_000);
            corpus.start_flow(slot, at);
        }
        corpus
    }

    /// The configuration this corpus was made with.
    pub fn config(&self) -> &CorpusConfig {
        &self.config
    }

    /// The flows sampled among those that finished so far (read it after
    /// the stream ended for the whole corpus).
    pub fn flow_sample(&self) -> &FlowSample {
        &self.sample
    }

    fn start_flow(&mut self, slot: usize, at: i64) {
        self.order_no += self.rng.random_range(1..=3);
        let flow = self
            .world
            .flow(&mut self.rng, &self.odds, self.order_no, at);
        self.flows[slot] = FlowSlot {
            key: flow.key,
            records: flow.records.len(),
            events: flow.events,
            left: flow.records.len(),
        };
        for (at, record) in flow.records {
            self.seq += 1;
            self.queue.push(Pending {
                at,
                seq: self.seq,
                slot,
                record,
            });
        }
    }

    fn finish_flow(&mut self, slot: usize) {
        let flow = std::mem::take(&mut self.flows[slot]);
        let sampled = SampledFlow {
            key: flow.key,
            records: flow.records,
            events: flow.events,
        };
        let cap = self.config.sample_size;
        self.sample.finished_flows += 1;
        if self.config.sized_records.contains(&flow.records) {
            self.sample.finished_sized += 1;
            reservoir(
                &mut self.sample_rng,
                &mut self.sample.sized,
                cap,
                self.sample.finished_sized,
                sampled.clone(),
            );
        }
        reservoir(
            &mut self.sample_rng,
            &mut self.sample.any,
            cap,
            self.sample.finished_flows,
            sampled,
        );
    }
}

impl Iterator for Corpus {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        if self.emitted >= self.config.records {
            return None;
        }
        let Pending {
            at, slot, record, ..
        } = self.queue.pop()?;
        self.emitted += 1;
        let flow = &mut self.flows[slot];
        flow.left = flow.left.saturating_sub(1);
        if flow.left == 0 {
            self.finish_flow(slot);
            let gap = log_normal(&mut self.rng, 2_000.0, 1.0) as i64;
            self.start_flow(slot, at + gap);
        }
        Some(record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Every finished flow is replaced at once, so the queue never runs
        // dry before `records`.
        let left = usize::try_from(self.config.records - self.emitted).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

/// Algorithm R: keeps a uniform sample of `cap` of the `seen` items offered.
fn reservoir<T>(rng: &mut ChaCha8Rng, kept: &mut Vec<T>, cap: usize, seen: u64, item: T) {
    if kept.len() < cap {
        kept.push(item);
        return;
    }
    let j = rng.random_range(0..seen);
    if let Ok(j) = usize::try_from(j)
        && j < cap
    {
        kept[j] = item;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use causeway_model::{EventId, Level, Stage, TraceId};

    use super::*;
    use crate::flow::FLOW_EVENTS;

    fn corpus(records: u64) -> Corpus {
        Corpus::new(CorpusConfig {
            records,
            ..CorpusConfig::default()
        })
    }

    #[test]
    fn the_same_seed_gives_the_same_records_and_another_seed_others() {
        let lines = |seed| {
            Corpus::new(CorpusConfig {
                seed,
                records: 5_000,
                ..CorpusConfig::default()
            })
            .map(|r| r.to_json_line())
            .collect::<Vec<_>>()
        };
        let a = lines(42);
        assert_eq!(a.len(), 5_000);
        assert_eq!(a, lines(42));
        assert_ne!(a, lines(43));
        let shorter: Vec<_> = corpus(1_000).map(|r| r.to_json_line()).collect();
        let longer: Vec<_> = corpus(3_000).map(|r| r.to_json_line()).collect();
        assert_eq!(shorter[..], longer[..1_000], "a shorter corpus is a prefix");
    }

    #[test]
    fn timestamps_never_decrease_and_flows_interleave() {
        let records: Vec<_> = corpus(20_000).collect();
        for pair in records.windows(2) {
            assert!(pair[0].timestamp <= pair[1].timestamp);
        }
        for window in records.chunks(1_000) {
            let keys: HashSet<_> = window.iter().map(|r| r.flow_key()).collect();
            assert!(keys.len() >= 20, "{} flows in 1000 records", keys.len());
        }
    }

    #[test]
    fn every_received_event_was_published_earlier_with_the_same_key() {
        let mut published = HashMap::new();
        for record in corpus(20_000) {
            let key = record.flow_key();
            let Some(id) = record.event_id.as_ref().map(EventId::to_string) else {
                // Only the request log line that starts a flow has no event.
                assert_eq!(record.stage, Stage::Log);
                continue;
            };
            if record.stage == Stage::Published {
                assert!(published.insert(id, key).is_none(), "published twice");
            } else {
                assert_eq!(published.get(&id), Some(&key), "{id} not published before");
            }
        }
    }

    #[test]
    fn finished_flows_have_2_to_50_events_and_the_sample_counts_them_right() {
        let mut corpus = Corpus::new(CorpusConfig {
            records: 20_000,
            sample_size: usize::MAX,
            ..CorpusConfig::default()
        });
        let mut records: HashMap<String, usize> = HashMap::new();
        let mut events: HashMap<String, usize> = HashMap::new();
        for record in corpus.by_ref() {
            let key = record.flow_key().unwrap_or_default();
            *records.entry(key.clone()).or_default() += 1;
            if record.stage == Stage::Published {
                *events.entry(key).or_default() += 1;
            }
        }
        let sample = corpus.flow_sample();
        assert!(sample.any.len() > 20, "{} flows finished", sample.any.len());
        assert_eq!(sample.finished_flows, sample.any.len() as u64);
        for flow in &sample.any {
            assert!(FLOW_EVENTS.contains(&flow.events), "{flow:?}");
            assert_eq!(records[&flow.key], flow.records, "{flow:?}");
            assert_eq!(events[&flow.key], flow.events, "{flow:?}");
        }
        for flow in &sample.sized {
            assert!(sample.sized_records.contains(&flow.records), "{flow:?}");
        }
        assert!(!sample.sized.is_empty());
        assert!(events.values().all(|n| *n <= *FLOW_EVENTS.end()));
        let sizes: Vec<_> = sample.any.iter().map(|f| f.events).collect();
        let (smallest, largest) = (sizes.iter().min(), sizes.iter().max());
        assert!(
            smallest <= Some(&3) && largest >= Some(&15),
            "finished flows have {smallest:?} to {largest:?} events"
        );
    }

    #[test]
    fn twenty_thousand_records_have_failures_retries_and_the_other_stages() {
        let records: Vec<_> = corpus(20_000).collect();
        let count = |stage| records.iter().filter(|r| r.stage == stage).count();
        assert!(count(Stage::Failed) >= 1);
        assert!(count(Stage::Retried) >= 1);
        for stage in [
            Stage::Published,
            Stage::Received,
            Stage::Handled,
            Stage::Log,
        ] {
            assert!(count(stage) > 1_000, "{stage}: {}", count(stage));
        }
        for failed in records.iter().filter(|r| r.stage == Stage::Failed) {
            assert_eq!(failed.level, Level::Error);
            assert!(failed.error_type.is_some() && failed.error_message.is_some());
        }
        let traced = records
            .iter()
            .filter(|r| r.error_message.as_ref().is_some_and(|m| m.len() >= 2_048))
            .count();
        assert!(traced >= 1, "no stack trace among the failures");
        assert!(
            records
                .iter()
                .all(|r| r.trace_id.is_some() && r.span_id.is_some())
        );
        assert!(
            records
                .iter()
                .all(|r| r.correlation_id.is_some() && r.instance.is_some())
        );
        let services: HashSet<_> = records.iter().map(|r| r.service.as_str()).collect();
        assert!(services.len() >= 12, "{services:?}");
        let mut lengths: Vec<_> = records.iter().map(|r| r.message.len()).collect();
        lengths.sort_unstable();
        let median = lengths[lengths.len() / 2];
        assert!(
            (80..=400).contains(&median),
            "median message length {median}"
        );
    }

    #[test]
    fn a_larger_corpus_has_dead_letters_compensations_and_second_traces() {
        let mut traces: HashMap<String, HashSet<TraceId>> = HashMap::new();
        let (mut dead, mut compensated) = (0, 0);
        for record in corpus(200_000) {
            dead += usize::from(record.stage == Stage::DeadLettered);
            compensated += usize::from(record.stage == Stage::Compensated);
            if let (Some(key), Some(trace)) = (record.flow_key(), record.trace_id) {
                traces.entry(key).or_default().insert(trace);
            }
        }
        assert!(
            dead >= 1 && compensated >= 1,
            "{dead} dead, {compensated} compensated"
        );
        assert!(traces.values().any(|t| t.len() == 2));
        assert!(traces.values().all(|t| t.len() <= 2));
    }
}
