//! The background thread that talks to the query API. It refreshes the
//! flows list, and the flow being followed, every refresh interval or at
//! once when asked, and reports each result as a [`Fetched`] message (like
//! gitui's `AsyncGitNotification`). It owns the HTTP client and never
//! touches the terminal or the app state.
//!
//! Requests from the UI travel on an unbounded channel: they are made at
//! human speed, one per key press at most, and a `Follow` must never be
//! dropped. Results travel on a bounded one, so a stalled UI stalls the
//! fetching instead of piling up flows in memory.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use causeway_model::{FlowDetail, FlowsPage, Timestamp};

use crate::client::{Endpoints, FetchError, QueryClient};
use crate::error::TuiError;

const RESULTS_BOUND: usize = 8;

/// What the worker reports back: one message per finished fetch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Fetched {
    Flows {
        /// When the answer (or the failure) arrived.
        at: Timestamp,
        result: Result<FlowsPage, FetchError>,
    },
    Detail {
        correlation_id: String,
        at: Timestamp,
        /// Boxed: a flow detail is large and most messages are not one.
        result: Result<Box<FlowDetail>, FetchError>,
    },
}

/// What the UI asks of the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// Fetch the list (and the followed flow) now instead of at the next tick.
    RefreshNow,
    /// Fetch this flow now and on every refresh from now on; `None` stops.
    Follow(Option<String>),
}

/// The UI's handle on the worker thread. Dropping it stops the thread after
/// its current fetch; nobody waits for that, so quitting is instant.
#[derive(Debug)]
pub(crate) struct Worker {
    requests: Sender<Request>,
    results: Receiver<Fetched>,
}

impl Worker {
    /// Starts the thread, which builds its HTTP client first and reports
    /// whether that worked before this returns. It fetches again every
    /// `refresh`.
    pub(crate) fn spawn(endpoints: Endpoints, refresh: Duration) -> Result<Self, TuiError> {
        let (requests, requests_rx) = mpsc::channel();
        let (results_tx, results) = mpsc::sync_channel(RESULTS_BOUND);
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        thread::Builder::new()
            .name("causeway-tui-fetch".to_owned())
            .spawn(move || match QueryClient::new(endpoints) {
                Ok(client) => {
                    if ready_tx.send(Ok(())).is_ok() {
                        serve(&client, refresh, &requests_rx, &results_tx);
                    }
                }
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                }
            })
            .map_err(TuiError::Spawn)?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self { requests, results }),
            Ok(Err(error)) => Err(TuiError::HttpClient(error)),
            Err(_) => Err(TuiError::WorkerStopped),
        }
    }

    pub(crate) fn send(&self, request: Request) -> Result<(), TuiError> {
        self.requests
            .send(request)
            .map_err(|_| TuiError::WorkerStopped)
    }

    /// The next finished fetch, if one is waiting.
    pub(crate) fn try_recv(&self) -> Result<Option<Fetched>, TuiError> {
        match self.results.try_recv() {
            Ok(fetched) => Ok(Some(fetched)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(TuiError::WorkerStopped),
        }
    }
}

/// The worker's loop; returns when the UI has gone away.
fn serve(
    client: &QueryClient,
    refresh: Duration,
    requests: &Receiver<Request>,
    results: &SyncSender<Fetched>,
) {
    let mut follow: Option<String> = None;
    let mut next_refresh = Instant::now();
    loop {
        let wait = next_refresh.saturating_duration_since(Instant::now());
        match requests.recv_timeout(wait) {
            Ok(Request::RefreshNow) => next_refresh = Instant::now(),
            Ok(Request::Follow(id)) => {
                follow = id;
                if let Some(id) = &follow
                    && !send_detail(client, id, results)
                {
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if Instant::now() >= next_refresh {
            let result = client.flows();
            let at = Timestamp::now();
            if results.send(Fetched::Flows { at, result }).is_err() {
                return;
            }
            if let Some(id) = &follow
                && !send_detail(client, id, results)
            {
                return;
            }
            next_refresh = Instant::now() + refresh;
        }
    }
}

/// Fetches one flow and reports it; `false` when the UI has gone away.
fn send_detail(client: &QueryClient, correlation_id: &str, results: &SyncSender<Fetched>) -> bool {
    let result = client.flow(correlation_id).map(Box::new);
    results
        .send(Fetched::Detail {
            correlation_id: correlation_id.to_owned(),
            at: Timestamp::now(),
            result,
        })
        .is_ok()
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn closed_port_endpoints() -> Endpoints {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        Endpoints::new(&format!("http://127.0.0.1:{port}")).unwrap()
    }

    fn next(worker: &Worker) -> Fetched {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(fetched) = worker.try_recv().unwrap() {
                return fetched;
            }
            assert!(Instant::now() < deadline, "no message from the worker");
            thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn an_unreachable_api_is_reported_and_a_followed_flow_is_fetched_at_once() {
        let worker = Worker::spawn(closed_port_endpoints(), Duration::from_secs(2)).unwrap();
        let Fetched::Flows { result, .. } = next(&worker) else {
            panic!("the list is fetched first");
        };
        assert!(result.unwrap_err().is_unreachable());

        worker
            .send(Request::Follow(Some("order-7".into())))
            .unwrap();
        // A periodic list refresh may come first on a slow machine.
        loop {
            if let Fetched::Detail {
                correlation_id,
                result,
                ..
            } = next(&worker)
            {
                assert_eq!(correlation_id, "order-7");
                assert!(result.unwrap_err().is_unreachable());
                break;
            }
        }
    }
}
