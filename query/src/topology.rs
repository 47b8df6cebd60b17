//! The system's topology: who publishes each event type to which
//! destination, which consumers take it, and how each edge behaves (rate,
//! error ratio, latency percentiles), learned from flow digests over a
//! window and overridden by a declared contracts file.
//!
//! It is what flow analysis asks "who should have received this?", "how
//! long is too long here?" and "is this event type ever published without a
//! cause?". Learning is a pure function of the digests given; reading the
//! index and refreshing belong to the server, reading the contracts file to
//! [`Contracts::load`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use causeway_model::{
    Consumer, EdgeTopology, EventTypeTopology, FlowDigest, ServiceTopology, ServicesPage,
    Timestamp, TopologyPage,
};
use serde::{Deserialize, Serialize};

/// How learned expectations and thresholds are derived.
#[derive(Debug, Clone, PartialEq)]
pub struct TopologySettings {
    /// A consumer is expected for an event type once it received at least
    /// this share of that type's events...
    pub expected_share: f64,
    /// ...out of at least this many events of the type.
    pub min_samples: u64,
    /// Stuck threshold when none is declared: this many times the learned
    /// p99 of the step...
    pub stuck_p99_factor: u64,
    /// ...but at least this long...
    pub stuck_min_us: u64,
    /// ...and at most this long (also the threshold when nothing is known).
    pub stuck_max_us: u64,
    /// Latency samples kept per edge (the most recent).
    pub max_samples_per_edge: usize,
}

impl Default for TopologySettings {
    fn default() -> Self {
        Self {
            expected_share: 0.5,
            min_samples: 3,
            stuck_p99_factor: 10,
            stuck_min_us: 30_000_000,
            stuck_max_us: 3_600_000_000,
            max_samples_per_edge: 2_048,
        }
    }
}

/// The declared contracts: per event type, the consumers that must take
/// it and optional thresholds. Read from TOML:
///
/// ```toml
/// [events.OrderPlaced]
/// consumers = ["payment", "inventory"]
/// stuck_after_ms = 60000   # optional, for every step of this event type
/// slow_after_ms = 5000     # optional: processing above this is slow_step
/// ```
///
/// A consumer name matches a step's consumer group, or its service when the
/// step has no group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contracts {
    #[serde(default)]
    pub events: BTreeMap<String, Contract>,
}

/// What one event type promises.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    #[serde(default)]
    pub consumers: Vec<String>,
    #[serde(default)]
    pub stuck_after_ms: Option<u64>,
    #[serde(default)]
    pub slow_after_ms: Option<u64>,
}

/// A contracts file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ContractsError {
    #[error("cannot read the contracts file: {0}")]
    Read(std::io::Error),
    #[error("invalid contracts file: {0}")]
    Parse(String),
}

impl Contracts {
    /// Reads and checks a contracts file.
    pub fn load(path: &Path) -> Result<Self, ContractsError> {
        let text = std::fs::read_to_string(path).map_err(ContractsError::Read)?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, ContractsError> {
        toml::from_str(text).map_err(|e| ContractsError::Parse(e.message().to_owned()))
    }
}

/// What was learned about one edge: an event type taken by one consumer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EdgeStats {
    /// Events of the type this consumer received.
    pub received: u64,
    /// Of those, how many it failed at least once.
    pub failed: u64,
    /// Most recent first-receive times, for the rate.
    pub first_us: i64,
    pub last_us: i64,
    queue_wait: Vec<(i64, u64)>,
    processing: Vec<(i64, u64)>,
    pub queue_wait_p50_us: Option<u64>,
    pub queue_wait_p99_us: Option<u64>,
    pub processing_p50_us: Option<u64>,
    pub processing_p99_us: Option<u64>,
}

/// What was learned about one event type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventTypeStats {
    /// Events of this type seen (published or received).
    pub events: u64,
    /// Of those, how many carried a causation id.
    pub caused: u64,
    pub publishers: BTreeSet<String>,
    pub destinations: BTreeSet<String>,
    pub consumers: BTreeMap<Consumer, EdgeStats>,
}

/// The learned topology with the declared contracts laid over it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Topology {
    pub settings: TopologySettings,
    pub contracts: Contracts,
    pub event_types: BTreeMap<String, EventTypeStats>,
    /// The flows it was learned from, and the span of their activity.
    pub flows: u64,
    pub window_start_us: Option<i64>,
    pub window_end_us: Option<i64>,
}

fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn finish_samples(samples: &mut Vec<(i64, u64)>, keep: usize) -> (Option<u64>, Option<u64>) {
    // Keep the most recent; ties by value so the choice is deterministic.
    samples.sort_unstable();
    if samples.len() > keep {
        samples.drain(..samples.len() - keep);
    }
    let mut values: Vec<u64> = samples.iter().map(|&(_, v)| v).collect();
    values.sort_unstable();
    (percentile(&values, 0.50), percentile(&values, 0.99))
}

impl Topology {
    /// Nothing learned, nothing declared.
    pub fn empty(settings: TopologySettings, contracts: Contracts) -> Self {
        Self {
            settings,
            contracts,
            ..Self::default()
        }
    }

    /// Learns from `digests` (any order gives the same topology).
    pub fn learn<'a>(
        settings: TopologySettings,
        contracts: Contracts,
        digests: impl IntoIterator<Item = &'a FlowDigest>,
    ) -> Self {
        let mut topology = Self::empty(settings, contracts);
        for digest in digests {
            topology.add(digest);
        }
        topology.finish();
        topology
    }

    /// Learns from one more flow; [`Topology::finish`] once all are in.
    /// [`Topology::learn`] in pieces, for callers that read the flows a
    /// page at a time.
    pub(crate) fn add(&mut self, digest: &FlowDigest) {
        if digest.is_empty() {
            return;
        }
        self.flows += 1;
        self.window_start_us = Some(
            self.window_start_us
                .map_or(digest.first_us, |s| s.min(digest.first_us)),
        );
        self.window_end_us = Some(
            self.window_end_us
                .map_or(digest.last_us, |e| e.max(digest.last_us)),
        );
        for (event_id, event) in &digest.events {
            let Some(event_type) = event.event_type() else {
                continue;
            };
            let stats = self.event_types.entry(event_type.to_owned()).or_default();
            stats.events += 1;
            if event.causation_id().is_some() {
                stats.caused += 1;
            }
            if let Some(publisher) = event.publisher() {
                stats.publishers.insert(publisher.to_owned());
            }
            if let Some(destination) = event.destination() {
                stats.destinations.insert(destination.to_owned());
            }
            let steps = digest
                .steps
                .range(
                    causeway_model::StepKey {
                        event_id: event_id.clone(),
                        service: String::new(),
                        consumer_group: None,
                    }..,
                )
                .take_while(|(key, _)| &key.event_id == event_id);
            for (key, step) in steps {
                let Some(received) = step.received.earliest() else {
                    continue;
                };
                let edge = stats
                    .consumers
                    .entry(Consumer {
                        service: key.service.clone(),
                        consumer_group: key.consumer_group.clone(),
                    })
                    .or_insert_with(|| EdgeStats {
                        first_us: received,
                        last_us: received,
                        ..EdgeStats::default()
                    });
                edge.received += 1;
                edge.first_us = edge.first_us.min(received);
                edge.last_us = edge.last_us.max(received);
                if !step.failed.is_empty() || !step.dead_lettered.is_empty() {
                    edge.failed += 1;
                }
                if let Some(published) = event.published_us() {
                    let wait = u64::try_from(received - published).unwrap_or(0);
                    edge.queue_wait.push((received, wait));
                }
                let finished = step.handled.latest();
                let processing = step
                    .duration_us
                    .or_else(|| finished.and_then(|f| u64::try_from(f - received).ok()));
                if let Some(p) = processing.filter(|_| finished.is_some()) {
                    edge.processing.push((received, p));
                }
            }
        }
    }

    pub(crate) fn finish(&mut self) {
        let keep = self.settings.max_samples_per_edge.max(1);
        for stats in self.event_types.values_mut() {
            for edge in stats.consumers.values_mut() {
                (edge.queue_wait_p50_us, edge.queue_wait_p99_us) =
                    finish_samples(&mut edge.queue_wait, keep);
                (edge.processing_p50_us, edge.processing_p99_us) =
                    finish_samples(&mut edge.processing, keep);
            }
        }
    }

    fn contract(&self, event_type: &str) -> Option<&Contract> {
        self.contracts.events.get(event_type)
    }

    /// The consumers expected to receive every event of `event_type`:
    /// those declared, or else those that received at least
    /// `expected_share` of the type's events. Sorted.
    pub fn expected_consumers(&self, event_type: &str) -> Vec<Consumer> {
        if let Some(contract) = self.contract(event_type) {
            let mut declared: Vec<Consumer> = contract
                .consumers
                .iter()
                .map(|name| Consumer {
                    service: name.clone(),
                    consumer_group: None,
                })
                .collect();
            declared.sort();
            declared.dedup();
            return declared;
        }
        let Some(stats) = self.event_types.get(event_type) else {
            return Vec::new();
        };
        if stats.events < self.settings.min_samples {
            return Vec::new();
        }
        stats
            .consumers
            .iter()
            .filter(|(_, edge)| {
                edge.received as f64 >= self.settings.expected_share * stats.events as f64
            })
            .map(|(consumer, _)| consumer.clone())
            .collect()
    }

    /// Whether `consumer` (as seen in a step) is the one `expected` names.
    pub fn matches(expected: &Consumer, seen: &Consumer) -> bool {
        match &expected.consumer_group {
            Some(group) => {
                seen.consumer_group.as_ref() == Some(group) && seen.service == expected.service
            }
            // A declared name: the step's group, or its service when it has none.
            None => match &seen.consumer_group {
                Some(group) => *group == expected.service || seen.service == expected.service,
                None => seen.service == expected.service,
            },
        }
    }

    /// What was learned of the edge `event_type` -> `consumer`.
    pub fn edge(&self, event_type: &str, consumer: &Consumer) -> Option<&EdgeStats> {
        self.event_types.get(event_type)?.consumers.get(consumer)
    }

    /// How long open work of this step may go without activity before it
    /// is stuck: declared, or `stuck_p99_factor` x the learned p99 of the
    /// edge (queue wait plus processing) within the bounds, or the upper
    /// bound when nothing was learned.
    pub fn stuck_threshold_us(&self, event_type: Option<&str>, consumer: &Consumer) -> u64 {
        let settings = &self.settings;
        if let Some(ms) = event_type
            .and_then(|t| self.contract(t))
            .and_then(|c| c.stuck_after_ms)
        {
            return ms.saturating_mul(1_000);
        }
        let learned = event_type
            .and_then(|t| self.edge(t, consumer))
            .filter(|edge| edge.received >= settings.min_samples)
            .and_then(|edge| {
                let p99 = edge.queue_wait_p99_us.unwrap_or(0) + edge.processing_p99_us?;
                Some(p99.saturating_mul(settings.stuck_p99_factor))
            });
        match learned {
            Some(t) => t.clamp(settings.stuck_min_us, settings.stuck_max_us),
            None => settings.stuck_max_us,
        }
    }

    /// The processing time past which a step of this edge is slow: the
    /// declared `slow_after_ms`, or `factor` x the learned p99 (when enough
    /// was learned).
    pub fn slow_threshold_us(
        &self,
        event_type: &str,
        consumer: &Consumer,
        factor: f64,
    ) -> Option<u64> {
        if let Some(ms) = self.contract(event_type).and_then(|c| c.slow_after_ms) {
            return Some(ms.saturating_mul(1_000));
        }
        let edge = self.edge(event_type, consumer)?;
        if edge.received < self.settings.min_samples.max(20) {
            return None;
        }
        let p99 = edge.processing_p99_us?;
        Some(((p99.max(1) as f64) * factor).ceil() as u64)
    }

    /// Whether events of `event_type` are, apart from rare exceptions,
    /// published because of another event: one published without a cause
    /// then means a service dropped the context.
    pub fn usually_caused(&self, event_type: &str) -> bool {
        self.event_types.get(event_type).is_some_and(|stats| {
            stats.events >= self.settings.min_samples.max(5)
                && stats.caused as f64 >= 0.9 * stats.events as f64
        })
    }
}

