//! [`RecordIndex`]: opening an index directory (creating it for the
//! collector, only opening it for query), refusing a schema version this
//! build does not know, and handing out the writer and readers.
//!
//! It imports the schema, the reader and the writer; none of them imports
//! it, so the crate's modules form no circle. It does not search or add
//! records itself.

use std::fs;
use std::path::{Path, PathBuf};

use tantivy::{Index, IndexSettings};

use crate::error::IndexError;
use crate::reader::RecordReader;
use crate::schema::{Fields, SCHEMA_VERSION, build_schema};
use crate::writer::{RecordWriter, check_writer_threads};

/// The doc store's block: records are compressed (lz4) this many bytes at
/// a time. tantivy's default is 16 KiB; JSON records repeat their keys and
/// services from one record to the next, so a larger block compresses
/// them better (an index a fifth smaller on the benchmark corpus), at
/// the cost of decompressing more to read one record (BENCHMARKS.md,
/// "Run F"). An index keeps the block it was made with.
const DOCSTORE_BLOCK_BYTES: usize = 64 * 1024;

/// The file beside the index that names its schema version.
const VERSION_FILE: &str = "causeway-index.json";

/// An opened index directory.
#[derive(Clone)]
pub struct RecordIndex {
    index: Index,
    fields: Fields,
    path: PathBuf,
}

impl std::fmt::Debug for RecordIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordIndex")
            .field("path", &self.path)
            .finish()
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> IndexError + '_ {
    move |source| IndexError::Io {
        path: path.to_owned(),
        source,
    }
}

fn check_version(dir: &Path) -> Result<(), IndexError> {
    let path = dir.join(VERSION_FILE);
    let text = fs::read_to_string(&path).map_err(io_error(&path))?;
    let found = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("schema_version")?.as_u64())
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0);
    if found != SCHEMA_VERSION {
        return Err(IndexError::SchemaVersion {
            path: dir.to_owned(),
            found,
            expected: SCHEMA_VERSION,
        });
    }
    Ok(())
}

impl RecordIndex {
    /// Opens the index in `dir`, creating the directory and an empty index
    /// if there is none. For the collector.
    pub fn open_or_create(dir: &Path) -> Result<Self, IndexError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        if dir.join("meta.json").exists() {
            return Self::open_existing(dir);
        }
        // The version file goes first: readers take `meta.json` as the sign
        // that an index exists, and must then find its version.
        let version = format!("{{\"schema_version\":{SCHEMA_VERSION}}}\n");
        let path = dir.join(VERSION_FILE);
        fs::write(&path, version).map_err(io_error(&path))?;
        let settings = IndexSettings {
            docstore_blocksize: DOCSTORE_BLOCK_BYTES,
            ..IndexSettings::default()
        };
        let index = Index::builder()
            .schema(build_schema())
            .settings(settings)
            .create_in_dir(dir)?;
        Self::with_fields(index, dir)
    }

    /// Opens an existing index; fails with [`IndexError::Missing`] if there
    /// is none. For query, which never creates or writes.
    pub fn open_existing(dir: &Path) -> Result<Self, IndexError> {
        if !dir.join("meta.json").exists() {
            return Err(IndexError::Missing {
                path: dir.to_owned(),
            });
        }
        check_version(dir)?;
        Self::with_fields(Index::open_in_dir(dir)?, dir)
    }

    /// Finds the fields in the index's own schema, by name.
    fn with_fields(index: Index, dir: &Path) -> Result<Self, IndexError> {
        let fields = Fields::resolve(&index.schema())?;
        Ok(Self {
            index,
            fields,
            path: dir.to_owned(),
        })
    }

    /// The index directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The single writer, indexing on one thread. `heap_bytes` is
    /// tantivy's indexing memory budget.
    pub fn writer(&self, heap_bytes: usize) -> Result<RecordWriter, IndexError> {
        self.writer_with_threads(1, heap_bytes)
    }

    /// The single writer, indexing on `threads` threads (1 to
    /// [`MAX_INDEX_THREADS`](crate::MAX_INDEX_THREADS)) that share `heap_bytes`, at least
    /// [`MIN_HEAP_BYTES_PER_THREAD`](crate::MIN_HEAP_BYTES_PER_THREAD) each. Each thread writes a segment of
    /// its own at every commit: more threads index faster on more cores,
    /// and leave more small segments for the merges.
    pub fn writer_with_threads(
        &self,
        threads: usize,
        heap_bytes: usize,
    ) -> Result<RecordWriter, IndexError> {
        check_writer_threads(threads, heap_bytes)?;
        RecordWriter::new(&self.index, self.fields.clone(), threads, heap_bytes)
    }

    /// A reader that picks up new commits by itself (within about a second).
    pub fn reader(&self) -> Result<RecordReader, IndexError> {
        RecordReader::new(&self.index, self.fields.clone())
    }

    /// The payload of the last commit
    /// ([`RecordWriter::commit_with_payload`]), as it is on disk now.
    pub fn commit_payload(&self) -> Result<Option<String>, IndexError> {
        Ok(self.index.load_metas()?.payload)
    }
}

