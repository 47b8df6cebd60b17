//! The agent's main loop: poll the files, ship what was read, and only
//! then advance and persist the checkpoint.
//!
//! One batch is in flight at a time, so the offsets in the checkpoint are
//! always those of acknowledged data: a crash or shutdown at any point
//! resends at most the batch that was in flight, never loses it, and since
//! each record carries its stream and offset the collector indexes what it
//! already had only once (exactly once end to end). While it is in flight
//! the next batch is read ahead (one batch, so at most `batch_max_bytes`
//! in memory): lines a truncation or deletion would take during a slow
//! acknowledgement are already read; they are acknowledged, in order,
//! only after the batch before them. This module owns no parsing, reading
//! or HTTP details; blocking file work goes to `spawn_blocking`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::checkpoint::{self, Checkpoint};
use crate::config::{AgentConfig, SourceConfig};
use crate::error::AgentError;
use crate::ship::{Outcome, Shipper};
use crate::stats::Stats;
use crate::tail::{Batch, Limits, Tailer};

/// Tails the configured files and ships their lines to the collector until
/// `shutdown` completes.
///
/// Returns an error only for what cannot be worked around: invalid
/// settings, or a checkpoint that cannot be read or written at start. A
/// collector that is down or refuses batches is retried for ever; on
/// shutdown the batch in flight is given a moment to be acknowledged, and
/// is otherwise sent again by the next run.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    config.validate()?;
    let stats = Arc::new(Stats::new());
    // Standard input is spooled to a file, read like any other.
    let spool = crate::stdin::spool_path(&config.checkpoint_path);
    let only_stdin = config.push_addr.is_none()
        && config
            .all_sources()
            .iter()
            .all(|s| s.paths.iter().all(|p| p.as_os_str() == "-"));
    let stdin_eof = if config.reads_stdin() {
        let mut config_with_spool = config.clone();
        for path in config_with_spool.paths.iter_mut().chain(
            config_with_spool
                .sources
                .iter_mut()
                .flat_map(|s| s.paths.iter_mut()),
        ) {
            if path.as_os_str() == "-" {
                path.clone_from(&spool);
            }
        }
        for source in std::iter::once(&mut config_with_spool.paths)
            .chain(config_with_spool.sources.iter_mut().map(|s| &mut s.paths))
        {
            if source.contains(&spool) {
                source.push(crate::spool::rotated(&spool));
            }
        }
        let eof = crate::stdin::spool(spool.clone(), config.stdin_buffer_bytes, stats.clone());
        Some((eof, config_with_spool))
    } else {
        None
    };
    let (stdin_eof, mut config) = match stdin_eof {
        Some((eof, with_spool)) => (Some(eof), with_spool),
        None => (None, config),
    };
    // Pushed lines too: their spool is one more source of JSON lines.
    let push = match config.push_addr {
        Some(addr) => {
            let path = crate::spool::path_for(&config.checkpoint_path, "push");
            config.sources.push(SourceConfig {
                paths: vec![path.clone(), crate::spool::rotated(&path)],
                ..SourceConfig::default()
            });
            let task = crate::push::serve(
                addr,
                path,
                config.push_buffer_bytes,
                config.batch_max_bytes,
                stats.clone(),
            )
            .await?;
            Some(task)
        }
        None => None,
    };
    let _push = AbortOnDrop(push);
    let shipper = Shipper::new(&config, stats.clone())?;
    let checkpoint_path = config.checkpoint_path.clone();
    let loaded = {
        let path = checkpoint_path.clone();
        blocking(move || checkpoint::load(&path)).await??
    };
    // Writing the checkpoint back right away reports an unwritable
    // location now rather than after the first batch was sent.
    save(&config, loaded.clone())
        .await?
        .map_err(|source| AgentError::CheckpointWrite {
            path: checkpoint_path.clone(),
            source,
        })?;
    let limits = Limits {
        max_records: config.batch_max_records,
        max_bytes: config.batch_max_bytes,
    };
    let mut tailer = Tailer::new(&config, loaded, stats.clone())?;
    let status = crate::status::serve(config.status_addr, stats.clone()).await;
    let sources = config.all_sources();
    let watch = crate::watch::watch(sources.iter().flat_map(|s| s.paths.iter()));
    let _status = AbortOnDrop(status);
    tokio::pin!(shutdown);
    info!(
        paths = ?config.paths,
        collector = %config.ingest_url(),
        checkpoint = %checkpoint_path.display(),
        "agent started"
    );

    // The batch read ahead while the one before was in flight.
    let mut ahead: Option<(Batch, bool)> = None;
    loop {
        let (batch, named) = match ahead.take() {
            Some(read) => read,
            None => {
                let (polled, batch, named) = blocking(move || poll(tailer, limits)).await?;
                tailer = polled;
                (batch, named)
            }
        };
        if named && let Err(error) = save(&config, tailer.checkpoint()).await? {
            // Sent anyway: after a crash these lines would go out again
            // under another name, twice but not lost.
            warn!(%error, path = %checkpoint_path.display(), "cannot write the checkpoint");
        }

        if batch.is_empty() {
            if only_stdin
                && stdin_eof
                    .as_ref()
                    .is_some_and(|eof| eof.load(std::sync::atomic::Ordering::SeqCst))
                && stdin_shipped(&stats, &spool)
            {
                info!("standard input ended and is shipped");
                break;
            }
            if idle(config.poll_interval(), &watch.wake, shutdown.as_mut()).await {
                break;
            }
            continue;
        }

        let mut stop = false;
        if !batch.entries.is_empty() {
            stats.in_flight(1);
            let retries_before = stats.retries();
            let sent = shipper.ship(&batch, shutdown.as_mut());
            // While the collector takes its time, the next batch is read
            // (one, at most a batch's bytes): lines a truncation or a
            // deletion would take meanwhile are then already in memory.
            let read_ahead = blocking(move || poll(tailer, limits));
            let (outcome, polled) = tokio::join!(sent, read_ahead);
            let (polled, next, named) = polled?;
            tailer = polled;
            tailer.note_retries(&batch.streams, stats.retries() - retries_before);
            if !next.is_empty() {
                ahead = Some((next, named));
            } else if named {
                ahead = Some((Batch::default(), true));
            }
            stats.in_flight(0);
            match outcome {
                Outcome::Acked => {}
                Outcome::AckedThenShutdown => stop = true,
                Outcome::Abandoned => break,
            }
        }
        tailer.ack(&batch.advances);
        if let Err(error) = save(&config, tailer.checkpoint()).await? {
            // The offsets stay in memory and are written with the next
            // batch; a crash before then resends, it does not lose.
            warn!(%error, path = %checkpoint_path.display(), "cannot write the checkpoint");
        }
        if stop {
            break;
        }
        let stopping = if batch.full || ahead.as_ref().is_some_and(|(b, _)| !b.is_empty()) {
            now_or_never(shutdown.as_mut()).await
        } else {
            idle(config.poll_interval(), &watch.wake, shutdown.as_mut()).await
        };
        if stopping {
            break;
        }
    }
    info!("agent stopped");
    Ok(())
}

