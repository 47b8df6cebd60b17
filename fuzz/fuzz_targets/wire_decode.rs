//! The collector's batch decoder on any body: it never panics, and what it
//! decodes into stays bounded by the body's own size.

#![no_main]

use causeway_model::Timestamp;
use causeway_model::wire::{self, MAX_RAW_LEN, MAX_REASON_LEN, MAX_SOURCE_LEN};
use libfuzzer_sys::fuzz_target;

/// Room for the "…[cut N bytes]" marker.
const MARKER: usize = 32;

fuzz_target!(|body: &[u8]| {
    let text = String::from_utf8_lossy(body);
    let Ok((header, records)) = wire::decode(&text, Timestamp::from_micros(1)) else {
        return;
    };
    assert!(header.source.len() <= MAX_SOURCE_LEN + MARKER);
    assert_eq!(records.len(), header.count);
    for record in &records {
        if let Some(malformed) = &record.malformed {
            assert!(malformed.raw.len() <= MAX_RAW_LEN + MARKER);
            assert!(malformed.reason.len() <= MAX_REASON_LEN + MARKER);
            assert!(record.service.len() <= MAX_SOURCE_LEN + MARKER);
        }
        // What was decoded serializes again.
        assert!(!record.to_json_line().is_empty());
    }
});
