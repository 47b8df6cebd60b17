//! Identifiers: the W3C trace and span ids as fixed-size byte newtypes, and
//! the correlation and event ids as bounded, printable strings.
//!
//! Correlation and event ids we create are UUIDv7 (time-ordered); ids that
//! come from other systems (`x-request-id`, NServiceBus, ...) may be any
//! printable string up to [`MAX_ID_LEN`] bytes, so they are not parsed as
//! UUIDs. Nothing here reads a clock other than through `uuid`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest correlation or event id accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Why a value could not be used as an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("expected {expected} hex digits, found {found} characters")]
    Length { expected: usize, found: usize },
    #[error("invalid hex digit at position {position}")]
    Hex { position: usize },
    #[error("the all-zero id is invalid")]
    Zero,
    #[error("id is empty")]
    Empty,
    #[error("id is {len} bytes long, the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("id contains a control or whitespace character at byte {position}")]
    Control { position: usize },
}

fn decode_hex<const N: usize>(bytes: &[u8]) -> Result<[u8; N], IdError> {
    if bytes.len() != N * 2 {
        return Err(IdError::Length {
            expected: N * 2,
            found: bytes.len(),
        });
    }
    // Branch-free over the digits (this runs on every message): an invalid
    // digit reads as 0xff from the table and is found after the loop.
    let mut out = [0u8; N];
    let mut invalid = 0u8;
    let mut nonzero = 0u8;
    for (byte, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let hi = HEX_VALUE[usize::from(pair[0])];
        let lo = HEX_VALUE[usize::from(pair[1])];
        invalid |= hi | lo;
        *byte = (hi << 4) | lo;
        nonzero |= *byte;
    }
    if invalid > 0x0f {
        let position = bytes
            .iter()
            .position(|b| HEX_VALUE[usize::from(*b)] > 0x0f)
            .unwrap_or_default();
        return Err(IdError::Hex { position });
    }
    if nonzero == 0 {
        return Err(IdError::Zero);
    }
    Ok(out)
}

/// The byte written as two lowercase hex digits, if they are.
pub(crate) fn hex_pair(hi: u8, lo: u8) -> Option<u8> {
    let (hi, lo) = (HEX_VALUE[usize::from(hi)], HEX_VALUE[usize::from(lo)]);
    ((hi | lo) <= 0x0f).then_some((hi << 4) | lo)
}

/// The value of each lowercase hex digit (W3C trace context allows no
/// other), 0xff for every other byte.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut digit = 0;
    while digit < 10 {
        table[b'0' as usize + digit] = digit as u8;
        digit += 1;
    }
    let mut letter = 0;
    while letter < 6 {
        table[b'a' as usize + letter] = 10 + letter as u8;
        letter += 1;
    }
    table
};

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    for (i, b) in bytes.iter().enumerate() {
        buf[i * 2] = DIGITS[(b >> 4) as usize];
        buf[i * 2 + 1] = DIGITS[(b & 0xf) as usize];
    }
    // Only ASCII hex digits were written above.
    f.write_str(std::str::from_utf8(&buf[..bytes.len() * 2]).map_err(|_| fmt::Error)?)
}

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Wraps raw bytes; `None` for the all-zero id, which W3C forbids.
            pub fn from_bytes(bytes: [u8; $len]) -> Option<Self> {
                if bytes.iter().all(|b| *b == 0) { None } else { Some(Self(bytes)) }
            }

            /// A new random id.
            pub fn random() -> Self {
                let random = uuid::Uuid::new_v4().into_bytes();
                let mut bytes = [0u8; $len];
                bytes.copy_from_slice(&random[..$len]);
                // A v4 UUID has fixed version bits, so the slice is never all zero.
                if bytes.iter().all(|b| *b == 0) { bytes[$len - 1] = 1; }
                Self(bytes)
            }

            /// The raw bytes.
            pub fn to_bytes(self) -> [u8; $len] {
                self.0
            }

            /// Parses lowercase hex digits.
            pub(crate) fn from_hex(hex: &[u8]) -> Result<Self, IdError> {
                decode_hex::<$len>(hex).map(Self)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::from_hex(s.as_bytes())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_id!(
    /// A W3C trace id: 16 bytes, 32 lowercase hex digits on the wire.
    TraceId,
    16
);
hex_id!(
    /// A W3C span (parent) id: 8 bytes, 16 lowercase hex digits on the wire.
    SpanId,
    8
);

fn check_text_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            len: s.len(),
            max: MAX_ID_LEN,
        });
    }
    // Ids are nearly always visible ASCII: check that without branching per
    // byte, and look at characters only past it.
    let bytes = s.as_bytes();
    if bytes
        .iter()
        .fold(true, |visible, b| visible & b.is_ascii_graphic())
    {
        return Ok(());
    }
    match bytes.iter().position(|b| !b.is_ascii_graphic()) {
        None => Ok(()),
        Some(position) if bytes[position].is_ascii() => Err(IdError::Control { position }),
        Some(_) => match s
            .char_indices()
            .find(|(_, c)| c.is_control() || c.is_whitespace())
        {
            Some((position, _)) => Err(IdError::Control { position }),
            None => Ok(()),
        },
    }
}

