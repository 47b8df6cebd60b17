//! The checkpoint: how far each stream has been shipped *and
//! acknowledged*, and which file is read as which stream, persisted as
//! versioned JSON (`{"version":2,"streams":[...],"files":[...]}`).
//!
//! A stream is one run of content: what one file held from its start,
//! named once ([`StreamEntry::name`]) and never reused for other content,
//! so the collector can drop a record it already indexed by the stream's
//! name and the record's offset. A file is known by its identity (device
//! and inode), not by its path, so that a file renamed by rotation keeps
//! its place; the path is written for people reading the checkpoint.
//! Version 1 (per file an offset, no stream) is still read: its offsets
//! are taken up by the streams the files get ([`V1FileEntry`]). Saving is
//! atomic (temporary file in the same directory, fsync, rename, fsync of
//! the directory). This module must only ever be handed acknowledged
//! offsets: writing an offset the collector has not confirmed loses lines.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::AgentError;

/// The checkpoint format this build writes.
pub(crate) const CHECKPOINT_VERSION: u32 = 2;
/// The earlier format, still read.
const CHECKPOINT_VERSION_1: u32 = 1;

/// The whole checkpoint file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Checkpoint {
    pub version: u32,
    #[serde(default)]
    pub streams: Vec<StreamEntry>,
    #[serde(default)]
    pub files: Vec<FileEntry>,
    /// Entries of a version 1 checkpoint whose file has not been seen
    /// again yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub v1_files: Vec<V1FileEntry>,
}

impl Checkpoint {
    pub fn new(streams: Vec<StreamEntry>, files: Vec<FileEntry>) -> Self {
        Self {
            version: CHECKPOINT_VERSION,
            streams,
            files,
            v1_files: Vec::new(),
        }
    }
}

/// One stream's acknowledged position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamEntry {
    /// The name the collector knows the stream by.
    pub name: String,
    /// The fingerprint of the stream's first bytes.
    pub fingerprint: Head,
    /// Every byte before this one was acknowledged by the collector.
    pub offset: u64,
    /// The fingerprint of the last bytes before `offset`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<Head>,
    /// Which incarnation of its file the stream is (0, then one more after
    /// each truncation).
    pub generation: u32,
    /// Since when (Unix seconds) no followed file is read as this stream;
    /// such a stream is kept a while, so that a copy of its file is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphan_since: Option<u64>,
}

/// One followed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileEntry {
    /// Where the file was last seen; informative only.
    pub path: String,
    pub dev: u64,
    pub inode: u64,
    /// The stream the file is read as; none while its first line is not
    /// complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// The file is a copy of `stream`'s content under another inode: it
    /// is read only while no original file is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub copy: bool,
    /// A copy shorter than its stream's offset, not yet compared with it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unverified: bool,
    /// The generation of the file's stream, or of its next one.
    pub generation: u32,
}

/// A file's entry in a version 1 checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct V1FileEntry {
    pub path: String,
    pub dev: u64,
    pub inode: u64,
    pub offset: u64,
    /// A fingerprint of the file's first acknowledged bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<Head>,
}

/// A version 1 checkpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointV1 {
    #[allow(dead_code, reason = "checked before the rest is read")]
    version: u32,
    files: Vec<V1FileEntry>,
}

/// FNV-1a (64 bit) of `len` bytes. FNV rather than std's hasher because
/// the value must not change between builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Head {
    pub len: u64,
    pub fnv1a: u64,
}

impl Head {
    pub fn of(bytes: &[u8]) -> Self {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Self {
            len: bytes.len() as u64,
            fnv1a: hash,
        }
    }
}