impl Topology {
    /// The minutes the learned window spans (at least one).
    fn window_minutes(&self) -> f64 {
        match (self.window_start_us, self.window_end_us) {
            (Some(start), Some(end)) => ((end - start) as f64 / 60e6).max(1.0),
            _ => 1.0,
        }
    }

    /// The API's view: every event type learned or declared, each consumer
    /// seen or declared with its statistics.
    pub fn page(&self) -> TopologyPage {
        let minutes = self.window_minutes();
        let types: BTreeSet<&String> = self
            .event_types
            .keys()
            .chain(self.contracts.events.keys())
            .collect();
        let event_types = types
            .into_iter()
            .map(|event_type| {
                let learned = self.event_types.get(event_type);
                let expected = self.expected_consumers(event_type);
                let declared: Vec<&String> = self
                    .contract(event_type)
                    .map(|c| c.consumers.iter().collect())
                    .unwrap_or_default();
                let mut consumers: BTreeMap<Consumer, EdgeTopology> = BTreeMap::new();
                let empty = EdgeStats::default();
                let seen = learned.into_iter().flat_map(|s| s.consumers.iter());
                let unseen = expected
                    .iter()
                    .filter(|e| {
                        !learned.is_some_and(|s| s.consumers.keys().any(|c| Self::matches(e, c)))
                    })
                    .map(|e| (e, &empty));
                for (consumer, edge) in seen.chain(unseen) {
                    let is_declared = declared.iter().any(|name| {
                        Self::matches(
                            &Consumer {
                                service: (*name).clone(),
                                consumer_group: None,
                            },
                            consumer,
                        )
                    });
                    consumers.insert(
                        consumer.clone(),
                        EdgeTopology {
                            consumer: consumer.clone(),
                            declared: is_declared,
                            expected: expected.iter().any(|e| Self::matches(e, consumer)),
                            received: edge.received,
                            failed: edge.failed,
                            error_ratio: ratio(edge.failed, edge.received),
                            rate_per_min: edge.received as f64 / minutes,
                            queue_wait_p50_us: edge.queue_wait_p50_us,
                            queue_wait_p99_us: edge.queue_wait_p99_us,
                            processing_p50_us: edge.processing_p50_us,
                            processing_p99_us: edge.processing_p99_us,
                            stuck_after_us: self.stuck_threshold_us(Some(event_type), consumer),
                        },
                    );
                }
                EventTypeTopology {
                    event_type: event_type.clone(),
                    events: learned.map_or(0, |s| s.events),
                    caused: learned.map_or(0, |s| s.caused),
                    publishers: learned
                        .map(|s| s.publishers.iter().cloned().collect())
                        .unwrap_or_default(),
                    destinations: learned
                        .map(|s| s.destinations.iter().cloned().collect())
                        .unwrap_or_default(),
                    consumers: consumers.into_values().collect(),
                }
            })
            .collect();
        TopologyPage {
            flows: self.flows,
            window_start: self.window_start_us.map(Timestamp::from_micros),
            window_end: self.window_end_us.map(Timestamp::from_micros),
            event_types,
        }
    }