/// Longest id kept inline (no allocation): a UUID's 36 characters fit.
const INLINE_LEN: usize = 46;

/// The text of an id: inline up to [`INLINE_LEN`] bytes, else on the heap.
/// Ids are read and copied on every message, so the common ones (UUIDs,
/// business ids like `order-1234`) cost no allocation.
#[derive(Clone)]
enum IdText {
    Inline(arrayvec::ArrayString<INLINE_LEN>),
    Heap(Box<str>),
}

impl IdText {
    fn new(s: &str) -> Self {
        match arrayvec::ArrayString::from(s) {
            Ok(inline) => IdText::Inline(inline),
            Err(_) => IdText::Heap(s.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            IdText::Inline(text) => text,
            IdText::Heap(text) => text,
        }
    }
}

/// Short text that lives inline up to 46 bytes (event types, service
/// names): copying or extracting one does not allocate. Derefs to `str`.
#[derive(Clone)]
pub struct SmallText(IdText);

impl SmallText {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl Default for SmallText {
    fn default() -> Self {
        Self(IdText::new(""))
    }
}

impl std::ops::Deref for SmallText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for SmallText {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for SmallText {
    fn from(text: &str) -> Self {
        Self(IdText::new(text))
    }
}

impl From<String> for SmallText {
    fn from(text: String) -> Self {
        Self(IdText::new(&text))
    }
}

impl PartialEq for SmallText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SmallText {}

impl std::hash::Hash for SmallText {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Display for SmallText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SmallText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(IdText);

        impl $name {
            /// A new time-ordered id (UUIDv7).
            pub fn generate() -> Self {
                let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
                Self(IdText::new(uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf)))
            }

            /// Checks a foreign id: non-empty, at most [`MAX_ID_LEN`] bytes,
            /// no whitespace or control characters.
            pub fn new(value: impl AsRef<str>) -> Result<Self, IdError> {
                let value = value.as_ref();
                check_text_id(value)?;
                Ok(Self(IdText::new(value)))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.as_str() == other.as_str()
            }
        }

        impl Eq for $name {}

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.as_str().hash(state)
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.as_str().cmp(other.as_str())
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.as_str())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

text_id!(
    /// The id of one business transaction, copied unchanged to every event
    /// it causes.
    CorrelationId
);
text_id!(
    /// The id of one event (message); also used as the causation id of the
    /// events published while handling it.
    EventId
);

/// A link from one span to another (OpenTelemetry span links): the linked
/// span's trace and span id. A consumer span that starts a trace of its own
/// links to the producer's span, so the link is how the two traces meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanLink {
    pub trace_id: TraceId,
    pub span_id: SpanId,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn trace_id_rejects_uppercase_short_and_zero() {
        assert_eq!(
            "4BF92F3577B34DA6A3CE929D0E0E4736".parse::<TraceId>(),
            Err(IdError::Hex { position: 1 })
        );
        assert!(matches!(
            "4bf9".parse::<TraceId>(),
            Err(IdError::Length { .. })
        ));
        assert_eq!(
            "00000000000000000000000000000000".parse::<TraceId>(),
            Err(IdError::Zero)
        );
    }

    #[test]
    fn long_ids_survive_beyond_the_inline_size() {
        let long = "x".repeat(MAX_ID_LEN);
        assert_eq!(CorrelationId::new(&long).unwrap().as_str(), long);
        let short = CorrelationId::new("order-1234").unwrap();
        assert_eq!(
            short,
            CorrelationId::new(String::from("order-1234")).unwrap()
        );
        assert!(short < CorrelationId::new("order-2").unwrap());
    }

    #[test]
    fn generated_event_ids_are_time_ordered() {
        let a = EventId::generate();
        let b = EventId::generate();
        assert!(a < b, "{a} should sort before {b}");
    }

    #[test]
    fn text_ids_reject_control_characters_and_oversize() {
        assert!(matches!(
            CorrelationId::new("abc\r\nSet-Cookie: x"),
            Err(IdError::Control { position: 3 })
        ));
        assert!(matches!(
            CorrelationId::new("x".repeat(MAX_ID_LEN + 1)),
            Err(IdError::TooLong { .. })
        ));
        assert_eq!(CorrelationId::new(""), Err(IdError::Empty));
        assert_eq!(
            CorrelationId::new("order-1234").unwrap().as_str(),
            "order-1234"
        );
    }

    #[test]
    fn ids_serialize_as_hex_strings() {
        let id: SpanId = "00f067aa0ba902b7".parse().unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"00f067aa0ba902b7\"");
        let back: SpanId = serde_json::from_str("\"00f067aa0ba902b7\"").unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<SpanId>("\"zz\"").is_err());
    }

    proptest! {
        #[test]
        fn trace_id_hex_round_trips(bytes in any::<[u8; 16]>()) {
            if let Some(id) = TraceId::from_bytes(bytes) {
                prop_assert_eq!(id.to_string().parse::<TraceId>(), Ok(id));
            }
        }

        #[test]
        fn arbitrary_text_never_panics_as_an_id(s in ".*") {
            let _ = s.parse::<TraceId>();
            let _ = s.parse::<SpanId>();
            let _ = CorrelationId::new(s);
        }
    }
}
