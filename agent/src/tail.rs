//! Following files: finding them under the configured paths, noticing
//! rotation and truncation, and reading complete lines into the next
//! batch of records.
//!
//! Files are known by identity (device and inode) and read through a
//! handle kept open, so a file renamed or deleted by rotation is read to
//! its end before it is let go. Only whole lines (ending in `\n`) are read;
//! a partial last line waits for its newline. Offsets move only in
//! [`Tailer::ack`], which must be called only once the collector has
//! acknowledged the batch: nothing here sends, sleeps or retries, and
//! every function does blocking file I/O, so callers run it off the async
//! runtime (`spawn_blocking`).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use causeway_model::wire::MAX_RAW_LEN;
use causeway_model::{Record, Timestamp};
use tracing::{debug, info, warn};

use crate::checkpoint::{Checkpoint, FileEntry, Head};
use crate::config::AgentConfig;
use crate::parse::parse_line;

/// File extensions picked up in a watched directory.
const EXTENSIONS: [&str; 4] = ["log", "json", "jsonl", "ndjson"];
/// How many leading bytes of a file are fingerprinted.
const HEAD_LEN: u64 = 256;
/// How long a rotated-away or deleted file must stay unchanged before its
/// unterminated last line is taken as complete and the file is let go.
const DRAIN_QUIET: Duration = Duration::from_secs(5);
/// Allowance for the batch header line in the byte budget.
const HEADER_BYTES: usize = 128;
/// Read buffer size.
const READ_CHUNK: usize = 64 * 1024;

/// A file's identity: it survives renames, and changes when a path is
/// pointed at a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// How far one file moves once a batch is acknowledged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Advance {
    id: FileId,
    offset: u64,
    /// The fingerprint of the file's start, read *before* its lines, so a
    /// file rewritten in between fails the fingerprint later (a resend)
    /// instead of passing it (a loss).
    head: Head,
}

/// What one poll read: records to send and, per file, the offset that
/// becomes acknowledged once they are.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub records: Vec<Record>,
    pub advances: Vec<Advance>,
    /// A limit was reached: more may be ready right away.
    pub full: bool,
}

impl Batch {
    /// Nothing to send and nothing to acknowledge.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.advances.is_empty()
    }
}

#[derive(Debug)]
enum State {
    /// Found under a configured path.
    Active,
    /// No longer found under any configured path (rotated away or
    /// deleted); read to its end through the open handle, then dropped.
    Draining { quiet_since: Instant },
}

#[derive(Debug)]
struct Tracked {
    path: PathBuf,
    id: FileId,
    file: File,
    /// Acknowledged up to here.
    offset: u64,
    /// Fingerprint of the first acknowledged bytes.
    head: Option<Head>,
    /// Length at the previous poll.
    last_len: u64,
    /// The service of lines that name none.
    service: String,
    state: State,
}

/// The limits of one batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_records: usize,
    pub max_bytes: usize,
}

/// Every followed file and how far it was acknowledged.
#[derive(Debug)]
pub(crate) struct Tailer {
    paths: Vec<PathBuf>,
    max_line_bytes: usize,
    default_service: Option<String>,
    files: Vec<Tracked>,
    /// Checkpoint entries not yet matched to a file.
    resume: Vec<FileEntry>,
    /// Which file the next batch starts with, so that a busy file does not
    /// starve the others.
    next_start: usize,
    /// The last problem reported per path, so it is logged once.
    problems: HashMap<PathBuf, String>,
}

impl Tailer {
    pub fn new(config: &AgentConfig, checkpoint: Checkpoint) -> Self {
        Self {
            paths: config.paths.clone(),
            max_line_bytes: config.max_line_bytes,
            default_service: config.default_service.clone(),
            files: Vec::new(),
            resume: checkpoint.files,
            next_start: 0,
            problems: HashMap::new(),
        }
    }

