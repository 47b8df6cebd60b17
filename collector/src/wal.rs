//! The write-ahead log: where an ingest batch is durable before it is
//! indexed.
//!
//! A batch is appended as one frame with the next sequence number, and
//! acknowledged once its segment file is fsynced; batches that arrive
//! together are written together and share one fsync (group commit, made
//! by the caller handing [`IngestLog::append`] every batch waiting). The
//! indexer follows the log; each index commit stores the sequence number of
//! the last batch it covers, so on start the batches after it are replayed
//! and none is indexed twice, and segments wholly at or below it are
//! deleted ([`IngestLog::truncate_through`]).
//!
//! [`IngestLog`] is the one interface to the log, so that another durable
//! log (NATS JetStream, Kafka) can take its place; [`SegmentLog`] is the
//! one on local disk.
//!
//! Why our own rather than a crate: Quickwit's `mrecordlog` 0.4 never
//! fsyncs (its `sync` flushes a `BufWriter`; under strace 100 appends with
//! `SyncPolicy::OnAppend` and a `sync()` made 102 `write` calls and no
//! `fsync` or `fdatasync`), and keeps every retained record in memory;
//! `okaywal` 0.3 asks not to be used in production. What the collector
//! needs is narrow: one append-only stream, group fsync, truncation by
//! sequence, replay.
//!
//! On disk: `<data_dir>/wal/<first sequence number, 20 digits>.wal`, each
//! a run of frames `length: u32 LE | crc32: u32 LE | seq: u64 LE | payload`,
//! the checksum over the sequence number and the payload. A frame cut short
//! or failing its checksum ends its segment on reading (a write torn by a
//! crash was never acknowledged); on opening, the newest segment is cut
//! back to its last whole frame so that appends go on from there.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes before a frame's payload.
const HEADER: usize = 16;
/// The largest payload a frame may claim; a larger length is corruption.
const MAX_PAYLOAD: usize = 1 << 30;
const SUFFIX: &str = "wal";

/// A durable, ordered log of batches, each with a sequence number (from 1,
/// consecutive).
pub(crate) trait IngestLog: Send + 'static {
    /// Appends `payloads` in order and makes them durable together;
    /// returns the sequence number of the first. On an error none of them
    /// is in the log.
    fn append(&mut self, payloads: &[&[u8]]) -> io::Result<u64>;

    /// Lets go of every batch at or below `seq`: an index commit covers
    /// them.
    fn truncate_through(&mut self, seq: u64) -> io::Result<()>;

    /// Bytes the log holds on disk.
    fn bytes(&self) -> u64;

    /// Segment files the log holds.
    fn segments(&self) -> usize;
}

/// A segment file and the sequence number of its first frame.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    first_seq: u64,
    path: PathBuf,
}

/// The log as segment files in one directory.
#[derive(Debug)]
pub(crate) struct SegmentLog {
    dir: PathBuf,
    /// Closed segments, oldest first.
    closed: Vec<(Segment, u64)>,
    active: Segment,
    file: File,
    active_bytes: u64,
    next_seq: u64,
    segment_bytes: u64,
    /// Set when a failed append could not be undone: appending again would
    /// put frames after a torn one, where replay never reaches.
    broken: bool,
    buffer: Vec<u8>,
}

