//! What a source's lines are written in, and how each becomes the JSON
//! object that [`crate::parse`] maps onto a record: a source names its
//! [`Format`], optionally a regex, a field mapping and a multiline start
//! pattern ([`ParseSpec`]); [`LineParser`] holds them compiled.
//!
//! - `json` (the default): causeway's own record, and any JSON object with
//!   the common aliases (`msg`, `time`, `@timestamp`, `severity`, ...);
//! - `tracing_json`: tracing-subscriber's JSON (`fields.*` lifted, the
//!   current span's and its parents' fields filling what the event lacks);
//! - `bunyan` (and pino, its look-alike): `name` -> service, `hostname` ->
//!   instance, `err.name`/`err.type` and `err.message` -> the error;
//! - `logstash`: logstash-logback-encoder's JSON (`@timestamp`,
//!   `logger_name`, `HOSTNAME` -> instance, the first line of
//!   `stack_trace` -> the error);
//! - `python_json`: python-json-logger (`levelname` -> level, `asctime`
//!   -> time, `exc_info`'s last line -> the error);
//! - `logfmt`: `key=value key2="quoted value"`;
//! - `regex`: plain text matched by a pattern whose named groups fill
//!   fields (`(?P<timestamp>\S+ \S+) (?P<level>\w+) (?P<message>.*)`).
//!
//! A field mapping (`fields = { correlationId = "correlation_id" }`)
//! renames keys, dotted paths reaching into objects, before the record is
//! read, whatever the format. A line the format cannot read is kept as a
//! malformed record with its raw text and the reason. This module does no
//! I/O; [`Multiline`] joins continuation lines (stack traces) into the
//! record they belong to.

use std::time::{Duration, Instant};

use causeway_model::wire::cut_raw;
use causeway_model::{Record, Timestamp};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use causeway_model::lenient::{kind, parse_object};

/// The shape of a source's lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Json,
    TracingJson,
    Bunyan,
    Logstash,
    PythonJson,
    Logfmt,
    Regex,
}

/// How a source's lines are read, as its settings give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParseSpec {
    pub format: Format,
    /// For `format = "regex"`: a pattern whose named groups are fields
    /// (`timestamp`, `level`, `message`, `correlation_id`, ...; other
    /// names become attributes). It must match a line's start.
    pub pattern: Option<String>,
    /// Renames before a line is read: key (a dotted path reaches into
    /// objects) -> field name.
    pub fields: std::collections::BTreeMap<String, String>,
    /// A line matching this pattern starts a record; lines that do not
    /// are joined to the record before them (stack traces).
    pub multiline_start: Option<String>,
    /// How long a record waits for more lines once its last came.
    pub multiline_timeout_ms: u64,
}

/// How long a multiline record waits for more lines by default.
const DEFAULT_MULTILINE_TIMEOUT_MS: u64 = 1_000;

impl Default for ParseSpec {
    /// JSON lines, no renames, no joining.
    fn default() -> Self {
        Self {
            format: Format::Json,
            pattern: None,
            fields: std::collections::BTreeMap::new(),
            multiline_start: None,
            multiline_timeout_ms: DEFAULT_MULTILINE_TIMEOUT_MS,
        }
    }
}

/// The most lines one multiline record joins; past it, a new record
/// starts.
const MAX_MULTILINE_LINES: usize = 1_000;

/// A source's lines read as its [`ParseSpec`] says.
#[derive(Debug, Clone)]
pub struct LineParser {
    format: Format,
    pattern: Option<Regex>,
    fields: Vec<(String, String)>,
}

