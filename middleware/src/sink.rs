//! Where records go: one JSON line per record, to a writer or to one file
//! per service in a directory.
//!
//! Each line is written with a single `write_all` so a tailing agent never
//! sees half a record from a concurrent writer in this process. Sinks must
//! not emit `tracing` events themselves (they run inside the layer).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use causeway_model::Record;

/// A destination for records.
pub trait RecordSink: Send + Sync + 'static {
    /// Writes one record: `line` is its JSON with the final newline,
    /// `service` the record's service (for sinks that route by it). Errors
    /// are swallowed: tracing must never fail the service.
    fn write(&self, service: &str, line: &[u8]);
}

/// Writes a whole [`Record`] to a sink (for records not made by the layer).
pub fn write_record(sink: &dyn RecordSink, record: &Record) {
    let mut line = record.to_json_line().into_bytes();
    line.push(b'\n');
    sink.write(&record.service, &line);
}

/// JSON lines to one writer (stdout, a file, a buffer in tests).
#[derive(Debug)]
pub struct JsonLinesSink<W> {
    writer: Mutex<W>,
}

impl<W: Write + Send + 'static> JsonLinesSink<W> {
    pub fn new(writer: W) -> Self {
        Self {
            writer: Mutex::new(writer),
        }
    }
}

impl<W: Write + Send + 'static> RecordSink for JsonLinesSink<W> {
    fn write(&self, _service: &str, line: &[u8]) {
        if let Ok(mut writer) = self.writer.lock() {
            let _ = writer.write_all(line).and_then(|()| writer.flush());
        }
    }
}

/// Keeps the lines in memory, to read back in tests of instrumented code.
/// Clones share the same lines.
#[derive(Debug, Clone, Default)]
pub struct MemorySink(Arc<Mutex<Vec<u8>>>);

impl MemorySink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Every line written so far, as records.
    pub fn records(&self) -> Result<Vec<Record>, serde_json::Error> {
        self.text().lines().map(serde_json::from_str).collect()
    }
}

impl RecordSink for MemorySink {
    fn write(&self, _service: &str, line: &[u8]) {
        if let Ok(mut lines) = self.0.lock() {
            lines.extend_from_slice(line);
        }
    }
}

/// An append-only file that, past `max_bytes`, is renamed to `<path>.1`
/// (older ones shifting to `.2`, ... up to `keep`) and started afresh. The
/// agent follows a renamed file to its end, so rotation loses no record.
#[derive(Debug)]
struct RotatingFile {
    path: PathBuf,
    rotation: Option<Rotation>,
    file: Option<(File, u64)>,
}

/// When to rotate: past `max_bytes`, keeping `keep` old files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub max_bytes: u64,
    pub keep: usize,
}

impl RotatingFile {
    fn new(path: PathBuf, rotation: Option<Rotation>) -> Self {
        Self {
            path,
            rotation,
            file: None,
        }
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self, keep: usize) -> io::Result<()> {
        self.file = None;
        for n in (1..keep).rev() {
            let from = self.numbered(n);
            if from.exists() {
                std::fs::rename(&from, self.numbered(n + 1))?;
            }
        }
        if keep == 0 {
            std::fs::remove_file(&self.path)
        } else {
            std::fs::rename(&self.path, self.numbered(1))
        }
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if let (Some(rotation), Some((_, size))) = (self.rotation, &self.file)
            && *size > 0
            && *size + line.len() as u64 > rotation.max_bytes
        {
            self.rotate(rotation.keep)?;
        }
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            let size = file.metadata()?.len();
            self.file = Some((file, size));
        }
        if let Some((file, size)) = &mut self.file {
            file.write_all(line)?;
            *size += line.len() as u64;
        }
        Ok(())
    }
}

/// JSON lines to one file, rotated by size.
#[derive(Debug)]
pub struct RotatingFileSink {
    file: Mutex<RotatingFile>,
}

