//! Alert rules over the flows, evaluated continuously and delivered to a
//! webhook: the `[query.alerts]` section, the pure evaluation, the state of
//! each rule (`GET /api/v1/alerts`) and the delivery task.
//!
//! The pieces, from pure to I/O: [`evaluate`] turns rules and a snapshot of
//! flows into one [`RuleResult`] per rule, with no clock and no I/O;
//! [`AlertBook`] keeps each rule's state and turns results into
//! [`Notification`]s, one per transition (inactive to firing, firing to
//! resolved), never one per evaluation; [`run_alerts`] asks the caller for
//! the flows every `eval_interval_ms` and posts the notifications to the
//! webhook through a bounded queue, with retries, backoff and jitter.
//!
//! This module must not read the index itself (the caller's snapshot does)
//! and must not let a slow or failing webhook hold up evaluation: the queue
//! drops its oldest notification rather than block. A webhook URL's
//! userinfo, path and query never reach a log line, the API or a `Debug`
//! print: they are named by the URL's origin only.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use causeway_model::{AnomalyKind, FlowStatus, FlowSummary, Timestamp, char_prefix, strip_control};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

/// Most correlation ids an alert lists (the value counts them all).
pub const MAX_SAMPLE_FLOWS: usize = 20;
/// Longest rule name, in bytes.
const MAX_RULE_NAME_LEN: usize = 128;
/// The longest `Retry-After` obeyed, so a bogus value cannot stall delivery.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);
/// Longest error text kept in the state.
const MAX_ERROR_LEN: usize = 256;
/// How much of a refusal's body is logged (never kept in the state).
const MAX_LOGGED_BODY_LEN: usize = 256;
/// A snapshot that takes longer than this is abandoned, so a stuck read
/// cannot silence the alerts for good.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

/// Alert rules and where their notifications go: the `[query.alerts]`
/// section, with one `[[query.alerts.rules]]` table per rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Where notifications are posted as JSON (`http://` or `https://`).
    /// Unset: rules are evaluated and listed at `GET /api/v1/alerts`, and
    /// nothing is sent.
    pub webhook_url: Option<WebhookUrl>,
    /// How often the rules are evaluated.
    pub eval_interval_ms: u64,
    /// How long one delivery attempt may take in all.
    pub webhook_timeout_ms: u64,
    /// Attempts at delivering one notification (the first one included)
    /// before it is given up; connection errors, timeouts, 5xx and 429 are
    /// retried, any other answer but 2xx is a permanent failure.
    pub max_attempts: u32,
    /// The wait before the first retry is between half of this and all of
    /// it; it doubles with each retry...
    pub backoff_base_ms: u64,
    /// ...up to this. A `Retry-After` in seconds is waited for when longer
    /// (up to 5 minutes).
    pub backoff_cap_ms: u64,
    /// Notifications waiting for delivery; when full, the oldest is dropped
    /// (and counted), so evaluation never waits for the webhook.
    pub queue_capacity: usize,
    /// A rule that stays firing is notified again this often. Unset: only
    /// its transitions are notified.
    pub repeat_interval_secs: Option<u64>,
    /// The rules, each a table with a `name` and a `when`.
    pub rules: Vec<AlertRule>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            eval_interval_ms: 5_000,
            webhook_timeout_ms: 5_000,
            max_attempts: 8,
            backoff_base_ms: 500,
            backoff_cap_ms: 60_000,
            queue_capacity: 1_000,
            repeat_interval_secs: None,
            rules: Vec::new(),
        }
    }
}

/// A webhook URL as written in the config. Its `Debug` shows the origin
/// only (scheme, host, port), since the rest may carry a secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebhookUrl(pub String);

impl WebhookUrl {
    /// The URL, parsed and held to `http://` or `https://` with a host.
    /// The error never repeats the URL.
    fn parse(&self) -> Result<reqwest::Url, String> {
        let url = reqwest::Url::parse(&self.0)
            .map_err(|error| format!("query.alerts.webhook_url is not a URL: {error}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("query.alerts.webhook_url must start with http:// or https://".into());
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("query.alerts.webhook_url has no host".into());
        }
        Ok(url)
    }

    /// What logs and the API call the webhook: scheme, host and port.
    pub fn origin(&self) -> String {
        self.parse()
            .map(|url| url.origin().ascii_serialization())
            .unwrap_or_else(|_| "(invalid URL)".into())
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookUrl({})", self.origin())
    }
}

fn default_rule_window_secs() -> u64 {
    3_600
}

/// One alert rule: a `name`, and `when` it fires with the fields of that
/// kind. Every kind looks at the flows whose last activity is within
/// `window_secs` of the evaluation, and may be narrowed to flows whose
/// first event has `event_type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "when", rename_all = "snake_case", deny_unknown_fields)]
pub enum AlertRule {
    /// Fires while more than `more_than` flows of the window are `failed`.
    FailedFlows {
        name: String,
        #[serde(default)]
        event_type: Option<String>,
        more_than: u64,
        window_secs: u64,
    },
    /// Fires while a flow of the window is `stuck` with no activity for
    /// longer than `longer_than_secs`.
    StuckFlow {
        name: String,
        #[serde(default)]
        event_type: Option<String>,
        longer_than_secs: u64,
        /// Flows idle for longer than this are no longer looked at (must be
        /// more than `longer_than_secs`; 1 hour by default).
        #[serde(default = "default_rule_window_secs")]
        window_secs: u64,
    },
    /// Fires while a flow of the window has an anomaly of `kind` (a wire
    /// name: `poison_loop`, `duplicate_delivery`, ...).
    Anomaly {
        name: String,
        #[serde(default)]
        event_type: Option<String>,
        kind: AnomalyKind,
        /// 1 hour by default.
        #[serde(default = "default_rule_window_secs")]
        window_secs: u64,
    },
}

/// The kinds of rule, by their `when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    FailedFlows,
    StuckFlow,
    Anomaly,
}

impl AlertRule {
    pub fn name(&self) -> &str {
        match self {
            AlertRule::FailedFlows { name, .. }
            | AlertRule::StuckFlow { name, .. }
            | AlertRule::Anomaly { name, .. } => name,
        }
    }

    pub fn kind(&self) -> RuleKind {
        match self {
            AlertRule::FailedFlows { .. } => RuleKind::FailedFlows,
            AlertRule::StuckFlow { .. } => RuleKind::StuckFlow,
            AlertRule::Anomaly { .. } => RuleKind::Anomaly,
        }
    }

    pub fn event_type(&self) -> Option<&str> {
        match self {
            AlertRule::FailedFlows { event_type, .. }
            | AlertRule::StuckFlow { event_type, .. }
            | AlertRule::Anomaly { event_type, .. } => event_type.as_deref(),
        }
    }

    pub fn window_secs(&self) -> u64 {
        match self {
            AlertRule::FailedFlows { window_secs, .. }
            | AlertRule::StuckFlow { window_secs, .. }
            | AlertRule::Anomaly { window_secs, .. } => *window_secs,
        }
    }

