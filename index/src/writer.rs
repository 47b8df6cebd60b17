//! Adding records and committing. Only the collector holds a writer; tantivy
//! allows one per index and locks the directory to enforce it.
//!
//! Commits block (they fsync): callers run them off the async runtime.
//! This module imports the schema only; it never opens an index itself.

use causeway_model::Record;
use tantivy::{Index, IndexWriter};

use crate::error::IndexError;
use crate::schema::Fields;

/// The index writer.
pub struct RecordWriter {
    writer: IndexWriter,
    fields: Fields,
    uncommitted: usize,
}

impl std::fmt::Debug for RecordWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordWriter")
            .field("uncommitted", &self.uncommitted)
            .finish()
    }
}

impl RecordWriter {
    /// The writer of `index`, whose `fields` the caller resolved.
    pub(crate) fn new(
        index: &Index,
        fields: Fields,
        heap_bytes: usize,
    ) -> Result<Self, IndexError> {
        Ok(Self {
            writer: index.writer(heap_bytes)?,
            fields,
            uncommitted: 0,
        })
    }

    /// Queues a record; it becomes durable and visible at the next commit.
    pub fn add(&mut self, record: &Record) -> Result<(), IndexError> {
        self.writer.add_document(self.fields.document(record))?;
        self.uncommitted += 1;
        Ok(())
    }

    /// Records added since the last commit.
    pub fn uncommitted(&self) -> usize {
        self.uncommitted
    }

    /// Makes every added record durable and visible to readers.
    pub fn commit(&mut self) -> Result<u64, IndexError> {
        let opstamp = self.writer.commit()?;
        self.uncommitted = 0;
        Ok(opstamp)
    }
}