impl RotatingFileSink {
    /// Appends to `path`; past `rotation.max_bytes` the file is renamed to
    /// `<path>.1` and a new one started, keeping `rotation.keep` old files.
    pub fn new(path: impl Into<PathBuf>, rotation: Rotation) -> Self {
        Self {
            file: Mutex::new(RotatingFile::new(path.into(), Some(rotation))),
        }
    }
}

impl RecordSink for RotatingFileSink {
    fn write(&self, _service: &str, line: &[u8]) {
        if let Ok(mut file) = self.file.lock() {
            let _ = file.write_line(line);
        }
    }
}

/// One append-only file per service: `<dir>/<service>.log`, optionally
/// rotated by size. Service names are reduced to `[A-Za-z0-9._-]` so a
/// name cannot escape the directory.
#[derive(Debug)]
pub struct DirectorySink {
    dir: PathBuf,
    rotation: Option<Rotation>,
    files: Mutex<HashMap<String, RotatingFile>>,
}

impl DirectorySink {
    /// Creates the directory if needed.
    pub fn new(dir: impl AsRef<Path>) -> io::Result<Self> {
        std::fs::create_dir_all(dir.as_ref())?;
        Ok(Self {
            dir: dir.as_ref().to_owned(),
            rotation: None,
            files: Mutex::new(HashMap::new()),
        })
    }

    /// Rotates each service's file by size.
    pub fn with_rotation(mut self, rotation: Rotation) -> Self {
        self.rotation = Some(rotation);
        self
    }

    /// The file a service's records go to.
    pub fn path_for(&self, service: &str) -> PathBuf {
        let safe: String = service
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let safe = safe.trim_start_matches('.');
        let name = if safe.is_empty() { "unnamed" } else { safe };
        self.dir.join(format!("{name}.log"))
    }
}

impl RecordSink for DirectorySink {
    fn write(&self, service: &str, line: &[u8]) {
        let Ok(mut files) = self.files.lock() else {
            return;
        };
        if !files.contains_key(service) {
            let file = RotatingFile::new(self.path_for(service), self.rotation);
            files.insert(service.to_owned(), file);
        }
        if let Some(file) = files.get_mut(service) {
            let _ = file.write_line(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use causeway_model::Timestamp;

    use super::*;

    #[test]
    fn a_rotating_file_keeps_every_line_across_its_generations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.log");
        let sink = RotatingFileSink::new(
            &path,
            Rotation {
                max_bytes: 400,
                keep: 10,
            },
        );
        for n in 0..20 {
            write_record(
                &sink,
                &Record::new(Timestamp::from_micros(n), "svc", format!("line {n}")),
            );
        }
        let mut generations: Vec<PathBuf> = (1..=10)
            .map(|n| dir.path().join(format!("svc.log.{n}")))
            .filter(|p| p.exists())
            .collect();
        assert!(generations.len() >= 2, "expected rotation to have happened");
        generations.reverse();
        generations.push(path);
        let mut messages = Vec::new();
        for file in generations {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(
                text.len() <= 400,
                "{} is {} bytes",
                file.display(),
                text.len()
            );
            for l in text.lines() {
                messages.push(serde_json::from_str::<Record>(l).unwrap().message);
            }
        }
        let expected: Vec<String> = (0..20).map(|n| format!("line {n}")).collect();
        assert_eq!(messages, expected);
    }

    #[test]
    fn old_generations_beyond_keep_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let sink = DirectorySink::new(dir.path())
            .unwrap()
            .with_rotation(Rotation {
                max_bytes: 150,
                keep: 2,
            });
        for n in 0..30 {
            write_record(
                &sink,
                &Record::new(Timestamp::from_micros(n), "svc", format!("line {n}")),
            );
        }
        assert!(dir.path().join("svc.log.2").exists());
        assert!(!dir.path().join("svc.log.3").exists());
        let last = std::fs::read_to_string(dir.path().join("svc.log")).unwrap();
        assert!(last.contains("line 29"));
    }

    #[test]
    fn service_names_cannot_escape_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let sink = DirectorySink::new(dir.path()).unwrap();
        let path = sink.path_for("../../etc/passwd");
        assert_eq!(path.parent().unwrap(), dir.path());
    }
}