    fn check(&self) -> Result<(), String> {
        let name = self.name();
        if name.trim().is_empty() {
            return Err("an alert rule has an empty name".into());
        }
        if name.len() > MAX_RULE_NAME_LEN || causeway_model::has_control_chars(name) {
            return Err(format!(
                "alert rule names are at most {MAX_RULE_NAME_LEN} bytes without control \
                 characters: {:?}",
                char_prefix(&strip_control(name), MAX_RULE_NAME_LEN)
            ));
        }
        let invalid = |reason: &str| Err(format!("alert rule {name:?}: {reason}"));
        if self.window_secs() == 0 {
            return invalid("window_secs must be more than 0");
        }
        if self.event_type().is_some_and(|t| t.trim().is_empty()) {
            return invalid("event_type is empty (leave it out to match any)");
        }
        if let AlertRule::StuckFlow {
            longer_than_secs,
            window_secs,
            ..
        } = self
            && window_secs <= longer_than_secs
        {
            return invalid(
                "window_secs must be more than longer_than_secs, or no flow could ever match",
            );
        }
        Ok(())
    }
}

impl AlertsConfig {
    /// Every check made at load: rule names unique and non-empty, windows
    /// and intervals above 0, the webhook an `http://` or `https://` URL.
    /// The message never repeats the webhook URL.
    pub fn check(&self) -> Result<(), String> {
        if let Some(url) = &self.webhook_url {
            url.parse()?;
        }
        let positive = [
            ("eval_interval_ms", self.eval_interval_ms),
            ("webhook_timeout_ms", self.webhook_timeout_ms),
            ("max_attempts", u64::from(self.max_attempts)),
            ("backoff_base_ms", self.backoff_base_ms),
            ("queue_capacity", self.queue_capacity as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(format!("query.alerts.{key} must be more than 0"));
            }
        }
        if self.backoff_cap_ms < self.backoff_base_ms {
            return Err("query.alerts.backoff_cap_ms must be at least backoff_base_ms".into());
        }
        if self.repeat_interval_secs == Some(0) {
            return Err("query.alerts.repeat_interval_secs must be more than 0 (or unset)".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for rule in &self.rules {
            rule.check()?;
            if !names.insert(rule.name()) {
                return Err(format!("two alert rules are named {:?}", rule.name()));
            }
        }
        Ok(())
    }

    /// The widest window of the rules: the snapshot must hold every flow
    /// active within it.
    pub fn window(&self) -> Duration {
        Duration::from_secs(
            self.rules
                .iter()
                .map(AlertRule::window_secs)
                .max()
                .unwrap_or(0),
        )
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            base: Duration::from_millis(self.backoff_base_ms.max(1)),
            cap: Duration::from_millis(self.backoff_cap_ms.max(self.backoff_base_ms).max(1)),
        }
    }
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

/// One rule evaluated over one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleResult {
    pub rule: String,
    pub firing: bool,
    /// How many flows matched.
    pub value: u64,
    /// The first [`MAX_SAMPLE_FLOWS`] matching correlation ids, sorted.
    pub flows: Vec<String>,
}

/// Evaluates every rule over `flows`, a snapshot of the flows active within
/// the widest window (their statuses and anomalies as of `now`). Pure: the
/// same arguments give the same results, one per rule, in rule order.
pub fn evaluate(rules: &[AlertRule], flows: &[FlowSummary], now: Timestamp) -> Vec<RuleResult> {
    rules
        .iter()
        .map(|rule| evaluate_rule(rule, flows, now))
        .collect()
}

fn secs_to_micros(secs: u64) -> i64 {
    i64::try_from(secs)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000)
}

fn evaluate_rule(rule: &AlertRule, flows: &[FlowSummary], now: Timestamp) -> RuleResult {
    let window_us = secs_to_micros(rule.window_secs());
    let idle_us = |flow: &FlowSummary| {
        now.as_micros()
            .saturating_sub(flow.last_activity_at.as_micros())
    };
    let matches = |flow: &FlowSummary| {
        let in_scope = idle_us(flow) <= window_us
            && rule
                .event_type()
                .is_none_or(|t| flow.root_event_type.as_deref() == Some(t));
        in_scope
            && match rule {
                AlertRule::FailedFlows { .. } => flow.status == FlowStatus::Failed,
                AlertRule::StuckFlow {
                    longer_than_secs, ..
                } => {
                    flow.status == FlowStatus::Stuck
                        && idle_us(flow) > secs_to_micros(*longer_than_secs)
                }
                AlertRule::Anomaly { kind, .. } => flow.anomalies.contains(kind),
            }
    };
    let mut ids: Vec<&str> = flows
        .iter()
        .filter(|flow| matches(flow))
        .map(|flow| flow.correlation_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let value = ids.len() as u64;
    let firing = match rule {
        AlertRule::FailedFlows { more_than, .. } => value > *more_than,
        AlertRule::StuckFlow { .. } | AlertRule::Anomaly { .. } => value > 0,
    };
    RuleResult {
        rule: rule.name().to_owned(),
        firing,
        value,
        flows: ids
            .into_iter()
            .take(MAX_SAMPLE_FLOWS)
            .map(str::to_owned)
            .collect(),
    }
}

// ---------------------------------------------------------------------------
// State and notifications (the API's JSON types)
// ---------------------------------------------------------------------------

/// A rule's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Inactive,
    Firing,
}

/// Whether a notification announces a firing or its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationStatus {
    Firing,
    Resolved,
}

/// The JSON body posted to the webhook. A delivery may arrive twice (a
/// timeout after the receiver took it): `rule`, `status`, `since` and `at`
/// name one notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Notification {
    pub status: NotificationStatus,
    pub rule: String,
    /// How many flows matched at `at`.
    pub value: u64,
    /// Up to [`MAX_SAMPLE_FLOWS`] of them, sorted.
    pub flows: Vec<String>,
    /// When the rule started firing (for `resolved` too).
    pub since: Timestamp,
    /// The evaluation that made this notification.
    pub at: Timestamp,
}

/// One rule as `GET /api/v1/alerts` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertView {
    pub rule: String,
    pub when: RuleKind,
    pub state: AlertState,
    /// When the rule entered its state; absent while it never fired.
    #[schema(required = true)]
    #[serde(default)]
    pub since: Option<Timestamp>,
    #[schema(required = true)]
    #[serde(default)]
    pub last_evaluated_at: Option<Timestamp>,
    /// How many flows matched at the last evaluation...
    pub value: u64,
    /// ...and up to [`MAX_SAMPLE_FLOWS`] of them, sorted.
    pub flows: Vec<String>,
    /// The last notification of this rule the webhook accepted.
    #[schema(required = true)]
    #[serde(default)]
    pub last_delivery_at: Option<Timestamp>,
    /// Why the last attempt failed, if it did and nothing was delivered
    /// since.
    #[schema(required = true)]
    #[serde(default)]
    pub last_delivery_error: Option<String>,
    /// Notifications queued or being delivered.
    #[schema(required = true)]
    #[serde(default)]
    pub pending_deliveries: u64,
    /// Notifications given up: refused, or still failing after
    /// `max_attempts`.
    #[schema(required = true)]
    #[serde(default)]
    pub failed_deliveries: u64,
    /// Notifications dropped unsent because the queue was full.
    #[schema(required = true)]
    #[serde(default)]
    pub dropped_deliveries: u64,
}

