//! One flow of the corpus, generated whole: the request that starts it,
//! then event by event, each published and taken by every consumer group
//! (received, log lines, handled or failed, redelivered, dead-lettered,
//! compensated), each handler publishing the next events, until the saga
//! ends or the flow reaches its planned size.
//!
//! Records come out in causal order with their times; putting many flows
//! into one time-ordered stream is `corpus.rs`'s job, not this module's.
//! Every number is drawn from the generator the caller passes in.

use std::collections::VecDeque;

use causeway_model::{CorrelationId, EventId, Level, Record, SpanId, Stage, Timestamp, TraceId};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

use crate::catalogue::{
    Business, CARRIERS, CURRENCIES, ERRORS, EVENTS, KeyStyle, REGIONS, ROOTS, SERVICES, WAREHOUSES,
    event_index, log_line, peer, with_stack_trace,
};

/// The fewest and most events of one flow.
pub const FLOW_EVENTS: std::ops::RangeInclusive<usize> = 2..=50;

/// Attempts at one delivery before it is dead-lettered.
const MAX_ATTEMPTS: u32 = 3;

/// How often things go wrong or odd, as chances in 0..=1.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Odds {
    pub failure: f64,
    pub retry_failure: f64,
    pub stack_trace: f64,
    pub second_trace: f64,
    pub slow: f64,
}

/// A follow-up of the catalogue with its event names resolved.
#[derive(Debug)]
struct FollowUp {
    by: &'static str,
    chance: f64,
    events: Vec<(usize, u32)>,
    again: Option<usize>,
}

/// The catalogue resolved to indices, and the pods of each service.
#[derive(Debug)]
pub(crate) struct World {
    follow_ups: Vec<Vec<FollowUp>>,
    roots: Vec<(usize, u32, KeyStyle)>,
    /// The pod names of each of [`SERVICES`], in its order.
    instances: Vec<Vec<String>>,
}

/// One generated flow.
#[derive(Debug)]
pub(crate) struct Flow {
    pub key: String,
    pub events: usize,
    /// In causal order, each with its time in microseconds.
    pub records: Vec<(i64, Record)>,
}

impl World {
    pub fn new(rng: &mut ChaCha8Rng, instances_per_service: usize) -> Self {
        // Names that resolve to no event are dropped; the catalogue test
        // holds every one of them to an event.
        let follow_ups = EVENTS
            .iter()
            .map(|spec| {
                spec.follow_ups
                    .iter()
                    .map(|f| FollowUp {
                        by: f.by,
                        chance: f.chance,
                        events: f
                            .events
                            .iter()
                            .filter_map(|(name, weight)| Some((event_index(name)?, *weight)))
                            .collect(),
                        again: f.again.and_then(event_index),
                    })
                    .collect()
            })
            .collect();
        let roots = ROOTS
            .iter()
            .filter_map(|(name, weight, style)| Some((event_index(name)?, *weight, *style)))
            .collect();
        let instances = SERVICES
            .iter()
            .map(|service| {
                (0..instances_per_service.max(1))
                    .map(|_| pod_name(rng, service))
                    .collect()
            })
            .collect();
        Self {
            follow_ups,
            roots,
            instances,
        }
    }

