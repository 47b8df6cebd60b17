//! Following files: finding them under the configured paths, knowing
//! each as a stream, noticing rotation, copies and truncation, and reading
//! complete lines into the next batch of records.
//!
//! A source read as causeway's own JSON lines, with no field mapping and
//! no multiline joining, sends its lines as they are (raw lines of the
//! wire batch, see [`causeway_model::wire`]): the collector reads them with
//! the same lenient parser the agent would have used, so the agent only
//! splits, checks UTF-8 and copies. Other formats are parsed here.
//!
//! A *stream* is one run of content: what one file held from its start.
//! It is named once, when its first line is complete, from the agent's
//! source, the file's device and inode, the fingerprint of its first line,
//! its generation and the time (see [`stream_name`]), and checkpointed
//! before anything of it is sent; every record read from it
//! carries that name and the offset just past the record, so the collector
//! drops a record it already indexed however often it is sent. A name
//! never stands for other content: a file truncated or rewritten in place
//! starts a new stream with the next generation, even when its new content
//! starts with the same bytes.
//!
//! Files are known by identity (device and inode) and read through a
//! handle kept open, so a file renamed by rotation goes on as the same
//! stream, and one renamed or deleted is read to its end before it is let
//! go. A file seen for the first time whose first line is that of a stream
//! already known, and whose bytes agree with it, is a *copy* (the `.1`
//! that copytruncate leaves): it is read as that stream, from the stream's
//! offset, and only while no original file is, so its lines are not
//! shipped twice, and those the original lost to truncation are shipped
//! once. Only whole lines (ending in `\n`) are read; a partial last line
//! waits for its newline. Offsets move only in [`Tailer::ack`], which must
//! be called only once the collector has acknowledged the batch: nothing
//! here sends, sleeps or retries, and every function does blocking file
//! I/O, so callers run it off the async runtime (`spawn_blocking`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use causeway_model::wire::{Entry, MAX_RAW_LEN, MAX_SOURCE_LEN, Position};
use causeway_model::{Record, Timestamp, char_prefix, strip_control};
use tracing::{debug, info, warn};

use crate::checkpoint::{Checkpoint, FileEntry, Head, StreamEntry, V1FileEntry};
use crate::config::{AgentConfig, ReadFrom};
use crate::error::AgentError;
use crate::formats::{Joined, LineParser, Multiline};
use crate::longline::{long_line_record, read_long_object};
use crate::stats::{FileStatus, Stats};

/// File extensions picked up in a watched directory.
const EXTENSIONS: [&str; 4] = ["log", "json", "jsonl", "ndjson"];
/// The most leading bytes a fingerprint covers: a file's first line, up to
/// its newline, but no more than this.
pub(crate) const FINGERPRINT_MAX: u64 = 1024;
/// How many bytes before a stream's offset its tail fingerprint covers (at
/// most: the last line read, newline included).
const TAIL_LEN: usize = 64;
/// How many bytes of a new file are compared with the original it may be
/// a copy of, ending where the shorter of the two ends.
const COMPARE_LEN: u64 = 4096;
/// Streams no followed file is read as are kept (in the checkpoint, which
/// is written after every batch) so that a later copy of their file is
/// known: at most this many, the one orphaned longest forgotten first...
const MAX_ORPHANS: usize = 128;
/// ...and for at most this long (seconds). A copy of a forgotten stream is
/// shipped again, as a stream of its own.
const ORPHAN_TTL_SECS: u64 = 24 * 3600;
/// How long a rotated-away or deleted file must stay unchanged before its
/// unterminated last line is taken as complete and the file is let go.
const DRAIN_QUIET: Duration = Duration::from_secs(5);
/// Allowance for the batch header line in the byte budget.
const HEADER_BYTES: usize = 128;
/// Allowance per record for its stream position in the header.
const POSITION_BYTES: usize = 24;
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

/// The name of a stream, unique to its content: the file it was first read
/// from (device and inode), the fingerprint of its first line, its
/// generation, and when it was named (microseconds since the epoch, hex),
/// then the agent's source. The time makes a name unique even when nothing
/// else tells two contents apart (a checkpoint lost, then a file truncated
/// and written again with the same first line); the name is checkpointed
/// before any record of it is sent, so a resend always uses it. The
/// collector keeps [`MAX_SOURCE_LEN`] bytes of a name, so the parts that
/// tell streams apart come first and the source is cut to fit.
pub(crate) fn stream_name(
    source: &str,
    id: FileId,
    fingerprint: Head,
    generation: u32,
    named_us: u64,
) -> String {
    let unique = format!(
        "file:{}:{}:{:016x}:{generation}:{named_us:x}",
        id.dev, id.ino, fingerprint.fnv1a
    );
    let source = strip_control(source);
    let room = MAX_SOURCE_LEN.saturating_sub(unique.len() + 1);
    format!("{unique}@{}", char_prefix(&source, room))
}

/// How far one stream moves once a batch is acknowledged.
#[derive(Debug, Clone)]
pub(crate) struct Advance {
    stream: String,
    offset: u64,
    /// The fingerprint of the bytes just before `offset`, from the bytes
    /// read (not read again), so a file rewritten meanwhile fails it later
    /// (a resend) instead of passing it (a loss).
    tail: Option<Head>,
    /// Records and lines of the stream in the batch.
    records: u64,
    lines: u64,
}

/// What one poll read: records to send, where each came from, and per
/// stream the offset that becomes acknowledged once they are.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Records, or raw lines the collector reads as records.
    pub entries: Vec<Entry>,
    /// The streams the records came from, each once...
    pub streams: Vec<String>,
    /// ...and per stream, the service of a raw line that names none.
    pub services: Vec<String>,
    /// When the lines were read.
    pub read_at: Timestamp,
    /// Per record, its stream (an index into `streams`) and the offset
    /// just past it.
    pub positions: Vec<Position>,
    pub advances: Vec<Advance>,
    /// A limit was reached: more may be ready right away.
    pub full: bool,
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            streams: Vec::new(),
            services: Vec::new(),
            read_at: Timestamp::now(),
            positions: Vec::new(),
            advances: Vec::new(),
            full: false,
        }
    }
}

