//! Sending one batch to the collector until it is acknowledged, or until
//! what the collector refused for good is in the dead-letter file. Every
//! record names its stream and offset, so sending a batch again (after a
//! lost answer or a restart) costs bandwidth, not duplicates.
//!
//! A batch is done when the collector acknowledged it (2xx), or refused it
//! for a reason sending it again cannot fix: 413 splits it in halves, each
//! sent on its own, down to a single record, which then goes to the
//! dead-letter file; 400 (a batch it cannot read) sends its records there.
//! 401 and 403 need a configuration fix: logged loudly, retried slowly.
//! Anything else (connection errors, 5xx, 429, other 4xx) is retried with
//! exponential backoff and full jitter, obeying `Retry-After` (seconds or
//! an HTTP date) on 429 and 503. Bodies are gzipped while the collector
//! takes them: a gzipped batch refused as unreadable (400) or its encoding
//! (415) is sent plain, and if plain goes through, gzip is dropped for good.
//! This module writes only the dead-letter file: the caller advances
//! offsets only after [`Outcome::Acked`].

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use causeway_model::strip_control;
use causeway_model::wire;
use flate2::Compression as GzLevel;
use flate2::write::GzEncoder;
use reqwest::StatusCode;
use reqwest::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER,
};
use tracing::{debug, error, warn};

use crate::config::{AgentConfig, Compression};
use crate::deadletter::{DeadLetter, Refused};
use crate::error::AgentError;
use crate::stats::Stats;
use crate::tail::Batch;

/// The first backoff ceiling after a failure.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// The highest backoff ceiling when the collector gave no hint.
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// The shortest wait between two attempts, so a jitter near zero or a
/// `Retry-After: 0` cannot make the agent spin.
const MIN_WAIT: Duration = Duration::from_millis(10);
/// The longest `Retry-After` obeyed, so a bogus value cannot stall the agent.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);
/// The wait after a 401 or 403: only a configuration fix helps.
const AUTH_RETRY: Duration = Duration::from_secs(30);
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
    /// The collector acknowledged the batch (what it refused for good is
    /// in the dead-letter file).
    Acked,
    /// As `Acked`, and shutdown was requested meanwhile.
    AckedThenShutdown,
    /// Shutdown was requested before the batch was acknowledged.
    Abandoned,
}

/// What one attempt taught.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Acked,
    /// 413: too large for the collector.
    TooLarge(String),
    /// 400: a batch the collector cannot read.
    Unreadable(String),
    /// 415: the body's encoding is not taken.
    Encoding(String),
    /// 401 or 403.
    Denied(StatusCode, String),
    Retry {
        retry_after: Option<Duration>,
    },
}

/// How one part of a batch ended.
enum Part {
    Acked,
    AckedThenShutdown,
    Split,
    DeadLetter { status: u16, reason: String },
    Abandoned,
}

/// Posts batches to one collector.
#[derive(Debug)]
pub(crate) struct Shipper {
    client: reqwest::Client,
    url: String,
    source: String,
    /// Bodies are gzipped (until the collector shows it does not take
    /// them).
    gzip: AtomicBool,
    dead_letter: DeadLetter,
    stats: Arc<Stats>,
}