    /// A new flow starting at `at` (microseconds), business number
    /// `order_no`.
    pub fn flow(&self, rng: &mut ChaCha8Rng, odds: &Odds, order_no: u64, at: i64) -> Flow {
        let (root, style) = pick_weighted(rng, self.roots.iter().map(|(e, w, s)| ((*e, *s), *w)))
            .unwrap_or((0, KeyStyle::Order));
        let key = match style {
            KeyStyle::Order => format!("order-{order_no}"),
            KeyStyle::Uuid => uuid::Builder::from_random_bytes(rng.random())
                .into_uuid()
                .hyphenated()
                .to_string(),
        };
        // "order-<n>" and a hyphenated UUID are short visible ASCII, which
        // `CorrelationId::new` accepts.
        let correlation = CorrelationId::new(&key).expect("a generated flow key is a valid id");
        let business = Business {
            order_no,
            customer: customer_id(rng),
            amount_cents: (log_normal(rng, 6_000.0, 0.9) as u64).clamp(299, 500_000),
            currency: CURRENCIES[rng.random_range(0..CURRENCIES.len())],
            items: rng.random_range(1..=6),
            sku: rng.random_range(10_000..99_999),
            warehouse: WAREHOUSES[rng.random_range(0..WAREHOUSES.len())],
            carrier: CARRIERS[rng.random_range(0..CARRIERS.len())],
            region: REGIONS[rng.random_range(0..REGIONS.len())],
        };
        let mut attributes = Map::new();
        if style == KeyStyle::Order || EVENTS[root].name == "ReturnRequested" {
            attributes.insert("order_id".into(), Value::from(order_no));
        }
        match EVENTS[root].name {
            "ReturnRequested" => {
                attributes.insert("rma_id".into(), Value::from(format!("RMA-{order_no}")));
            }
            "UserRegistered" => {
                attributes.insert("signup_channel".into(), Value::from("web"));
            }
            _ => {}
        }
        attributes.insert(
            "customer_id".into(),
            Value::from(business.customer.as_str()),
        );
        let target = (2 + log_normal(rng, 6.0, 0.9) as usize)
            .clamp(*FLOW_EVENTS.start(), *FLOW_EVENTS.end());
        // A flow whose every first consumer dead-lettered has one event:
        // draw it again (rare, and deterministic like every draw).
        loop {
            let mut flow = FlowGen {
                rng: &mut *rng,
                odds,
                world: self,
                correlation: correlation.clone(),
                business: &business,
                attributes: &attributes,
                target,
                events: 0,
                switch_trace_at: None,
                published: Vec::new(),
                deliveries: VecDeque::new(),
                records: Vec::new(),
            };
            flow.run(root, at);
            if flow.events >= *FLOW_EVENTS.start() {
                return Flow {
                    key,
                    events: flow.events,
                    records: flow.records,
                };
            }
        }
    }

    fn instance(&self, rng: &mut ChaCha8Rng, service: &str) -> String {
        let pods = SERVICES
            .iter()
            .position(|s| *s == service)
            .and_then(|i| self.instances.get(i))
            .filter(|pods| !pods.is_empty());
        match pods {
            Some(pods) => pods[rng.random_range(0..pods.len())].clone(),
            None => format!("{service}-0"),
        }
    }
}

/// One event delivered to its consumers.
#[derive(Debug)]
struct Delivery {
    spec: usize,
    event_id: EventId,
    causation: Option<EventId>,
    published_at: i64,
    publish_span: SpanId,
    trace: TraceId,
}

/// One consumer's attempt at one delivery.
#[derive(Debug)]
struct Attempt<'d> {
    delivery: &'d Delivery,
    consumer: &'static str,
    instance: String,
    span: SpanId,
    number: u32,
}

/// The generation of one flow.
struct FlowGen<'a> {
    rng: &'a mut ChaCha8Rng,
    odds: &'a Odds,
    world: &'a World,
    correlation: CorrelationId,
    business: &'a Business,
    attributes: &'a Map<String, Value>,
    target: usize,
    events: usize,
    /// The ordinal of the event whose publish starts a second trace.
    switch_trace_at: Option<usize>,
    /// (publisher, event type, event id) of each event so far.
    published: Vec<(&'static str, &'static str, EventId)>,
    deliveries: VecDeque<Delivery>,
    records: Vec<(i64, Record)>,
}