    /// Every service that published or consumed, with what and how it went.
    pub fn services(&self) -> ServicesPage {
        let mut services: BTreeMap<&str, ServiceTopology> = BTreeMap::new();
        for (event_type, stats) in &self.event_types {
            for publisher in &stats.publishers {
                service_entry(&mut services, publisher)
                    .publishes
                    .push(event_type.clone());
            }
            for (consumer, edge) in &stats.consumers {
                let service = service_entry(&mut services, &consumer.service);
                if service.consumes.last() != Some(event_type) {
                    service.consumes.push(event_type.clone());
                }
                service.received += edge.received;
                service.failed += edge.failed;
            }
        }
        ServicesPage {
            services: services
                .into_values()
                .map(|mut s| {
                    s.error_ratio = ratio(s.failed, s.received);
                    s
                })
                .collect(),
        }
    }
}

fn service_entry<'a, 'n>(
    services: &'a mut BTreeMap<&'n str, ServiceTopology>,
    name: &'n str,
) -> &'a mut ServiceTopology {
    services.entry(name).or_insert_with(|| ServiceTopology {
        service: name.to_owned(),
        publishes: Vec::new(),
        consumes: Vec::new(),
        received: 0,
        failed: 0,
        error_ratio: 0.0,
    })
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use causeway_model::{CorrelationId, EventId, Record, Stage, Timestamp};

    use super::*;

    fn record(t: i64, flow: &str, service: &str, stage: Stage, event: &str, ty: &str) -> Record {
        let mut r = Record::new(Timestamp::from_micros(t), service, "");
        r.stage = stage;
        r.correlation_id = Some(CorrelationId::new(flow).unwrap());
        r.event_id = Some(EventId::new(event).unwrap());
        r.event_type = Some(ty.into());
        r
    }

    fn flow(i: i64, with_inventory: bool) -> FlowDigest {
        let key = format!("order-{i}");
        let e = format!("{key}-e1");
        let t = i * 1_000_000;
        let mut records = vec![
            record(t, &key, "order", Stage::Published, &e, "OrderPlaced"),
            record(
                t + 100 + i,
                &key,
                "payment",
                Stage::Received,
                &e,
                "OrderPlaced",
            ),
            record(
                t + 1_000 + i,
                &key,
                "payment",
                Stage::Handled,
                &e,
                "OrderPlaced",
            ),
        ];
        if with_inventory {
            records.push(record(
                t + 50,
                &key,
                "inventory",
                Stage::Received,
                &e,
                "OrderPlaced",
            ));
            records.push(record(
                t + 60,
                &key,
                "inventory",
                Stage::Handled,
                &e,
                "OrderPlaced",
            ));
        }
        FlowDigest::of(key, &records)
    }

    #[test]
    fn consumers_seen_for_most_events_of_a_type_are_expected() {
        let digests: Vec<FlowDigest> = (0..10).map(|i| flow(i, i == 0)).collect();
        let topology = Topology::learn(TopologySettings::default(), Contracts::default(), &digests);
        let expected = topology.expected_consumers("OrderPlaced");
        assert_eq!(
            expected,
            vec![Consumer {
                service: "payment".into(),
                consumer_group: None
            }]
        );
        let edge = topology.edge("OrderPlaced", &expected[0]).unwrap();
        assert_eq!(edge.received, 10);
        assert_eq!(edge.queue_wait_p50_us, Some(104));
        assert_eq!(edge.queue_wait_p99_us, Some(109));
        // 10 x (109 + 909) is below the 30 s floor.
        assert_eq!(
            topology.stuck_threshold_us(Some("OrderPlaced"), &expected[0]),
            30_000_000
        );
        assert!(!topology.usually_caused("OrderPlaced"));
    }

    #[test]
    fn declared_contracts_override_what_was_learned() {
        let contracts = Contracts::parse(
            "[events.OrderPlaced]\nconsumers = [\"inventory\", \"billing\"]\nstuck_after_ms = 5000\n",
        )
        .unwrap();
        let digests: Vec<FlowDigest> = (0..10).map(|i| flow(i, false)).collect();
        let topology = Topology::learn(TopologySettings::default(), contracts, &digests);
        let names: Vec<String> = topology
            .expected_consumers("OrderPlaced")
            .into_iter()
            .map(|c| c.service)
            .collect();
        assert_eq!(names, vec!["billing", "inventory"]);
        let any = Consumer {
            service: "billing".into(),
            consumer_group: None,
        };
        assert_eq!(
            topology.stuck_threshold_us(Some("OrderPlaced"), &any),
            5_000_000
        );
        assert!(Contracts::parse("[events.X]\nconsumer = []\n").is_err());
    }

    #[test]
    fn the_page_lists_learned_and_declared_edges_and_the_services() {
        let contracts =
            Contracts::parse("[events.OrderPlaced]\nconsumers = [\"billing\"]\n").unwrap();
        let digests: Vec<FlowDigest> = (0..10).map(|i| flow(i, i < 2)).collect();
        let topology = Topology::learn(TopologySettings::default(), contracts, &digests);
        let page = topology.page();
        assert_eq!(page.flows, 10);
        let placed = &page.event_types[0];
        assert_eq!(placed.publishers, vec!["order"]);
        let edges: Vec<(&str, bool, bool, u64)> = placed
            .consumers
            .iter()
            .map(|e| {
                (
                    e.consumer.service.as_str(),
                    e.declared,
                    e.expected,
                    e.received,
                )
            })
            .collect();
        assert_eq!(
            edges,
            vec![
                ("billing", true, true, 0),
                ("inventory", false, false, 2),
                ("payment", false, false, 10),
            ]
        );
        let services = topology.services();
        let names: Vec<(&str, &[String], &[String])> = services
            .services
            .iter()
            .map(|s| (s.service.as_str(), &s.publishes[..], &s.consumes[..]))
            .collect();
        assert_eq!(names.len(), 3);
        assert_eq!(names[0].0, "inventory");
        assert_eq!(
            names[1],
            ("order", &["OrderPlaced".to_owned()][..], &[][..])
        );
    }

    #[test]
    fn nothing_learned_means_the_longest_threshold_and_no_expectations() {
        let topology = Topology::empty(TopologySettings::default(), Contracts::default());
        let c = Consumer {
            service: "x".into(),
            consumer_group: None,
        };
        assert!(topology.expected_consumers("OrderPlaced").is_empty());
        assert_eq!(topology.stuck_threshold_us(None, &c), 3_600_000_000);
        assert_eq!(topology.slow_threshold_us("OrderPlaced", &c, 3.0), None);
    }
}