impl SegmentLog {
    /// Opens (or creates) the log in `dir`. Sequence numbers go on after
    /// the last frame on disk, and after `committed` (the index may have
    /// covered, and the log dropped, everything up to it).
    pub(crate) fn open(dir: &Path, committed: u64, segment_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut segments = segments(dir)?;
        let (active, next_seq, active_bytes) = match segments.pop() {
            Some(last) => {
                let (end, whole) = scan(&last.path, last.first_seq)?;
                let file = OpenOptions::new().write(true).open(&last.path)?;
                if file.metadata()?.len() > end {
                    tracing::warn!(
                        segment = %last.first_seq,
                        "the write-ahead log ends in a torn frame, never acknowledged; cutting it off"
                    );
                    file.set_len(end)?;
                    file.sync_all()?;
                }
                let next = last.first_seq + whole;
                (last, next, end)
            }
            None => {
                let first_seq = committed + 1;
                let segment = Segment {
                    first_seq,
                    path: segment_path(dir, first_seq),
                };
                create(dir, &segment.path)?;
                (segment, first_seq, 0)
            }
        };
        let mut closed = Vec::with_capacity(segments.len());
        for segment in segments {
            let bytes = fs::metadata(&segment.path)?.len();
            closed.push((segment, bytes));
        }
        let mut file = OpenOptions::new().append(true).open(&active.path)?;
        file.seek(SeekFrom::End(0))?;
        let mut log = Self {
            dir: dir.to_owned(),
            closed,
            active,
            file,
            active_bytes,
            next_seq,
            segment_bytes: segment_bytes.max(HEADER as u64),
            broken: false,
            buffer: Vec::new(),
        };
        if log.next_seq <= committed {
            // Everything on disk is covered: start a segment past it.
            log.next_seq = committed + 1;
            log.rotate()?;
        }
        Ok(log)
    }

    /// The sequence number the next batch gets.
    #[cfg(test)]
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Closes the active segment and starts one at the next sequence
    /// number.
    fn rotate(&mut self) -> io::Result<()> {
        let segment = Segment {
            first_seq: self.next_seq,
            path: segment_path(&self.dir, self.next_seq),
        };
        let file = create(&self.dir, &segment.path)?;
        let old = std::mem::replace(&mut self.active, segment);
        self.file = file;
        let old_bytes = std::mem::replace(&mut self.active_bytes, 0);
        if old_bytes == 0 {
            fs::remove_file(&old.path)?;
        } else {
            self.closed.push((old, old_bytes));
        }
        Ok(())
    }
}

impl IngestLog for SegmentLog {
    fn append(&mut self, payloads: &[&[u8]]) -> io::Result<u64> {
        if self.broken {
            return Err(io::Error::other(
                "the write-ahead log could not undo a failed write; restart the collector",
            ));
        }
        if self.active_bytes >= self.segment_bytes {
            self.rotate()?;
        }
        let first = self.next_seq;
        self.buffer.clear();
        for (i, payload) in payloads.iter().enumerate() {
            if payload.len() > MAX_PAYLOAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a batch too large for one write-ahead log frame",
                ));
            }
            frame(first + i as u64, payload, &mut self.buffer);
        }
        let written = self
            .file
            .write_all(&self.buffer)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            // Take back what may have reached the file, so that the next
            // append does not follow a torn frame.
            let undone = self
                .file
                .set_len(self.active_bytes)
                .and_then(|()| self.file.seek(SeekFrom::End(0)).map(drop));
            if undone.is_err() {
                self.broken = true;
            }
            return Err(error);
        }
        self.active_bytes += self.buffer.len() as u64;
        self.next_seq += payloads.len() as u64;
        Ok(first)
    }

    fn truncate_through(&mut self, seq: u64) -> io::Result<()> {
        // A closed segment ends just before the next one starts.
        let mut keep = Vec::with_capacity(self.closed.len());
        let closed = std::mem::take(&mut self.closed);
        let firsts: Vec<u64> = closed
            .iter()
            .skip(1)
            .map(|(s, _)| s.first_seq)
            .chain(std::iter::once(self.active.first_seq))
            .collect();
        let mut failed = None;
        for ((segment, bytes), next_first) in closed.into_iter().zip(firsts) {
            if next_first - 1 <= seq && failed.is_none() {
                if let Err(error) = fs::remove_file(&segment.path) {
                    failed = Some(error);
                    keep.push((segment, bytes));
                }
            } else {
                keep.push((segment, bytes));
            }
        }
        self.closed = keep;
        failed.map_or(Ok(()), Err)
    }

    fn bytes(&self) -> u64 {
        self.active_bytes + self.closed.iter().map(|(_, b)| b).sum::<u64>()
    }

    fn segments(&self) -> usize {
        self.closed.len() + 1
    }
}

