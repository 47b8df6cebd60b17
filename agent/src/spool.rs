//! A spool: lines that cannot be read again at their source (standard
//! input, pushed over HTTP) written to a file beside the checkpoint, which
//! the tailer then follows like any log file, so they are acknowledged,
//! checkpointed and shipped once, across restarts too.
//!
//! Bounded: past half its bound the spool is renamed `<spool>.1` (the
//! tailer reads the old file to its end through its open handle, as any
//! rotated file) and a new one is started; while the tailer still reads a
//! spool rotated away, the next rotation waits (stdin) or is refused
//! (push: 503), so the two never hold much more than the bound. Blocking
//! I/O.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::stats::Stats;

/// `<checkpoint's name without extension>.<kind>.ndjson`, beside it.
pub(crate) fn path_for(checkpoint: &Path, kind: &str) -> PathBuf {
    let stem = checkpoint
        .file_stem()
        .map_or_else(|| "causeway-agent".into(), |s| s.to_string_lossy());
    checkpoint.with_file_name(format!("{stem}.{kind}.ndjson"))
}

/// `<spool>.1`: where a full spool goes, and the sources read it too (so
/// a rotation is a rename the tailer follows, and what a crash left
/// unshipped there is shipped by the next run).
pub(crate) fn rotated(spool: &Path) -> PathBuf {
    let mut old = spool.to_owned().into_os_string();
    old.push(".1");
    PathBuf::from(old)
}

/// One spool file being written.
#[derive(Debug)]
pub(crate) struct Spool {
    path: PathBuf,
    max_bytes: u64,
    file: File,
    len: u64,
}

impl Spool {
    pub fn open(path: PathBuf, max_bytes: u64) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        Ok(Self {
            path,
            max_bytes,
            file,
            len,
        })
    }

    /// Whether `bytes` more must go to a new spool while the one rotated
    /// away before (`<spool>.1`, followed as a path of its own) is not yet
    /// acknowledged to its end: no room yet.
    pub fn full_for(&self, bytes: u64, stats: &Stats) -> bool {
        if !self.must_rotate(bytes) {
            return false;
        }
        let old = rotated(&self.path);
        let len = fs::metadata(&old).map_or(0, |m| m.len());
        len > 0 && !stats.caught_up(&old, len)
    }

    fn must_rotate(&self, bytes: u64) -> bool {
        self.len > 0 && self.len + bytes > self.max_bytes / 2
    }

    /// Appends whole lines (`data` is cut at newlines; a last line
    /// without one gets one; blank lines are dropped) in one write, and
    /// flushes them to disk when `sync`. The caller has checked
    /// [`Self::full_for`]. Returns the lines written.
    pub fn append(&mut self, data: &[u8], sync: bool) -> io::Result<usize> {
        let mut text = Vec::with_capacity(data.len() + 1);
        let mut lines = 0;
        for line in data.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            text.extend_from_slice(line);
            text.push(b'\n');
            lines += 1;
        }
        if text.is_empty() {
            return Ok(0);
        }
        if self.must_rotate(text.len() as u64) {
            fs::rename(&self.path, rotated(&self.path))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.len = 0;
        }
        // One write: the tailer never sees half a line followed by a
        // newline that is not its own.
        self.file.write_all(&text)?;
        if sync {
            self.file.sync_data()?;
        }
        self.len += text.len() as u64;
        Ok(lines)
    }
}