impl FlowGen<'_> {
    fn run(&mut self, root: usize, at: i64) {
        let spec = &EVENTS[root];
        if self.target > 3 && self.rng.random_bool(self.odds.second_trace) {
            self.switch_trace_at = Some(self.rng.random_range(2..=self.target));
        }
        let trace = trace_id(self.rng);
        let request_span = span_id(self.rng);
        let instance = self.world.instance(self.rng, spec.publisher);
        let took = log_normal(self.rng, 4_000.0, 0.7) as u64;
        let (path, what) = match spec.name {
            "OrderPlaced" => ("/api/v1/orders", "order"),
            "UserRegistered" => ("/api/v1/signups", "signup"),
            _ => ("/api/v1/returns", "return"),
        };
        let b = self.business;
        let message = format!(
            "POST {path} 202 Accepted in {} ms: {what} {} for customer {} ({} items, {}), user agent okhttp/4.12.0",
            took / 1_000,
            b.order_no,
            b.customer,
            b.items,
            b.amount(),
        );
        let mut request = self.record(at, spec.publisher, &instance, Stage::Log, message);
        request.trace_id = Some(trace);
        request.span_id = Some(request_span);
        let attributes = &mut request.attributes;
        attributes.insert("http.method".into(), "POST".into());
        attributes.insert("http.route".into(), path.into());
        attributes.insert("http.status_code".into(), 202.into());
        self.records.push((at, request));
        let publish_at = at + self.rng.random_range(300..3_000);
        self.publish(root, publish_at, None, trace, Some(request_span), &instance);
        while let Some(delivery) = self.deliveries.pop_front() {
            for consumer in EVENTS[delivery.spec].consumers {
                self.consume(&delivery, consumer);
            }
        }
    }

    /// A record of this flow with its business attributes.
    fn record(
        &self,
        at: i64,
        service: &str,
        instance: &str,
        stage: Stage,
        message: String,
    ) -> Record {
        let mut record = Record::new(Timestamp::from_micros(at), service, message);
        record.instance = Some(instance.to_owned());
        record.stage = stage;
        record.correlation_id = Some(self.correlation.clone());
        record.attributes = self.attributes.clone();
        record
    }

    fn publish(
        &mut self,
        spec_index: usize,
        at: i64,
        causation: Option<EventId>,
        trace: TraceId,
        parent_span: Option<SpanId>,
        instance: &str,
    ) {
        let spec = &EVENTS[spec_index];
        self.events += 1;
        let (trace, parent_span) = if self.switch_trace_at == Some(self.events) {
            (trace_id(self.rng), None)
        } else {
            (trace, parent_span)
        };
        let event_id = event_id(self.rng, at);
        let span = span_id(self.rng);
        let payload = self.rng.random_range(180..4_000u32);
        let message = format!(
            "published {} {event_id} to {} via {} for {} ({} consumer groups subscribed, payload {payload} bytes)",
            spec.name,
            spec.destination,
            spec.system,
            self.correlation,
            spec.consumers.len(),
        );
        let mut record = self.record(at, spec.publisher, instance, Stage::Published, message);
        record.trace_id = Some(trace);
        record.span_id = Some(span);
        record.parent_span_id = parent_span;
        record.causation_id = causation.clone();
        record.event_id = Some(event_id.clone());
        record.event_type = Some(spec.name.to_owned());
        record.messaging_system = Some(spec.system.to_owned());
        record.destination = Some(spec.destination.to_owned());
        let attributes = &mut record.attributes;
        attributes.insert("payload_bytes".into(), payload.into());
        if matches!(spec.publisher, "payment" | "billing" | "pricing") {
            let b = self.business;
            attributes.insert("amount".into(), (b.amount_cents as f64 / 100.0).into());
            attributes.insert("currency".into(), b.currency.into());
        }
        self.records.push((at, record));
        self.published
            .push((spec.publisher, spec.name, event_id.clone()));
        self.deliveries.push_back(Delivery {
            spec: spec_index,
            event_id,
            causation,
            published_at: at,
            publish_span: span,
            trace,
        });
    }

    /// A record written during `attempt`: the event's context (what the
    /// middleware's handler span carries), this attempt's span.
    fn consumer_record(
        &self,
        attempt: &Attempt<'_>,
        at: i64,
        stage: Stage,
        level: Level,
        message: String,
    ) -> Record {
        let d = attempt.delivery;
        let spec = &EVENTS[d.spec];
        let mut record = self.record(at, attempt.consumer, &attempt.instance, stage, message);
        record.level = level;
        record.trace_id = Some(d.trace);
        record.span_id = Some(attempt.span);
        record.parent_span_id = Some(d.publish_span);
        record.causation_id = d.causation.clone();
        record.event_id = Some(d.event_id.clone());
        record.event_type = Some(spec.name.to_owned());
        record.messaging_system = Some(spec.system.to_owned());
        record.destination = Some(spec.destination.to_owned());
        record.consumer_group = Some(attempt.consumer.to_owned());
        record
    }

    /// Every attempt of `consumer` at `d`, until one is handled or the
    /// delivery is dead-lettered.
    fn consume(&mut self, d: &Delivery, consumer: &'static str) {
        let spec = &EVENTS[d.spec];
        let mut at = d.published_at + queue_wait_us(self.rng);
        for number in 1..=MAX_ATTEMPTS {
            let attempt = Attempt {
                delivery: d,
                consumer,
                instance: self.world.instance(self.rng, consumer),
                span: span_id(self.rng),
                number,
            };
            let message = format!(
                "received {} {} from {} (group {consumer}, delivery attempt {number}, {} ms in queue)",
                spec.name,
                d.event_id,
                spec.destination,
                (at - d.published_at) / 1_000,
            );
            let mut received =
                self.consumer_record(&attempt, at, Stage::Received, Level::Info, message);
            received
                .attributes
                .insert("delivery_attempt".into(), number.into());
            self.records.push((at, received));
            if number > 1 {
                let retried_at = at + self.rng.random_range(30..400);
                let message = format!("retry attempt {number} of {} {}", spec.name, d.event_id);
                let retried = self.consumer_record(
                    &attempt,
                    retried_at,
                    Stage::Retried,
                    Level::Warn,
                    message,
                );
                self.records.push((retried_at, retried));
            }
            let took = processing_us(self.rng, self.odds.slow);
            self.log_lines(&attempt, at, took);
            let end = at + i64::try_from(took).unwrap_or(i64::MAX / 4);
            let fail_chance = if number == 1 {
                self.odds.failure
            } else {
                self.odds.retry_failure
            };
            if self.rng.random_bool(fail_chance.clamp(0.0, 1.0)) {
                let error_type = self.fail(&attempt, end, took);
                if number == MAX_ATTEMPTS {
                    self.dead_letter(&attempt, end, error_type);
                    return;
                }
                at = end + backoff_us(self.rng, number);
                continue;
            }
            if spec.compensating {
                self.compensate(&attempt, at + (took as f64 * 0.7) as i64);
            }
            let published = self.follow_up(&attempt, at, took);
            let message = format!(
                "handled {} {} in {} ms (group {consumer}, {published} follow-up events published)",
                spec.name,
                d.event_id,
                took / 1_000,
            );
            let mut handled =
                self.consumer_record(&attempt, end, Stage::Handled, Level::Info, message);
            handled.duration_us = Some(took);
            self.records.push((end, handled));
            return;
        }
    }

    /// 0-3 ordinary log lines during the attempt, some with a context
    /// suffix or a payload dump.
    fn log_lines(&mut self, attempt: &Attempt<'_>, at: i64, took: u64) {
        let count = match self.rng.random_range(0..100) {
            0..20 => 0,
            20..55 => 1,
            55..85 => 2,
            _ => 3,
        };
        let b = self.business;
        for _ in 0..count {
            let offset = (took as f64 * self.rng.random_range(0.05..0.95)) as i64;
            let pick = self.rng.random_range(0..3);
            let ms = self.rng.random_range(1..120);
            let n = self.rng.random_range(2..60);
            let event_type = EVENTS[attempt.delivery.spec].name;
            let mut message = log_line(attempt.consumer, event_type, b, pick, ms, n);
            let level = match self.rng.random_range(0..100) {
                0..12 => Level::Debug,
                12..96 => Level::Info,
                _ => Level::Warn,
            };
            match self.rng.random_range(0..100) {
                0..30 => {
                    let request: u64 = self.rng.random();
                    let cache = if n % 3 == 0 { "miss" } else { "hit" };
                    message.push_str(&format!(
                        " [request_id=req-{request:016x} region={} pod={} db_pool_in_use={n}/32 cache={cache}]",
                        b.region, attempt.instance,
                    ));
                }
                30..35 => {
                    message.push_str(&format!(
                        " payload={{\"order_id\":{},\"customer_id\":\"{}\",\"currency\":\"{}\",\"lines\":[",
                        b.order_no, b.customer, b.currency
                    ));
                    for line in 0..b.items {
                        let comma = if line > 0 { "," } else { "" };
                        message.push_str(&format!(
                            "{comma}{{\"sku\":\"SKU-{}\",\"qty\":{},\"unit_price\":{}}}",
                            b.sku + line,
                            1 + line % 3,
                            499 + line * 250
                        ));
                    }
                    message.push_str("]}");
                }
                _ => {}
            }
            let line_at = at + offset;
            let record = self.consumer_record(attempt, line_at, Stage::Log, level, message);
            self.records.push((line_at, record));
        }
    }

    /// Writes the `failed` record of an attempt that ended at `end`;
    /// returns the error type.
    fn fail(&mut self, attempt: &Attempt<'_>, end: i64, took: u64) -> &'static str {
        let (error_type, template) = ERRORS[self.rng.random_range(0..ERRORS.len())];
        let first_line = template.replace("{peer}", peer(attempt.consumer));
        let error_message = if self.rng.random_bool(self.odds.stack_trace.clamp(0.0, 1.0)) {
            let min_len = self.rng.random_range(2_048..3_600);
            with_stack_trace(attempt.consumer, error_type, &first_line, min_len)
        } else {
            first_line.clone()
        };
        let d = attempt.delivery;
        let message = format!(
            "handler for {} {} failed after {} ms on attempt {}: {error_type}: {first_line}",
            EVENTS[d.spec].name,
            d.event_id,
            took / 1_000,
            attempt.number,
        );
        let mut failed = self.consumer_record(attempt, end, Stage::Failed, Level::Error, message);
        failed.duration_us = Some(took);
        failed.error_type = Some(error_type.to_owned());
        failed.error_message = Some(error_message);
        failed
            .attributes
            .insert("attempt".into(), attempt.number.into());
        self.records.push((end, failed));
        error_type
    }

    fn dead_letter(&mut self, attempt: &Attempt<'_>, end: i64, error_type: &str) {
        let d = attempt.delivery;
        let spec = &EVENTS[d.spec];
        let at = end + self.rng.random_range(200..3_000);
        let reason = format!(
            "{MAX_ATTEMPTS} attempts failed, last with {error_type}; moved to {}.dlq",
            spec.destination
        );
        let message = format!("dead-lettered: {} {}: {reason}", spec.name, d.event_id);
        let mut dead =
            self.consumer_record(attempt, at, Stage::DeadLettered, Level::Error, message);
        dead.error_type = Some("DeadLettered".to_owned());
        dead.error_message = Some(reason);
        self.records.push((at, dead));
    }

    /// A `compensated` record at `at` if the consumer has something to
    /// undo: it published an earlier event of this flow.
    fn compensate(&mut self, attempt: &Attempt<'_>, at: i64) {
        let action = match attempt.consumer {
            "inventory" => "released reserved stock",
            "payment" => "voided the card authorization",
            "loyalty" => "reverted awarded points",
            "billing" => "cancelled the invoice",
            "shipping" => "cancelled the shipment booking",
            _ => return,
        };
        let d = attempt.delivery;
        let Some((_, undone_type, undone_id)) = self
            .published
            .iter()
            .find(|(publisher, _, id)| *publisher == attempt.consumer && *id != d.event_id)
            .cloned()
        else {
            return;
        };
        let message = format!(
            "compensated: {action} for {} after {} (undoes {undone_type} {undone_id})",
            self.correlation, EVENTS[d.spec].name,
        );
        let mut record =
            self.consumer_record(attempt, at, Stage::Compensated, Level::Warn, message);
        record
            .attributes
            .insert("compensates_event_id".into(), undone_id.as_str().into());
        self.records.push((at, record));
    }

    /// Publishes what the consumer publishes after handling its event;
    /// returns how many events.
    fn follow_up(&mut self, attempt: &Attempt<'_>, at: i64, took: u64) -> usize {
        let d = attempt.delivery;
        let world = self.world;
        let mut published = 0;
        for follow in world.follow_ups[d.spec]
            .iter()
            .filter(|f| f.by == attempt.consumer)
        {
            if self.events >= self.target || !self.rng.random_bool(follow.chance.clamp(0.0, 1.0)) {
                continue;
            }
            let short_of_target = self.events + 4 < self.target;
            let next = match follow.again {
                Some(again) if short_of_target && self.rng.random_bool(0.85) => Some(again),
                again => pick_weighted(
                    self.rng,
                    follow
                        .events
                        .iter()
                        .filter(|(e, _)| Some(*e) != again)
                        .copied(),
                ),
            };
            let Some(next) = next else { continue };
            let publish_at = at + (took as f64 * self.rng.random_range(0.3..0.95)) as i64;
            let cause = Some(d.event_id.clone());
            let instance = &attempt.instance;
            self.publish(
                next,
                publish_at,
                cause,
                d.trace,
                Some(attempt.span),
                instance,
            );
            published += 1;
        }
        published
    }
}

