//! The query API's search entry point on any query string: the bounds check
//! and then tantivy's parser over the real schema, on a thread with a
//! quarter of a tokio worker's stack. A stack overflow here is the crash
//! that once took the whole daemon down.

#![no_main]

use std::sync::OnceLock;

use causeway_index::{RecordIndex, RecordReader};
use libfuzzer_sys::fuzz_target;

fn reader() -> &'static RecordReader {
    static READER: OnceLock<(tempfile::TempDir, RecordReader)> = OnceLock::new();
    let (_, reader) = READER.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let index = RecordIndex::open_or_create(dir.path()).expect("a fresh index");
        let reader = index.reader().expect("a reader");
        (dir, reader)
    });
    reader
}

fuzz_target!(|query: &str| {
    let reader = reader().clone();
    let query = query.to_owned();
    std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(move || {
            let _ = reader.parse(&query);
        })
        .expect("a parser thread")
        .join()
        .expect("the parser returns, with a query or an error");
});
