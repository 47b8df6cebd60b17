//! The checkpoint: how far each file has been shipped *and acknowledged*,
//! persisted as versioned JSON (`{"version":1,"files":[...]}`).
//!
//! A file is known by its identity (device and inode), not by its path,
//! so that a file renamed by rotation keeps its place; the path is written
//! for people reading the checkpoint. A fingerprint of the file's first
//! bytes guards against an inode being reused by a new file. Saving is
//! atomic (temporary file in the same directory, fsync, rename, fsync of
//! the directory). This module must only ever be handed acknowledged
//! offsets: writing an offset the collector has not confirmed loses lines.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::AgentError;

/// The checkpoint format this build writes and reads.
pub(crate) const CHECKPOINT_VERSION: u32 = 1;

/// The whole checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Checkpoint {
    pub version: u32,
    pub files: Vec<FileEntry>,
}

impl Checkpoint {
    pub fn new(files: Vec<FileEntry>) -> Self {
        Self {
            version: CHECKPOINT_VERSION,
            files,
        }
    }
}

/// One file's acknowledged position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileEntry {
    /// Where the file was last seen; informative only.
    pub path: String,
    pub dev: u64,
    pub inode: u64,
    /// Every byte before this one was acknowledged by the collector.
    pub offset: u64,
    /// A fingerprint of the file's first bytes, when any were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<Head>,
}

/// FNV-1a (64 bit) of a file's first `len` bytes. FNV rather than std's
/// hasher because the value must not change between builds.
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
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Checkpoint::new(Vec::new())),
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
        Some(v) if v == u64::from(CHECKPOINT_VERSION) => {}
        Some(v) => {
            return Err(invalid(format!(
                "version {v} is not supported (this build reads version {CHECKPOINT_VERSION})"
            )));
        }
        None => return Err(invalid("the \"version\" number is missing".to_owned())),
    }
    serde_json::from_value(value).map_err(|e| invalid(e.to_string()))
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

    fn entry(offset: u64) -> FileEntry {
        FileEntry {
            path: "/var/log/app.log".into(),
            dev: 1,
            inode: 2,
            offset,
            head: Some(Head::of(b"{\"message\":\"first\"}\n")),
        }
    }

    #[test]
    fn save_then_load_gives_the_same_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cp.json");
        let checkpoint = Checkpoint::new(vec![entry(10)]);
        save(&path, &checkpoint).unwrap();
        assert_eq!(load(&path).unwrap(), checkpoint);
        save(&path, &Checkpoint::new(vec![entry(20)])).unwrap();
        assert_eq!(load(&path).unwrap().files[0].offset, 20);
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
        assert!(checkpoint.files.is_empty());
    }

    #[test]
    fn a_foreign_version_or_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        fs::write(&path, r#"{"version":2,"files":[]}"#).unwrap();
        let err = load(&path).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
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