impl LineParser {
    /// Compiles `spec`; a bad pattern, or `regex` without one, is an error
    /// naming the setting.
    pub fn new(spec: &ParseSpec) -> Result<Self, String> {
        let pattern = match (&spec.format, &spec.pattern) {
            (Format::Regex, None) => {
                return Err("format \"regex\" needs a pattern".to_owned());
            }
            (Format::Regex, Some(pattern)) => {
                let regex = Regex::new(pattern).map_err(|e| format!("pattern: {e}"))?;
                if regex.capture_names().flatten().next().is_none() {
                    return Err(
                        "pattern: no named group ((?P<message>...)) to fill a field".to_owned()
                    );
                }
                Some(regex)
            }
            (_, Some(_)) => {
                return Err("a pattern is only read with format \"regex\"".to_owned());
            }
            (_, None) => None,
        };
        Ok(Self {
            format: spec.format,
            pattern,
            fields: spec
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    /// One line (or a multiline record, lines joined by `\n`) as a record.
    /// Whether [`Self::parse`] is [`causeway_model::lenient::parse_line`]
    /// alone (causeway's JSON lines, no field mapping): its lines can then
    /// be sent as they are, for the collector to read the same way.
    pub fn reads_lines_as_they_are(&self) -> bool {
        self.format == Format::Json && self.fields.is_empty()
    }

    pub fn parse(&self, line: &str, fallback_service: &str, read_at: Timestamp) -> Record {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        match self.object(line) {
            Ok(object) => self.parse_fields(object, fallback_service, read_at),
            Err(reason) => Record::malformed(read_at, fallback_service, cut_raw(line), reason),
        }
    }

    /// Whether a line is one JSON object (every format but logfmt and
    /// regex): then an over-long line can still be read for its fields.
    pub fn reads_json(&self) -> bool {
        !matches!(self.format, Format::Logfmt | Format::Regex)
    }

    /// Maps a line already read as a JSON object onto a record, as
    /// [`Self::parse`] does after reading the line.
    pub fn parse_fields(
        &self,
        object: Map<String, Value>,
        fallback_service: &str,
        read_at: Timestamp,
    ) -> Record {
        let mut object = match self.format {
            Format::TracingJson => tracing_json(object),
            Format::Bunyan => bunyan(object),
            Format::Logstash => logstash(object),
            Format::PythonJson => python_json(object),
            Format::Json | Format::Logfmt | Format::Regex => object,
        };
        for (from, to) in &self.fields {
            if let Some(value) = take_path(&mut object, from) {
                object.insert(to.clone(), value);
            }
        }
        parse_object(object, fallback_service, read_at)
    }

    /// The line as a JSON object, or why it is not one in this format.
    fn object(&self, line: &str) -> Result<Map<String, Value>, String> {
        match self.format {
            Format::Logfmt => logfmt(line),
            Format::Regex => {
                let Some(pattern) = &self.pattern else {
                    return Err("no pattern".to_owned());
                };
                matched(pattern, line)
            }
            _ => match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(fields)) => Ok(fields),
                Ok(other) => Err(format!("not a JSON object but {}", kind(&other))),
                Err(error) => Err(format!("not JSON: {error}")),
            },
        }
    }
}

/// Removes the value at `path`: a key of `object`, or else a dotted path
/// through nested objects (`context.orderId`).
fn take_path(object: &mut Map<String, Value>, path: &str) -> Option<Value> {
    if let Some(value) = object.remove(path) {
        return Some(value);
    }
    let (head, rest) = path.split_once('.')?;
    match object.get_mut(head)? {
        Value::Object(inner) => take_path(inner, rest),
        _ => None,
    }
}

/// Moves `from` to `to` unless `to` is there already.
fn rename(object: &mut Map<String, Value>, from: &str, to: &str) {
    if !object.contains_key(to)
        && let Some(value) = object.remove(from)
    {
        object.insert(to.to_owned(), value);
    }
}

/// Sets `key` to `value` unless it is there already.
fn fill(object: &mut Map<String, Value>, key: &str, value: Value) {
    object.entry(key.to_owned()).or_insert(value);
}

/// tracing-subscriber's JSON: the event's `fields` (with `message`) to the
/// top; then what the current span (`span`) and its parents (`spans`,
/// outermost first) carry fills what the event did not say, innermost
/// first. `target`, `span` and `spans` stay as attributes.
fn tracing_json(mut object: Map<String, Value>) -> Map<String, Value> {
    if let Some(Value::Object(fields)) = object.remove("fields") {
        for (key, value) in fields {
            object.insert(key, value);
        }
    }
    let mut spans: Vec<Map<String, Value>> = Vec::new();
    if let Some(Value::Object(span)) = object.get("span") {
        spans.push(span.clone());
    }
    if let Some(Value::Array(list)) = object.get("spans") {
        spans.extend(list.iter().rev().filter_map(|s| s.as_object().cloned()));
    }
    for span in spans {
        for (key, value) in span {
            if key != "name" {
                fill(&mut object, &key, value);
            }
        }
    }
    object
}

/// Bunyan and pino: `name` is the service, `hostname` the instance, and
/// `err` (their error serializer's object) gives the error.
fn bunyan(mut object: Map<String, Value>) -> Map<String, Value> {
    rename(&mut object, "name", "service");
    rename(&mut object, "hostname", "instance");
    if let Some(Value::Object(err)) = object.get("err") {
        let kind = err.get("name").or_else(|| err.get("type")).cloned();
        let message = err.get("message").cloned();
        if let Some(kind) = kind {
            fill(&mut object, "error_type", kind);
        }
        if let Some(message) = message {
            fill(&mut object, "error_message", message);
        }
    }
    object
}

/// logstash-logback-encoder: `HOSTNAME` is the instance; the first line of
/// `stack_trace` (`java.lang.IllegalStateException: no stock`) the error.
fn logstash(mut object: Map<String, Value>) -> Map<String, Value> {
    rename(&mut object, "HOSTNAME", "instance");
    if let Some(Value::String(trace)) = object.get("stack_trace") {
        let first = trace.lines().next().unwrap_or_default().to_owned();
        error_from_line(&mut object, &first);
    }
    object
}

/// python-json-logger: `levelname` is the level, `asctime` the time
/// (`2026-11-28 01:15:52,521`, read as UTC), and the last line of
/// `exc_info` (`KeyError: 'sku'`) the error.
fn python_json(mut object: Map<String, Value>) -> Map<String, Value> {
    rename(&mut object, "levelname", "level");
    rename(&mut object, "asctime", "timestamp");
    if let Some(Value::String(trace)) = object.get("exc_info") {
        let last = trace.lines().last().unwrap_or_default().to_owned();
        error_from_line(&mut object, &last);
    }
    object
}

/// `Type: message` (or a lone `Type`) as the error, where not given.
fn error_from_line(object: &mut Map<String, Value>, line: &str) {
    let line = line.trim();
    if line.is_empty() {
        return;
    }
    let (kind, message) = match line.split_once(": ") {
        Some((kind, message)) => (kind, Some(message)),
        None => (line, None),
    };
    fill(object, "error_type", Value::String(kind.to_owned()));
    if let Some(message) = message {
        fill(object, "error_message", Value::String(message.to_owned()));
    }
}

/// A logfmt line: `key=value` pairs apart by spaces, a value quoted with
/// `"` when it holds spaces (`\"` and `\\` inside), a bare key standing
/// for `true`.
fn logfmt(line: &str) -> Result<Map<String, Value>, String> {
    let mut object = Map::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut key_end = line.len();
        let mut has_value = false;
        while let Some(&(i, c)) = chars.peek() {
            if c == '=' {
                key_end = i;
                has_value = true;
                chars.next();
                break;
            }
            if c.is_whitespace() {
                key_end = i;
                break;
            }
            chars.next();
        }
        let key = &line[start..key_end];
        if key.is_empty() {
            return Err(format!("not logfmt: a value with no key at byte {start}"));
        }
        if key.contains('"') {
            return Err(format!("not logfmt: a quote in the key {key:?}"));
        }
        if !has_value {
            object.insert(key.to_owned(), Value::Bool(true));
            continue;
        }
        let value = if chars.peek().is_some_and(|&(_, c)| c == '"') {
            chars.next();
            let mut value = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, 't')) => value.push('\t'),
                        Some((_, other)) => value.push(other),
                        None => break,
                    },
                    other => value.push(other),
                }
            }
            if !closed {
                return Err(format!("not logfmt: the value of {key:?} is never closed"));
            }
            value
        } else {
            let mut value = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value
        };
        object.insert(key.to_owned(), Value::String(value));
    }
    if object.is_empty() {
        return Err("not logfmt: no key=value pair".to_owned());
    }
    Ok(object)
}