    /// Looks for new, rotated and truncated files, then reads the next
    /// batch of lines.
    pub fn poll(&mut self, limits: Limits) -> Batch {
        self.refresh();
        self.read_batch(limits)
    }

    /// Marks a sent batch as acknowledged.
    pub fn ack(&mut self, advances: &[Advance]) {
        for advance in advances {
            if let Some(tracked) = self.files.iter_mut().find(|t| t.id == advance.id) {
                tracked.offset = advance.offset;
                tracked.head = Some(advance.head);
            }
        }
    }

    /// The acknowledged state, to persist.
    pub fn checkpoint(&self) -> Checkpoint {
        let files = self
            .files
            .iter()
            .map(|t| FileEntry {
                path: t.path.to_string_lossy().into_owned(),
                dev: t.id.dev,
                inode: t.id.ino,
                offset: t.offset,
                head: t.head,
            })
            .collect();
        Checkpoint::new(files)
    }

    fn report(&mut self, path: &Path, error: &io::Error) {
        let text = error.to_string();
        if self.problems.get(path) != Some(&text) {
            warn!(path = %path.display(), %error, "cannot read log file");
            self.problems.insert(path.to_owned(), text);
        }
    }

    fn resolved(&mut self, path: &Path) {
        if self.problems.remove(path).is_some() {
            info!(path = %path.display(), "log file readable again");
        }
    }

    /// Every file under the configured paths, sorted.
    fn discover(&mut self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for path in self.paths.clone() {
            match fs::metadata(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => self.report(&path, &e),
                Ok(meta) if meta.is_dir() => match fs::read_dir(&path) {
                    Ok(entries) => {
                        self.resolved(&path);
                        for entry in entries.flatten() {
                            let candidate = entry.path();
                            let wanted = candidate
                                .extension()
                                .and_then(|e| e.to_str())
                                .is_some_and(|e| EXTENSIONS.contains(&e));
                            if wanted && fs::metadata(&candidate).is_ok_and(|m| m.is_file()) {
                                found.push(candidate);
                            }
                        }
                    }
                    Err(e) => self.report(&path, &e),
                },
                Ok(meta) if meta.is_file() => found.push(path),
                Ok(_) => {
                    let e = io::Error::new(io::ErrorKind::InvalidInput, "not a file or directory");
                    self.report(&path, &e);
                }
            }
        }
        found.sort();
        found.dedup();
        found
    }

    /// Matches what is on disk now with the files followed so far.
    fn refresh(&mut self) {
        let mut seen = HashSet::new();
        for path in self.discover() {
            let id = match fs::metadata(&path) {
                Ok(meta) => FileId::of(&meta),
                Err(_) => continue, // gone since discovery: next poll
            };
            if let Some(tracked) = self.files.iter_mut().find(|t| t.id == id) {
                if !seen.insert(id) {
                    continue; // the same file under a second path
                }
                if tracked.path != path {
                    info!(from = %tracked.path.display(), to = %path.display(), "log file renamed");
                    tracked.path = path;
                }
                tracked.state = State::Active;
                continue;
            }
            match self.open(&path) {
                Ok(tracked) => {
                    self.resolved(&path);
                    if seen.insert(tracked.id) && !self.files.iter().any(|t| t.id == tracked.id) {
                        self.files.push(tracked);
                    }
                }
                Err(e) => self.report(&path, &e),
            }
        }
        for tracked in &mut self.files {
            if matches!(tracked.state, State::Active) && !seen.contains(&tracked.id) {
                info!(path = %tracked.path.display(), "log file rotated or removed, reading it to its end");
                tracked.state = State::Draining {
                    quiet_since: Instant::now(),
                };
            }
        }
        let mut problems = Vec::new();
        self.files.retain_mut(|tracked| match check(tracked) {
            Ok(keep) => keep,
            Err(e) => {
                problems.push((tracked.path.clone(), e));
                true
            }
        });
        for (path, e) in problems {
            self.report(&path, &e);
        }
    }

