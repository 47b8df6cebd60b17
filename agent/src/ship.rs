//! Sending one batch to the collector until it is acknowledged. Every
//! record names its stream and offset, so sending a batch again (after a
//! lost answer or a restart) costs bandwidth, not duplicates.
//!
//! A batch is acknowledged by a 2xx answer and by nothing else. Connection
//! errors, 5xx and 429 are retried with exponential backoff (100 ms
//! doubling to 10 s), honouring `Retry-After`; any other answer is logged
//! and retried the same way, because dropping the batch would lose
//! records. This module must not touch files or the checkpoint: the caller
//! advances offsets only after [`Outcome::Acked`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use causeway_model::wire::{self, Position};
use causeway_model::{Record, strip_control};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use tracing::{debug, warn};

use crate::config::AgentConfig;
use crate::error::AgentError;

/// The first wait after a failure.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// The longest wait between two attempts when the collector gave no hint.
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// The longest `Retry-After` obeyed, so a bogus value cannot stall the agent.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);
/// How long a request may take in all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// On shutdown, how long a request already under way may still take to be
/// acknowledged, sparing a resend after restart.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How much of a refusal's body is logged.
const ERROR_BODY_LOG_LEN: usize = 512;

/// How shipping a batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The collector acknowledged the batch.
    Acked,
    /// The collector acknowledged the batch, and shutdown was requested
    /// meanwhile.
    AckedThenShutdown,
    /// Shutdown was requested before the batch was acknowledged.
    Abandoned,
}

/// What one attempt taught.
enum Attempt {
    Acked,
    Retry { retry_after: Option<Duration> },
}

/// Posts batches to one collector.
#[derive(Debug)]
pub(crate) struct Shipper {
    client: reqwest::Client,
    url: String,
    source: String,
}

impl Shipper {
    pub fn new(config: &AgentConfig) -> Result<Self, AgentError> {
        let mut headers = HeaderMap::new();
        // `validate` refused a token that is not a header value; marked
        // sensitive, it never shows in reqwest's debug output.
        if let Some(Ok(mut value)) = config
            .token
            .as_ref()
            .map(|token| HeaderValue::from_str(&format!("Bearer {token}")))
        {
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("causeway-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| AgentError::HttpClient { source })?;
        Ok(Self {
            client,
            url: config.ingest_url(),
            source: config.source.clone(),
        })
    }

    /// Sends `records` as one batch, with the stream and offset each was
    /// read from ([`wire::encode_positioned`]: the collector drops a record
    /// at or below what it indexed of its stream, so a batch sent again is
    /// indexed once), until the collector acknowledges it or `shutdown`
    /// completes.
    pub async fn ship<S>(
        &self,
        records: &[Record],
        streams: &[String],
        positions: &[Position],
        mut shutdown: Pin<&mut S>,
    ) -> Outcome
    where
        S: Future<Output = ()>,
    {
        let body = wire::encode_positioned(&self.source, records, streams, positions);
        let batch_len = records.len();
        let mut backoff = Backoff::new();
        let mut attempt = 0u64;
        loop {
            attempt += 1;
            let send = self.attempt(body.clone(), batch_len, attempt);
            tokio::pin!(send);
            let result = tokio::select! {
                result = &mut send => result,
                () = shutdown.as_mut() => {
                    return match tokio::time::timeout(SHUTDOWN_GRACE, send).await {
                        Ok(Attempt::Acked) => Outcome::AckedThenShutdown,
                        _ => Outcome::Abandoned,
                    };
                }
            };
            let retry_after = match result {
                Attempt::Acked => {
                    debug!(batch_len, attempt, "batch acknowledged");
                    return Outcome::Acked;
                }
                Attempt::Retry { retry_after } => retry_after,
            };
            let wait = backoff.next(retry_after);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.as_mut() => return Outcome::Abandoned,
            }
        }
    }

    async fn attempt(&self, body: String, batch_len: usize, attempt: u64) -> Attempt {
        let response = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, wire::CONTENT_TYPE)
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                let error = ErrorChain(&error);
                warn!(%error, batch_len, attempt, "ship failed");
                return Attempt::Retry { retry_after: None };
            }
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Acked;
        }
        let retry_after = if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            retry_after(response.headers())
        } else {
            None
        };
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            warn!(%status, batch_len, attempt, ?retry_after, "ship failed, collector busy or failing");
        } else {
            // A refusal will likely repeat, but dropping the batch would
            // lose records: say why, loudly, and keep trying.
            let body = response.text().await.unwrap_or_default();
            let body = strip_control(&body);
            let body = causeway_model::char_prefix(&body, ERROR_BODY_LOG_LEN);
            warn!(%status, batch_len, attempt, body, "ship failed, collector refused the batch");
        }
        Attempt::Retry { retry_after }
    }
}

/// `Retry-After` in seconds; the HTTP-date form is ignored (plain backoff).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// Waits between attempts: doubling from [`BACKOFF_START`] to
/// [`BACKOFF_CAP`], or what the collector asked for.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: BACKOFF_START,
        }
    }

    /// The wait before the next attempt. A `Retry-After` replaces the
    /// backoff, but never below [`BACKOFF_START`], so `Retry-After: 0`
    /// cannot make the agent spin.
    fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        let backoff = self.next;
        self.next = (self.next * 2).min(BACKOFF_CAP);
        match retry_after {
            Some(asked) => asked.clamp(BACKOFF_START, RETRY_AFTER_CAP),
            None => backoff,
        }
    }
}

/// An error with its causes, `outer: inner: root`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut backoff = Backoff::new();
        let waits: Vec<u128> = (0..9).map(|_| backoff.next(None).as_millis()).collect();
        assert_eq!(
            waits,
            vec![100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
        );
    }

    #[test]
    fn retry_after_replaces_the_backoff_within_bounds() {
        let mut backoff = Backoff::new();
        assert_eq!(
            backoff.next(Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(backoff.next(Some(Duration::ZERO)), BACKOFF_START);
        assert_eq!(
            backoff.next(Some(Duration::from_secs(86_400))),
            RETRY_AFTER_CAP
        );
        // The backoff kept doubling meanwhile.
        assert_eq!(backoff.next(None), Duration::from_millis(800));
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
