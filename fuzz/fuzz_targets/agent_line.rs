//! The agent's line parser on any line: it never panics, always gives a
//! record, and a record it gives serializes and reads back.

#![no_main]

use causeway_agent::parse_line;
use causeway_model::wire::MAX_RAW_LEN;
use causeway_model::{Record, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &str| {
    let record = parse_line(line, "fuzzed", Timestamp::from_micros(1));
    if let Some(malformed) = &record.malformed {
        assert!(malformed.raw.len() <= MAX_RAW_LEN + 32);
    }
    let json = record.to_json_line();
    let back: Record = read_back(&json);
    assert_eq!(back.to_json_line(), json, "a record reads back as itself");
});

/// The record a collector reads from `json`, as one line of a batch.
fn read_back(json: &str) -> Record {
    causeway_model::wire::decode(
        &format!("{{\"causeway_batch\":1,\"source\":\"f\",\"count\":1}}\n{json}\n"),
        Timestamp::from_micros(1),
    )
    .map(|(_, mut records)| records.remove(0))
    .expect("one line, one record")
}