/// The named groups of `pattern` matched at the start of `text` (a
/// multiline record: its first line; the lines after it are joined to the
/// `message` group, or kept as `message` when there is none).
fn matched(pattern: &Regex, text: &str) -> Result<Map<String, Value>, String> {
    let (first, rest) = match text.split_once('\n') {
        Some((first, rest)) => (first, Some(rest)),
        None => (text, None),
    };
    let captures = pattern
        .captures(first)
        .filter(|c| c.get(0).is_some_and(|m| m.start() == 0))
        .ok_or_else(|| "does not match the source's pattern".to_owned())?;
    let mut object = Map::new();
    for name in pattern.capture_names().flatten() {
        if let Some(value) = captures.name(name) {
            object.insert(name.to_owned(), Value::String(value.as_str().to_owned()));
        }
    }
    if let Some(rest) = rest {
        let message = match object.get("message") {
            Some(Value::String(message)) => format!("{message}\n{rest}"),
            _ => rest.to_owned(),
        };
        object.insert("message".to_owned(), Value::String(message));
    }
    Ok(object)
}

/// Joins the lines of a record that spans several (a stack trace): a line
/// matching the start pattern begins a record, any other is added to the
/// record before it. A record is complete when the next one starts, or
/// when no line came for the timeout.
#[derive(Debug, Clone)]
pub struct Multiline {
    start: Regex,
    timeout: Duration,
    max_bytes: usize,
    pending: Option<Pending>,
}