/// Calls `each` with every whole batch in `dir` after sequence number
/// `after`, oldest first, and returns the last sequence number read (or
/// `after`). Reads only: the log may be appended to meanwhile, and a frame
/// being written reads as torn and ends the reading.
pub(crate) fn read_after(
    dir: &Path,
    after: u64,
    mut each: impl FnMut(u64, &[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let mut last = after;
    let all = segments(dir)?;
    for (i, segment) in all.iter().enumerate() {
        let ends_before = all.get(i + 1).map(|next| next.first_seq - 1);
        if ends_before.is_some_and(|end| end <= after) {
            continue;
        }
        let file = match File::open(&segment.path) {
            Ok(file) => file,
            // Dropped since it was listed: covered by a commit.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut payload = Vec::new();
        let mut expected = segment.first_seq;
        while let Some(seq) = read_frame(&mut reader, &mut payload)? {
            if seq != expected {
                tracing::warn!(segment = %segment.first_seq, seq, expected, "a write-ahead log frame out of sequence ends its segment");
                break;
            }
            expected += 1;
            if seq > after {
                each(seq, &payload)?;
                last = seq;
            }
        }
    }
    Ok(last)
}

/// The segments in `dir`, oldest first.
fn segments(dir: &Path) -> io::Result<Vec<Segment>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let first_seq = path
            .extension()
            .filter(|ext| *ext == SUFFIX)
            .and_then(|_| path.file_stem()?.to_str()?.parse::<u64>().ok());
        if let Some(first_seq) = first_seq {
            out.push(Segment { first_seq, path });
        }
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.{SUFFIX}"))
}

/// Creates a segment file and makes its name durable.
fn create(dir: &Path, path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    File::open(dir)?.sync_all()?;
    Ok(file)
}

/// The byte length of the whole frames at the start of a segment and how
/// many there are.
fn scan(path: &Path, first_seq: u64) -> io::Result<(u64, u64)> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut payload = Vec::new();
    let (mut end, mut count) = (0u64, 0u64);
    while let Some(seq) = read_frame(&mut reader, &mut payload)? {
        if seq != first_seq + count {
            break;
        }
        end += (HEADER + payload.len()) as u64;
        count += 1;
    }
    Ok((end, count))
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

fn frame(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(seq, payload).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Reads the next frame into `payload`: its sequence number, or `None` at
/// the end of the segment or at a torn or corrupt frame.
fn read_frame(reader: &mut impl Read, payload: &mut Vec<u8>) -> io::Result<Option<u64>> {
    let mut header = [0u8; HEADER];
    if !read_whole(reader, &mut header)? {
        return Ok(None);
    }
    let [l0, l1, l2, l3, c0, c1, c2, c3, s @ ..] = header;
    let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    let crc = u32::from_le_bytes([c0, c1, c2, c3]);
    let seq = u64::from_le_bytes(s);
    if len > MAX_PAYLOAD {
        return Ok(None);
    }
    payload.clear();
    payload.resize(len, 0);
    if !read_whole(reader, payload)? || checksum(seq, payload) != crc {
        return Ok(None);
    }
    Ok(Some(seq))
}

/// Fills `buf`; false when the input ends first.
fn read_whole(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_after(dir: &Path, after: u64) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        read_after(dir, after, |seq, payload| {
            out.push((seq, payload.to_vec()));
            Ok(())
        })
        .unwrap();
        out
    }

    fn batch(i: u64) -> Vec<u8> {
        format!("batch {i} ")
            .repeat(i as usize % 7 + 1)
            .into_bytes()
    }

    #[test]
    fn batches_read_back_in_order_across_segments_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = SegmentLog::open(dir.path(), 0, 200).unwrap();
        for i in 1..=20u64 {
            let payload = batch(i);
            assert_eq!(log.append(&[&payload]).unwrap(), i);
        }
        let group: Vec<Vec<u8>> = (21..=25).map(batch).collect();
        let refs: Vec<&[u8]> = group.iter().map(Vec::as_slice).collect();
        assert_eq!(log.append(&refs).unwrap(), 21);
        assert!(segments(dir.path()).unwrap().len() > 3, "it rotated");
        drop(log);
        let expected: Vec<(u64, Vec<u8>)> = (1..=25).map(|i| (i, batch(i))).collect();
        assert_eq!(all_after(dir.path(), 0), expected);
        assert_eq!(all_after(dir.path(), 22), expected[22..].to_vec());
        let mut log = SegmentLog::open(dir.path(), 0, 200).unwrap();
        assert_eq!(log.next_seq(), 26);
        assert_eq!(log.append(&[b"after"]).unwrap(), 26);
        assert_eq!(all_after(dir.path(), 25), vec![(26, b"after".to_vec())]);
    }

    #[test]
    fn truncation_drops_only_segments_wholly_covered() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = SegmentLog::open(dir.path(), 0, 100).unwrap();
        for i in 1..=30u64 {
            log.append(&[&batch(i)]).unwrap();
        }
        let before = log.bytes();
        log.truncate_through(17).unwrap();
        assert!(log.bytes() < before);
        let left = all_after(dir.path(), 0);
        let first = left.first().unwrap().0;
        assert!(first <= 18, "batch 18 is still there (from {first})");
        assert_eq!(left.last().unwrap().0, 30);
        log.truncate_through(30).unwrap();
        // The active segment stays, so reading after 30 finds nothing.
        assert!(all_after(dir.path(), 30).is_empty());
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_appending_goes_on_after_the_last_whole_frame() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = SegmentLog::open(dir.path(), 0, 1 << 20).unwrap();
        for i in 1..=3u64 {
            log.append(&[&batch(i)]).unwrap();
        }
        drop(log);
        let path = segments(dir.path()).unwrap().pop().unwrap().path;
        let whole = fs::metadata(&path).unwrap().len();
        // Half a frame, as a crash in the middle of a write leaves it.
        let mut torn = Vec::new();
        frame(4, b"never acknowledged", &mut torn);
        torn.truncate(torn.len() - 5);
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&torn)
            .unwrap();
        assert_eq!(all_after(dir.path(), 0).len(), 3);
        let mut log = SegmentLog::open(dir.path(), 0, 1 << 20).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), whole);
        assert_eq!(log.append(&[b"four"]).unwrap(), 4);
        let read = all_after(dir.path(), 3);
        assert_eq!(read, vec![(4, b"four".to_vec())]);
    }

    #[test]
    fn a_flipped_byte_ends_the_segment_at_the_frame_before() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = SegmentLog::open(dir.path(), 0, 1 << 20).unwrap();
        for i in 1..=4u64 {
            log.append(&[&batch(i)]).unwrap();
        }
        drop(log);
        let path = segments(dir.path()).unwrap().pop().unwrap().path;
        let mut bytes = fs::read(&path).unwrap();
        let third = 2 * HEADER + batch(1).len() + batch(2).len();
        bytes[third + HEADER + 2] ^= 0x40;
        fs::write(&path, bytes).unwrap();
        let seqs: Vec<u64> = all_after(dir.path(), 0).iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, [1, 2]);
    }

    #[test]
    fn numbering_goes_on_past_what_the_index_committed_when_the_log_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = SegmentLog::open(dir.path(), 0, 1 << 20).unwrap();
        log.append(&[b"one"]).unwrap();
        drop(log);
        // The index says it covered up to 41 (the segments holding them
        // were dropped before a restart lost this log's own count).
        let mut log = SegmentLog::open(dir.path(), 41, 1 << 20).unwrap();
        assert_eq!(log.append(&[b"next"]).unwrap(), 42);
        assert_eq!(all_after(dir.path(), 41), vec![(42, b"next".to_vec())]);
    }
}