impl Shipper {
    pub fn new(config: &AgentConfig, stats: Arc<Stats>) -> Result<Self, AgentError> {
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
            gzip: AtomicBool::new(config.compression == Compression::Gzip),
            dead_letter: DeadLetter::new(
                DeadLetter::path_for(&config.checkpoint_path),
                config.dead_letter_max_bytes,
            ),
            stats,
        })
    }

    /// Sends the batch's entries, with the stream and offset each was
    /// read from ([`wire::encode_entries`]: the collector drops a record
    /// at or below what it indexed of its stream, so a batch sent again is
    /// indexed once), until the collector acknowledged it, or refused
    /// parts of it for good and those are in the dead-letter file, or
    /// `shutdown` completes.
    pub async fn ship<S>(&self, batch: &Batch, mut shutdown: Pin<&mut S>) -> Outcome
    where
        S: Future<Output = ()>,
    {
        let mut parts = vec![(0, batch.entries.len())];
        while let Some((lo, hi)) = parts.pop() {
            let part = self.ship_part(batch, lo..hi, shutdown.as_mut()).await;
            match part {
                Part::Acked => {}
                Part::AckedThenShutdown if parts.is_empty() => return Outcome::AckedThenShutdown,
                Part::AckedThenShutdown | Part::Abandoned => return Outcome::Abandoned,
                Part::Split => {
                    let mid = lo + (hi - lo) / 2;
                    debug!(
                        records = hi - lo,
                        "collector: batch too large, sending it in halves"
                    );
                    parts.push((mid, hi));
                    parts.push((lo, mid));
                }
                Part::DeadLetter { status, reason } => {
                    let refused = Refused {
                        status,
                        reason: &reason,
                        entries: &batch.entries[lo..hi],
                        streams: &batch.streams,
                        positions: &batch.positions[lo..hi],
                    };
                    match self.dead_letter.append(&refused) {
                        Ok(()) => {
                            self.stats.dead_lettered((hi - lo) as u64);
                            error!(
                                %status,
                                records = hi - lo,
                                reason = %strip_control(&reason),
                                file = %self.dead_letter.path().display(),
                                "collector refused records for good; kept in the dead-letter file"
                            );
                        }
                        Err(e) => {
                            // Not on disk: they must not be let go. Sent
                            // again after a while, and kept again if need be.
                            error!(error = %e, file = %self.dead_letter.path().display(), "cannot write the dead-letter file; will retry");
                            self.stats.set_error(format!("dead-letter file: {e}"));
                            tokio::select! {
                                () = tokio::time::sleep(BACKOFF_CAP) => {}
                                () = shutdown.as_mut() => return Outcome::Abandoned,
                            }
                            parts.push((lo, hi));
                        }
                    }
                }
            }
        }
        Outcome::Acked
    }

    /// Sends one part of a batch until it is acknowledged or refused for
    /// good.
    async fn ship_part<S>(
        &self,
        batch: &Batch,
        part: std::ops::Range<usize>,
        mut shutdown: Pin<&mut S>,
    ) -> Part
    where
        S: Future<Output = ()>,
    {
        let text = wire::encode_entries(
            &self.source,
            &batch.entries[part.clone()],
            &batch.streams,
            &batch.positions[part.clone()],
            batch.read_at,
            &batch.services,
        );
        let batch_len = part.len();
        let mut backoff = Backoff::new(seed());
        let mut attempt = 0u64;
        // A gzipped body refused as unreadable is tried once plain.
        let mut plain = false;
        loop {
            attempt += 1;
            let gzip = !plain && self.gzip.load(Ordering::Relaxed);
            let body = if gzip {
                gzipped(text.as_bytes())
            } else {
                text.clone().into_bytes()
            };
            let send = self.attempt(body, gzip, batch_len, attempt);
            tokio::pin!(send);
            let result = tokio::select! {
                result = &mut send => result,
                () = shutdown.as_mut() => {
                    return match tokio::time::timeout(SHUTDOWN_GRACE, send).await {
                        Ok(Attempt::Acked) => {
                            self.stats.shipped(batch_len as u64, text.len() as u64);
                            Part::AckedThenShutdown
                        }
                        _ => Part::Abandoned,
                    };
                }
            };
            let wait = match result {
                Attempt::Acked => {
                    debug!(batch_len, attempt, gzip, "batch acknowledged");
                    if plain && self.gzip.swap(false, Ordering::Relaxed) {
                        warn!(
                            "the collector does not take gzip bodies; sending them plain from now on"
                        );
                    }
                    self.stats.shipped(batch_len as u64, text.len() as u64);
                    self.stats.collector_back();
                    return Part::Acked;
                }
                Attempt::Unreadable(_) | Attempt::Encoding(_) if gzip => {
                    plain = true;
                    continue;
                }
                Attempt::TooLarge(_) if batch_len > 1 => return Part::Split,
                Attempt::TooLarge(reason) => {
                    return Part::DeadLetter {
                        status: 413,
                        reason,
                    };
                }
                Attempt::Unreadable(reason) => {
                    return Part::DeadLetter {
                        status: 400,
                        reason,
                    };
                }
                Attempt::Encoding(reason) => {
                    // Plain NDJSON refused: the collector is not one this
                    // agent can talk to, which no batch of ours fixes.
                    error!(
                        reason,
                        attempt, "the collector refuses plain NDJSON batches (415); retrying"
                    );
                    self.stats.set_error(format!("415: {reason}"));
                    backoff.next(None)
                }
                Attempt::Denied(status, reason) => {
                    error!(%status, reason, attempt, "the collector denies this agent: check agent.token against collector.tokens; retrying every {}s", AUTH_RETRY.as_secs());
                    self.stats.set_error(format!("{status}: {reason}"));
                    AUTH_RETRY
                }
                Attempt::Retry { retry_after } => backoff.next(retry_after),
            };
            self.stats.retried();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.as_mut() => return Part::Abandoned,
            }
        }
    }

    async fn attempt(&self, body: Vec<u8>, gzip: bool, batch_len: usize, attempt: u64) -> Attempt {
        let mut request = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, wire::CONTENT_TYPE);
        if gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        let response = match request.body(body).send().await {
            Ok(response) => response,
            Err(error) => {
                let error = ErrorChain(&error).to_string();
                warn!(%error, batch_len, attempt, "ship failed, collector unreachable");
                self.stats.collector_away(error);
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
            retry_after(response.headers(), SystemTime::now())
        } else {
            None
        };
        let body = response.text().await.unwrap_or_default();
        let body = strip_control(&body);
        let reason = causeway_model::char_prefix(&body, ERROR_BODY_LOG_LEN).to_owned();
        let classified = classify(status, reason.clone(), retry_after);
        if !matches!(classified, Attempt::Retry { .. }) {
            return classified;
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            warn!(%status, batch_len, attempt, ?retry_after, reason, "ship failed, collector busy or failing");
            self.stats.collector_away(format!("{status}: {reason}"));
        } else {
            // Another refusal: dropping the batch would lose records, so
            // say why, loudly, and keep trying.
            warn!(%status, batch_len, attempt, reason, "ship failed, collector refused the batch");
            self.stats.set_error(format!("{status}: {reason}"));
        }
        Attempt::Retry { retry_after }
    }
}