impl Batch {
    /// Nothing to send and nothing to acknowledge.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.advances.is_empty()
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

/// One stream and how far it was acknowledged.
#[derive(Debug, Clone)]
struct Stream {
    fingerprint: Head,
    /// Acknowledged up to here.
    offset: u64,
    /// The fingerprint of the last bytes before `offset`.
    tail: Option<Head>,
    generation: u32,
    /// Since when (Unix seconds) no followed file is read as it.
    orphan_since: Option<u64>,
    /// Read up to here, into batches not yet acknowledged (read ahead
    /// while one is in flight); never below `offset`...
    read: u64,
    /// ...and the fingerprint of the bytes just before it.
    read_tail: Option<Head>,
}

impl Stream {
    /// Where the file must still hold what was read: the read position
    /// and its tail.
    fn read_mark(&self) -> (u64, Option<Head>) {
        if self.read > self.offset {
            (self.read, self.read_tail)
        } else {
            (self.offset, self.tail)
        }
    }
}

#[derive(Debug)]
struct Tracked {
    path: PathBuf,
    id: FileId,
    file: File,
    /// The stream the file is read as; `None` until its first line is
    /// complete, and again after a truncation.
    stream: Option<String>,
    /// A copy of its stream's content under another inode: read only
    /// while no original is.
    copy: bool,
    /// A copy not yet compared with its stream (it was shorter than the
    /// stream's offset and the original was gone).
    unverified: bool,
    /// The generation of its stream, or of its next one.
    generation: u32,
    /// Just opened from the checkpoint: checked in full at the next poll.
    recheck: bool,
    /// What a version 1 checkpoint said about the file.
    v1: Option<V1FileEntry>,
    /// Length and modification time at the previous poll.
    last_len: u64,
    last_modified: Option<SystemTime>,
    /// The service of lines that name none.
    service: String,
    /// The source it was found under (an index into `Tailer::sources`).
    source: usize,
    /// Met at start, unknown to the checkpoint, in a source read from the
    /// end: where its last complete line ended then.
    from_end: Option<u64>,
    /// A multiline record still being joined at the end of what was read:
    /// the offset just past its last line, and since when it ends there.
    joining: Option<(u64, Instant)>,
    state: State,
}

impl Tracked {
    /// Drained and quiet long enough: an unterminated last line is taken
    /// as complete.
    fn flush_partial(&self) -> bool {
        matches!(
            self.state,
            State::Draining { quiet_since } if quiet_since.elapsed() >= DRAIN_QUIET
        )
    }

    /// Stops reading the file as its stream; its next stream, from its
    /// start, takes the next generation.
    fn leave(&mut self, why: &str) {
        info!(path = %self.path.display(), stream = ?self.stream, why, "log file starts a new stream, read from its start");
        self.stream = None;
        self.copy = false;
        self.unverified = false;
        self.generation = self.generation.saturating_add(1);
    }
}

/// The limits of one batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_records: usize,
    pub max_bytes: usize,
}

/// A source as the tailer reads it.
#[derive(Debug)]
struct Source {
    paths: Vec<PathBuf>,
    parser: LineParser,
    /// Joins continuation lines, when the source has a start pattern (a
    /// template: cloned empty for every read).
    multiline: Option<Multiline>,
    multiline_timeout: Duration,
    service: Option<String>,
    read_from: ReadFrom,
}

/// Every followed file, every stream, and how far each was acknowledged.
#[derive(Debug)]
pub(crate) struct Tailer {
    sources: Vec<Source>,
    /// The agent's own files (checkpoint, dead-letter file), never read
    /// as logs even where a source would match them.
    own_files: Vec<PathBuf>,
    /// The first look for files is done: files met from now on are new.
    started: bool,
    source: String,
    max_line_bytes: usize,
    default_service: Option<String>,
    files: Vec<Tracked>,
    streams: BTreeMap<String, Stream>,
    /// Checkpoint entries not yet matched to a file.
    resume: Vec<FileEntry>,
    resume_v1: Vec<V1FileEntry>,
    /// Which file the next batch starts with, so that a busy file does not
    /// starve the others.
    next_start: usize,
    /// The last problem reported per path, so it is logged once.
    problems: HashMap<PathBuf, String>,
    /// A stream was named since [`Self::take_named`] was last called.
    named: bool,
    /// Records acknowledged per stream since start.
    shipped: HashMap<String, u64>,
    /// Retried sends of batches holding a stream's records, per stream.
    retries: HashMap<String, u64>,
    /// Truncations seen in this refresh: the stream, the file's length
    /// before, and its path.
    truncations: Vec<(String, u64, PathBuf)>,
    stats: Arc<Stats>,
}

impl Tailer {
    pub fn new(
        config: &AgentConfig,
        checkpoint: Checkpoint,
        stats: Arc<Stats>,
    ) -> Result<Self, AgentError> {
        let invalid = |reason: String| AgentError::Config {
            field: "sources",
            reason,
        };
        let mut sources = Vec::new();
        for source in config.all_sources() {
            let timeout = Duration::from_millis(source.parse.multiline_timeout_ms);
            let multiline = source
                .parse
                .multiline_start
                .as_deref()
                .map(|start| Multiline::new(start, timeout, config.max_line_bytes))
                .transpose()
                .map_err(invalid)?;
            sources.push(Source {
                parser: LineParser::new(&source.parse).map_err(invalid)?,
                paths: source.paths,
                multiline,
                multiline_timeout: timeout,
                service: source.service,
                read_from: source.read_from,
            });
        }
        let streams = checkpoint
            .streams
            .into_iter()
            .map(|s| {
                let stream = Stream {
                    fingerprint: s.fingerprint,
                    read: s.offset,
                    read_tail: None,
                    offset: s.offset,
                    tail: s.tail,
                    generation: s.generation,
                    orphan_since: s.orphan_since,
                };
                (s.name, stream)
            })
            .collect();
        let dead_letter = crate::deadletter::DeadLetter::path_for(&config.checkpoint_path);
        let mut old_dead_letter = dead_letter.clone().into_os_string();
        old_dead_letter.push(".1");
        Ok(Self {
            sources,
            own_files: vec![
                config.checkpoint_path.clone(),
                dead_letter,
                PathBuf::from(old_dead_letter),
            ],
            started: false,
            source: config.source.clone(),
            max_line_bytes: config.max_line_bytes,
            default_service: config.default_service.clone(),
            files: Vec::new(),
            streams,
            resume: checkpoint.files,
            resume_v1: checkpoint.v1_files,
            next_start: 0,
            problems: HashMap::new(),
            named: false,
            shipped: HashMap::new(),
            retries: HashMap::new(),
            truncations: Vec::new(),
            stats,
        })
    }