#[derive(Debug, Clone)]
struct Pending {
    text: String,
    lines: usize,
    /// The offset just past its last line.
    end: u64,
    /// Bytes left out past `max_bytes`.
    cut: usize,
    last_line_at: Instant,
}

/// A record [`Multiline`] completed: its text and the offset just past its
/// last line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub text: String,
    pub end: u64,
}

impl Multiline {
    /// `start` is the start pattern; records longer than `max_bytes` keep
    /// their first `max_bytes` and a marker saying how much was left out.
    pub fn new(start: &str, timeout: Duration, max_bytes: usize) -> Result<Self, String> {
        Ok(Self {
            start: Regex::new(start).map_err(|e| format!("multiline_start: {e}"))?,
            timeout,
            max_bytes,
            pending: None,
        })
    }

    /// Takes one line (without its line ending) ending at offset `end`;
    /// returns the record it completed, if it starts a new one.
    pub fn push(&mut self, line: &str, end: u64, now: Instant) -> Option<Joined> {
        let starts = self.start.is_match(line);
        if let Some(pending) = &mut self.pending
            && !starts
            && pending.lines < MAX_MULTILINE_LINES
        {
            if pending.cut > 0 || pending.text.len() + 1 + line.len() > self.max_bytes {
                pending.cut += 1 + line.len();
            } else {
                pending.text.push('\n');
                pending.text.push_str(line);
            }
            pending.lines += 1;
            pending.end = end;
            pending.last_line_at = now;
            return None;
        }
        let done = self.take();
        self.pending = Some(Pending {
            text: line.to_owned(),
            lines: 1,
            end,
            cut: 0,
            last_line_at: now,
        });
        done
    }

    /// The waiting record, once no line came for the timeout.
    pub fn flush_if_due(&mut self, now: Instant) -> Option<Joined> {
        let due = self
            .pending
            .as_ref()
            .is_some_and(|p| now.duration_since(p.last_line_at) >= self.timeout);
        if due { self.take() } else { None }
    }

    /// When the waiting record will be due, if one waits.
    pub fn due_at(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.last_line_at + self.timeout)
    }

    /// The waiting record, now (the source ends).
    pub fn take(&mut self) -> Option<Joined> {
        let pending = self.pending.take()?;
        let mut text = pending.text;
        if pending.cut > 0 {
            text.push_str(&format!("\n[cut: {} more bytes]", pending.cut));
        }
        Some(Joined {
            text,
            end: pending.end,
        })
    }
}

#[cfg(test)]
mod tests {
    use causeway_model::{Level, Record};

    use super::*;

    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/samples");

    fn read_at() -> Timestamp {
        Timestamp::from_micros(1_000_000)
    }

    fn parser(spec: ParseSpec) -> LineParser {
        LineParser::new(&spec).unwrap()
    }

    /// Every line of a sample file, read as `format`.
    fn sample(file: &str, spec: ParseSpec) -> Vec<Record> {
        let text = std::fs::read_to_string(format!("{SAMPLES}/{file}")).unwrap();
        let parser = parser(spec);
        text.lines()
            .map(|line| parser.parse(line, "from-file", read_at()))
            .collect()
    }

