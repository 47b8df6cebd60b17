//! The W3C Trace Context `traceparent` header: parse and format.
//!
//! Parsing follows the W3C recommendation (level 1, with forward
//! compatibility for later versions): lowercase hex only, version `ff`
//! rejected, all-zero ids rejected, and a version-00 header must be exactly
//! 55 characters. Any input, however hostile, yields a value or an error;
//! nothing here panics.

use std::fmt;
use std::str::FromStr;

use crate::ids::{IdError, SpanId, TraceId, hex_pair};
use crate::text::MAX_HEADER_VALUE_LEN;

/// The trace flags byte; bit 0 is `sampled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceFlags(pub u8);

impl TraceFlags {
    /// Only the sampled bit set.
    pub const SAMPLED: TraceFlags = TraceFlags(1);

    /// Whether the caller recorded (sampled) this trace.
    pub fn is_sampled(self) -> bool {
        self.0 & 1 == 1
    }
}

/// A parsed `traceparent`: which trace this is and which span caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    pub trace_id: TraceId,
    /// The span of the caller (the producer), the parent of the receiver's span.
    pub parent_id: SpanId,
    pub flags: TraceFlags,
}

/// Why a `traceparent` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    #[error("traceparent is {len} characters long, version 00 needs 55")]
    Length { len: usize },
    #[error("traceparent is not made of dash-separated fields")]
    Shape,
    #[error("traceparent version {0:?} is invalid")]
    Version(String),
    #[error("traceparent trace id: {0}")]
    TraceId(IdError),
    #[error("traceparent parent id: {0}")]
    ParentId(IdError),
    #[error("traceparent flags {0:?} are not two lowercase hex digits")]
    Flags(String),
}

impl TraceParent {
    /// A new trace with a random trace id, sampled.
    pub fn new_root(parent_id: SpanId) -> Self {
        Self {
            trace_id: TraceId::random(),
            parent_id,
            flags: TraceFlags::SAMPLED,
        }
    }
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Byte by byte: every byte of the first 55 is checked to be a hex
        // digit or a dash, so no separate ASCII check is needed.
        let bytes = crate::text::trim_blanks(s).as_bytes();
        let len = bytes.len();
        if len < Self::LEN {
            return Err(TraceParentError::Length { len });
        }
        let text = |at: usize| String::from_utf8_lossy(&bytes[at..at + 2]).into_owned();
        let version = hex_pair(bytes[0], bytes[1])
            .filter(|version| *version != 0xff)
            .ok_or_else(|| TraceParentError::Version(text(0)))?;
        if version == 0 && len != Self::LEN {
            return Err(TraceParentError::Length { len });
        }
        // Later versions may append fields, always after a dash; they are
        // not read, but must be printable and bounded like any header value.
        if len > Self::LEN {
            if len > MAX_HEADER_VALUE_LEN {
                return Err(TraceParentError::Length { len });
            }
            let tail = &bytes[Self::LEN..];
            if tail[0] != b'-' || !tail.iter().all(u8::is_ascii_graphic) {
                return Err(TraceParentError::Shape);
            }
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return Err(TraceParentError::Shape);
        }
        let trace_id = TraceId::from_hex(&bytes[3..35]).map_err(TraceParentError::TraceId)?;
        let parent_id = SpanId::from_hex(&bytes[36..52]).map_err(TraceParentError::ParentId)?;
        let flags =
            hex_pair(bytes[53], bytes[54]).ok_or_else(|| TraceParentError::Flags(text(53)))?;
        Ok(Self {
            trace_id,
            parent_id,
            flags: TraceFlags(flags),
        })
    }
}

fn put_hex(buf: &mut [u8], from: usize, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        buf[from + 2 * i] = DIGITS[usize::from(b >> 4)];
        buf[from + 2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
}

impl TraceParent {
    /// The length of a version 00 `traceparent`.
    pub const LEN: usize = 55;

    /// Writes the header value (version 00) into `buf` and returns it as
    /// text, without allocating; this runs on every publish.
    pub fn encode_into<'a>(&self, buf: &'a mut [u8; Self::LEN]) -> &'a str {
        *buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
        put_hex(buf, 3, &self.trace_id.to_bytes());
        put_hex(buf, 36, &self.parent_id.to_bytes());
        put_hex(buf, 53, &[self.flags.0]);
        // Only ASCII hex digits and dashes are in the buffer.
        std::str::from_utf8(buf).unwrap_or_default()
    }

    /// The header value (version 00), in one exact-size allocation.
    pub fn encode(&self) -> String {
        self.encode_into(&mut [0; Self::LEN]).to_owned()
    }
}

impl fmt::Display for TraceParent {
    /// Always formats version 00.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encode_into(&mut [0; Self::LEN]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SPEC_EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example() {
        let tp: TraceParent = SPEC_EXAMPLE.parse().unwrap();
        assert_eq!(tp.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.parent_id.to_string(), "00f067aa0ba902b7");
        assert!(tp.flags.is_sampled());
        assert_eq!(tp.to_string(), SPEC_EXAMPLE);
    }

    #[test]
    fn rejects_what_the_spec_rejects() {
        let cases = [
            ("", "short"),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version ff",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                "v00 too long",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "zero trace",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "zero parent",
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "uppercase",
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
                "separators",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
                "flags",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-é",
                "non-ascii",
            ),
        ];
        for (input, why) in cases {
            assert!(
                input.parse::<TraceParent>().is_err(),
                "accepted {why}: {input:?}"
            );
        }
    }

    #[test]
    fn a_future_version_s_extra_fields_must_be_printable_and_bounded() {
        let base = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        for tail in ["-\u{0}", "-a\nb", "-\u{85}", "-é", "x-abc"] {
            let value = format!("{base}{tail}");
            assert_eq!(
                value.parse::<TraceParent>(),
                Err(TraceParentError::Shape),
                "{value:?}"
            );
        }
        let long = format!("{base}-{}", "a".repeat(1000));
        assert!(matches!(
            long.parse::<TraceParent>(),
            Err(TraceParentError::Length { .. })
        ));
        assert!(
            format!("{base}-what-comes-next")
                .parse::<TraceParent>()
                .is_ok()
        );
    }

    #[test]
    fn accepts_a_future_version_with_extra_fields() {
        let tp: TraceParent = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-cafe"
            .parse()
            .unwrap();
        assert_eq!(tp.to_string(), SPEC_EXAMPLE);
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(trace in any::<[u8; 16]>(), span in any::<[u8; 8]>(), flags in any::<u8>()) {
            if let (Some(trace_id), Some(parent_id)) = (TraceId::from_bytes(trace), SpanId::from_bytes(span)) {
                let tp = TraceParent { trace_id, parent_id, flags: TraceFlags(flags) };
                prop_assert_eq!(tp.to_string().parse::<TraceParent>(), Ok(tp));
            }
        }

        #[test]
        fn arbitrary_input_never_panics(s in ".{0,80}") {
            let _ = s.parse::<TraceParent>();
        }

        #[test]
        fn near_valid_input_never_panics(s in "[0-9a-f-]{50,60}") {
            let _ = s.parse::<TraceParent>();
        }
    }
}
