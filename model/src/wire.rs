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

use serde::{Deserialize, Serialize};

use crate::record::Record;
use crate::timestamp::Timestamp;

/// The batch format version this build writes and reads.
pub const BATCH_VERSION: u32 = 1;
/// The HTTP content type of a batch.
pub const CONTENT_TYPE: &str = "application/x-ndjson";
/// The longest raw line kept in a malformed record, in bytes.
pub const MAX_RAW_LEN: usize = 16 * 1024;
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
        causeway_batch: BATCH_VERSION,
        source: source.to_owned(),
        count: records.len(),
        streams: streams.to_vec(),
        positions: positions.to_vec(),
    };
    let mut out = serde_json::to_string(&header).unwrap_or_default();
    out.push('\n');
    for record in records {
        out.push_str(&record.to_json_line());
        out.push('\n');
    }
    out
}

/// Cuts `raw` to [`MAX_RAW_LEN`] bytes on a character boundary, with a
/// marker saying how much was cut.
pub fn cut_raw(raw: &str) -> String {
    cut_text(raw, MAX_RAW_LEN)
}

/// Cuts `text` to `max` bytes on a character boundary, with a marker saying
/// how much was cut.
pub fn cut_text(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let kept = crate::text::char_prefix(text, max);
    format!("{kept}…[cut {} bytes]", text.len() - kept.len())
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
    if version != u64::from(BATCH_VERSION) {
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
    let mut malformed_lines = Vec::new();
    let records: Vec<Record> = lines
        .by_ref()
        .take(max_records)
        .map(|(i, line)| {
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
                "{\"causeway_batch\":2,\"source\":\"x\",\"count\":0}\n",
                Timestamp::now()
            ),
            Err(BatchError::Version { found: 2 })
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