/// `GET /api/v1/alerts`: every rule, in config order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertsPage {
    pub alerts: Vec<AlertView>,
    /// The webhook's origin (scheme, host, port); absent when none is set.
    #[schema(required = true)]
    #[serde(default)]
    pub webhook: Option<String>,
    /// Evaluations made since start, and when the last one was (an
    /// evaluation that could not read the flows is not counted).
    #[schema(required = true)]
    #[serde(default)]
    pub evaluations: u64,
    #[schema(required = true)]
    #[serde(default)]
    pub last_evaluated_at: Option<Timestamp>,
    /// Why the last evaluation could not read the flows; the rules keep
    /// their state meanwhile.
    #[schema(required = true)]
    #[serde(default)]
    pub evaluation_error: Option<String>,
}

/// The state of every rule. Pure bookkeeping: no clock, no I/O.
#[derive(Debug, Clone)]
pub struct AlertBook {
    entries: Vec<AlertView>,
    /// When each firing rule was last notified, for the repeat interval.
    notified_at: Vec<Option<Timestamp>>,
    repeat_interval_us: Option<i64>,
    webhook: Option<String>,
    evaluations: u64,
    last_evaluated_at: Option<Timestamp>,
    evaluation_error: Option<String>,
}

impl AlertBook {
    /// Every rule of `config`, inactive and not yet evaluated.
    pub fn new(config: &AlertsConfig) -> Self {
        let entries: Vec<AlertView> = config
            .rules
            .iter()
            .map(|rule| AlertView {
                rule: rule.name().to_owned(),
                when: rule.kind(),
                state: AlertState::Inactive,
                since: None,
                last_evaluated_at: None,
                value: 0,
                flows: Vec::new(),
                last_delivery_at: None,
                last_delivery_error: None,
                pending_deliveries: 0,
                failed_deliveries: 0,
                dropped_deliveries: 0,
            })
            .collect();
        Self {
            notified_at: vec![None; entries.len()],
            entries,
            repeat_interval_us: config.repeat_interval_secs.map(secs_to_micros),
            webhook: config.webhook_url.as_ref().map(WebhookUrl::origin),
            evaluations: 0,
            last_evaluated_at: None,
            evaluation_error: None,
        }
    }

    /// Records one evaluation made at `now` and returns the notifications it
    /// calls for: one per rule that started firing or resolved, and a
    /// repeat for a rule still firing `repeat_interval_secs` after it was
    /// last notified. Results for unknown rules are ignored.
    pub fn apply(&mut self, results: &[RuleResult], now: Timestamp) -> Vec<Notification> {
        self.evaluations += 1;
        self.last_evaluated_at = Some(now);
        self.evaluation_error = None;
        let mut notifications = Vec::new();
        for result in results {
            let Some(index) = self.index(&result.rule) else {
                continue;
            };
            let entry = &mut self.entries[index];
            entry.last_evaluated_at = Some(now);
            entry.value = result.value;
            entry.flows.clone_from(&result.flows);
            let status = match (entry.state, result.firing) {
                (AlertState::Inactive, true) => {
                    entry.state = AlertState::Firing;
                    entry.since = Some(now);
                    Some(NotificationStatus::Firing)
                }
                (AlertState::Firing, false) => Some(NotificationStatus::Resolved),
                (AlertState::Firing, true) => {
                    let due = match (self.repeat_interval_us, self.notified_at[index]) {
                        (Some(every), Some(last)) => {
                            now.as_micros().saturating_sub(last.as_micros()) >= every
                        }
                        _ => false,
                    };
                    due.then_some(NotificationStatus::Firing)
                }
                (AlertState::Inactive, false) => None,
            };
            let Some(status) = status else {
                continue;
            };
            let since = entry.since.unwrap_or(now);
            if status == NotificationStatus::Resolved {
                entry.state = AlertState::Inactive;
                entry.since = Some(now);
                self.notified_at[index] = None;
            } else {
                self.notified_at[index] = Some(now);
            }
            notifications.push(Notification {
                status,
                rule: entry.rule.clone(),
                value: entry.value,
                flows: entry.flows.clone(),
                since,
                at: now,
            });
        }
        notifications
    }

    /// Records an evaluation that could not read the flows: the rules keep
    /// their state until one can.
    pub fn evaluation_failed(&mut self, error: &str) {
        self.evaluation_error = Some(clean_error(error));
    }

    /// Every rule with its state, for `GET /api/v1/alerts`.
    pub fn list(&self) -> AlertsPage {
        AlertsPage {
            alerts: self.entries.clone(),
            webhook: self.webhook.clone(),
            evaluations: self.evaluations,
            last_evaluated_at: self.last_evaluated_at,
            evaluation_error: self.evaluation_error.clone(),
        }
    }

    fn index(&self, rule: &str) -> Option<usize> {
        self.entries.iter().position(|entry| entry.rule == rule)
    }

    fn entry(&mut self, rule: &str) -> Option<&mut AlertView> {
        let index = self.index(rule)?;
        self.entries.get_mut(index)
    }

    fn queued(&mut self, rule: &str) {
        if let Some(entry) = self.entry(rule) {
            entry.pending_deliveries += 1;
        }
    }

    fn dropped(&mut self, rule: &str) {
        if let Some(entry) = self.entry(rule) {
            entry.pending_deliveries = entry.pending_deliveries.saturating_sub(1);
            entry.dropped_deliveries += 1;
        }
    }

    fn delivered(&mut self, rule: &str, at: Timestamp) {
        if let Some(entry) = self.entry(rule) {
            entry.pending_deliveries = entry.pending_deliveries.saturating_sub(1);
            entry.last_delivery_at = Some(at);
            entry.last_delivery_error = None;
        }
    }

    /// An attempt failed and another follows.
    fn attempt_failed(&mut self, rule: &str, error: &str) {
        if let Some(entry) = self.entry(rule) {
            entry.last_delivery_error = Some(clean_error(error));
        }
    }

    /// The notification is given up.
    fn gave_up(&mut self, rule: &str, error: &str) {
        if let Some(entry) = self.entry(rule) {
            entry.pending_deliveries = entry.pending_deliveries.saturating_sub(1);
            entry.failed_deliveries += 1;
            entry.last_delivery_error = Some(clean_error(error));
        }
    }
}

/// Error text fit for the API: no control characters, bounded.
fn clean_error(error: &str) -> String {
    char_prefix(&strip_control(error), MAX_ERROR_LEN).to_owned()
}

/// The alert book shared by the evaluation, the delivery and the API.
#[derive(Debug, Clone)]
pub struct Alerts {
    book: Arc<Mutex<AlertBook>>,
}

impl Alerts {
    pub fn new(config: &AlertsConfig) -> Self {
        Self {
            book: Arc::new(Mutex::new(AlertBook::new(config))),
        }
    }

    /// Every rule with its state, for `GET /api/v1/alerts`.
    pub fn list(&self) -> AlertsPage {
        self.lock().list()
    }

    /// The book. A panic while it was held left it consistent (every
    /// method changes it in one step), so a poisoned lock is taken as is.
    fn lock(&self) -> MutexGuard<'_, AlertBook> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// ---------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------

/// Waits between delivery attempts: exponential with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Backoff {
    base: Duration,
    cap: Duration,
}

