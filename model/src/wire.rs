//! The wire batch between agent and collector: versioned NDJSON.
//!
//! The first line is a header object, `{"causeway_batch":1,"source":"...",
//! "count":N}`; each following line is one [`Record`]. The version lets a
//! collector refuse a batch it cannot read instead of misreading it; the
//! count catches a truncated body. A record line that does not parse is
//! kept as a malformed record with the reason, never dropped.
//!
//! A sender that reads its records from streams (the agent: files) names
//! where each record came from, so that the collector indexes a record
//! sent twice only once: `"streams"` lists the streams, each named so that
//! a name never stands for other content (host and file fingerprint), and
//! `"positions"` holds, per record in order, `[stream index, offset just
//! past the record]`. Offsets grow along a stream; the collector keeps the
//! highest one it indexed per stream and drops what is at or below it.
//!
//! Version 2 adds raw lines: a sender that reads log lines already in
//! causeway's shape (or close to it) may send them as they were written
//! instead of parsing and writing them again. The header's `"raw"` then
//! says when they were read and, per stream, the service of a line that
//! names none; the receiver reads each raw line with
//! [`crate::lenient::parse_line`], exactly as the sender would have.
//! `"raw"."records"` lists the record lines (by their index among record
//! lines) that are records all the same. A batch without raw lines is
//! written as version 1, which every collector reads.

use serde::{Deserialize, Serialize};

pub use crate::text::{MAX_RAW_LEN, cut_raw, cut_text};

use crate::record::Record;
use crate::timestamp::Timestamp;

/// The newest batch format version this build writes and reads: a batch
/// with raw lines. One without is written as version 1.
pub const BATCH_VERSION: u32 = 2;
/// The oldest batch format version this build reads.
pub const OLDEST_BATCH_VERSION: u32 = 1;
/// The HTTP content type of a batch.
pub const CONTENT_TYPE: &str = "application/x-ndjson";
/// The longest `source` a batch header keeps, in bytes; longer is cut.
pub const MAX_SOURCE_LEN: usize = 256;
/// The longest reason kept in a malformed record, in bytes: a parser's
/// message can quote the whole bad value.
pub const MAX_REASON_LEN: usize = 512;
/// The most records [`decode`] takes in one batch. A record costs a few
/// hundred bytes in memory even when its line is two bytes long, so the
/// count, not only the body's size, bounds what a batch decodes into.
pub const DEFAULT_MAX_BATCH_RECORDS: usize = 10_000;

/// The first line of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchHeader {
    pub causeway_batch: u32,
    /// Who sent the batch (agent name and host), for diagnostics.
    pub source: String,
    /// How many record lines follow.
    pub count: usize,
    /// The streams the records were read from (see the module docs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<String>,
    /// Per record, where it came from: none, or one per record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub positions: Vec<Position>,
    /// Present when some record lines are raw log lines (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawLines>,
}

/// How to read a batch's raw lines (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawLines {
    /// When the lines were read: the time of a line that carries none.
    pub read_at: Timestamp,
    /// Per stream of [`BatchHeader::streams`], the service of a line that
    /// names none.
    pub services: Vec<String>,
    /// The record lines, by index among the record lines (from 0, in
    /// increasing order), that are records rather than raw lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<u32>,
}

/// One record line of a batch, as a sender holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A record as its JSON line ([`Entry::record`]): written once, when
    /// the sender makes the entry, then sized and sent as it is.
    Record(String),
    /// A log line as it was written: one line, not blank, without its
    /// newline.
    Raw(String),
}

impl Entry {
    /// `record` as an entry.
    pub fn record(record: &Record) -> Self {
        Self::Record(record.to_json_line())
    }

    /// The line the entry is sent as, without its newline.
    pub fn line(&self) -> &str {
        match self {
            Self::Record(line) | Self::Raw(line) => line,
        }
    }
}

/// Where a record came from: the index of its stream in
/// [`BatchHeader::streams`] and the offset just past it in that stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position(pub u32, pub u64);

/// Why a whole batch was refused. Individual bad lines do not refuse a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("empty batch: the header line is missing")]
    Empty,
    #[error("batch header is not valid: {0}")]
    Header(String),
    #[error("batch version {found} is not supported (this build reads version {BATCH_VERSION})")]
    Version { found: u32 },
    #[error("batch header announces {announced} records but {found} lines follow")]
    Count { announced: usize, found: usize },
    #[error("a batch holds at most {max} records; send smaller batches")]
    TooManyRecords { max: usize },
}

