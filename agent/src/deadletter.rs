//! The dead-letter file: records the collector refused for good (a batch
//! it cannot read, 400; a single record too large for it, 413), kept on
//! disk so the agent can move on without losing them.
//!
//! One JSON object a line (NDJSON), next to the checkpoint, each with
//! when, the collector's status and reason, the record's stream and
//! offset, and the record itself (`record`), or the log line as it was
//! read when it went out raw (`line`). Bounded: once the file would pass half
//! of its bound it becomes `<file>.1` (replacing the one before) and a new
//! file starts, so the two never hold more than the bound. Every append is
//! flushed to disk before it returns, since the caller then moves the
//! checkpoint past those records. Blocking I/O: run it off the runtime.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use causeway_model::wire::{Entry, Position};
use causeway_model::{Timestamp, char_prefix, strip_control};
use serde_json::json;

/// How much of the collector's reason is kept per record.
const MAX_REASON_LEN: usize = 1024;

/// Where refused records go.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetter {
    path: PathBuf,
    max_bytes: u64,
}

/// Records refused together, and why.
#[derive(Debug)]
pub(crate) struct Refused<'a> {
    pub status: u16,
    pub reason: &'a str,
    pub entries: &'a [Entry],
    pub streams: &'a [String],
    pub positions: &'a [Position],
}

impl DeadLetter {
    pub fn new(path: PathBuf, max_bytes: u64) -> Self {
        Self { path, max_bytes }
    }

    /// `<checkpoint's name without extension>.dead-letter.ndjson`, in the
    /// checkpoint's directory.
    pub fn path_for(checkpoint: &Path) -> PathBuf {
        let stem = checkpoint
            .file_stem()
            .map_or_else(|| "causeway-agent".into(), |s| s.to_string_lossy());
        checkpoint.with_file_name(format!("{stem}.dead-letter.ndjson"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `refused`, one line a record, and flushes it to disk.
    pub fn append(&self, refused: &Refused<'_>) -> io::Result<()> {
        let reason = strip_control(refused.reason);
        let reason = char_prefix(&reason, MAX_REASON_LEN);
        let at = Timestamp::now();
        let mut text = String::new();
        for (entry, position) in refused.entries.iter().zip(refused.positions) {
            let stream = usize::try_from(position.0)
                .ok()
                .and_then(|i| refused.streams.get(i));
            let mut line = json!({
                "at": at,
                "status": refused.status,
                "reason": reason,
                "stream": stream,
                "offset": position.1,
            });
            match entry {
                // A record's line is its JSON: kept as an object.
                Entry::Record(record) => {
                    line["record"] = serde_json::from_str(record).unwrap_or_else(|_| json!(record));
                }
                Entry::Raw(raw) => line["line"] = json!(raw),
            }
            text.push_str(&line.to_string());
            text.push('\n');
        }
        let len = fs::metadata(&self.path).map_or(0, |m| m.len());
        if len > 0 && len + text.len() as u64 > self.max_bytes / 2 {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            fs::rename(&self.path, PathBuf::from(old))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(text.as_bytes())?;
        file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_model::Record;

    fn record(message: &str) -> Record {
        let mut record = Record::malformed(Timestamp::from_micros(1), "svc", "raw", "r");
        record.malformed = None;
        record.message = message.to_owned();
        record
    }

    #[test]
    fn each_record_is_a_line_with_its_status_reason_and_position_and_the_files_stay_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = DeadLetter::path_for(&dir.path().join("agent.checkpoint.json"));
        assert_eq!(
            path.file_name().unwrap(),
            "agent.checkpoint.dead-letter.ndjson"
        );
        let dead = DeadLetter::new(path.clone(), 4096);
        let records = [
            Entry::record(&record("one")),
            Entry::Raw(r#"{"message":"two"}"#.to_owned()),
        ];
        let streams = ["file:1".to_owned()];
        let positions = [Position(0, 10), Position(0, 20)];
        dead.append(&Refused {
            status: 400,
            reason: "bad\u{1b}[31m batch",
            entries: &records,
            streams: &streams,
            positions: &positions,
        })
        .unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["status"], 400);
        assert_eq!(lines[1]["stream"], "file:1");
        assert_eq!(lines[1]["offset"], 20);
        assert_eq!(lines[0]["record"]["message"], "one");
        assert_eq!(lines[1]["line"], r#"{"message":"two"}"#);
        assert!(!lines[0]["reason"].as_str().unwrap().contains('\u{1b}'));

        for _ in 0..50 {
            dead.append(&Refused {
                status: 413,
                reason: "too large",
                entries: &records,
                streams: &streams,
                positions: &positions,
            })
            .unwrap();
        }
        let kept = fs::metadata(&path).unwrap().len()
            + fs::metadata(path.with_extension("ndjson.1")).unwrap().len();
        assert!(kept <= 4096, "{kept}");
    }
}