    /// Whether a stream was named since the last call: the checkpoint must
    /// then be written before anything of the batch is sent, so that a
    /// resend after a crash uses the same name.
    pub fn take_named(&mut self) -> bool {
        std::mem::take(&mut self.named)
    }

    /// Looks for new, rotated, copied and truncated files, then reads the
    /// next batch of lines.
    pub fn poll(&mut self, limits: Limits) -> Batch {
        self.refresh();
        self.read_batch(limits)
    }

    /// Marks a sent batch as acknowledged.
    pub fn ack(&mut self, advances: &[Advance]) {
        for advance in advances {
            if let Some(stream) = self.streams.get_mut(&advance.stream) {
                stream.offset = advance.offset;
                stream.tail = advance.tail;
                stream.read = stream.read.max(stream.offset);
            }
            *self.shipped.entry(advance.stream.clone()).or_default() += advance.records;
            self.stats.lines_read(advance.lines);
        }
        self.publish_status();
    }

    /// Counts `retries` of a batch against each of its `streams`.
    pub fn note_retries(&mut self, streams: &[String], retries: u64) {
        if retries == 0 {
            return;
        }
        for stream in streams {
            *self.retries.entry(stream.clone()).or_default() += retries;
        }
    }

    /// Hands every followed file's status to the stats.
    pub fn publish_status(&self) {
        let now = SystemTime::now();
        let files = self
            .files
            .iter()
            .map(|t| {
                let stream = t.stream.as_ref().and_then(|n| self.streams.get(n));
                let position = stream.map_or(0, |s| s.offset);
                let read = stream.map_or(0, |s| s.read.max(s.offset));
                let lag_bytes = t.last_len.saturating_sub(position);
                let lag_seconds = match t.last_modified {
                    Some(modified) if lag_bytes > 0 => {
                        now.duration_since(modified).map_or(0, |d| d.as_secs())
                    }
                    _ => 0,
                };
                FileStatus {
                    path: strip_control(&t.path.to_string_lossy()),
                    stream: t.stream.clone(),
                    fingerprint: stream.map(|s| format!("{:016x}", s.fingerprint.fnv1a)),
                    position,
                    read,
                    len: t.last_len,
                    lag_bytes,
                    lag_seconds,
                    records_shipped: t
                        .stream
                        .as_ref()
                        .and_then(|n| self.shipped.get(n))
                        .copied()
                        .unwrap_or(0),
                    retries: t
                        .stream
                        .as_ref()
                        .and_then(|n| self.retries.get(n))
                        .copied()
                        .unwrap_or(0),
                    copy: t.copy,
                    draining: matches!(t.state, State::Draining { .. }),
                    last_error: self.problems.get(&t.path).map(|e| strip_control(e)),
                }
            })
            .collect();
        self.stats.set_files(files);
    }