/// Writes a batch: header line, then one line per record.
pub fn encode(source: &str, records: &[Record]) -> String {
    encode_positioned(source, records, &[], &[])
}

/// [`encode`], with where each record came from (`positions` empty or one
/// per record, each naming an entry of `streams`).
pub fn encode_positioned(
    source: &str,
    records: &[Record],
    streams: &[String],
    positions: &[Position],
) -> String {
    let header = BatchHeader {
        causeway_batch: OLDEST_BATCH_VERSION,
        source: source.to_owned(),
        count: records.len(),
        streams: streams.to_vec(),
        positions: positions.to_vec(),
        raw: None,
    };
    let mut out = serde_json::to_string(&header).unwrap_or_default();
    out.push('\n');
    for record in records {
        out.push_str(&record.to_json_line());
        out.push('\n');
    }
    out
}

/// Writes a batch of entries from streams (one position per entry): as
/// version 1 when all are records, else as version 2 with the raw lines'
/// `read_at` and, per stream, `services` (as many as `streams`).
pub fn encode_entries(
    source: &str,
    entries: &[Entry],
    streams: &[String],
    positions: &[Position],
    read_at: Timestamp,
    services: &[String],
) -> String {
    let has_raw = entries.iter().any(|e| matches!(e, Entry::Raw(_)));
    let raw = has_raw.then(|| RawLines {
        read_at,
        services: services.to_vec(),
        records: entries
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, Entry::Record(_)))
            .map(|(i, _)| u32::try_from(i).unwrap_or(u32::MAX))
            .collect(),
    });
    let header = BatchHeader {
        causeway_batch: if has_raw {
            BATCH_VERSION
        } else {
            OLDEST_BATCH_VERSION
        },
        source: source.to_owned(),
        count: entries.len(),
        streams: streams.to_vec(),
        positions: positions.to_vec(),
        raw,
    };
    let lines: usize = entries.iter().map(|e| e.line().len() + 1).sum();
    let mut out = String::with_capacity(lines + 64 + positions.len() * 16);
    out.push_str(&serde_json::to_string(&header).unwrap_or_default());
    out.push('\n');
    for entry in entries {
        out.push_str(entry.line());
        out.push('\n');
    }
    out
}

/// Reads a batch. Record lines that fail to parse become malformed records
/// from `header.source`, stamped `received_at`, each holding its own line
/// (at most [`MAX_RAW_LEN`] bytes) and reason (at most [`MAX_REASON_LEN`]):
/// what one batch can grow into is bounded by its own size. The header's
/// `source` is cut to [`MAX_SOURCE_LEN`] bytes. A batch of more than
/// [`DEFAULT_MAX_BATCH_RECORDS`] records is refused whole.
pub fn decode(
    body: &str,
    received_at: Timestamp,
) -> Result<(BatchHeader, Vec<Record>), BatchError> {
    decode_at_most(body, received_at, DEFAULT_MAX_BATCH_RECORDS)
}

/// [`decode`], refusing a batch of more than `max_records` records (by its
/// header or by its lines) before decoding them.
pub fn decode_at_most(
    body: &str,
    received_at: Timestamp,
    max_records: usize,
) -> Result<(BatchHeader, Vec<Record>), BatchError> {
    decode_numbered(body, received_at, max_records).map(|d| (d.header, d.records))
}

/// A batch read by [`decode_numbered`].
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub header: BatchHeader,
    pub records: Vec<Record>,
    /// The body's line numbers (from 1, the header's line included) of the
    /// record lines kept as malformed.
    pub malformed_lines: Vec<usize>,
}