/// One of `choices` by weight; `None` when every weight is 0.
fn pick_weighted<T: Copy>(
    rng: &mut ChaCha8Rng,
    choices: impl Iterator<Item = (T, u32)> + Clone,
) -> Option<T> {
    let total: u32 = choices.clone().map(|(_, w)| w).sum();
    if total == 0 {
        return None;
    }
    let mut pick = rng.random_range(0..total);
    for (choice, weight) in choices {
        if pick < weight {
            return Some(choice);
        }
        pick -= weight;
    }
    None
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // in (0, 1]
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

pub(crate) fn log_normal(rng: &mut ChaCha8Rng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

/// Time in the broker: mostly milliseconds, sometimes a backlog of
/// seconds.
fn queue_wait_us(rng: &mut ChaCha8Rng) -> i64 {
    let wait = match rng.random_range(0..100) {
        0..2 => log_normal(rng, 1_500_000.0, 0.6),
        2..12 => log_normal(rng, 80_000.0, 0.8),
        _ => log_normal(rng, 2_500.0, 0.9),
    };
    (wait as i64).clamp(100, 60_000_000)
}

/// Handler time: log-normal within 1-500 ms, rarely a slow outlier.
fn processing_us(rng: &mut ChaCha8Rng, slow: f64) -> u64 {
    if rng.random_bool(slow.clamp(0.0, 1.0)) {
        return rng.random_range(1_000_000..=8_000_000);
    }
    (log_normal(rng, 12_000.0, 0.9) as u64).clamp(1_000, 500_000)
}

/// Redelivery delay after failed attempt `attempt`: 0.2 s, 0.8 s, ...
fn backoff_us(rng: &mut ChaCha8Rng, attempt: u32) -> i64 {
    let base = 200_000.0 * 4f64.powi(attempt.saturating_sub(1) as i32);
    (base * rng.random_range(0.8..1.2)) as i64
}

fn trace_id(rng: &mut ChaCha8Rng) -> TraceId {
    loop {
        if let Some(id) = TraceId::from_bytes(rng.random()) {
            return id;
        }
    }
}

fn span_id(rng: &mut ChaCha8Rng) -> SpanId {
    loop {
        if let Some(id) = SpanId::from_bytes(rng.random()) {
            return id;
        }
    }
}

/// A UUIDv7 at the virtual time `at_micros`, as the middleware makes them.
fn event_id(rng: &mut ChaCha8Rng, at_micros: i64) -> EventId {
    let millis = u64::try_from(at_micros / 1_000).unwrap_or(0);
    let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &rng.random()).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    // A hyphenated UUID is 36 visible ASCII characters, which
    // `EventId::new` accepts.
    EventId::new(uuid.hyphenated().encode_lower(&mut buf)).expect("a UUID is a valid event id")
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn customer_id(rng: &mut ChaCha8Rng) -> String {
    let mut id = String::with_capacity(18);
    id.push_str("cus_");
    for _ in 0..14 {
        id.push(char::from(BASE62[rng.random_range(0..BASE62.len())]));
    }
    id
}

/// A Kubernetes-style pod name: `payment-7d9f8b6c5-x2k9p`.
fn pod_name(rng: &mut ChaCha8Rng, service: &str) -> String {
    const HASH: &[u8] = b"0123456789bcdf";
    const SUFFIX: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut name = format!("{service}-");
    for _ in 0..9 {
        name.push(char::from(HASH[rng.random_range(0..HASH.len())]));
    }
    name.push('-');
    for _ in 0..5 {
        name.push(char::from(SUFFIX[rng.random_range(0..SUFFIX.len())]));
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_is_consistent() {
        for (name, _, _) in ROOTS {
            assert!(event_index(name).is_some(), "root {name}");
        }
        for spec in EVENTS {
            assert!(SERVICES.contains(&spec.publisher), "{}", spec.name);
            assert!(matches!(spec.system, "rabbitmq" | "nats"), "{}", spec.name);
            for consumer in spec.consumers {
                assert!(SERVICES.contains(consumer), "{consumer}");
            }
            for follow in spec.follow_ups {
                assert!(
                    spec.consumers.contains(&follow.by),
                    "{} is not a consumer of {}",
                    follow.by,
                    spec.name
                );
                for next in follow
                    .events
                    .iter()
                    .map(|(name, _)| *name)
                    .chain(follow.again)
                {
                    let next = event_index(next).map(|i| &EVENTS[i]);
                    assert!(
                        next.is_some_and(|n| n.publisher == follow.by),
                        "{} of {} is not published by {}",
                        next.map_or("?", |n| n.name),
                        spec.name,
                        follow.by
                    );
                }
            }
        }
    }

    #[test]
    fn a_stack_trace_reaches_its_length_and_keeps_its_first_line() {
        for service in ["payment", "inventory"] {
            let text = with_stack_trace(service, "TimeoutError", "call timed out", 2_048);
            assert!(
                (2_048..4_096).contains(&text.len()),
                "{service}: {}",
                text.len()
            );
            assert!(text.starts_with("call timed out\n"));
            assert!(text.lines().count() > 10);
        }
    }
}