impl Backoff {
    /// The wait before retry number `retry` (1 for the first): between half
    /// and all of `min(base * 2^(retry-1), cap)`, placed by `random`; a
    /// longer `Retry-After` (up to [`RETRY_AFTER_CAP`]) replaces it.
    fn wait(&self, retry: u32, retry_after: Option<Duration>, random: u64) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(31);
        let full = self.base.saturating_mul(factor).min(self.cap);
        let half = full / 2;
        let spread = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jittered = half + Duration::from_nanos(random % spread.saturating_add(1));
        match retry_after {
            Some(asked) => asked.min(RETRY_AFTER_CAP).max(jittered),
            None => jittered,
        }
    }
}

/// A random number for jitter, from the standard library's randomly keyed
/// hasher (each `RandomState` has keys of its own), so no crate is needed.
fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
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

/// Notifications waiting for delivery, at most `capacity`: a push onto a
/// full queue drops the oldest, so the evaluation never waits.
#[derive(Debug)]
struct Outbox {
    queue: Mutex<VecDeque<Notification>>,
    ready: Notify,
    capacity: usize,
}

impl Outbox {
    fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Notification>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `notification`, returning the one dropped to make room.
    fn push(&self, notification: Notification) -> Option<Notification> {
        let dropped = {
            let mut queue = self.lock();
            let dropped = if queue.len() >= self.capacity {
                queue.pop_front()
            } else {
                None
            };
            queue.push_back(notification);
            dropped
        };
        self.ready.notify_one();
        dropped
    }

    /// The oldest notification, waiting for one if there is none.
    async fn pop(&self) -> Notification {
        loop {
            if let Some(notification) = self.lock().pop_front() {
                return notification;
            }
            // A push between the check and here stored a permit, so this
            // returns at once.
            self.ready.notified().await;
        }
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// What one attempt taught.
#[derive(Debug)]
enum Attempt {
    Delivered,
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    Permanent {
        error: String,
    },
}

/// Posts notifications to one webhook.
#[derive(Debug)]
struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    /// Scheme, host and port: what logs name.
    origin: String,
    /// Parts of the URL that must never appear in an error text.
    secrets: Vec<String>,
    max_attempts: u32,
    backoff: Backoff,
}

impl Webhook {
    fn new(config: &AlertsConfig, url: &WebhookUrl) -> Result<Self, String> {
        let parsed = url.parse()?;
        let timeout = Duration::from_millis(config.webhook_timeout_ms.max(1));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("causeway-query/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| error.without_url().to_string())?;
        let mut secrets: Vec<String> = [
            url.0.clone(),
            parsed.as_str().to_owned(),
            parsed.username().to_owned(),
            parsed.password().unwrap_or_default().to_owned(),
            parsed.query().unwrap_or_default().to_owned(),
            parsed.path().to_owned(),
        ]
        .into_iter()
        .filter(|part| !part.is_empty() && part != "/")
        .collect();
        // Longest first, so a part inside another is not matched first.
        secrets.sort_by_key(|part| std::cmp::Reverse(part.len()));
        Ok(Self {
            client,
            origin: parsed.origin().ascii_serialization(),
            url: parsed,
            secrets,
            max_attempts: config.max_attempts.max(1),
            backoff: config.backoff(),
        })
    }

    /// `text` without any part of the URL but its origin, cleaned and
    /// bounded.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "[redacted]");
        }
        clean_error(&text)
    }