/// [`decode_at_most`], saying which lines of the body were malformed.
pub fn decode_numbered(
    body: &str,
    received_at: Timestamp,
    max_records: usize,
) -> Result<Decoded, BatchError> {
    let mut lines = body
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, first) = lines.next().ok_or(BatchError::Empty)?;
    let value: serde_json::Value = serde_json::from_str(first)
        .map_err(|e| BatchError::Header(cut_text(&e.to_string(), MAX_REASON_LEN)))?;
    let version = value
        .get("causeway_batch")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| BatchError::Header("missing \"causeway_batch\" version".into()))?;
    if !(u64::from(OLDEST_BATCH_VERSION)..=u64::from(BATCH_VERSION)).contains(&version) {
        return Err(BatchError::Version {
            found: u32::try_from(version).unwrap_or(u32::MAX),
        });
    }
    let mut header: BatchHeader = serde_json::from_value(value)
        .map_err(|e| BatchError::Header(cut_text(&e.to_string(), MAX_REASON_LEN)))?;
    header.source = crate::text::strip_control(&cut_text(&header.source, MAX_SOURCE_LEN));
    if header.count > max_records {
        return Err(BatchError::TooManyRecords { max: max_records });
    }
    check_positions(&mut header)?;
    check_raw(&mut header, version)?;
    let mut malformed_lines = Vec::new();
    // The next record line that is a record, in a batch with raw lines.
    let mut listed = header.raw.as_ref().map(|raw| raw.records.iter().peekable());
    let records: Vec<Record> = lines
        .by_ref()
        .take(max_records)
        .enumerate()
        .map(|(n, (i, line))| {
            if let (Some(listed), Some(raw)) = (listed.as_mut(), header.raw.as_ref())
                && listed.next_if(|&&r| r as usize == n).is_none()
            {
                let service = header
                    .positions
                    .get(n)
                    .and_then(|p| raw.services.get(p.0 as usize))
                    .map_or("", String::as_str);
                let record = crate::lenient::parse_line(line, service, raw.read_at);
                if record.malformed.is_some() {
                    malformed_lines.push(i + 1);
                }
                return record;
            }
            serde_json::from_str::<Record>(line).unwrap_or_else(|e| {
                malformed_lines.push(i + 1);
                Record::malformed(
                    received_at,
                    header.source.clone(),
                    cut_raw(line),
                    cut_text(&e.to_string(), MAX_REASON_LEN),
                )
            })
        })
        .collect();
    if lines.next().is_some() {
        return Err(BatchError::TooManyRecords { max: max_records });
    }
    if records.len() != header.count {
        return Err(BatchError::Count {
            announced: header.count,
            found: records.len(),
        });
    }
    Ok(Decoded {
        header,
        records,
        malformed_lines,
    })
}

/// Positions name streams that exist, one per record; stream names are
/// cut and cleaned like `source`.
fn check_positions(header: &mut BatchHeader) -> Result<(), BatchError> {
    let bad = |what: &str| Err(BatchError::Header(format!("positions: {what}")));
    if header.positions.is_empty() {
        header.streams.clear();
        return Ok(());
    }
    if header.positions.len() != header.count {
        return bad("there must be one per record");
    }
    if header.streams.len() > header.count {
        return bad("more streams than records");
    }
    if header
        .positions
        .iter()
        .any(|p| p.0 as usize >= header.streams.len())
    {
        return bad("a position names a stream that is not listed");
    }
    for stream in &mut header.streams {
        *stream = crate::text::strip_control(&cut_text(stream, MAX_SOURCE_LEN));
    }
    Ok(())
}

