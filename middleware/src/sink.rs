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
use std::sync::Mutex;

use causeway_model::Record;

/// A destination for records.
pub trait RecordSink: Send + Sync + 'static {
    /// Writes one record. Errors are swallowed after being counted by the
    /// sink: tracing must never fail the service.
    fn write(&self, record: &Record);
}

fn line(record: &Record) -> Vec<u8> {
    let mut line = record.to_json_line().into_bytes();
    line.push(b'\n');
    line
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
    fn write(&self, record: &Record) {
        if let Ok(mut writer) = self.writer.lock() {
            let _ = writer
                .write_all(&line(record))
                .and_then(|()| writer.flush());
        }
    }
}

/// One append-only file per service: `<dir>/<service>.log`. Service names
/// are reduced to `[A-Za-z0-9._-]` so a name cannot escape the directory.
#[derive(Debug)]
pub struct DirectorySink {
    dir: PathBuf,
    files: Mutex<HashMap<String, File>>,
}

impl DirectorySink {
    /// Creates the directory if needed.
    pub fn new(dir: impl AsRef<Path>) -> io::Result<Self> {
        std::fs::create_dir_all(dir.as_ref())?;
        Ok(Self {
            dir: dir.as_ref().to_owned(),
            files: Mutex::new(HashMap::new()),
        })
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
    fn write(&self, record: &Record) {
        let Ok(mut files) = self.files.lock() else {
            return;
        };
        if !files.contains_key(&record.service) {
            let path = self.path_for(&record.service);
            match OpenOptions::new().create(true).append(true).open(&path) {
                Ok(file) => {
                    files.insert(record.service.clone(), file);
                }
                Err(_) => return,
            }
        }
        if let Some(file) = files.get_mut(&record.service) {
            let _ = file.write_all(&line(record));
        }
    }
}