#[cfg(test)]
mod tests {
    use causeway_model::{Record, Timestamp};

    use super::*;

    #[test]
    fn a_commit_payload_is_read_back_after_reopening_and_cleared_by_a_plain_commit() {
        let dir = tempfile::tempdir().unwrap();
        let index = RecordIndex::open_or_create(dir.path()).unwrap();
        assert_eq!(index.commit_payload().unwrap(), None);
        let mut writer = index.writer(15_000_000).unwrap();
        writer
            .add(&Record::new(Timestamp::from_micros(1), "svc", "one"))
            .unwrap();
        writer.commit_with_payload(Some("{\"wal\":7}")).unwrap();
        drop(writer);
        let reopened = RecordIndex::open_existing(dir.path()).unwrap();
        assert_eq!(
            reopened.commit_payload().unwrap().as_deref(),
            Some("{\"wal\":7}")
        );
        let mut writer = reopened.writer(15_000_000).unwrap();
        writer.commit().unwrap();
        assert_eq!(reopened.commit_payload().unwrap(), None);
    }

    #[test]
    fn one_indexing_thread_writes_one_segment_per_commit_and_impossible_threads_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let index = RecordIndex::open_or_create(dir.path()).unwrap();
        let mut writer = index.writer(15_000_000).unwrap();
        for commit in 0..3 {
            for i in 0..2_000 {
                let mut record =
                    Record::new(Timestamp::from_micros(commit * 10_000 + i), "svc", "x");
                record.correlation_id = Some(format!("flow-{}", i % 50).parse().unwrap());
                writer.add(&record).unwrap();
            }
            writer.commit().unwrap();
            let segments = index.index.searchable_segment_metas().unwrap();
            assert_eq!(segments.len() as i64, commit + 1, "{segments:?}");
        }
        drop(writer);

        // Two threads share the budget and index the same records.
        let mut writer = index.writer_with_threads(2, 30_000_000).unwrap();
        writer
            .add(&Record::new(Timestamp::from_micros(1), "svc", "more"))
            .unwrap();
        writer.commit().unwrap();
        assert_eq!(index.reader().unwrap().record_count().unwrap(), 6_001);
        drop(writer);

        for (threads, heap, says) in [
            (0, 64_000_000, "between 1 and 8"),
            (9, 640_000_000, "between 1 and 8"),
            (2, 20_000_000, "each needs at least 15000000"),
        ] {
            let error = index
                .writer_with_threads(threads, heap)
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(says),
                "{threads} threads, {heap} bytes: {error}"
            );
        }
    }

    #[test]
    fn an_index_reopens_with_its_fields_and_a_wrong_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let index = RecordIndex::open_or_create(dir.path()).unwrap();
        let mut writer = index.writer(15_000_000).unwrap();
        writer
            .add(&Record::new(Timestamp::from_micros(1), "a", "hello"))
            .unwrap();
        writer.commit().unwrap();
        drop(writer);
        let reopened = RecordIndex::open_existing(dir.path()).unwrap();
        assert_eq!(reopened.reader().unwrap().record_count().unwrap(), 1);

        let other = SCHEMA_VERSION + 1;
        fs::write(
            dir.path().join(VERSION_FILE),
            format!("{{\"schema_version\":{other}}}"),
        )
        .unwrap();
        assert!(matches!(
            RecordIndex::open_or_create(dir.path()),
            Err(IndexError::SchemaVersion {
                found,
                expected: SCHEMA_VERSION,
                ..
            }) if found == other
        ));
    }
}