    /// Starts following a file found for the first time, where the
    /// checkpoint left it if the checkpoint knows it and it is unchanged.
    fn open(&mut self, path: &Path) -> io::Result<Tracked> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let id = FileId::of(&meta);
        let service = self.default_service.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "unknown".to_owned())
        });
        let mut tracked = Tracked {
            path: path.to_owned(),
            id,
            file,
            offset: 0,
            head: None,
            last_len: meta.len(),
            service,
            state: State::Active,
        };
        let resumed = self
            .resume
            .iter()
            .position(|e| e.dev == id.dev && e.inode == id.ino)
            .map(|i| self.resume.swap_remove(i));
        match resumed {
            Some(entry)
                if entry.offset <= meta.len() && head_matches(&tracked.file, entry.head)? =>
            {
                debug!(path = %path.display(), offset = entry.offset, "resuming log file from the checkpoint");
                tracked.offset = entry.offset;
                tracked.head = entry.head;
            }
            Some(_) => {
                info!(path = %path.display(), "log file changed since the checkpoint, reading it from the start");
            }
            None => debug!(path = %path.display(), "following new log file"),
        }
        Ok(tracked)
    }

    fn read_batch(&mut self, limits: Limits) -> Batch {
        let mut batch = Batch::default();
        let count = self.files.len();
        if count == 0 {
            return batch;
        }
        let mut bytes = HEADER_BYTES;
        let start = self.next_start % count;
        self.next_start = (start + 1) % count;
        let mut problems = Vec::new();
        for k in 0..count {
            if batch.records.len() >= limits.max_records || bytes >= limits.max_bytes {
                batch.full = true;
                break;
            }
            let tracked = &self.files[(start + k) % count];
            let flush_partial = matches!(
                tracked.state,
                State::Draining { quiet_since } if quiet_since.elapsed() >= DRAIN_QUIET
            );
            // The file's first bytes, unless the fingerprint already covers
            // all HEAD_LEN of them.
            let prefix = match tracked.head {
                Some(head) if head.len >= HEAD_LEN => Ok(None),
                _ => read_head(&tracked.file, HEAD_LEN).map(Some),
            };
            let read = read_lines(
                &tracked.file,
                tracked.offset,
                ReadLimits {
                    max_lines: limits.max_records - batch.records.len(),
                    max_bytes: limits.max_bytes - bytes,
                    max_line_bytes: self.max_line_bytes,
                    flush_partial,
                },
            );
            let (read, prefix) = match (read, prefix) {
                (Ok(read), Ok(prefix)) => (read, prefix),
                (Err(e), _) | (_, Err(e)) => {
                    problems.push((tracked.path.clone(), e));
                    continue;
                }
            };
            batch.full |= read.more;
            let read_at = Timestamp::now();
            let mut end = tracked.offset;
            for line in read.lines {
                if let Some(record) = self.to_record(tracked, &line, read_at) {
                    let size = record.to_json_line().len() + 1;
                    if !batch.records.is_empty() && bytes + size > limits.max_bytes {
                        batch.full = true;
                        break;
                    }
                    bytes += size;
                    batch.records.push(record);
                }
                end = line.end;
            }
            if end > tracked.offset {
                let head = match prefix {
                    Some(prefix) => {
                        let len = usize::try_from(end).unwrap_or(usize::MAX).min(prefix.len());
                        Head::of(&prefix[..len])
                    }
                    // `prefix` is only left out when the fingerprint is complete.
                    None => tracked.head.unwrap_or(Head::of(&[])),
                };
                batch.advances.push(Advance {
                    id: tracked.id,
                    offset: end,
                    head,
                });
            }
            if batch.full {
                break;
            }
        }
        for (path, e) in problems {
            self.report(&path, &e);
        }
        batch
    }

    /// `None` for a blank line, which is skipped (but acknowledged).
    fn to_record(&self, tracked: &Tracked, line: &Line, read_at: Timestamp) -> Option<Record> {
        if line.len > self.max_line_bytes as u64 {
            return Some(Record::malformed(
                read_at,
                tracked.service.clone(),
                cut_long_line(&line.bytes, line.len),
                format!("line exceeds {} bytes", self.max_line_bytes),
            ));
        }
        let text = String::from_utf8_lossy(&line.bytes);
        if text.trim().is_empty() {
            return None;
        }
        Some(parse_line(&text, &tracked.service, read_at))
    }
}

