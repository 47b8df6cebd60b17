//! The wire batch between agent and collector: versioned NDJSON.
//!
//! The first line is a header object, `{"causeway_batch":1,"source":"...",
//! "count":N}`; each following line is one [`Record`]. The version lets a
//! collector refuse a batch it cannot read instead of misreading it; the
//! count catches a truncated body. A record line that does not parse is
//! kept as a malformed record with the reason, never dropped.

use serde::{Deserialize, Serialize};

use crate::record::Record;
use crate::timestamp::Timestamp;

/// The batch format version this build writes and reads.
pub const BATCH_VERSION: u32 = 1;
/// The HTTP content type of a batch.
pub const CONTENT_TYPE: &str = "application/x-ndjson";
/// The longest raw line kept in a malformed record, in bytes.
pub const MAX_RAW_LEN: usize = 16 * 1024;

/// The first line of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchHeader {
    pub causeway_batch: u32,
    /// Who sent the batch (agent name and host), for diagnostics.
    pub source: String,
    /// How many record lines follow.
    pub count: usize,
}

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
}

/// Writes a batch: header line, then one line per record.
pub fn encode(source: &str, records: &[Record]) -> String {
    let header = BatchHeader {
        causeway_batch: BATCH_VERSION,
        source: source.to_owned(),
        count: records.len(),
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
    if raw.len() <= MAX_RAW_LEN {
        return raw.to_owned();
    }
    let mut end = MAX_RAW_LEN;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[cut {} bytes]", &raw[..end], raw.len() - end)
}

/// Reads a batch. Record lines that fail to parse become malformed records
/// from `header.source`, stamped `received_at`.
pub fn decode(
    body: &str,
    received_at: Timestamp,
) -> Result<(BatchHeader, Vec<Record>), BatchError> {
    let mut lines = body.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().ok_or(BatchError::Empty)?;
    let value: serde_json::Value =
        serde_json::from_str(first).map_err(|e| BatchError::Header(e.to_string()))?;
    let version = value
        .get("causeway_batch")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| BatchError::Header("missing \"causeway_batch\" version".into()))?;
    if version != u64::from(BATCH_VERSION) {
        return Err(BatchError::Version {
            found: u32::try_from(version).unwrap_or(u32::MAX),
        });
    }
    let header: BatchHeader =
        serde_json::from_value(value).map_err(|e| BatchError::Header(e.to_string()))?;
    let records: Vec<Record> = lines
        .map(|line| {
            serde_json::from_str::<Record>(line).unwrap_or_else(|e| {
                Record::malformed(
                    received_at,
                    header.source.clone(),
                    cut_raw(line),
                    e.to_string(),
                )
            })
        })
        .collect();
    if records.len() != header.count {
        return Err(BatchError::Count {
            announced: header.count,
            found: records.len(),
        });
    }
    Ok((header, records))
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
    fn cut_raw_marks_what_it_cut() {
        let long = "é".repeat(MAX_RAW_LEN);
        let cut = cut_raw(&long);
        assert!(cut.len() < long.len());
        assert!(cut.ends_with(&format!("[cut {} bytes]", long.len() - MAX_RAW_LEN)));
    }
}
