//! Reading standard input (`causeway agent -`): lines from a pipe cannot
//! be read again, so they are spooled as they come (`spool.rs`) and
//! shipped from there; while the spool is full, stdin is not read, so the
//! writer upstream waits instead of the disk filling. Blocking I/O, on a
//! thread of its own.

use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::{info, warn};

use crate::spool::{self, Spool};
use crate::stats::Stats;

/// How often a full spool looks again whether there is room.
const FULL_WAIT: Duration = Duration::from_millis(50);

/// `<checkpoint's name without extension>.stdin.ndjson`, beside it.
pub(crate) fn spool_path(checkpoint: &Path) -> PathBuf {
    spool::path_for(checkpoint, "stdin")
}

/// Starts copying stdin into `spool`; the flag is set once stdin ended
/// and all of it is in the spool.
pub(crate) fn spool(spool: PathBuf, max_bytes: u64, stats: Arc<Stats>) -> Arc<AtomicBool> {
    let eof = Arc::new(AtomicBool::new(false));
    let done = eof.clone();
    let thread = std::thread::Builder::new()
        .name("causeway-agent-stdin".to_owned())
        .spawn(move || {
            let stdin = io::stdin();
            match copy(&mut stdin.lock(), &spool, max_bytes, &stats) {
                Ok(lines) => info!(lines, spool = %spool.display(), "standard input ended"),
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

/// Copies whole lines from `input` to the spool, waiting while it is
/// full; the lines copied.
pub(crate) fn copy(
    input: &mut impl BufRead,
    path: &Path,
    max_bytes: u64,
    stats: &Stats,
) -> io::Result<usize> {
    let mut spool = Spool::open(path.to_owned(), max_bytes)?;
    let mut copied = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(copied);
        }
        while spool.full_for(line.len() as u64 + 1, stats) {
            std::thread::sleep(FULL_WAIT);
        }
        // Not synced line by line: what a crash could lose here is no
        // more than the pipe's own buffer would have.
        copied += spool.append(&line, false)?;
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn lines_are_spooled_whole_and_the_spool_rotates_past_half_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool_path(&dir.path().join("agent.checkpoint.json"));
        assert_eq!(spool.file_name().unwrap(), "agent.checkpoint.stdin.ndjson");
        let stats = Stats::new();
        let input: String = (0..100).map(|n| format!("line-{n:03}\n")).collect();
        let mut input = io::Cursor::new(format!("{input}\n  \nunterminated"));
        let copied = copy(&mut input, &spool, 1000, &stats).unwrap();
        assert_eq!(copied, 101, "blank lines dropped");
        let mut old = spool.clone().into_os_string();
        old.push(".1");
        let old = fs::read_to_string(old).unwrap();
        let new = fs::read_to_string(&spool).unwrap();
        assert!(
            new.len() <= 500 && old.len() <= 500,
            "{} {}",
            new.len(),
            old.len()
        );
        // Nothing cut: the newest lines are in the spool, the ones just
        // before in its `.1`.
        assert!(new.ends_with("line-099\nunterminated\n"));
        let last_old: u32 = old.lines().last().unwrap()[5..].parse().unwrap();
        let first_new: u32 = new.lines().next().unwrap()[5..].parse().unwrap();
        assert_eq!(first_new, last_old + 1);
    }
}