/// What a refusal (not 2xx) means: the batch's own fault (413, 400), an
/// encoding not taken (415), a configuration to fix (401, 403), or
/// anything else, to retry.
fn classify(status: StatusCode, reason: String, retry_after: Option<Duration>) -> Attempt {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => Attempt::TooLarge(reason),
        StatusCode::BAD_REQUEST => Attempt::Unreadable(reason),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Attempt::Encoding(reason),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Attempt::Denied(status, reason),
        _ => Attempt::Retry { retry_after },
    }
}

fn gzipped(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 4), GzLevel::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// A seed for the jitter: the clock's nanoseconds and the process id.
fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (nanos as u64) ^ (u64::from(std::process::id()) << 32)
}

/// `Retry-After`, in seconds or as an HTTP date (the time from `now` until
/// then; a date past is no wait).
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Waits between attempts: exponential backoff with full jitter (a wait
/// drawn evenly between none and a ceiling doubling from
/// [`BACKOFF_START`] to [`BACKOFF_CAP`]), so agents that lost their
/// collector together do not come back together; or what the collector
/// asked for.
#[derive(Debug)]
struct Backoff {
    ceiling: Duration,
    rng: u64,
}

impl Backoff {
    fn new(seed: u64) -> Self {
        Self {
            ceiling: BACKOFF_START,
            rng: seed,
        }
    }

    /// SplitMix64: enough for spreading retries, not for secrets.
    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The wait before the next attempt. A `Retry-After` replaces the
    /// backoff, within [`MIN_WAIT`] and [`RETRY_AFTER_CAP`].
    fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(BACKOFF_CAP);
        if let Some(asked) = retry_after {
            return asked.clamp(MIN_WAIT, RETRY_AFTER_CAP);
        }
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        let drawn = self.random() % (millis + 1);
        Duration::from_millis(drawn).max(MIN_WAIT)
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
    fn backoff_draws_each_wait_under_a_ceiling_doubling_to_the_cap() {
        let mut backoff = Backoff::new(7);
        let waits: Vec<u64> = (0..200)
            .map(|_| u64::try_from(backoff.next(None).as_millis()).unwrap())
            .collect();
        let ceilings = [100, 200, 400, 800, 1600, 3200, 6400];
        for (wait, ceiling) in waits.iter().zip(ceilings) {
            assert!((10..=ceiling).contains(wait), "{wait} over {ceiling}");
        }
        assert!(waits.iter().all(|w| (10..=10_000).contains(w)));
        // Jittered: spread over the range, not one value.
        let capped = &waits[10..];
        assert!(capped.iter().any(|w| *w < 3_000), "{capped:?}");
        assert!(capped.iter().any(|w| *w > 7_000), "{capped:?}");
        // Two agents seeded apart wait differently.
        let mut other = Backoff::new(8);
        let others: Vec<u64> = (0..20)
            .map(|_| u64::try_from(other.next(None).as_millis()).unwrap())
            .collect();
        assert_ne!(others, waits[..20]);
    }

    #[test]
    fn retry_after_replaces_the_backoff_within_bounds() {
        let mut backoff = Backoff::new(1);
        assert_eq!(
            backoff.next(Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(backoff.next(Some(Duration::ZERO)), MIN_WAIT);
        assert_eq!(
            backoff.next(Some(Duration::from_secs(86_400))),
            RETRY_AFTER_CAP
        );
        // The ceiling kept doubling meanwhile.
        assert!(backoff.next(None) <= Duration::from_millis(800));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:29:30 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(90)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:00:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers, now), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn refusals_are_told_apart_and_only_the_batchs_own_faults_are_final() {
        let r = || "why".to_owned();
        assert_eq!(
            classify(StatusCode::PAYLOAD_TOO_LARGE, r(), None),
            Attempt::TooLarge(r())
        );
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, r(), None),
            Attempt::Unreadable(r())
        );
        for denied in [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN] {
            assert_eq!(
                classify(denied, r(), None),
                Attempt::Denied(denied, r()),
                "a configuration fix, retried, never dropped"
            );
        }
        let wait = Some(Duration::from_secs(2));
        for retried in [
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::NOT_FOUND,
            StatusCode::UNPROCESSABLE_ENTITY,
        ] {
            assert_eq!(
                classify(retried, r(), wait),
                Attempt::Retry { retry_after: wait }
            );
        }
    }

    #[test]
    fn a_gzipped_body_inflates_back() {
        use std::io::Read;
        let text = "x".repeat(10_000);
        let zipped = gzipped(text.as_bytes());
        assert!(zipped.len() < 1_000);
        let mut back = String::new();
        flate2::read::GzDecoder::new(&zipped[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, text);
    }
}