/// Reads the checkpoint; a missing file is an empty checkpoint.
pub(crate) fn load(path: &Path) -> Result<Checkpoint, AgentError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Checkpoint::new(Vec::new(), Vec::new()));
        }
        Err(source) => {
            return Err(AgentError::CheckpointRead {
                path: path.to_owned(),
                source,
            });
        }
    };
    let invalid = |reason: String| AgentError::CheckpointInvalid {
        path: path.to_owned(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(CHECKPOINT_VERSION) => {
            serde_json::from_value(value).map_err(|e| invalid(e.to_string()))
        }
        Some(v) if v == u64::from(CHECKPOINT_VERSION_1) => {
            let old: CheckpointV1 =
                serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
            Ok(Checkpoint {
                v1_files: old.files,
                ..Checkpoint::new(Vec::new(), Vec::new())
            })
        }
        Some(v) => Err(invalid(format!(
            "version {v} is not supported (this build reads versions \
             {CHECKPOINT_VERSION_1} and {CHECKPOINT_VERSION})"
        ))),
        None => Err(invalid("the \"version\" number is missing".to_owned())),
    }
}

/// Replaces the checkpoint atomically: a reader (or a crash) sees either
/// the old or the new one, never a mix.
pub(crate) fn save(path: &Path, checkpoint: &Checkpoint) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let json = serde_json::to_vec_pretty(checkpoint).map_err(io::Error::other)?;
    let mut file = fs::File::create(&tmp)?;
    file.write_all(&json)?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    // The rename itself is only durable once the directory is synced.
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(offset: u64) -> Checkpoint {
        let name = "file:1:2:00000000000000aa:0@agent@host".to_owned();
        Checkpoint::new(
            vec![StreamEntry {
                name: name.clone(),
                fingerprint: Head::of(b"{\"message\":\"first\"}\n"),
                offset,
                tail: Some(Head::of(b"\"}\n")),
                generation: 0,
                orphan_since: None,
            }],
            vec![FileEntry {
                path: "/var/log/app.log".into(),
                dev: 1,
                inode: 2,
                stream: Some(name),
                copy: false,
                unverified: false,
                generation: 0,
            }],
        )
    }

    #[test]
    fn save_then_load_gives_the_same_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cp.json");
        let first = checkpoint(10);
        save(&path, &first).unwrap();
        assert_eq!(load(&path).unwrap(), first);
        save(&path, &checkpoint(20)).unwrap();
        assert_eq!(load(&path).unwrap().streams[0].offset, 20);
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("cp.json")]);
    }

    #[test]
    fn a_missing_checkpoint_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = load(&dir.path().join("none.json")).unwrap();
        assert!(checkpoint.files.is_empty() && checkpoint.streams.is_empty());
    }

    #[test]
    fn a_version_1_checkpoint_is_read_as_offsets_waiting_for_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        fs::write(
            &path,
            r#"{"version":1,"files":[{"path":"/a.log","dev":1,"inode":2,"offset":30,
                "head":{"len":30,"fnv1a":7}}]}"#,
        )
        .unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.version, CHECKPOINT_VERSION);
        assert!(loaded.streams.is_empty() && loaded.files.is_empty());
        assert_eq!(
            loaded.v1_files,
            vec![V1FileEntry {
                path: "/a.log".into(),
                dev: 1,
                inode: 2,
                offset: 30,
                head: Some(Head { len: 30, fnv1a: 7 }),
            }]
        );
    }

    #[test]
    fn a_foreign_version_or_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        fs::write(&path, r#"{"version":3,"files":[]}"#).unwrap();
        let err = load(&path).unwrap_err();
        assert!(err.to_string().contains("version 3"), "{err}");
        fs::write(&path, "{not json").unwrap();
        assert!(matches!(
            load(&path),
            Err(AgentError::CheckpointInvalid { .. })
        ));
    }

    #[test]
    fn the_fingerprint_is_stable_fnv1a() {
        // Reference values of FNV-1a 64.
        assert_eq!(Head::of(b"").fnv1a, 0xcbf2_9ce4_8422_2325);
        assert_eq!(Head::of(b"a").fnv1a, 0xaf63_dc4c_8601_ec8c);
    }
}
