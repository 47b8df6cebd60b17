//! Waking the agent when a watched directory changes (`notify`: inotify on
//! Linux), so a new file, a rotation or new lines are read at once rather
//! than at the next poll. Polling stays: events can be lost (a queue
//! overflow, a network file system, a directory created later), and the
//! poll finds whatever they missed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::tail::{is_pattern, watch_root};

/// Keeps the watches alive; dropping it ends them.
pub(crate) struct Watch {
    _watcher: Option<RecommendedWatcher>,
    /// Notified at every change under a watched directory.
    pub wake: Arc<Notify>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

/// Where to watch for `path`, and how deep.
fn target(path: &Path) -> (PathBuf, RecursiveMode) {
    if is_pattern(path) {
        let deep = path.to_string_lossy().contains("**");
        let mode = if deep {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        let root = watch_root(path);
        // `logs/*.log` watches `logs`, `logs/*/x.log` all below it.
        let nested = path.components().count() > root.components().count() + 1;
        let mode = if nested {
            RecursiveMode::Recursive
        } else {
            mode
        };
        (root, mode)
    } else if path.is_dir() {
        (path.to_owned(), RecursiveMode::NonRecursive)
    } else {
        // A file: its directory, where it is rotated and created again.
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        (parent.to_owned(), RecursiveMode::NonRecursive)
    }
}

/// Watches the directories of `paths`; with none watchable (or no
/// watcher to be had), only the poll reads.
pub(crate) fn watch<'a>(paths: impl Iterator<Item = &'a PathBuf>) -> Watch {
    let wake = Arc::new(Notify::new());
    let notified = wake.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            notified.notify_one();
        }
    });
    let mut watcher = match watcher {
        Ok(watcher) => watcher,
        Err(error) => {
            warn!(%error, "cannot watch the log directories; polling only");
            return Watch {
                _watcher: None,
                wake,
            };
        }
    };
    let mut targets: Vec<(PathBuf, RecursiveMode)> = paths.map(|p| target(p)).collect();
    targets.sort_by(|a, b| a.0.cmp(&b.0));
    targets.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    for (dir, mode) in targets {
        match watcher.watch(&dir, mode) {
            Ok(()) => debug!(dir = %dir.display(), ?mode, "watching"),
            // Not there yet: the poll looks for it.
            Err(error) => debug!(dir = %dir.display(), %error, "not watched; polled"),
        }
    }
    Watch {
        _watcher: Some(watcher),
        wake,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_is_watched_from_its_last_plain_directory_and_deep_only_when_it_must() {
        assert_eq!(
            target(Path::new("/var/log/app/**/*.log")),
            (PathBuf::from("/var/log/app"), RecursiveMode::Recursive)
        );
        assert_eq!(
            target(Path::new("logs/app.log*")),
            (PathBuf::from("logs"), RecursiveMode::NonRecursive)
        );
        assert_eq!(
            target(Path::new("/srv/*/logs/x.log")),
            (PathBuf::from("/srv"), RecursiveMode::Recursive)
        );
        assert_eq!(
            target(Path::new("/nonexistent-dir/app.log")),
            (
                PathBuf::from("/nonexistent-dir"),
                RecursiveMode::NonRecursive
            )
        );
    }
}