/// Notices truncation and replaced content (the fingerprint no longer
/// matches), and lets drained files go. `Ok(false)` means stop following the file.
fn check(tracked: &mut Tracked) -> io::Result<bool> {
    let len = tracked.file.metadata()?.len();
    let changed = len != tracked.last_len;
    if len < tracked.offset {
        info!(path = %tracked.path.display(), len, offset = tracked.offset, "log file truncated, reading it from the start");
        tracked.offset = 0;
        tracked.head = None;
    } else if changed && tracked.offset > 0 && !head_matches(&tracked.file, tracked.head)? {
        info!(path = %tracked.path.display(), "log file content replaced, reading it from the start");
        tracked.offset = 0;
        tracked.head = None;
    }
    if let State::Draining { quiet_since } = &mut tracked.state {
        if changed {
            *quiet_since = Instant::now();
        } else if tracked.offset >= len && quiet_since.elapsed() >= DRAIN_QUIET {
            info!(path = %tracked.path.display(), "rotated log file read to its end");
            return Ok(false);
        }
    }
    tracked.last_len = len;
    Ok(true)
}

fn read_head(file: &File, len: u64) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    PositionedReader { file, pos: 0 }
        .take(len)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// Whether the file still starts with the fingerprinted bytes (true when
/// there is no fingerprint yet).
fn head_matches(file: &File, head: Option<Head>) -> io::Result<bool> {
    let Some(head) = head else {
        return Ok(true);
    };
    Ok(Head::of(&read_head(file, head.len)?) == head)
}

/// The start of an over-long line with the same marker as
/// [`causeway_model::wire::cut_raw`], which cannot be used directly because
/// only the first `max_line_bytes` of the line are ever held in memory.
fn cut_long_line(prefix: &[u8], total_len: u64) -> String {
    let mut kept = &prefix[..prefix.len().min(MAX_RAW_LEN)];
    if let Err(e) = std::str::from_utf8(kept)
        && e.error_len().is_none()
    {
        // Cut inside a character: keep only whole characters.
        kept = &kept[..e.valid_up_to()];
    }
    let cut = total_len.saturating_sub(kept.len() as u64);
    format!("{}…[cut {cut} bytes]", String::from_utf8_lossy(kept))
}

/// Reads with `pread`, so the handle has no shared cursor.
struct PositionedReader<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for PositionedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[derive(Debug, Clone, Copy)]
struct ReadLimits {
    max_lines: usize,
    max_bytes: usize,
    max_line_bytes: usize,
    /// Take an unterminated last line as complete (drained files only).
    flush_partial: bool,
}

/// One line as read: at most `max_line_bytes` of it are kept.
#[derive(Debug)]
struct Line {
    bytes: Vec<u8>,
    /// The line's full length, without the newline.
    len: u64,
    /// The offset just after the line's newline.
    end: u64,
}

#[derive(Debug)]
struct ReadLines {
    lines: Vec<Line>,
    /// Stopped at a limit rather than at the end of the file.
    more: bool,
}