/// Raw lines come only in version 2, from streams: one service per
/// stream (cut and cleaned like `source`), and records listed in
/// increasing order within the batch.
fn check_raw(header: &mut BatchHeader, version: u64) -> Result<(), BatchError> {
    let bad = |what: &str| Err(BatchError::Header(format!("raw: {what}")));
    let Some(raw) = header.raw.as_mut() else {
        return Ok(());
    };
    if version < 2 {
        return bad("raw lines need batch version 2");
    }
    if header.positions.is_empty() && header.count > 0 {
        return bad("raw lines need positions");
    }
    if raw.services.len() != header.streams.len() {
        return bad("there must be one service per stream");
    }
    if raw.records.len() > header.count
        || raw.records.windows(2).any(|w| w[0] >= w[1])
        || raw
            .records
            .last()
            .is_some_and(|&r| r as usize >= header.count)
    {
        return bad("records must be record line indexes, increasing, within the batch");
    }
    for service in &mut raw.services {
        *service = crate::text::strip_control(&cut_text(service, MAX_SOURCE_LEN));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Stage;

    fn record(message: &str) -> Record {
        let mut r = Record::new(
            Timestamp::from_micros(1_700_000_000_000_000),
            "order",
            message,
        );
        r.stage = Stage::Published;
        r
    }

    #[test]
    fn positions_read_back_and_inconsistent_ones_refuse_the_batch() {
        let records = vec![record("a"), record("b")];
        let streams = vec!["host:fp1".to_owned()];
        let positions = [Position(0, 10), Position(0, 25)];
        let body = encode_positioned("agent@host", &records, &streams, &positions);
        let (header, back) = decode(&body, Timestamp::now()).unwrap();
        assert_eq!(
            (header.streams, header.positions),
            (streams.clone(), positions.to_vec())
        );
        assert_eq!(back, records);
        for (streams, positions) in [
            (streams.clone(), vec![Position(0, 10)]),
            (streams.clone(), vec![Position(0, 10), Position(1, 25)]),
            (vec!["a".into(), "b".into(), "c".into()], positions.to_vec()),
        ] {
            let body = encode_positioned("agent@host", &records, &streams, &positions);
            let error = decode(&body, Timestamp::now()).unwrap_err();
            assert!(
                matches!(error, BatchError::Header(ref m) if m.starts_with("positions")),
                "{error}"
            );
        }
    }

    #[test]
    fn raw_lines_read_back_as_the_sender_would_have_parsed_them() {
        let read_at = Timestamp::from_micros(1_700_000_000_000_000);
        let streams = vec!["host:fp1".to_owned(), "host:fp2".to_owned()];
        let services = vec!["checkout".to_owned(), "payment".to_owned()];
        let lines = [
            r#"{"ts":"2023-11-14T22:13:20Z","msg":"order placed","correlation_id":"order-1"}"#,
            r#"{"service":"shipping","message":"parcel sent","level":"WARN"}"#,
            "plain text, not JSON",
        ];
        let entries = vec![
            Entry::Raw(lines[0].to_owned()),
            Entry::record(&record("already a record")),
            Entry::Raw(lines[1].to_owned()),
            Entry::Raw(lines[2].to_owned()),
        ];
        let positions = [
            Position(0, 10),
            Position(0, 20),
            Position(1, 30),
            Position(1, 40),
        ];
        let body = encode_entries(
            "agent@h", &entries, &streams, &positions, read_at, &services,
        );
        let decoded = decode_numbered(&body, Timestamp::from_micros(9), 10).unwrap();
        assert_eq!(decoded.header.causeway_batch, 2);
        assert_eq!(decoded.header.raw.as_ref().unwrap().records, [1]);
        let expected = vec![
            crate::lenient::parse_line(lines[0], "checkout", read_at),
            record("already a record"),
            crate::lenient::parse_line(lines[1], "payment", read_at),
            crate::lenient::parse_line(lines[2], "payment", read_at),
        ];
        assert_eq!(decoded.records, expected);
        assert_eq!(decoded.records[0].service, "checkout");
        assert_eq!(decoded.records[2].service, "shipping");
        assert!(decoded.records[3].malformed.is_some());
        assert_eq!(decoded.malformed_lines, [5], "the body's line of the text");
    }

    #[test]
    fn a_batch_of_records_only_stays_version_1_and_bad_raw_headers_are_refused() {
        let entries = vec![Entry::record(&record("a"))];
        let streams = vec!["s".to_owned()];
        let positions = [Position(0, 5)];
        let body = encode_entries("x", &entries, &streams, &positions, Timestamp::now(), &[]);
        assert_eq!(
            body,
            encode_positioned("x", &[record("a")], &streams, &positions)
        );
        let header = |version: u32, raw: &str| {
            format!(
                "{{\"causeway_batch\":{version},\"source\":\"x\",\"count\":2,\"streams\":[\"s\"],\"positions\":[[0,1],[0,2]],\"raw\":{raw}}}\n{{}}\n{{}}\n"
            )
        };
        let good = r#"{"read_at":"2023-11-14T22:13:20Z","services":["a"],"records":[1]}"#;
        assert!(decode(&header(2, good), Timestamp::now()).is_ok());
        for (version, raw) in [
            (1, good),
            (2, r#"{"read_at":"2023-11-14T22:13:20Z","services":[]}"#),
            (
                2,
                r#"{"read_at":"2023-11-14T22:13:20Z","services":["a"],"records":[1,0]}"#,
            ),
            (
                2,
                r#"{"read_at":"2023-11-14T22:13:20Z","services":["a"],"records":[2]}"#,
            ),
        ] {
            let error = decode(&header(version, raw), Timestamp::now()).unwrap_err();
            assert!(
                matches!(error, BatchError::Header(ref m) if m.starts_with("raw")),
                "{raw}: {error}"
            );
        }
    }

    #[test]
    fn malformed_lines_are_numbered_as_the_body_is() {
        let body = format!(
            "{{\"causeway_batch\":1,\"source\":\"a\",\"count\":3}}\n{}\n\nnot json\n{{}}\n",
            record("ok").to_json_line()
        );
        let decoded = decode_numbered(&body, Timestamp::now(), 10).unwrap();
        assert_eq!(decoded.malformed_lines, [4, 5]);
        assert_eq!(decoded.records.len(), 3);
    }

    #[test]
    fn encode_then_decode_gives_the_same_records() {
        let records = vec![record("a"), record("b")];
        let body = encode("agent@host", &records);
        let (header, back) = decode(&body, Timestamp::now()).unwrap();
        assert_eq!(header.count, 2);
        assert_eq!(back, records);
    }

    #[test]
    fn a_bad_line_is_kept_as_malformed() {
        let body = format!(
            "{{\"causeway_batch\":1,\"source\":\"agent@h\",\"count\":2}}\n{}\nnot json\n",
            record("ok").to_json_line()
        );
        let (_, records) = decode(&body, Timestamp::from_micros(5)).unwrap();
        let bad = records[1].malformed.as_ref().unwrap();
        assert_eq!(bad.raw, "not json");
        assert!(!bad.reason.is_empty());
        assert_eq!(records[1].service, "agent@h");
    }

    #[test]
    fn unsupported_version_and_truncation_are_refused() {
        assert_eq!(
            decode(
                "{\"causeway_batch\":3,\"source\":\"x\",\"count\":0}\n",
                Timestamp::now()
            ),
            Err(BatchError::Version { found: 3 })
        );
        let body = encode("x", &[record("a"), record("b")]);
        let truncated: String = body.lines().take(2).map(|l| format!("{l}\n")).collect();
        assert_eq!(
            decode(&truncated, Timestamp::now()),
            Err(BatchError::Count {
                announced: 2,
                found: 1
            })
        );
        assert_eq!(decode("\n\n", Timestamp::now()), Err(BatchError::Empty));
    }

    #[test]
    fn a_batch_past_the_record_limit_is_refused_before_it_is_decoded() {
        let header =
            |count: usize| format!("{{\"causeway_batch\":1,\"source\":\"a\",\"count\":{count}}}\n");
        assert_eq!(
            decode_at_most(&format!("{}x\nx\nx\n", header(3)), Timestamp::now(), 2),
            Err(BatchError::TooManyRecords { max: 2 })
        );
        // A header that under-announces does not get its lines decoded.
        assert_eq!(
            decode_at_most(&format!("{}x\nx\nx\n", header(2)), Timestamp::now(), 2),
            Err(BatchError::TooManyRecords { max: 2 })
        );
        let (_, records) =
            decode_at_most(&format!("{}x\nx\n", header(2)), Timestamp::now(), 2).unwrap();
        assert_eq!(records.len(), 2);
    }

    /// The reproduction: a 1 MiB `source` and lines that all fail to parse
    /// once grew a 1 MB request into a gigabyte, one copy of the source per
    /// malformed record.
    #[test]
    fn what_a_batch_decodes_into_is_bounded_by_its_own_size() {
        let source = "s".repeat(1 << 20);
        let long_value = format!("{{\"timestamp\":\"{}\"}}", "t".repeat(100_000));
        let mut body = format!("{{\"causeway_batch\":1,\"source\":\"{source}\",\"count\":1001}}\n");
        for _ in 0..1_000 {
            body.push_str("x\n");
        }
        body.push_str(&long_value);
        body.push('\n');
        let (header, records) = decode(&body, Timestamp::from_micros(1)).unwrap();
        assert!(header.source.len() <= MAX_SOURCE_LEN + 32);
        assert!(
            header
                .source
                .ends_with(&format!("[cut {} bytes]", (1 << 20) - MAX_SOURCE_LEN))
        );
        let decoded: usize = records.iter().map(|r| r.to_json_line().len()).sum();
        assert!(
            decoded < body.len() + 1_001 * 1_500,
            "{decoded} bytes decoded from a {} byte body",
            body.len()
        );
        let last = records[1_000].malformed.as_ref().unwrap();
        assert!(
            last.reason.len() <= MAX_REASON_LEN + 32,
            "{}",
            last.reason.len()
        );
        assert!(last.raw.len() <= MAX_RAW_LEN + 32);
    }

    #[test]
    fn cut_raw_marks_what_it_cut() {
        let long = "é".repeat(MAX_RAW_LEN);
        let cut = cut_raw(&long);
        assert!(cut.len() < long.len());
        assert!(cut.ends_with(&format!("[cut {} bytes]", long.len() - MAX_RAW_LEN)));
    }
}