    /// The acknowledged state, to persist.
    pub fn checkpoint(&self) -> Checkpoint {
        let streams = self
            .streams
            .iter()
            .map(|(name, s)| StreamEntry {
                name: name.clone(),
                fingerprint: s.fingerprint,
                offset: s.offset,
                tail: s.tail,
                generation: s.generation,
                orphan_since: s.orphan_since,
            })
            .collect();
        let files = self
            .files
            .iter()
            .map(|t| FileEntry {
                path: t.path.to_string_lossy().into_owned(),
                dev: t.id.dev,
                inode: t.id.ino,
                stream: t.stream.clone(),
                copy: t.copy,
                unverified: t.unverified,
                generation: t.generation,
            })
            .collect();
        let mut checkpoint = Checkpoint::new(streams, files);
        checkpoint.v1_files.clone_from(&self.resume_v1);
        checkpoint
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

    /// Every file under the configured paths, sorted, each with the first
    /// source it was found under.
    fn discover(&mut self) -> Vec<(PathBuf, usize)> {
        let mut found = Vec::new();
        let paths: Vec<(PathBuf, usize)> = self
            .sources
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.paths.iter().map(move |p| (p.clone(), i)))
            .collect();
        for (path, source) in paths {
            if is_pattern(&path) {
                self.expand(&path, source, &mut found);
                continue;
            }
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
                                found.push((candidate, source));
                            }
                        }
                    }
                    Err(e) => self.report(&path, &e),
                },
                Ok(meta) if meta.is_file() => found.push((path, source)),
                Ok(_) => {
                    let e = io::Error::new(io::ErrorKind::InvalidInput, "not a file or directory");
                    self.report(&path, &e);
                }
            }
        }
        found.sort();
        found.dedup_by(|later, first| later.0 == first.0);
        let own: Vec<PathBuf> = self
            .own_files
            .iter()
            .filter_map(|p| fs::canonicalize(p).ok())
            .collect();
        if !own.is_empty() {
            // Resolved only for a file named like one of the agent's own.
            found.retain(|(p, _)| {
                let named_alike = own.iter().any(|o| o.file_name() == p.file_name());
                !named_alike || fs::canonicalize(p).map_or(true, |p| !own.contains(&p))
            });
        }
        found
    }

    /// The files a glob pattern (`*`, `?`, `[...]`, `**` for any depth)
    /// matches now.
    fn expand(&mut self, pattern: &Path, source: usize, found: &mut Vec<(PathBuf, usize)>) {
        let text = pattern.to_string_lossy();
        let matches = match glob::glob(&text) {
            Ok(matches) => matches,
            Err(e) => {
                let e = io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
                self.report(pattern, &e);
                return;
            }
        };
        for entry in matches {
            match entry {
                Ok(path) if fs::metadata(&path).is_ok_and(|m| m.is_file()) => {
                    found.push((path, source));
                }
                Ok(_) => {}
                // A directory on the way that cannot be read: said once.
                Err(e) => {
                    let path = e.path().to_owned();
                    let e = io::Error::new(e.error().kind(), e.error().to_string());
                    self.report(&path, &e);
                }
            }
        }
    }

    /// Matches what is on disk now with the files followed so far, then
    /// settles each file's stream: files already known first (so a
    /// truncation is seen before a new file is taken for a copy of what
    /// was truncated), then files whose stream is still to be named.
    fn refresh(&mut self) {
        let mut seen = HashSet::new();
        for (path, source) in self.discover() {
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
            match self.open(&path, source) {
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
        let mut keep = vec![true; self.files.len()];
        // Originals, then copies (compared with their originals as they are
        // now), then files with no stream yet.
        let rank = |t: &Tracked| match (&t.stream, t.copy) {
            (Some(_), false) => 0,
            (Some(_), true) => 1,
            (None, _) => 2,
        };
        for pass in 0..3 {
            for (i, kept) in keep.iter_mut().enumerate() {
                if rank(&self.files[i]) != pass {
                    continue;
                }
                match self.check(i) {
                    Ok(k) => *kept = k,
                    Err(e) => problems.push((self.files[i].path.clone(), e)),
                }
            }
        }
        let mut keep = keep.into_iter();
        self.files.retain(|_| keep.next().unwrap_or(true));
        for (path, e) in problems {
            self.report(&path, &e);
        }
        self.count_truncation_losses();
        self.tend_orphans();
        self.started = true;
    }

    /// Says how many bytes each truncation seen took before they were
    /// read: those past the acknowledged offset, unless a copy of the file
    /// (copytruncate's `.1`, when it is followed) holds them, to be read
    /// from it.
    fn count_truncation_losses(&mut self) {
        for (name, before, path) in std::mem::take(&mut self.truncations) {
            let offset = self
                .streams
                .get(&name)
                .map_or(before, |s| s.offset.max(s.read));
            let copied = self
                .files
                .iter()
                .filter(|t| t.copy && t.stream.as_deref() == Some(name.as_str()))
                .map(|t| t.last_len)
                .max()
                .unwrap_or(0);
            let lost = before.saturating_sub(offset.max(copied));
            if lost > 0 {
                warn!(
                    path = %path.display(),
                    lost_bytes = lost,
                    "log file truncated before the agent read all of it: these bytes are lost"
                );
                self.stats.truncation_lost(lost);
            }
        }
    }

    /// Starts following a file found for the first time, as the stream the
    /// checkpoint names for it, if any (checked at the next [`Self::check`]).
    fn open(&mut self, path: &Path, source: usize) -> io::Result<Tracked> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let id = FileId::of(&meta);
        let service = self.sources[source]
            .service
            .clone()
            .or_else(|| self.default_service.clone())
            .unwrap_or_else(|| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "unknown".to_owned())
            });
        let mut tracked = Tracked {
            path: path.to_owned(),
            id,
            file,
            stream: None,
            copy: false,
            unverified: false,
            generation: 0,
            recheck: true,
            v1: None,
            last_len: meta.len(),
            last_modified: meta.modified().ok(),
            service,
            source,
            from_end: None,
            joining: None,
            state: State::Active,
        };
        let known = |dev: u64, inode: u64| dev == id.dev && inode == id.ino;
        if let Some(i) = self.resume.iter().position(|e| known(e.dev, e.inode)) {
            let entry = self.resume.swap_remove(i);
            tracked.generation = entry.generation;
            match entry.stream {
                Some(name) if self.streams.contains_key(&name) => {
                    debug!(path = %path.display(), stream = %name, "resuming log file from the checkpoint");
                    tracked.stream = Some(name);
                    tracked.copy = entry.copy;
                    tracked.unverified = entry.unverified;
                }
                Some(name) => {
                    // A checkpoint edited by hand: start the file afresh.
                    warn!(path = %path.display(), stream = %name, "the checkpoint names a stream it does not hold");
                    tracked.generation = tracked.generation.saturating_add(1);
                }
                None => {}
            }
        } else if let Some(i) = self.resume_v1.iter().position(|e| known(e.dev, e.inode)) {
            tracked.v1 = Some(self.resume_v1.swap_remove(i));
        } else if !self.started && self.sources[source].read_from == ReadFrom::End {
            let end = last_line_end(&tracked.file, meta.len())?;
            debug!(path = %path.display(), offset = end, "following log file from its end");
            tracked.from_end = Some(end);
        } else {
            debug!(path = %path.display(), "following new log file");
        }
        Ok(tracked)
    }

    /// The file read as `stream` (and not a copy), other than file `except`.
    fn original_of(&self, stream: &str, except: usize) -> Option<usize> {
        self.files
            .iter()
            .enumerate()
            .position(|(i, t)| i != except && !t.copy && t.stream.as_deref() == Some(stream))
    }

    /// Notices truncation, replaced content and copies that turn out not
    /// to be, names the stream of a file whose first line is complete, and
    /// lets drained files go. `Ok(false)` means stop following the file.
    fn check(&mut self, i: usize) -> io::Result<bool> {
        let meta = self.files[i].file.metadata()?;
        let (len, modified) = (meta.len(), meta.modified().ok());
        let tracked = &self.files[i];
        let changed =
            tracked.recheck || len != tracked.last_len || modified != tracked.last_modified;
        let shrank = !tracked.recheck && len < tracked.last_len;
        if let Some(name) = tracked.stream.clone() {
            self.check_known(i, &name, len, changed, shrank)?;
        }
        if self.files[i].stream.is_none() {
            self.settle(i, len)?;
        }
        let tracked = &mut self.files[i];
        tracked.recheck = false;
        tracked.last_len = len;
        tracked.last_modified = modified;
        let offset = match tracked.stream.clone() {
            // A copy read as its stream (no original is) has what the
            // original did not ship.
            Some(name) if !tracked.copy || self.original_of(&name, i).is_none() => {
                self.streams.get(&name).map_or(0, |s| s.offset)
            }
            // A copy an original is read for has nothing to ship; a file
            // whose stream is not named yet holds no complete line.
            _ => len,
        };
        let tracked = &mut self.files[i];
        if let State::Draining { quiet_since } = &mut tracked.state {
            if changed {
                *quiet_since = Instant::now();
            } else if offset >= len && quiet_since.elapsed() >= DRAIN_QUIET {
                info!(path = %tracked.path.display(), "rotated log file read to its end");
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Checks a file read as stream `name` against it.
    fn check_known(
        &mut self,
        i: usize,
        name: &str,
        len: u64,
        changed: bool,
        shrank: bool,
    ) -> io::Result<()> {
        let Some(stream) = self.streams.get(name).cloned() else {
            self.files[i].leave("its stream is gone");
            return Ok(());
        };
        let original = self.original_of(name, i);
        let tracked = &self.files[i];
        // An original was read up to the stream's offset; a copy may be
        // shorter than that, having nothing left to read.
        let (read_at, read_tail) = stream.read_mark();
        if shrank || (!tracked.copy && len < read_at) {
            if !tracked.copy {
                let before = tracked.last_len.max(read_at);
                self.truncations
                    .push((name.to_owned(), before, tracked.path.clone()));
            }
            self.files[i].leave("truncated");
            return Ok(());
        }
        if !changed && !tracked.unverified {
            return Ok(());
        }
        if !fingerprint_matches(&tracked.file, stream.fingerprint)? {
            self.files[i].leave("its first line changed");
            return Ok(());
        }
        if len >= read_at {
            if !tail_matches(&tracked.file, read_at, read_tail)? {
                self.files[i].leave("its content before the acknowledged offset changed");
                return Ok(());
            }
            self.files[i].unverified = false;
        }
        let tracked = &self.files[i];
        let differs = match original {
            Some(original) if tracked.copy => {
                !is_copy_of(&tracked.file, &self.files[original].file)?
            }
            _ => false,
        };
        if differs {
            self.files[i].leave("it differs from the file it looked a copy of");
        }
        Ok(())
    }

    /// Names the stream of a file whose first line is complete: a copy of
    /// a known stream if the file is new and its bytes agree with that
    /// stream, else a new stream of its own.
    fn settle(&mut self, i: usize, len: u64) -> io::Result<()> {
        let tracked = &self.files[i];
        let Some(fingerprint) = fingerprint_of(&tracked.file, tracked.flush_partial())? else {
            return Ok(()); // no complete first line yet
        };
        if tracked.generation == 0 && tracked.v1.is_none() && tracked.from_end.is_none() {
            let candidates: Vec<(String, Stream)> = self
                .streams
                .iter()
                .filter(|(_, s)| s.fingerprint == fingerprint)
                .map(|(n, s)| (n.clone(), s.clone()))
                .collect();
            for (name, stream) in candidates {
                let tracked = &self.files[i];
                let agrees = match self.original_of(&name, i) {
                    Some(original) => {
                        is_copy_of(&tracked.file, &self.files[original].file)?
                            && (len < stream.offset
                                || tail_matches(&tracked.file, stream.offset, stream.tail)?)
                    }
                    None => {
                        len < stream.offset
                            || tail_matches(&tracked.file, stream.offset, stream.tail)?
                    }
                };
                if agrees {
                    let unverified = len < stream.offset && self.original_of(&name, i).is_none();
                    info!(path = %tracked.path.display(), stream = %name, "log file is a copy of a stream already followed; not read twice");
                    let tracked = &mut self.files[i];
                    tracked.stream = Some(name);
                    tracked.copy = true;
                    tracked.unverified = unverified;
                    return Ok(());
                }
            }
        }
        let tracked = &mut self.files[i];
        let named_us = u64::try_from(Timestamp::now().as_micros()).unwrap_or(0);
        let mut name = stream_name(
            &self.source,
            tracked.id,
            fingerprint,
            tracked.generation,
            named_us,
        );
        while self.streams.contains_key(&name) {
            // Never name new content after a stream already known.
            tracked.generation = tracked.generation.saturating_add(1);
            name = stream_name(
                &self.source,
                tracked.id,
                fingerprint,
                tracked.generation,
                named_us,
            );
        }
        self.named = true;
        let mut offset = 0;
        let mut tail = None;
        if let Some(end) = tracked.from_end.take()
            && end <= len
        {
            offset = end;
            let start = end.saturating_sub(TAIL_LEN as u64);
            tail = Some(Head::of(&read_range(&tracked.file, start, end - start)?));
        }
        if let Some(v1) = tracked.v1.take()
            && v1.offset <= len
            && head_matches(&tracked.file, v1.head)?
        {
            debug!(path = %tracked.path.display(), offset = v1.offset, "resuming log file from a version 1 checkpoint");
            offset = v1.offset;
        }
        debug!(path = %tracked.path.display(), stream = %name, "new stream");
        self.streams.insert(
            name.clone(),
            Stream {
                fingerprint,
                offset,
                read: offset,
                read_tail: None,
                tail,
                generation: tracked.generation,
                orphan_since: None,
            },
        );
        tracked.stream = Some(name);
        Ok(())
    }

    /// Marks the streams no file is read as, and forgets the oldest past
    /// [`MAX_ORPHANS`].
    fn tend_orphans(&mut self) {
        let followed: HashSet<&str> = self
            .files
            .iter()
            .filter_map(|t| t.stream.as_deref())
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut orphans = Vec::new();
        for (name, stream) in &mut self.streams {
            if followed.contains(name.as_str()) {
                stream.orphan_since = None;
            } else {
                orphans.push((*stream.orphan_since.get_or_insert(now), name.clone()));
            }
        }
        orphans.sort();
        let excess = orphans.len().saturating_sub(MAX_ORPHANS);
        for (i, (since, name)) in orphans.iter().enumerate() {
            if i < excess || now.saturating_sub(*since) > ORPHAN_TTL_SECS {
                debug!(stream = %name, "forgetting a stream no file is read as");
                self.streams.remove(name);
            }
        }
    }

    /// Per stream, the file read as it: its original, else a copy.
    fn readers(&self) -> HashMap<&str, usize> {
        let mut readers = HashMap::new();
        for (i, tracked) in self.files.iter().enumerate() {
            if let Some(name) = tracked.stream.as_deref() {
                if tracked.copy {
                    readers.entry(name).or_insert(i);
                } else {
                    readers.insert(name, i);
                }
            }
        }
        readers
    }

    fn read_batch(&mut self, limits: Limits) -> Batch {
        let mut batch = Batch::default();
        let count = self.files.len();
        if count == 0 {
            return batch;
        }
        let start = self.next_start % count;
        self.next_start = (start + 1) % count;
        let readers = self.readers();
        let mut bytes = HEADER_BYTES;
        let mut problems = Vec::new();
        let mut joining = Vec::new();
        let mut read_to = Vec::new();
        let now = Instant::now();
        for k in 0..count {
            if batch.entries.len() >= limits.max_records || bytes >= limits.max_bytes {
                batch.full = true;
                break;
            }
            let index = (start + k) % count;
            let tracked = &self.files[index];
            let Some(name) = tracked.stream.as_deref() else {
                continue;
            };
            if readers.get(name) != Some(&index) {
                continue;
            }
            let Some(stream) = self.streams.get(name) else {
                continue;
            };
            let from = stream.read.max(stream.offset);
            let read = read_lines(
                &tracked.file,
                from,
                ReadLimits {
                    max_lines: limits.max_records - batch.entries.len(),
                    max_bytes: limits.max_bytes - bytes,
                    max_line_bytes: self.max_line_bytes,
                    flush_partial: tracked.flush_partial(),
                },
            );
            let read = match read {
                Ok(read) => read,
                Err(e) => {
                    problems.push((tracked.path.clone(), e));
                    continue;
                }
            };
            batch.full |= read.more;
            // A record longer than a whole batch can hold is cut there,
            // rather than waited for for ever.
            let forced = read.more && batch.entries.is_empty();
            let (units, still_joining) =
                self.units(tracked, read.lines, batch.read_at, now, forced);
            joining.push((index, still_joining));
            let stream_index = u32::try_from(batch.streams.len()).unwrap_or(u32::MAX);
            let mut listed = false;
            let mut end = from;
            let mut tail = stream.tail;
            let (mut records, mut lines) = (0, 0);
            for unit in units {
                if let Some(entry) = unit.entry {
                    let size = entry.line().len() + 1 + POSITION_BYTES;
                    if !batch.entries.is_empty() && bytes + size > limits.max_bytes {
                        batch.full = true;
                        break;
                    }
                    if !listed {
                        batch.streams.push(name.to_owned());
                        batch.services.push(tracked.service.clone());
                        bytes += name.len() + tracked.service.len() + 8;
                        listed = true;
                    }
                    bytes += size;
                    batch.entries.push(entry);
                    batch.positions.push(Position(stream_index, unit.end));
                    records += 1;
                }
                end = unit.end;
                tail = unit.tail;
                lines += unit.lines;
            }
            if end > from {
                read_to.push((name.to_owned(), end, tail));
                batch.advances.push(Advance {
                    stream: name.to_owned(),
                    offset: end,
                    tail,
                    records,
                    lines,
                });
            }
            if batch.full {
                break;
            }
        }
        for (index, still_joining) in joining {
            self.files[index].joining = still_joining;
        }
        for (name, end, tail) in read_to {
            if let Some(stream) = self.streams.get_mut(&name) {
                stream.read = end;
                stream.read_tail = tail;
            }
        }
        for (path, e) in problems {
            self.report(&path, &e);
        }
        batch
    }

    /// The records of `lines`, each with the offset just past it: one per
    /// line, or with a multiline source one per joined record. A record
    /// still being joined at the end is left out (its lines are read again
    /// at the next poll, since the stream's offset stops before them)
    /// unless it has waited its timeout with no line added, the file is
    /// drained, or `forced`; what is returned besides is where it ends and
    /// since when, to time it.
    fn units(
        &self,
        tracked: &Tracked,
        lines: Vec<Line>,
        read_at: Timestamp,
        now: Instant,
        forced: bool,
    ) -> (Vec<Unit>, Option<(u64, Instant)>) {
        let source = &self.sources[tracked.source];
        let Some(template) = &source.multiline else {
            let raw = source.parser.reads_lines_as_they_are();
            let units = lines
                .into_iter()
                .map(|line| Unit {
                    lines: 1,
                    end: line.end,
                    tail: line.tail(),
                    entry: self.to_entry(tracked, line, read_at, raw),
                })
                .collect();
            return (units, None);
        };
        let mut joiner = template.clone();
        let mut tails: HashMap<u64, (Option<Head>, u64)> = HashMap::new();
        let mut units = Vec::new();
        // Per line read, its end, its tail and how many lines it closes.
        let mut counted = 0u64;
        let joined = |joined: Joined, tails: &HashMap<u64, (Option<Head>, u64)>| {
            let (tail, upto) = tails.get(&joined.end).copied().unwrap_or((None, 0));
            (
                Unit {
                    entry: Some(Entry::record(&source.parser.parse(
                        &joined.text,
                        &tracked.service,
                        read_at,
                    ))),
                    lines: 0,
                    end: joined.end,
                    tail,
                },
                upto,
            )
        };
        let mut push = |units: &mut Vec<Unit>, (mut unit, upto): (Unit, u64)| {
            unit.lines = upto.saturating_sub(counted);
            counted = upto;
            units.push(unit);
        };
        let mut seen = 0u64;
        for line in lines {
            seen += 1;
            tails.insert(line.end, (line.tail(), seen));
            if line.len > self.max_line_bytes as u64 {
                if let Some(done) = joiner.take() {
                    push(&mut units, joined(done, &tails));
                }
                let unit = Unit {
                    lines: 0,
                    end: line.end,
                    tail: line.tail(),
                    entry: self.to_entry(tracked, line, read_at, false),
                };
                push(&mut units, (unit, seen));
                continue;
            }
            let text = String::from_utf8_lossy(&line.bytes);
            let text = text.strip_suffix('\r').unwrap_or(&text);
            if joiner.due_at().is_none() && text.trim().is_empty() {
                let unit = Unit {
                    entry: None,
                    lines: 0,
                    end: line.end,
                    tail: line.tail(),
                };
                push(&mut units, (unit, seen));
                continue;
            }
            if let Some(done) = joiner.push(text, line.end, now) {
                push(&mut units, joined(done, &tails));
            }
        }
        let Some(last) = joiner.take() else {
            return (units, None);
        };
        let since = match tracked.joining {
            Some((end, since)) if end == last.end => since,
            _ => now,
        };
        // Cut by a full batch only when nothing else of the read fits.
        let cut = forced && units.iter().all(|u| u.entry.is_none());
        if cut || tracked.flush_partial() || now.duration_since(since) >= source.multiline_timeout {
            push(&mut units, joined(last, &tails));
            return (units, None);
        }
        (units, Some((last.end, since)))
    }

    /// The line as a record, or as it is when `raw` (invalid UTF-8
    /// replaced); `None` for a blank line, which is skipped (but
    /// acknowledged).
    fn to_entry(
        &self,
        tracked: &Tracked,
        line: Line,
        read_at: Timestamp,
        raw: bool,
    ) -> Option<Entry> {
        if line.len > self.max_line_bytes as u64 {
            return Some(Entry::record(&self.long_line(tracked, &line, read_at)));
        }
        let text = String::from_utf8(line.bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        if text.trim().is_empty() {
            return None;
        }
        if raw {
            return Some(Entry::Raw(text));
        }
        Some(Entry::record(&self.sources[tracked.source].parser.parse(
            &text,
            &tracked.service,
            read_at,
        )))
    }
}

impl Tailer {
    /// A line over `max_line_bytes`: read again from the file, streaming,
    /// as a JSON object whose long values are cut (see [`crate::longline`])
    /// when the source's lines are JSON; else, or when it is not one JSON
    /// object, the start of the line kept as malformed.
    fn long_line(&self, tracked: &Tracked, line: &Line, read_at: Timestamp) -> Record {
        let parser = &self.sources[tracked.source].parser;
        let mut reason = format!("line exceeds {} bytes", self.max_line_bytes);
        if parser.reads_json() {
            let start = line.end - line.len - u64::from(line.terminated);
            let reader = PositionedReader {
                file: &tracked.file,
                pos: start,
            }
            .take(line.len);
            match read_long_object(reader, self.max_line_bytes, self.max_line_bytes / 4) {
                Ok(object) => {
                    return long_line_record(object, line.len, self.max_line_bytes, |fields| {
                        parser.parse_fields(fields, &tracked.service, read_at)
                    });
                }
                Err(why) => reason = format!("{reason}; {why}"),
            }
        }
        Record::malformed(
            read_at,
            tracked.service.clone(),
            cut_long_line(&line.bytes, line.len),
            reason,
        )
    }
}

/// One record read, or a blank line skipped, and where it ends.
#[derive(Debug)]
struct Unit {
    entry: Option<Entry>,
    /// How many lines it holds.
    lines: u64,
    /// The offset just past its last line.
    end: u64,
    /// The fingerprint of its last bytes.
    tail: Option<Head>,
}

/// The offset just past the file's last newline before `len` (0 if none).
fn last_line_end(file: &File, len: u64) -> io::Result<u64> {
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(READ_CHUNK as u64);
        let chunk = read_range(file, start, end - start)?;
        if let Some(newline) = chunk.iter().rposition(|b| *b == b'\n') {
            return Ok(start + newline as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Whether a configured path is a glob pattern rather than a path.
pub(crate) fn is_pattern(path: &Path) -> bool {
    path.to_string_lossy().contains(['*', '?', '['])
}

/// The part of a path or pattern before its first wildcard: the directory
/// to watch for it.
pub(crate) fn watch_root(path: &Path) -> PathBuf {
    let mut root = PathBuf::new();
    for part in path.components() {
        if is_pattern(Path::new(part.as_os_str())) {
            return root;
        }
        root.push(part);
    }
    root
}

fn read_range(file: &File, start: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    PositionedReader { file, pos: start }
        .take(len)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The fingerprint of a file: its first line, newline included, or its
/// first [`FINGERPRINT_MAX`] bytes when the line is longer. `None` while
/// neither is there, unless `partial` (a drained file): then whatever the
/// file holds.
fn fingerprint_of(file: &File, partial: bool) -> io::Result<Option<Head>> {
    let head = read_range(file, 0, FINGERPRINT_MAX)?;
    Ok(match head.iter().position(|b| *b == b'\n') {
        Some(newline) => Some(Head::of(&head[..=newline])),
        None if head.len() as u64 >= FINGERPRINT_MAX || (partial && !head.is_empty()) => {
            Some(Head::of(&head))
        }
        None => None,
    })
}

/// Whether the file still starts with the fingerprinted bytes.
fn fingerprint_matches(file: &File, fingerprint: Head) -> io::Result<bool> {
    Ok(Head::of(&read_range(file, 0, fingerprint.len)?) == fingerprint)
}

/// Whether the bytes before `offset` are still those `tail` fingerprints
/// (true when there is no tail).
fn tail_matches(file: &File, offset: u64, tail: Option<Head>) -> io::Result<bool> {
    let Some(tail) = tail else {
        return Ok(true);
    };
    let Some(start) = offset.checked_sub(tail.len) else {
        return Ok(false);
    };
    Ok(Head::of(&read_range(file, start, tail.len)?) == tail)
}

/// Whether the file starts with the bytes a version 1 checkpoint
/// fingerprinted (true when there is no fingerprint).
fn head_matches(file: &File, head: Option<Head>) -> io::Result<bool> {
    head.map_or(Ok(true), |head| fingerprint_matches(file, head))
}

/// Whether `copy` looks a copy of `original` as it is now: no longer than
/// it (the original only grows), and the same bytes where the copy ends
/// (its last [`COMPARE_LEN`] bytes, compared with the original's at the
/// same offsets). What tells a copy from a file that only starts alike.
fn is_copy_of(copy: &File, original: &File) -> io::Result<bool> {
    let end = copy.metadata()?.len();
    if end > original.metadata()?.len() {
        return Ok(false);
    }
    let start = end.saturating_sub(COMPARE_LEN);
    Ok(read_range(copy, start, end - start)? == read_range(original, start, end - start)?)
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
    /// Ended by a newline (not a drained file's last bytes).
    terminated: bool,
}

impl Line {
    /// The fingerprint of the line's last bytes, newline included, up to
    /// [`TAIL_LEN`]; `None` for a line longer than what was kept of it.
    fn tail(&self) -> Option<Head> {
        if self.len != self.bytes.len() as u64 {
            return None;
        }
        let newline = usize::from(self.terminated);
        let kept = self.bytes.len().min(TAIL_LEN - newline);
        let mut last = [b'\n'; TAIL_LEN];
        last[..kept].copy_from_slice(&self.bytes[self.bytes.len() - kept..]);
        Some(Head::of(&last[..kept + newline]))
    }
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
                        terminated: false,
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
                    terminated: true,
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

    #[test]
    fn the_fingerprint_is_the_first_line_up_to_1_kib() {
        let (_tmp, file) = file_with(b"{\"message\":\"a\"}\nmore\n");
        assert_eq!(
            fingerprint_of(&file, false).unwrap(),
            Some(Head::of(b"{\"message\":\"a\"}\n"))
        );
        // No complete first line: none yet, unless the file is drained.
        let (_tmp, file) = file_with(b"{\"message\"");
        assert_eq!(fingerprint_of(&file, false).unwrap(), None);
        assert_eq!(
            fingerprint_of(&file, true).unwrap(),
            Some(Head::of(b"{\"message\""))
        );
        let long = vec![b'x'; 3000];
        let (_tmp, file) = file_with(&long);
        let fingerprint = fingerprint_of(&file, false).unwrap().unwrap();
        assert_eq!(fingerprint.len, FINGERPRINT_MAX);
        assert!(fingerprint_matches(&file, fingerprint).unwrap());
    }

    #[test]
    fn the_tail_is_the_end_of_the_last_line_and_is_checked_where_it_ends() {
        let text =
            b"short\n0123456789012345678901234567890123456789012345678901234567890123456789\n";
        let (_tmp, file) = file_with(text);
        let read = read_lines(&file, 0, limits(1000)).unwrap();
        let end = read.lines[1].end;
        let tail = read.lines[1].tail().unwrap();
        assert_eq!(tail.len, TAIL_LEN as u64);
        assert!(tail_matches(&file, end, Some(tail)).unwrap());
        assert!(!tail_matches(&file, end - 1, Some(tail)).unwrap());
        let short = read.lines[0].tail().unwrap();
        assert_eq!(short, Head::of(b"short\n"));
        assert!(tail_matches(&file, 6, Some(short)).unwrap());
        // A line cut to max_line_bytes has no tail to check.
        let cut = read_lines(&file, 0, limits(10)).unwrap();
        assert_eq!(cut.lines[1].tail(), None);
        // Around the length of a tail, with and without a newline: the
        // last TAIL_LEN bytes of the line as it stands in the file.
        for len in [0, 1, TAIL_LEN - 1, TAIL_LEN, TAIL_LEN + 1, 200] {
            let bytes: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            for terminated in [true, false] {
                let line = Line {
                    bytes: bytes.clone(),
                    len: len as u64,
                    end: 0,
                    terminated,
                };
                let mut whole = bytes.clone();
                whole.extend(terminated.then_some(b'\n'));
                let expected = Head::of(&whole[whole.len().saturating_sub(TAIL_LEN)..]);
                assert_eq!(line.tail(), Some(expected), "{len} {terminated}");
            }
        }
    }

    #[test]
    fn a_copy_is_no_longer_than_its_original_and_ends_with_its_bytes() {
        let (_a, original) = file_with(b"one\ntwo\nthree\n");
        let (_b, copy) = file_with(b"one\ntwo\n");
        let (_c, other) = file_with(b"one\nTWO\n");
        let (_d, longer) = file_with(b"one\ntwo\nthree\nfour\n");
        assert!(is_copy_of(&copy, &original).unwrap());
        assert!(!is_copy_of(&other, &original).unwrap());
        assert!(!is_copy_of(&longer, &original).unwrap());
    }

    #[test]
    fn a_stream_name_tells_files_fingerprints_and_generations_apart_within_the_collectors_bound() {
        let id = FileId { dev: 2049, ino: 77 };
        let fingerprint = Head::of(b"first\n");
        let name = stream_name("agent@host", id, fingerprint, 0, 0xabc);
        assert_eq!(
            name,
            format!("file:2049:77:{:016x}:0:abc@agent@host", fingerprint.fnv1a)
        );
        let others = [
            stream_name("agent@host", id, fingerprint, 1, 0xabc),
            stream_name("agent@host", id, fingerprint, 0, 0xabd),
            stream_name(
                "agent@host",
                FileId { dev: 2049, ino: 78 },
                fingerprint,
                0,
                0xabc,
            ),
            stream_name("agent@host", id, Head::of(b"other\n"), 0, 0xabc),
            stream_name("agent@other", id, fingerprint, 0, 0xabc),
        ];
        assert!(others.iter().all(|other| *other != name));
        let long = stream_name(&"h\u{7}é".repeat(200), id, fingerprint, 3, u64::MAX);
        assert!(long.len() <= MAX_SOURCE_LEN, "{}", long.len());
        assert!(long.starts_with("file:2049:77:") && !long.contains('\u{7}'));
    }
}