/// Reads complete lines from `start`, until a limit or the last newline.
fn read_lines(file: &File, start: u64, limits: ReadLimits) -> io::Result<ReadLines> {
    let mut reader = BufReader::with_capacity(READ_CHUNK, PositionedReader { file, pos: start });
    let mut lines = Vec::new();
    let mut pos = start;
    let mut consumed = 0usize;
    loop {
        if lines.len() >= limits.max_lines || consumed >= limits.max_bytes {
            return Ok(ReadLines { lines, more: true });
        }
        let mut bytes = Vec::new();
        let mut len = 0u64;
        loop {
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                if len > 0 && limits.flush_partial {
                    lines.push(Line {
                        bytes,
                        len,
                        end: pos + len,
                    });
                }
                return Ok(ReadLines { lines, more: false });
            }
            let newline = buf.iter().position(|b| *b == b'\n');
            let chunk = &buf[..newline.unwrap_or(buf.len())];
            let room = limits.max_line_bytes.saturating_sub(bytes.len());
            bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            len += chunk.len() as u64;
            let taken = chunk.len() + usize::from(newline.is_some());
            reader.consume(taken);
            if newline.is_some() {
                pos += len + 1;
                consumed = consumed.saturating_add(usize::try_from(len + 1).unwrap_or(usize::MAX));
                lines.push(Line {
                    bytes,
                    len,
                    end: pos,
                });
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_model::wire::cut_raw;
    use std::io::Write;

    fn limits(max_line_bytes: usize) -> ReadLimits {
        ReadLimits {
            max_lines: 100,
            max_bytes: 1 << 20,
            max_line_bytes,
            flush_partial: false,
        }
    }

    fn file_with(content: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(content).unwrap();
        let file = File::open(tmp.path()).unwrap();
        (tmp, file)
    }

    #[test]
    fn only_complete_lines_are_read() {
        let (_tmp, file) = file_with(b"one\ntwo\nthr");
        let read = read_lines(&file, 0, limits(100)).unwrap();
        let texts: Vec<&[u8]> = read.lines.iter().map(|l| l.bytes.as_slice()).collect();
        assert_eq!(texts, vec![&b"one"[..], b"two"]);
        assert_eq!(read.lines[1].end, 8);
        assert!(!read.more);
        let from_middle = read_lines(&file, 4, limits(100)).unwrap();
        assert_eq!(from_middle.lines.len(), 1);
    }

    #[test]
    fn a_drained_file_gives_up_its_unterminated_line() {
        let (_tmp, file) = file_with(b"one\ntail");
        let mut l = limits(100);
        l.flush_partial = true;
        let read = read_lines(&file, 0, l).unwrap();
        assert_eq!(read.lines[1].bytes, b"tail");
        assert_eq!(read.lines[1].end, 8);
    }

    #[test]
    fn long_lines_keep_their_length_but_not_their_bytes() {
        let (_tmp, file) = file_with(b"0123456789\nok\n");
        let read = read_lines(&file, 0, limits(4)).unwrap();
        assert_eq!(read.lines[0].bytes, b"0123");
        assert_eq!(read.lines[0].len, 10);
        assert_eq!(read.lines[1].bytes, b"ok");
        assert_eq!(read.lines[1].end, 14);
    }

    #[test]
    fn reading_stops_at_the_line_limit_and_says_so() {
        let (_tmp, file) = file_with(b"a\nb\nc\n");
        let mut l = limits(100);
        l.max_lines = 2;
        let read = read_lines(&file, 0, l).unwrap();
        assert_eq!(read.lines.len(), 2);
        assert!(read.more);
    }

    #[test]
    fn the_long_line_marker_is_the_models() {
        let line = "é".repeat(MAX_RAW_LEN);
        let prefix = &line.as_bytes()[..MAX_RAW_LEN + 7];
        assert_eq!(cut_long_line(prefix, line.len() as u64), cut_raw(&line));
        assert_eq!(cut_long_line(b"abcd", 10), "abcd…[cut 6 bytes]");
        // Cut inside "é" (two bytes): the half character is left out.
        assert_eq!(
            cut_long_line("abé".as_bytes()[..3].as_ref(), 10),
            "ab…[cut 8 bytes]"
        );
    }
}