    async fn attempt(&self, body: Vec<u8>) -> Attempt {
        let response = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                let permanent = error.is_builder();
                let error = self.scrub(&ErrorChain(&error.without_url()).to_string());
                return if permanent {
                    Attempt::Permanent { error }
                } else {
                    Attempt::Retry {
                        error,
                        retry_after: None,
                    }
                };
            }
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Delivered;
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Attempt::Retry {
                error: format!("the webhook answered {status}"),
                retry_after: retry_after(response.headers()),
            };
        }
        // The receiver's reason goes to the log, not to the API.
        let body = response.text().await.unwrap_or_default();
        let body = self.scrub(char_prefix(&body, MAX_LOGGED_BODY_LEN));
        warn!(webhook = %self.origin, %status, body, "the webhook refused an alert notification");
        Attempt::Permanent {
            error: format!("the webhook refused the notification: {status}"),
        }
    }

    /// Delivers one notification, retrying as configured, and records the
    /// outcome in `alerts`.
    async fn deliver(&self, notification: &Notification, alerts: &Alerts) {
        let rule = notification.rule.as_str();
        let status = notification.status;
        let body = match serde_json::to_vec(notification) {
            Ok(body) => body,
            Err(error) => {
                warn!(%error, rule, "an alert notification could not be written as JSON");
                alerts
                    .lock()
                    .gave_up(rule, "the notification could not be written");
                return;
            }
        };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (error, retry_after) = match self.attempt(body.clone()).await {
                Attempt::Delivered => {
                    debug!(webhook = %self.origin, rule, ?status, attempt, "alert delivered");
                    alerts.lock().delivered(rule, Timestamp::now());
                    return;
                }
                Attempt::Permanent { error } => {
                    warn!(webhook = %self.origin, rule, ?status, attempt, %error, "alert delivery failed for good");
                    alerts.lock().gave_up(rule, &error);
                    return;
                }
                Attempt::Retry { error, retry_after } => (error, retry_after),
            };
            if attempt >= self.max_attempts {
                warn!(webhook = %self.origin, rule, ?status, attempt, %error, "alert delivery given up");
                alerts.lock().gave_up(
                    rule,
                    &format!("{error} (given up after {attempt} attempts)"),
                );
                return;
            }
            let wait = self.backoff.wait(attempt, retry_after, random_u64());
            warn!(webhook = %self.origin, rule, ?status, attempt, %error, ?wait, "alert delivery failed, retrying");
            alerts.lock().attempt_failed(
                rule,
                &format!("{error} (attempt {attempt} of {})", self.max_attempts),
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// An error with its causes, `outer: inner: root`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The runner
// ---------------------------------------------------------------------------

/// Evaluates `config`'s rules every `eval_interval_ms` over the flows
/// `snapshot(now, window)` hands over (every flow active within `window`
/// before `now`, analyzed as of `now`), records the results in `alerts` and
/// posts the notifications to the webhook, until `shutdown` completes.
/// Notifications still queued then are abandoned (and logged).
///
/// The first evaluation runs at once. A snapshot error, or one taking more
/// than a minute, skips the evaluation and shows in the alerts page; the
/// rules keep their state. Without rules it returns at once.
pub async fn run_alerts<F, Fut>(
    config: AlertsConfig,
    alerts: Alerts,
    mut snapshot: F,
    shutdown: impl Future<Output = ()>,
) where
    F: FnMut(Timestamp, Duration) -> Fut,
    Fut: Future<Output = Result<Vec<FlowSummary>, String>>,
{
    if config.rules.is_empty() {
        debug!("no alert rules");
        return;
    }
    let webhook = config
        .webhook_url
        .as_ref()
        .and_then(|url| match Webhook::new(&config, url) {
            Ok(webhook) => Some(webhook),
            Err(error) => {
                warn!(%error, "alert webhook unusable, alerts are listed and not sent");
                None
            }
        });
    let outbox = Outbox::new(config.queue_capacity);
    let window = config.window();
    info!(
        rules = config.rules.len(),
        webhook = webhook.as_ref().map(|w| w.origin.as_str()),
        eval_interval_ms = config.eval_interval_ms,
        "alerts running"
    );

    let evaluation = async {
        let mut ticks =
            tokio::time::interval(Duration::from_millis(config.eval_interval_ms.max(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let now = Timestamp::now();
            let flows = match tokio::time::timeout(SNAPSHOT_TIMEOUT, snapshot(now, window)).await {
                Ok(Ok(flows)) => flows,
                Ok(Err(error)) => {
                    warn!(%error, "alert evaluation skipped, the flows could not be read");
                    alerts.lock().evaluation_failed(&error);
                    continue;
                }
                Err(_) => {
                    warn!(timeout = ?SNAPSHOT_TIMEOUT, "alert evaluation skipped, reading the flows took too long");
                    alerts
                        .lock()
                        .evaluation_failed("reading the flows took too long");
                    continue;
                }
            };
            let results = evaluate(&config.rules, &flows, now);
            let notifications = {
                let mut book = alerts.lock();
                let notifications = book.apply(&results, now);
                if webhook.is_some() {
                    for notification in &notifications {
                        book.queued(&notification.rule);
                    }
                }
                notifications
            };
            for notification in &notifications {
                let rule = notification.rule.as_str();
                let value = notification.value;
                match notification.status {
                    NotificationStatus::Firing if notification.since != now => {
                        info!(rule, value, "alert still firing");
                    }
                    NotificationStatus::Firing => info!(rule, value, "alert firing"),
                    NotificationStatus::Resolved => info!(rule, value, "alert resolved"),
                }
            }
            if webhook.is_none() {
                continue;
            }
            for notification in notifications {
                if let Some(dropped) = outbox.push(notification) {
                    warn!(
                        rule = %dropped.rule,
                        status = ?dropped.status,
                        capacity = outbox.capacity,
                        "alert queue full, oldest notification dropped"
                    );
                    alerts.lock().dropped(&dropped.rule);
                }
            }
        }
    };

    let delivery = async {
        let Some(webhook) = &webhook else {
            return std::future::pending().await;
        };
        loop {
            let notification = outbox.pop().await;
            webhook.deliver(&notification, &alerts).await;
        }
    };

    tokio::select! {
        () = shutdown => {}
        () = evaluation => {}
        () = delivery => {}
    }
    let undelivered: u64 = alerts
        .list()
        .alerts
        .iter()
        .map(|alert| alert.pending_deliveries)
        .sum();
    if undelivered > 0 {
        warn!(
            undelivered,
            queued = outbox.len(),
            "alerts stopped with notifications unsent"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::http::StatusCode as AxumStatus;
    use axum::response::IntoResponse;
    use axum::routing::post;
    use tokio::net::TcpListener;

    use super::*;

    const NOW_US: i64 = 1_767_225_600_000_000;

    fn at(offset_secs: i64) -> Timestamp {
        Timestamp::from_micros(NOW_US + offset_secs * 1_000_000)
    }

    fn flow(id: &str, status: FlowStatus, root: &str, idle_secs: i64) -> FlowSummary {
        FlowSummary {
            correlation_id: id.into(),
            status,
            root_event_type: Some(root.into()),
            started_at: at(-idle_secs - 5),
            last_activity_at: at(-idle_secs),
            duration_us: 5_000_000,
            services: vec!["orders".into()],
            event_count: 2,
            record_count: 4,
            failure_count: 0,
            anomalies: Vec::new(),
            trace_ids: Vec::new(),
        }
    }

    fn failed_rule(more_than: u64) -> AlertRule {
        AlertRule::FailedFlows {
            name: "payment failures".into(),
            event_type: Some("OrderPlaced".into()),
            more_than,
            window_secs: 60,
        }
    }

    const EXAMPLE: &str = r#"
        webhook_url = "http://127.0.0.1:9000/hook"
        eval_interval_ms = 5000
        webhook_timeout_ms = 5000
        max_attempts = 8

        [[rules]]
        name = "payment failures"
        when = "failed_flows"
        event_type = "OrderPlaced"
        more_than = 5
        window_secs = 60

        [[rules]]
        name = "stuck orders"
        when = "stuck_flow"
        longer_than_secs = 600

        [[rules]]
        name = "poison"
        when = "anomaly"
        kind = "poison_loop"
    "#;

    fn parse(text: &str) -> Result<AlertsConfig, String> {
        let config: AlertsConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    // --- settings ---

    #[test]
    fn the_documented_example_parses_into_one_rule_of_each_kind() {
        let config = parse(EXAMPLE).unwrap();
        assert_eq!(
            config.rules,
            vec![
                failed_rule(5),
                AlertRule::StuckFlow {
                    name: "stuck orders".into(),
                    event_type: None,
                    longer_than_secs: 600,
                    window_secs: 3_600,
                },
                AlertRule::Anomaly {
                    name: "poison".into(),
                    event_type: None,
                    kind: AnomalyKind::PoisonLoop,
                    window_secs: 3_600,
                },
            ]
        );
        assert_eq!(config.window(), Duration::from_secs(3_600));
        assert_eq!(config.max_attempts, 8);
        assert_eq!(config.queue_capacity, 1_000);
        // Back to TOML and again: the same settings.
        let text = toml::to_string(&config).unwrap();
        assert_eq!(parse(&text).unwrap(), config);
        // Nested under [query.alerts] as the daemon's config will read it.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Query {
            alerts: AlertsConfig,
        }
        #[derive(Deserialize)]
        struct File {
            query: Query,
        }
        let nested = EXAMPLE
            .replace("[[rules]]", "[[query.alerts.rules]]")
            .replacen("webhook_url", "[query.alerts]\nwebhook_url", 1);
        let file: File = toml::from_str(&nested).unwrap();
        assert_eq!(file.query.alerts, config);
    }

    #[test]
    fn unknown_keys_and_keys_of_another_kind_are_refused() {
        let unknown_section = EXAMPLE.replacen("max_attempts = 8", "max_attempt = 8", 1);
        let error = parse(&unknown_section).unwrap_err();
        assert!(error.contains("max_attempt"), "{error}");

        let foreign =
            "[[rules]]\nname = \"x\"\nwhen = \"stuck_flow\"\nlonger_than_secs = 1\nmore_than = 3\n";
        let error = parse(foreign).unwrap_err();
        assert!(error.contains("more_than"), "{error}");

        let unknown_when = "[[rules]]\nname = \"x\"\nwhen = \"slow_flows\"\n";
        let error = parse(unknown_when).unwrap_err();
        assert!(error.contains("slow_flows"), "{error}");

        let unknown_kind = "[[rules]]\nname = \"x\"\nwhen = \"anomaly\"\nkind = \"bad_luck\"\n";
        assert!(parse(unknown_kind).is_err());

        let missing = "[[rules]]\nname = \"x\"\nwhen = \"failed_flows\"\nmore_than = 1\n";
        let error = parse(missing).unwrap_err();
        assert!(error.contains("window_secs"), "{error}");
    }

    #[test]
    fn bad_webhook_urls_are_refused_without_being_repeated() {
        for url in [
            "ftp://user:hunter2@example.com/hook",
            "not a url hunter2",
            "file:///etc/hunter2",
            "http://",
        ] {
            let config = AlertsConfig {
                webhook_url: Some(WebhookUrl(url.into())),
                ..AlertsConfig::default()
            };
            let error = config.check().unwrap_err();
            assert!(error.contains("webhook_url"), "{url}: {error}");
            assert!(!error.contains("hunter2"), "{url}: {error}");
        }
        for url in [
            "http://127.0.0.1:9000/hook",
            "https://hooks.example.com/x?t=1",
        ] {
            let config = AlertsConfig {
                webhook_url: Some(WebhookUrl(url.into())),
                ..AlertsConfig::default()
            };
            assert_eq!(config.check(), Ok(()), "{url}");
        }
        let secret =
            WebhookUrl("https://bot:hunter2@hooks.example.com/T0/hunter2?token=hunter2".into());
        assert_eq!(secret.origin(), "https://hooks.example.com");
        let config = AlertsConfig {
            webhook_url: Some(secret),
            ..AlertsConfig::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn rule_names_windows_and_intervals_are_checked() {
        let with_rules = |rules: Vec<AlertRule>| AlertsConfig {
            rules,
            ..AlertsConfig::default()
        };
        let twice = with_rules(vec![failed_rule(1), failed_rule(2)]);
        assert!(twice.check().unwrap_err().contains("two alert rules"));

        let unnamed = with_rules(vec![AlertRule::Anomaly {
            name: "  ".into(),
            event_type: None,
            kind: AnomalyKind::Redelivery,
            window_secs: 60,
        }]);
        assert!(unnamed.check().unwrap_err().contains("empty name"));

        let no_window = with_rules(vec![AlertRule::FailedFlows {
            name: "x".into(),
            event_type: None,
            more_than: 0,
            window_secs: 0,
        }]);
        assert!(no_window.check().unwrap_err().contains("window_secs"));

        let never = with_rules(vec![AlertRule::StuckFlow {
            name: "x".into(),
            event_type: None,
            longer_than_secs: 600,
            window_secs: 600,
        }]);
        assert!(never.check().unwrap_err().contains("longer_than_secs"));

        let no_interval = AlertsConfig {
            eval_interval_ms: 0,
            ..AlertsConfig::default()
        };
        assert!(
            no_interval
                .check()
                .unwrap_err()
                .contains("eval_interval_ms")
        );
        let upside_down = AlertsConfig {
            backoff_base_ms: 1_000,
            backoff_cap_ms: 10,
            ..AlertsConfig::default()
        };
        assert!(upside_down.check().unwrap_err().contains("backoff_cap_ms"));
        assert_eq!(AlertsConfig::default().check(), Ok(()));
    }

    // --- evaluation ---

    #[test]
    fn failed_flows_counts_failures_of_the_event_type_within_the_window() {
        let flows = vec![
            flow("c", FlowStatus::Failed, "OrderPlaced", 10),
            flow("a", FlowStatus::Failed, "OrderPlaced", 59),
            // Outside the window, another type, not failed.
            flow("old", FlowStatus::Failed, "OrderPlaced", 61),
            flow("other", FlowStatus::Failed, "RefundRequested", 1),
            flow("fine", FlowStatus::Completed, "OrderPlaced", 1),
        ];
        let [result] = evaluate(&[failed_rule(1)], &flows, at(0))
            .try_into()
            .unwrap();
        assert_eq!(
            result,
            RuleResult {
                rule: "payment failures".into(),
                firing: true,
                value: 2,
                flows: vec!["a".into(), "c".into()],
            }
        );
        // More than, not at least.
        let [result] = evaluate(&[failed_rule(2)], &flows, at(0))
            .try_into()
            .unwrap();
        assert!(!result.firing);
        assert_eq!(result.value, 2);
        // Any event type when none is named.
        let any = AlertRule::FailedFlows {
            name: "any".into(),
            event_type: None,
            more_than: 2,
            window_secs: 60,
        };
        let [result] = evaluate(&[any], &flows, at(0)).try_into().unwrap();
        assert!(result.firing);
        assert_eq!(result.flows, ["a", "c", "other"]);
    }

    #[test]
    fn stuck_flow_fires_for_a_stuck_flow_idle_longer_than_its_threshold() {
        let rule = AlertRule::StuckFlow {
            name: "stuck".into(),
            event_type: None,
            longer_than_secs: 600,
            window_secs: 3_600,
        };
        let young = vec![
            flow("young", FlowStatus::Stuck, "OrderPlaced", 600),
            flow("busy", FlowStatus::InProgress, "OrderPlaced", 900),
            flow("gone", FlowStatus::Stuck, "OrderPlaced", 3_601),
        ];
        let [result] = evaluate(std::slice::from_ref(&rule), &young, at(0))
            .try_into()
            .unwrap();
        assert!(!result.firing);
        assert_eq!(result.value, 0);
        assert!(result.flows.is_empty());
        let [result] = evaluate(&[rule], &young, at(1)).try_into().unwrap();
        assert!(result.firing);
        assert_eq!(result.flows, ["young"]);
    }

    #[test]
    fn anomaly_fires_for_any_flow_with_the_kind_and_samples_at_most_twenty_sorted_ids() {
        let rule = AlertRule::Anomaly {
            name: "poison".into(),
            event_type: None,
            kind: AnomalyKind::PoisonLoop,
            window_secs: 3_600,
        };
        let mut flows: Vec<FlowSummary> = (0..30)
            .rev()
            .map(|i| {
                let mut f = flow(&format!("flow-{i:02}"), FlowStatus::Failed, "X", i);
                f.anomalies = vec![AnomalyKind::PoisonLoop, AnomalyKind::Redelivery];
                f
            })
            .collect();
        flows.push(flow("clean", FlowStatus::Failed, "X", 1));
        let [result] = evaluate(&[rule], &flows, at(0)).try_into().unwrap();
        assert!(result.firing);
        assert_eq!(result.value, 30);
        let expected: Vec<String> = (0..MAX_SAMPLE_FLOWS)
            .map(|i| format!("flow-{i:02}"))
            .collect();
        assert_eq!(result.flows, expected);
    }

    // --- transitions ---

    fn book(repeat_interval_secs: Option<u64>) -> AlertBook {
        AlertBook::new(&AlertsConfig {
            repeat_interval_secs,
            rules: vec![failed_rule(1)],
            ..AlertsConfig::default()
        })
    }

    fn result(firing: bool, flows: &[&str]) -> Vec<RuleResult> {
        vec![RuleResult {
            rule: "payment failures".into(),
            firing,
            value: flows.len() as u64,
            flows: flows.iter().map(|f| (*f).to_owned()).collect(),
        }]
    }

    #[test]
    fn a_rule_notifies_once_when_it_fires_and_once_when_it_resolves() {
        let mut book = book(None);
        assert!(book.apply(&result(false, &[]), at(0)).is_empty());
        let view = &book.list().alerts[0];
        assert_eq!(view.state, AlertState::Inactive);
        assert_eq!(view.since, None);
        assert_eq!(view.last_evaluated_at, Some(at(0)));

        let fired = book.apply(&result(true, &["a", "b"]), at(5));
        assert_eq!(
            fired,
            vec![Notification {
                status: NotificationStatus::Firing,
                rule: "payment failures".into(),
                value: 2,
                flows: vec!["a".into(), "b".into()],
                since: at(5),
                at: at(5),
            }]
        );
        // Still firing, with the same flows or others: no repeat.
        assert!(book.apply(&result(true, &["a", "b"]), at(10)).is_empty());
        assert!(
            book.apply(&result(true, &["a", "b", "c"]), at(15))
                .is_empty()
        );
        let view = &book.list().alerts[0];
        assert_eq!(
            (view.state, view.since, view.value),
            (AlertState::Firing, Some(at(5)), 3)
        );

        let resolved = book.apply(&result(false, &["c"]), at(20));
        assert_eq!(
            resolved,
            vec![Notification {
                status: NotificationStatus::Resolved,
                rule: "payment failures".into(),
                value: 1,
                flows: vec!["c".into()],
                since: at(5),
                at: at(20),
            }]
        );
        assert!(book.apply(&result(false, &[]), at(25)).is_empty());
        let page = book.list();
        assert_eq!(page.alerts[0].state, AlertState::Inactive);
        assert_eq!(page.alerts[0].since, Some(at(20)));
        assert_eq!(page.evaluations, 6);
        // Firing again starts a new episode.
        let again = book.apply(&result(true, &["d", "e"]), at(30));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].since, at(30));
    }

    #[test]
    fn a_rule_still_firing_is_notified_again_after_the_repeat_interval() {
        let mut book = book(Some(60));
        assert_eq!(book.apply(&result(true, &["a", "b"]), at(0)).len(), 1);
        assert!(book.apply(&result(true, &["a", "b"]), at(59)).is_empty());
        let repeat = book.apply(&result(true, &["a", "b"]), at(60));
        assert_eq!(repeat.len(), 1);
        assert_eq!(repeat[0].status, NotificationStatus::Firing);
        assert_eq!((repeat[0].since, repeat[0].at), (at(0), at(60)));
        assert!(book.apply(&result(true, &["a", "b"]), at(100)).is_empty());
        assert_eq!(book.apply(&result(true, &["a", "b"]), at(120)).len(), 1);
    }

    #[test]
    fn a_failed_evaluation_keeps_the_state_and_says_why() {
        let mut book = book(None);
        book.apply(&result(true, &["a", "b"]), at(0));
        book.evaluation_failed("index \u{1b}[31mmissing");
        let page = book.list();
        assert_eq!(page.alerts[0].state, AlertState::Firing);
        assert_eq!(page.evaluation_error.as_deref(), Some("index missing"));
        assert_eq!(page.last_evaluated_at, Some(at(0)));
        assert_eq!(page.evaluations, 1);
        book.apply(&result(true, &["a", "b"]), at(10));
        assert_eq!(book.list().evaluation_error, None);
    }

    #[test]
    fn the_page_has_the_documented_wire_names() {
        let mut book = book(None);
        book.apply(&result(true, &["a", "b"]), at(0));
        let page = serde_json::to_value(book.list()).unwrap();
        let alert = &page["alerts"][0];
        assert_eq!(alert["rule"], "payment failures");
        assert_eq!(alert["when"], "failed_flows");
        assert_eq!(alert["state"], "firing");
        assert_eq!(alert["since"], "2026-01-01T00:00:00.000000Z");
        assert_eq!(alert["pending_deliveries"], 0);
        let back: AlertsPage = serde_json::from_value(page).unwrap();
        assert_eq!(back, book.list());
    }

    #[test]
    fn delivery_outcomes_are_counted_per_rule() {
        let mut book = book(None);
        let rule = "payment failures";
        for _ in 0..4 {
            book.queued(rule);
        }
        book.dropped(rule);
        book.attempt_failed(rule, "the webhook answered 503 (attempt 1 of 8)");
        let alert = &book.list().alerts[0];
        assert_eq!((alert.pending_deliveries, alert.dropped_deliveries), (3, 1));
        assert!(alert.last_delivery_error.is_some());
        book.delivered(rule, at(1));
        let alert = &book.list().alerts[0];
        assert_eq!(alert.pending_deliveries, 2);
        assert_eq!(alert.last_delivery_at, Some(at(1)));
        assert_eq!(alert.last_delivery_error, None);
        book.gave_up(rule, "refused");
        book.gave_up(rule, "refused");
        let alert = &book.list().alerts[0];
        assert_eq!((alert.pending_deliveries, alert.failed_deliveries), (0, 2));
        assert_eq!(alert.last_delivery_error.as_deref(), Some("refused"));
        // Outcomes for a rule that does not exist change nothing.
        book.gave_up("nobody", "refused");
        assert_eq!(book.list().alerts.len(), 1);
    }

    // --- delivery pieces ---

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_and_obeys_a_longer_retry_after() {
        let backoff = Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
        };
        let ms = |retry, random| backoff.wait(retry, None, random).as_millis();
        assert_eq!(ms(1, 0), 250);
        assert_eq!(
            ms(1, u64::MAX),
            250 + (u64::MAX % 250_000_001) as u128 / 1_000_000
        );
        for retry in 1..=12u32 {
            let full = (500u128 << (retry - 1)).min(60_000);
            for random in [0, 1, 7_777_777, u64::MAX / 3, u64::MAX] {
                let wait = ms(retry, random);
                assert!((full / 2..=full).contains(&wait), "{retry}: {wait}");
            }
        }
        assert_eq!(ms(100, 0), 30_000);
        let asked = |secs| backoff.wait(1, Some(Duration::from_secs(secs)), 0);
        assert_eq!(asked(7), Duration::from_secs(7));
        assert_eq!(asked(0), Duration::from_millis(250));
        assert_eq!(asked(86_400), RETRY_AFTER_CAP);
        // Different draws, different waits.
        assert_ne!(random_u64(), random_u64());
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

    #[test]
    fn a_full_queue_drops_its_oldest_notification() {
        let outbox = Outbox::new(2);
        let note = |rule: &str| Notification {
            status: NotificationStatus::Firing,
            rule: rule.into(),
            value: 1,
            flows: Vec::new(),
            since: at(0),
            at: at(0),
        };
        assert_eq!(outbox.push(note("first")), None);
        assert_eq!(outbox.push(note("second")), None);
        assert_eq!(
            outbox.push(note("third")).map(|n| n.rule),
            Some("first".into())
        );
        assert_eq!(outbox.len(), 2);
    }

    #[test]
    fn error_texts_never_hold_the_urls_secrets() {
        let config = AlertsConfig::default();
        let url = WebhookUrl("http://bot:pa55word@127.0.0.1:9/T0/B0/s3cretpath?token=t0ken".into());
        let webhook = Webhook::new(&config, &url).unwrap();
        let text = webhook.scrub(
            "error for http://bot:pa55word@127.0.0.1:9/T0/B0/s3cretpath?token=t0ken: \
             path /T0/B0/s3cretpath, query token=t0ken, password pa55word\n",
        );
        for secret in ["pa55word", "s3cretpath", "t0ken", "bot:"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(!text.contains('\n'));
        assert_eq!(webhook.origin, "http://127.0.0.1:9");
    }

    // --- the whole loop, against a real webhook receiver ---

    /// A webhook receiver on 127.0.0.1: answers the first `failures`
    /// requests with `status`, later ones 200, and keeps what it accepted.
    struct Receiver {
        url: String,
        origin: String,
        hits: Arc<AtomicUsize>,
        accepted: Arc<Mutex<Vec<serde_json::Value>>>,
    }

    async fn receiver(failures: usize, status: AxumStatus) -> Receiver {
        let hits = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().route(
            "/hook",
            post({
                let hits = hits.clone();
                let accepted = accepted.clone();
                move |body: axum::body::Bytes| async move {
                    let hit = hits.fetch_add(1, Ordering::SeqCst);
                    if hit < failures {
                        // The second refusal asks for an immediate retry.
                        if hit == 1 {
                            return (status, [("retry-after", "0")]).into_response();
                        }
                        return status.into_response();
                    }
                    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    accepted.lock().unwrap().push(body);
                    AxumStatus::OK.into_response()
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            url: format!("http://hooker:s3cret@{addr}/hook?token=t0ken"),
            origin: format!("http://{addr}"),
            hits,
            accepted,
        }
    }

    fn fast_config(url: &str, rule: AlertRule) -> AlertsConfig {
        AlertsConfig {
            webhook_url: Some(WebhookUrl(url.into())),
            eval_interval_ms: 10,
            webhook_timeout_ms: 2_000,
            max_attempts: 4,
            backoff_base_ms: 5,
            backoff_cap_ms: 20,
            rules: vec![rule],
            ..AlertsConfig::default()
        }
    }

    /// Flows the test sets, handed to the runner as its snapshot.
    type Flows = Arc<Mutex<Vec<FlowSummary>>>;

    struct Running {
        alerts: Alerts,
        flows: Flows,
        stop: tokio::sync::oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
    }

    fn start(config: AlertsConfig, flows: Vec<FlowSummary>) -> Running {
        let alerts = Alerts::new(&config);
        let flows: Flows = Arc::new(Mutex::new(flows));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let snapshot = {
            let flows = flows.clone();
            move |_now: Timestamp, window: Duration| {
                assert_eq!(window, Duration::from_secs(60));
                let flows = flows.lock().unwrap().clone();
                async move { Ok::<_, String>(flows) }
            }
        };
        let task = tokio::spawn(run_alerts(config, alerts.clone(), snapshot, async {
            let _ = stopped.await;
        }));
        Running {
            alerts,
            flows,
            stop,
            task,
        }
    }

    impl Running {
        async fn stop(self) {
            self.stop.send(()).unwrap();
            self.task.await.unwrap();
        }
    }

    /// Waits until `done` holds, for at most ten seconds.
    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "gave up waiting: {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Flows failing now, in a window of one minute.
    fn failing(ids: &[&str]) -> Vec<FlowSummary> {
        let now = Timestamp::now();
        ids.iter()
            .map(|id| FlowSummary {
                last_activity_at: now,
                ..flow(id, FlowStatus::Failed, "OrderPlaced", 0)
            })
            .collect()
    }

    #[tokio::test]
    async fn a_firing_alert_reaches_a_webhook_that_failed_twice_and_resolves_once_the_flows_clear()
    {
        let hook = receiver(2, AxumStatus::SERVICE_UNAVAILABLE).await;
        let running = start(
            fast_config(&hook.url, failed_rule(1)),
            failing(&["order-2", "order-1"]),
        );

        until("the firing notification", || {
            hook.accepted.lock().unwrap().len() == 1
        })
        .await;
        let firing = hook.accepted.lock().unwrap()[0].clone();
        assert_eq!(firing["status"], "firing");
        assert_eq!(firing["rule"], "payment failures");
        assert_eq!(firing["value"], 2);
        assert_eq!(firing["flows"], serde_json::json!(["order-1", "order-2"]));
        assert_eq!(firing["since"], firing["at"]);
        let since: Timestamp = serde_json::from_value(firing["since"].clone()).unwrap();
        // Two 503s, then the one accepted.
        assert_eq!(hook.hits.load(Ordering::SeqCst), 3);
        until("the delivery recorded", || {
            running.alerts.list().alerts[0].pending_deliveries == 0
        })
        .await;
        let page = running.alerts.list();
        let alert = &page.alerts[0];
        assert_eq!(alert.state, AlertState::Firing);
        assert_eq!(alert.since, Some(since));
        assert!(alert.last_delivery_at.is_some());
        assert_eq!(alert.last_delivery_error, None);
        assert_eq!((alert.failed_deliveries, alert.dropped_deliveries), (0, 0));
        assert_eq!(page.webhook, Some(hook.origin.clone()));

        // More evaluations with the same flows send nothing more: nothing is
        // queued and nothing more arrived.
        let seen = page.evaluations;
        until("three more evaluations", || {
            running.alerts.list().evaluations >= seen + 3
        })
        .await;
        assert_eq!(running.alerts.list().alerts[0].pending_deliveries, 0);
        assert_eq!(hook.accepted.lock().unwrap().len(), 1);

        running.flows.lock().unwrap().clear();
        until("the resolved notification", || {
            hook.accepted.lock().unwrap().len() == 2
        })
        .await;
        let resolved = hook.accepted.lock().unwrap()[1].clone();
        assert_eq!(resolved["status"], "resolved");
        assert_eq!(resolved["rule"], "payment failures");
        assert_eq!(resolved["value"], 0);
        assert_eq!(resolved["flows"], serde_json::json!([]));
        assert_eq!(resolved["since"], firing["since"]);
        assert_ne!(resolved["at"], firing["at"]);
        assert_eq!(running.alerts.list().alerts[0].state, AlertState::Inactive);
        running.stop().await;
        assert_eq!(hook.accepted.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_webhook_that_refuses_with_a_4xx_is_not_retried() {
        let hook = receiver(usize::MAX, AxumStatus::BAD_REQUEST).await;
        let running = start(
            fast_config(&hook.url, failed_rule(0)),
            failing(&["order-1"]),
        );
        until("the notification given up", || {
            running.alerts.list().alerts[0].failed_deliveries == 1
        })
        .await;
        assert_eq!(hook.hits.load(Ordering::SeqCst), 1);
        let alert = running.alerts.list().alerts.remove(0);
        assert_eq!(alert.pending_deliveries, 0);
        let error = alert.last_delivery_error.unwrap();
        assert!(error.contains("400"), "{error}");
        running.stop().await;
    }

    #[tokio::test]
    async fn an_unreachable_webhook_is_given_up_after_max_attempts_and_its_secrets_stay_out_of_the_error()
     {
        // A port nobody listens on any more.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = format!("http://hooker:s3cret@{addr}/hook/s3cretpath?token=t0ken");
        let running = start(fast_config(&url, failed_rule(0)), failing(&["order-1"]));
        until("the notification given up", || {
            running.alerts.list().alerts[0].failed_deliveries == 1
        })
        .await;
        let alert = running.alerts.list().alerts.remove(0);
        let error = alert.last_delivery_error.unwrap();
        assert!(error.contains("given up after 4 attempts"), "{error}");
        for secret in ["s3cret", "t0ken", "hooker", "/hook"] {
            assert!(!error.contains(secret), "{error}");
        }
        assert_eq!(alert.pending_deliveries, 0);
        assert_eq!(alert.last_delivery_at, None);
        running.stop().await;
    }

    #[tokio::test]
    async fn without_a_webhook_rules_are_evaluated_and_listed_and_nothing_is_queued() {
        let config = AlertsConfig {
            webhook_url: None,
            ..fast_config("http://127.0.0.1:9/", failed_rule(0))
        };
        let running = start(config, failing(&["order-1"]));
        until("the rule firing", || {
            running.alerts.list().alerts[0].state == AlertState::Firing
        })
        .await;
        let page = running.alerts.list();
        assert_eq!(page.webhook, None);
        assert_eq!(page.alerts[0].pending_deliveries, 0);
        assert_eq!(page.alerts[0].flows, ["order-1"]);
        running.stop().await;
    }
}
