//! The demo's orders once the daemons and services run: placed all at once
//! or at a steady rate, followed through the query API's flow list until
//! each flow shows how its scenario ends (status, event count, anomaly),
//! and reported: a table of the flows, the count per status, and the
//! throughput and the time from placing an order to its flow being
//! settled in the query API.
//!
//! Following reads pages of `GET /api/v1/flows` (newest activity first)
//! rather than one flow per order, so that thousands of orders cost a few
//! requests per tick.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causeway_model::{FlowDetail, FlowSummary, FlowsPage, Timestamp, human_duration};
use causeway_orders::{Order, Transport, expected_outcome, place_order};
use indicatif::{ProgressBar, ProgressStyle};

/// How often the flow list is read while following.
const TICK: Duration = Duration::from_millis(200);
/// Flows per page read (the query API's default `max_flows`).
const PAGE: usize = 500;
/// Most flows the table lists; the rest are counted.
const TABLE_ROWS: usize = 20;

/// When each order was placed (`None`: not yet), by its index.
pub(crate) type Placed = Arc<Mutex<Vec<Option<Instant>>>>;

/// Places `orders` over `transport`: all at once, or `rate` per second.
pub(crate) async fn place_all(
    transport: Transport,
    orders: Vec<Order>,
    rate: Option<u32>,
    placed: Placed,
) -> anyhow::Result<()> {
    let start = tokio::time::Instant::now();
    for (i, order) in orders.iter().enumerate() {
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
            tokio::time::sleep_until(due).await;
        }
        place_order(&transport, order)
            .await
            .map_err(|e| anyhow::anyhow!("placing order {}: {e}", order.id))?;
        placed.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(Instant::now());
    }
    Ok(())
}

/// Whether `flow` shows how `order`'s scenario ends.
pub(crate) fn settled(order: &Order, flow: &FlowSummary) -> bool {
    let (status, events, anomaly) = expected_outcome(order);
    flow.status.as_str() == status
        && flow.event_count == events
        && anomaly.is_none_or(|kind| flow.anomalies.iter().any(|a| a.as_str() == kind))
}

/// What following found.
#[derive(Debug, Default)]
pub(crate) struct Followed {
    /// The last summary seen of each order's flow, by order id.
    pub flows: BTreeMap<u64, FlowSummary>,
    /// When each order's flow was first seen settled, by order id.
    pub settled_at: HashMap<u64, Instant>,
}

impl Followed {
    pub(crate) fn all_settled(&self, orders: &[Order]) -> bool {
        self.settled_at.len() == orders.len()
    }
}

/// Reads the flow list until every order's flow settled or `deadline`.
pub(crate) async fn follow(
    client: &reqwest::Client,
    query_url: &str,
    orders: &[Order],
    placed: &Placed,
    since: Timestamp,
    deadline: Instant,
) -> Followed {
    let by_key: HashMap<String, &Order> = orders
        .iter()
        .map(|o| (o.correlation_id().to_string(), o))
        .collect();
    let bar = ProgressBar::new(orders.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut followed = Followed::default();
    while !followed.all_settled(orders) && Instant::now() < deadline {
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{query_url}/api/v1/flows?limit={PAGE}&since={since}");
            if let Some(cursor) = &cursor {
                url.push_str(&format!("&cursor={cursor}"));
            }
            let Some(page) = fetch_page(client, &url).await else {
                break;
            };
            for mut flow in page.flows {
                let Some(order) = by_key.get(&flow.correlation_id) else {
                    continue;
                };
                if followed.settled_at.contains_key(&order.id) {
                    continue;
                }
                if !settled(order, &flow) && needs_detail(order) {
                    // Only the flow's own read looks for its events under
                    // other flows (`context_lost`).
                    if let Some(detail) =
                        fetch_detail(client, query_url, &flow.correlation_id).await
                    {
                        flow = detail;
                    }
                }
                if settled(order, &flow) {
                    followed.settled_at.insert(order.id, Instant::now());
                }
                followed.flows.insert(order.id, flow);
            }
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        let placed_count = placed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|p| p.is_some())
            .count();
        bar.set_position(followed.settled_at.len() as u64);
        bar.set_message(format!(
            "placed {placed_count}/{n}, settled {settled}/{n}",
            n = orders.len(),
            settled = followed.settled_at.len()
        ));
        if !followed.all_settled(orders) {
            tokio::time::sleep(TICK).await;
        }
    }
    bar.finish_and_clear();
    followed
}

