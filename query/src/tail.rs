//! `GET /api/v1/tail`: server-sent events of records as they are indexed
//! and of flows whose status or anomalies change, with the flow list's
//! filters.
//!
//! The index gives every document the time it was written
//! (`_ingested_us`, increasing within the writer), so a tail follows
//! arrival, not the records' own timestamps: a record that arrives late
//! with an old timestamp is still sent. Each event's `id` is that cursor;
//! a client that reconnects with `Last-Event-ID` goes on where it was,
//! which is what lets the connection age limit wind a tail down without a
//! gap. A slow client slows its own polling (the stream is pulled), it
//! never buffers without bound; a busy index skips a tick.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use causeway_model::{AnomalyKind, FlowStatus, FlowSummary, Timestamp};
use futures_util::Stream;
use futures_util::stream;

use crate::error::RequestError;
use crate::flow::summarize;
use crate::params::TailParams;
use crate::state::QueryState;

/// How often a tail looks for new documents.
const POLL: Duration = Duration::from_millis(500);
/// Most records and flows one poll sends.
const BATCH: usize = 500;
/// Flows whose last sent status a tail remembers.
const REMEMBERED_FLOWS: usize = 100_000;
/// Every this many polls, flows last sent in progress are read again: a
/// flow goes `stuck` by the clock, with no new record to announce it.
const RECHECK_EVERY: u64 = 20;
/// Most flows read again per recheck.
const RECHECK_FLOWS: usize = 1_000;

/// A tail's position and what it already told its client.
struct Tail {
    state: QueryState,
    params: TailParams,
    records_after: i64,
    flows_after: i64,
    /// Flow -> the status and anomalies it had when last seen.
    seen: HashMap<String, (FlowStatus, Vec<AnomalyKind>)>,
    queue: std::collections::VecDeque<Event>,
    polls: u64,
}

/// The SSE answer.
#[utoipa::path(
    get,
    path = "/api/v1/tail",
    summary = "Follow records and flows as they are indexed (server-sent events)",
    description = "A `text/event-stream` that does not end. Two kinds of event, each with \
        one JSON object as its `data`:\n\n\
        - `event: record`: a record just indexed that matches `q`, `service` and \
        `event_type`; `data` is a `Record` (`#/components/schemas/Record`).\n\
        - `event: flow`: a flow that matches the flow filters, when the stream first sees \
        it indexed and whenever its status or anomalies change (a flow goes `stuck` by the \
        clock, without a new record); `data` is a `FlowSummary` \
        (`#/components/schemas/FlowSummary`).\n\n\
        Events follow arrival in the index, not the records' own timestamps. Each \
        event's `id` is `<records cursor>-<flows cursor>` (two integers); reconnect with \
        it in `Last-Event-ID` to go on without a gap. Comment lines keep the connection \
        alive. A bad filter is refused before the stream starts.",
    params(
        TailParams,
        ("Last-Event-ID" = Option<String>, Header,
            description = "The `id` of the last event received, to resume after it"),
    ),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream",
            body = String),
        (status = 400, response = crate::openapi::BadRequest),
    )
)]
pub(crate) async fn tail(
    State(state): State<QueryState>,
    headers: HeaderMap,
    Query(params): Query<TailParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, RequestError> {
    // Checked now, so a bad filter is a 400 and not a silent stream.
    params.filter(Timestamp::now())?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_event_id);
    let now = Timestamp::now().as_micros();
    let (records_after, flows_after) = resume.unwrap_or((now, now));
    let tail = Tail {
        state,
        params,
        records_after,
        flows_after,
        seen: HashMap::new(),
        queue: std::collections::VecDeque::new(),
        polls: 0,
    };
    let events = stream::unfold(tail, |mut tail| async move {
        loop {
            if let Some(event) = tail.queue.pop_front() {
                return Some((Ok(event), tail));
            }
            tokio::time::sleep(POLL).await;
            tail.poll().await;
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// `<records cursor>-<flows cursor>`.
fn event_id(records_after: i64, flows_after: i64) -> String {
    format!("{records_after}-{flows_after}")
}

fn parse_event_id(text: &str) -> Option<(i64, i64)> {
    let (r, f) = text.split_once('-')?;
    Some((r.parse().ok()?, f.parse().ok()?))
}

impl Tail {
    async fn poll(&mut self) {
        let params = self.params.clone();
        let (records_after, flows_after) = (self.records_after, self.flows_after);
        self.polls += 1;
        let mut recheck: Vec<String> = Vec::new();
        if self.polls.is_multiple_of(RECHECK_EVERY) {
            recheck = self
                .seen
                .iter()
                .filter(|(_, (status, _))| *status == FlowStatus::InProgress)
                .map(|(key, _)| key.clone())
                .take(RECHECK_FLOWS)
                .collect();
            recheck.sort();
        }
        let found = self
            .state
            .read(move |read| {
                let filter = params.filter(read.context.now)?;
                let records = read.reader.records_ingested_after(
                    records_after,
                    &params.record_query(),
                    BATCH,
                )?;
                let mut digests = read.reader.digests_ingested_after(flows_after, BATCH)?;
                for key in &recheck {
                    if let Some(digest) = read.reader.flow_digest(key)? {
                        // Not newer: the cursor stays where it is.
                        digests.push((flows_after, digest));
                    }
                }
                let flows: Vec<(i64, FlowSummary, bool)> = digests
                    .into_iter()
                    .filter(|(_, digest)| {
                        (filter.services.is_empty()
                            || filter.services.iter().any(|s| digest.services.contains(s)))
                            && (filter.event_types.is_empty()
                                || digest.events.values().any(|e| {
                                    e.event_type()
                                        .is_some_and(|t| filter.event_types.iter().any(|w| w == t))
                                }))
                    })
                    .map(|(at, digest)| {
                        let summary = summarize(&digest, read.context);
                        let keep = filter.keeps(&summary);
                        (at, summary, keep)
                    })
                    .collect();
                Ok((records, flows))
            })
            .await;
        let (records, flows) = match found {
            Ok(found) => found,
            // Busy or not ready: try again next tick.
            Err(RequestError::Busy | RequestError::IndexNotReady) => return,
            Err(error) => {
                tracing::warn!(%error, "tail poll failed");
                return;
            }
        };
        for (at, record) in records {
            self.records_after = self.records_after.max(at);
            if let Ok(event) = Event::default()
                .event("record")
                .id(event_id(self.records_after, self.flows_after))
                .json_data(&record)
            {
                self.queue.push_back(event);
            }
        }
        for (at, summary, keep) in flows {
            self.flows_after = self.flows_after.max(at);
            // Every flow seen is remembered, sent or not, so one that goes
            // stuck later is rechecked even under a `status=stuck` filter.
            let now = (summary.status, summary.anomalies.clone());
            if self.seen.get(&summary.correlation_id) == Some(&now) {
                continue;
            }
            if self.seen.len() >= REMEMBERED_FLOWS {
                self.seen.clear();
            }
            self.seen.insert(summary.correlation_id.clone(), now);
            if !keep {
                continue;
            }
            if let Ok(event) = Event::default()
                .event("flow")
                .id(event_id(self.records_after, self.flows_after))
                .json_data(&summary)
            {
                self.queue.push_back(event);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_id_reads_back() {
        assert_eq!(parse_event_id(&event_id(12, 34)), Some((12, 34)));
        assert_eq!(parse_event_id("12"), None);
        assert_eq!(parse_event_id("a-b"), None);
    }
}
