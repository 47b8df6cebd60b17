//! The on-disk index of causeway records: the tantivy schema, record <->
//! document, and the open, write and search helpers shared by the
//! collector (the only writer) and query (readers only).
//!
//! Beside the records, the index holds one digest document per flow (a
//! [`causeway_model::FlowDigest`]), which the writer brings up to date in the
//! same commit as the flow's records, so query can list, filter and learn
//! from flows without reading their records.
//!
//! The schema carries a version ([`SCHEMA_VERSION`]) written beside the
//! index; an index of another version is refused with a clear error rather
//! than misread. Every record is stored whole as JSON (`_source`), so
//! reading a hit back gives exactly the record that was written.

mod digest_doc;
mod digests;
mod error;
mod partition;
mod query;
mod reader;
mod recent_hashes;
mod record_index;
mod schema;
mod writer;

pub use digests::{DigestCursor, DigestFilter};
pub use error::IndexError;
pub use query::{ReadBounds, check_query, nesting_depth};
pub use reader::{MAX_HISTOGRAM_BUCKETS, Partition, RecordReader, RecordsRead};
pub use record_index::RecordIndex;
pub use schema::SCHEMA_VERSION;
pub use writer::{
    DEDUPE_WINDOW_US, Expired, MAX_INDEX_THREADS, MIN_HEAP_BYTES_PER_THREAD, RecordWriter,
    check_writer_threads,
};