/// Whether all of standard input's spool (and its older generation) is
/// acknowledged. Called once stdin ended, so the spool no longer grows.
fn stdin_shipped(stats: &Stats, spool: &std::path::Path) -> bool {
    [spool.to_owned(), crate::spool::rotated(spool)]
        .iter()
        .all(|path| stats.caught_up(path, std::fs::metadata(path).map_or(0, |m| m.len())))
}

/// How long after a watched directory changed the poll runs, so that a
/// burst of writes wakes the agent once.
const WAKE_SETTLE: Duration = Duration::from_millis(25);

/// Stops the status endpoint when the agent stops.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// Looks for files and reads the next batch (blocking: run it off the
/// runtime), and whether a stream was named meanwhile.
fn poll(mut tailer: Tailer, limits: Limits) -> (Tailer, Batch, bool) {
    let batch = tailer.poll(limits);
    let named = tailer.take_named();
    tailer.publish_status();
    (tailer, batch, named)
}

/// Persists `checkpoint` off the runtime. The outer error is a failed
/// task, the inner one the write.
async fn save(
    config: &AgentConfig,
    checkpoint: Checkpoint,
) -> Result<std::io::Result<()>, AgentError> {
    let path = config.checkpoint_path.clone();
    blocking(move || checkpoint::save(&path, &checkpoint)).await
}

async fn blocking<T, F>(work: F) -> Result<T, AgentError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|source| AgentError::Worker { source })
}

/// Sleeps for `period`, or until a watched directory changed; `true` when
/// shutdown came first.
async fn idle<S: Future<Output = ()>>(
    period: Duration,
    wake: &tokio::sync::Notify,
    shutdown: Pin<&mut S>,
) -> bool {
    tokio::select! {
        () = tokio::time::sleep(period) => false,
        // A burst of changes is read in one poll.
        () = async {
            wake.notified().await;
            tokio::time::sleep(WAKE_SETTLE.min(period)).await;
        } => false,
        () = shutdown => true,
    }
}

/// Whether shutdown has already been requested, without waiting.
async fn now_or_never<S: Future<Output = ()>>(shutdown: Pin<&mut S>) -> bool {
    tokio::select! {
        biased;
        () = shutdown => true,
        () = tokio::task::yield_now() => false,
    }
}
