//! Reading standard input (`causeway agent -`): lines from a pipe cannot
//! be read again, so they are spooled, as they come, to a file beside the
//! checkpoint, which is then followed like any log file: a record is
//! acknowledged, checkpointed and never sent twice, and lines spooled but
//! not yet shipped when the agent stops are shipped by the next run.
//!
//! The spool is bounded: past half its bound it is renamed `<spool>.1`
//! (read to its end by the tailer, as any rotated file) and a new one is
//! started; while the `.1` is still being read, stdin is not read either,
//! so the writer upstream waits instead of the disk filling. Blocking I/O,
//! on a thread of its own.

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::{info, warn};

use crate::stats::Stats;

/// How often a full spool looks again whether its `.1` was read.
const FULL_WAIT: Duration = Duration::from_millis(50);

/// `<checkpoint's name without extension>.stdin.ndjson`, beside it.
pub(crate) fn spool_path(checkpoint: &Path) -> PathBuf {
    let stem = checkpoint
        .file_stem()
        .map_or_else(|| "causeway-agent".into(), |s| s.to_string_lossy());
    checkpoint.with_file_name(format!("{stem}.stdin.ndjson"))
}

fn rotated(spool: &Path) -> PathBuf {
    let mut old = spool.to_owned().into_os_string();
    old.push(".1");
    PathBuf::from(old)
}

/// Starts copying stdin into `spool`; `eof` is set once stdin ended and
/// all of it is in the spool.
pub(crate) fn spool(spool: PathBuf, max_bytes: u64, stats: Arc<Stats>) -> Arc<AtomicBool> {
    let eof = Arc::new(AtomicBool::new(false));
    let done = eof.clone();
    let thread = std::thread::Builder::new()
        .name("causeway-agent-stdin".to_owned())
        .spawn(move || {
            let stdin = io::stdin();
            match copy(&mut stdin.lock(), &spool, max_bytes, &stats) {
                Ok(bytes) => info!(bytes, spool = %spool.display(), "standard input ended"),
                Err(error) => {
                    warn!(%error, spool = %spool.display(), "cannot spool standard input");
                    stats.set_error(format!("stdin spool: {error}"));
                }
            }
            done.store(true, Ordering::SeqCst);
        });
    if let Err(error) = thread {
        warn!(%error, "cannot start reading standard input");
        eof.store(true, Ordering::SeqCst);
    }
    eof
}

/// Copies whole lines from `input` to the spool (a last line without a
/// newline gets one), rotating it past half of `max_bytes`; the bytes
/// copied.
pub(crate) fn copy(
    input: &mut impl BufRead,
    spool: &Path,
    max_bytes: u64,
    stats: &Stats,
) -> io::Result<u64> {
    let mut copied = 0u64;
    let mut line = Vec::new();
    let mut file = OpenOptions::new().create(true).append(true).open(spool)?;
    let mut len = file.metadata()?.len();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(copied);
        }
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        if len > 0 && len + line.len() as u64 > max_bytes / 2 {
            // The spool before this one must be read before it is
            // replaced: wait for the tailer to let it go.
            let old = rotated(spool);
            while stats.follows(&old) {
                std::thread::sleep(FULL_WAIT);
            }
            fs::rename(spool, &old)?;
            file = OpenOptions::new().create(true).append(true).open(spool)?;
            len = 0;
        }
        // One write per line: the tailer never sees half of one followed
        // by a newline that is not its own.
        file.write_all(&line)?;
        len += line.len() as u64;
        copied += line.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_spooled_whole_and_the_spool_rotates_past_half_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool_path(&dir.path().join("agent.checkpoint.json"));
        assert_eq!(spool.file_name().unwrap(), "agent.checkpoint.stdin.ndjson");
        let stats = Stats::new();
        let input: String = (0..100).map(|n| format!("line-{n:03}\n")).collect();
        let mut input = io::Cursor::new(format!("{input}unterminated"));
        let copied = copy(&mut input, &spool, 1000, &stats).unwrap();
        assert_eq!(copied, 100 * 9 + "unterminated\n".len() as u64);
        let old = fs::read_to_string(rotated(&spool)).unwrap();
        let new = fs::read_to_string(&spool).unwrap();
        assert!(
            new.len() <= 500 && old.len() <= 500,
            "{} {}",
            new.len(),
            old.len()
        );
        // Nothing lost, nothing cut: the newest lines are in the spool,
        // the ones just before in its `.1` (older ones were rotated out,
        // their `.1` no longer followed).
        assert!(new.ends_with("line-099\nunterminated\n"));
        assert!(
            old.lines()
                .chain(new.lines())
                .all(|l| l.starts_with("line-") && l.len() == 8 || l == "unterminated")
        );
        let last_old: u32 = old.lines().last().unwrap()[5..].parse().unwrap();
        let first_new: u32 = new.lines().next().unwrap()[5..].parse().unwrap();
        assert_eq!(first_new, last_old + 1);
    }
}