    /// A source of causeway's JSON lines with no mapping sends its lines
    /// raw, for the collector to parse with `parse_line`: that is only
    /// right if this parser is `parse_line`, whatever the line.
    #[test]
    fn only_plain_json_lines_go_out_raw_and_they_read_as_parse_line_reads_them() {
        let json = parser(ParseSpec::default());
        assert!(json.reads_lines_as_they_are());
        let mut mapped = ParseSpec::default();
        mapped
            .fields
            .insert("orderId".into(), "correlation_id".into());
        assert!(!parser(mapped).reads_lines_as_they_are());
        for other in [Format::TracingJson, Format::Bunyan, Format::Logfmt] {
            assert!(!parser(format(other)).reads_lines_as_they_are());
        }
        let mut lines: Vec<String> = [
            "bunyan.jsonl",
            "pino.jsonl",
            "tracing-json.jsonl",
            "python-json-logger.jsonl",
            "logfmt-structlog.log",
        ]
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(format!("{SAMPLES}/{file}")).unwrap();
            text.lines().map(str::to_owned).collect::<Vec<_>>()
        })
        .collect();
        lines.extend(["[1,2]", "{\"message\":", "\"text\"", "{}\r"].map(str::to_owned));
        for line in &lines {
            assert_eq!(
                json.parse(line, "from-file", read_at()),
                causeway_model::lenient::parse_line(line, "from-file", read_at()),
                "{line}"
            );
        }
    }

    fn format(format: Format) -> ParseSpec {
        ParseSpec {
            format,
            ..ParseSpec::default()
        }
    }

    fn flow(record: &Record) -> &str {
        record.correlation_id.as_ref().map_or("", |c| c.as_str())
    }

    #[test]
    fn tracing_subscriber_json_lifts_fields_and_fills_from_its_spans() {
        for file in ["tracing-json.jsonl", "tracing-json-flat.jsonl"] {
            let records = sample(file, format(Format::TracingJson));
            assert_eq!(records.len(), 4);
            let [received, slow, failed, outside] = records.as_slice() else {
                unreachable!()
            };
            assert!(records.iter().all(|r| r.malformed.is_none()), "{file}");
            assert_eq!(received.message, "order received");
            assert_eq!(received.event_type.as_deref(), Some("OrderPlaced"));
            // The span's fields fill what the event lacks ...
            assert_eq!(flow(received), "order-1234");
            assert_eq!(received.event_id.as_ref().unwrap().as_str(), "evt-3");
            // ... and the event's own win.
            assert_eq!(flow(slow), "order-1235");
            assert_eq!(slow.level, Level::Warn);
            assert_eq!(slow.attributes["retry"], 2);
            assert_eq!(failed.level, Level::Error);
            assert_eq!(outside.correlation_id, None);
            assert_eq!(outside.attributes["target"], "tsj");
            let written = received.attributes.get("timestamp");
            assert_eq!(written, None, "the time is read, not kept as an attribute");
            assert!(
                received
                    .timestamp
                    .to_string()
                    .starts_with("2026-11-28T01:16:22.")
            );
            assert_eq!(received.service, "from-file");
        }
    }

    #[test]
    fn bunyan_and_pino_name_the_service_instance_and_error() {
        let records = sample("bunyan.jsonl", format(Format::Bunyan));
        let [booked, slow, failed, notified] = records.as_slice() else {
            panic!("{records:?}")
        };
        assert_eq!(booked.service, "shipping");
        assert_eq!(booked.instance.as_deref(), Some("vm"));
        assert_eq!(booked.message, "shipment booked");
        assert_eq!(booked.level, Level::Info);
        assert_eq!(flow(booked), "order-1234");
        assert_eq!(booked.attributes["carrier"], "dhl");
        assert_eq!(slow.level, Level::Warn);
        assert_eq!(failed.level, Level::Error);
        assert_eq!(failed.error_type.as_deref(), Some("Error"));
        assert_eq!(
            failed.error_message.as_deref(),
            Some("label printer offline")
        );
        assert!(
            failed.attributes["err"]["stack"]
                .as_str()
                .unwrap()
                .contains("at ")
        );
        assert_eq!(notified.level, Level::Debug);
        assert_eq!(notified.attributes["component"], "webhook");
        assert_eq!(booked.timestamp.to_string(), "2026-11-28T01:15:56.079000Z");

        let pino = sample("pino.jsonl", format(Format::Bunyan));
        assert_eq!(pino[0].message, "stock reserved");
        assert_eq!(pino[0].timestamp.as_micros(), 1_795_828_552_709_000);
        assert_eq!(pino[1].error_type.as_deref(), Some("Error"));
        assert_eq!(pino[1].error_message.as_deref(), Some("out of stock"));
    }

    #[test]
    fn logstash_json_reads_its_names_and_the_stack_traces_first_line() {
        let mut spec = format(Format::Logstash);
        spec.fields
            .insert("correlationId".into(), "correlation_id".into());
        let records = sample("logstash-logback.jsonl", spec);
        let [placed, failed] = records.as_slice() else {
            panic!("{records:?}")
        };
        assert_eq!(placed.message, "order placed");
        assert_eq!(placed.level, Level::Info);
        assert_eq!(flow(placed), "order-1234");
        assert_eq!(placed.instance.as_deref(), Some("orders-7d9f"));
        assert_eq!(
            placed.attributes["logger_name"],
            "com.example.orders.OrderService"
        );
        assert_eq!(placed.timestamp.to_string(), "2026-11-28T01:20:31.123000Z");
        assert_eq!(
            failed.error_type.as_deref(),
            Some("java.lang.IllegalStateException")
        );
        assert_eq!(failed.error_message.as_deref(), Some("no stock for A-7"));
    }

    #[test]
    fn python_json_logger_reads_levelname_asctime_and_exc_info() {
        let records = sample("python-json-logger.jsonl", format(Format::PythonJson));
        let [authorized, declined, failed, iso] = records.as_slice() else {
            panic!("{records:?}")
        };
        assert_eq!(authorized.level, Level::Info);
        assert_eq!(authorized.message, "payment authorized");
        assert_eq!(
            authorized.timestamp.to_string(),
            "2026-11-28T01:15:52.521000Z"
        );
        assert_eq!(authorized.attributes["name"], "payment");
        assert_eq!(authorized.attributes["amount"], 42.5);
        assert_eq!(authorized.event_id.as_ref().unwrap().as_str(), "evt-7");
        assert_eq!(declined.level, Level::Warn);
        assert_eq!(failed.level, Level::Error);
        assert_eq!(failed.error_type.as_deref(), Some("ZeroDivisionError"));
        assert_eq!(failed.error_message.as_deref(), Some("division by zero"));
        // `timestamp=True` writes an ISO time, which wins over `asctime`.
        assert_eq!(iso.timestamp.to_string(), "2026-11-28T01:15:52.521672Z");
        assert_eq!(flow(iso), "order-1237");
    }

    #[test]
    fn logfmt_reads_quoted_and_bare_values() {
        let mut spec = format(Format::Logfmt);
        spec.fields.insert("event".into(), "message".into());
        let records = sample("logfmt-structlog.log", spec);
        let [reserved, low, failed] = records.as_slice() else {
            panic!("{records:?}")
        };
        assert_eq!(reserved.message, "stock reserved");
        assert_eq!(flow(reserved), "order-1234");
        assert_eq!(reserved.attributes["qty"], "2");
        assert_eq!(low.level, Level::Warn);
        assert_eq!(low.attributes["note"], "only 1 left, reorder");
        assert_eq!(failed.error_type.as_deref(), Some("OutOfStock"));
        assert_eq!(
            reserved.timestamp.to_string(),
            "2026-11-28T01:16:29.384831Z"
        );

        let parse = |line| logfmt(line).map(Value::Object);
        assert_eq!(
            parse(r#"a=1 b="x \"y\" z" flag c="#).unwrap(),
            serde_json::json!({"a": "1", "b": "x \"y\" z", "flag": true, "c": ""})
        );
        assert!(parse(r#"a="open"#).unwrap_err().contains("never closed"));
        assert!(parse("=x").unwrap_err().contains("no key"));
        assert!(parse("   ").unwrap_err().contains("no key=value"));
    }

    #[test]
    fn a_regex_fills_fields_and_a_multiline_traceback_joins_its_record() {
        let spec = ParseSpec {
            format: Format::Regex,
            pattern: Some(
                r"(?P<timestamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) (?P<level>\w+) \[(?P<logger>[^\]]+)\] correlation_id=(?P<correlation_id>\S+) (?P<message>.*)"
                    .into(),
            ),
            multiline_start: Some(r"^\d{4}-\d\d-\d\d ".into()),
            ..ParseSpec::default()
        };
        let parser = parser(spec.clone());
        let text = std::fs::read_to_string(format!("{SAMPLES}/python-text.log")).unwrap();
        let mut joiner = Multiline::new(
            spec.multiline_start.as_deref().unwrap(),
            Duration::from_secs(1),
            1 << 20,
        )
        .unwrap();
        let now = Instant::now();
        let mut end = 0;
        let mut joined = Vec::new();
        for line in text.lines() {
            end += line.len() as u64 + 1;
            joined.extend(joiner.push(line, end, now));
        }
        assert_eq!(joiner.flush_if_due(now), None, "not due yet");
        joined.extend(joiner.flush_if_due(now + Duration::from_secs(1)));
        assert_eq!(joined.last().unwrap().end, text.len() as u64);
        let records: Vec<Record> = joined
            .iter()
            .map(|j| parser.parse(&j.text, "orders", read_at()))
            .collect();
        let [placed, rejected, shipped] = records.as_slice() else {
            panic!("{records:?}")
        };
        assert_eq!(placed.message, "order placed");
        assert_eq!(placed.level, Level::Info);
        assert_eq!(placed.attributes["logger"], "orders");
        assert_eq!(placed.timestamp.to_string(), "2026-11-28T01:16:29.439000Z");
        assert_eq!(flow(rejected), "order-1235");
        assert!(rejected.message.starts_with("order rejected\nTraceback"));
        assert!(rejected.message.ends_with("KeyError: 'sku'"));
        assert_eq!(flow(shipped), "order-1236");

        let unmatched = parser.parse("not a log line", "orders", read_at());
        let malformed = unmatched.malformed.unwrap();
        assert_eq!(malformed.raw, "not a log line");
        assert!(malformed.reason.contains("pattern"));
    }

    #[test]
    fn a_long_multiline_record_is_cut_with_a_marker_and_keeps_its_end() {
        let mut joiner = Multiline::new("^start", Duration::from_secs(1), 16).unwrap();
        let now = Instant::now();
        assert_eq!(joiner.push("start 1", 8, now), None);
        assert_eq!(joiner.push("  continued", 20, now), None);
        assert_eq!(joiner.push("  more", 27, now), None);
        let done = joiner.push("start 2", 35, now).unwrap();
        assert_eq!(done.text, "start 1\n[cut: 19 more bytes]");
        assert_eq!(done.end, 27);
        assert_eq!(joiner.take().unwrap().end, 35);
    }

    #[test]
    fn settings_that_cannot_work_are_refused_with_the_reason() {
        let regex_without = format(Format::Regex);
        assert!(
            LineParser::new(&regex_without)
                .unwrap_err()
                .contains("needs a pattern")
        );
        let unnamed = ParseSpec {
            pattern: Some(r"(\w+)".into()),
            ..format(Format::Regex)
        };
        assert!(
            LineParser::new(&unnamed)
                .unwrap_err()
                .contains("named group")
        );
        let broken = ParseSpec {
            pattern: Some(r"(?P<message>".into()),
            ..format(Format::Regex)
        };
        assert!(
            LineParser::new(&broken)
                .unwrap_err()
                .starts_with("pattern:")
        );
        let stray = ParseSpec {
            pattern: Some(r"(?P<message>.*)".into()),
            ..format(Format::Logfmt)
        };
        assert!(LineParser::new(&stray).is_err());
    }

    #[test]
    fn a_mapping_renames_keys_and_dotted_paths() {
        let mut spec = format(Format::Json);
        spec.fields
            .insert("correlationId".into(), "correlation_id".into());
        spec.fields.insert("ctx.eventId".into(), "event_id".into());
        let record = parser(spec).parse(
            r#"{"msg":"hi","correlationId":"order-9","ctx":{"eventId":"evt-1","user":"u"}}"#,
            "svc",
            read_at(),
        );
        assert_eq!(flow(&record), "order-9");
        assert_eq!(record.event_id.unwrap().as_str(), "evt-1");
        assert_eq!(record.attributes["ctx"], serde_json::json!({"user": "u"}));
    }
}