/// Whether the anomaly `order` must show is found only by reading its flow
/// whole.
fn needs_detail(order: &Order) -> bool {
    expected_outcome(order).2 == Some("context_lost")
}

/// The summary of the flow `key` as its own read gives it.
async fn fetch_detail(client: &reqwest::Client, query_url: &str, key: &str) -> Option<FlowSummary> {
    let response = client
        .get(format!("{query_url}/api/v1/flows/{key}"))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    Some(response.json::<FlowDetail>().await.ok()?.summary)
}

async fn fetch_page(client: &reqwest::Client, url: &str) -> Option<FlowsPage> {
    let response = client.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

/// Prints the flow table (every flow that did not complete cleanly first,
/// then completed ones, at most [`TABLE_ROWS`]), the count per status, and
/// the throughput and latency figures.
pub(crate) fn print_report(orders: &[Order], followed: &Followed, placed: &Placed) {
    println!(
        "\n{:<14} {:<14} {:<12} {:>6} {:>8} {:>10}  {:<30} SERVICES",
        "FLOW", "STATUS", "ROOT EVENT", "EVENTS", "RECORDS", "DURATION", "ANOMALIES"
    );
    let mut rows: Vec<&Order> = orders.iter().collect();
    // Flows with something to see first, each group in order.
    rows.sort_by_key(|o| {
        let plain = followed
            .flows
            .get(&o.id)
            .is_some_and(|f| f.status.as_str() == "completed" && f.anomalies.is_empty());
        (plain, o.id)
    });
    for order in rows.iter().take(TABLE_ROWS) {
        match followed.flows.get(&order.id) {
            Some(s) => {
                let anomalies: Vec<&str> = s.anomalies.iter().map(|a| a.as_str()).collect();
                println!(
                    "{:<14} {:<14} {:<12} {:>6} {:>8} {:>10}  {:<30} {}",
                    s.correlation_id,
                    s.status.as_str(),
                    s.root_event_type.as_deref().unwrap_or("-"),
                    s.event_count,
                    s.record_count,
                    human_duration(s.duration_us),
                    if anomalies.is_empty() {
                        "-".to_owned()
                    } else {
                        anomalies.join(",")
                    },
                    s.services.join(", ")
                );
            }
            None => println!("{:<14} {:<14}", order.correlation_id().as_str(), "not seen"),
        }
    }
    if orders.len() > TABLE_ROWS {
        println!("... and {} more", orders.len() - TABLE_ROWS);
    }
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for flow in followed.flows.values() {
        *by_status.entry(flow.status.as_str()).or_default() += 1;
    }
    let counts: Vec<String> = by_status.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!("\nflows: {}", counts.join(", "));

    let placed = placed.lock().unwrap_or_else(|e| e.into_inner());
    let mut latencies: Vec<Duration> = orders
        .iter()
        .zip(placed.iter())
        .filter_map(|(o, at)| Some(followed.settled_at.get(&o.id)?.duration_since((*at)?)))
        .collect();
    latencies.sort_unstable();
    let first = placed.iter().flatten().min();
    let last = followed.settled_at.values().max();
    if let (Some(first), Some(last), false) = (first, last, latencies.is_empty()) {
        let span = last.duration_since(*first).as_secs_f64().max(1e-3);
        let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        println!(
            "{} flows settled in {:.1} s: {:.1} flows/s; placed -> settled in the query API: \
             p50 {} ms, p99 {} ms, max {} ms",
            latencies.len(),
            span,
            latencies.len() as f64 / span,
            pick(0.5).as_millis(),
            pick(0.99).as_millis(),
            pick(1.0).as_millis()
        );
    }
}
