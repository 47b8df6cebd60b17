//! Timestamps: UTC instants with microsecond precision, RFC 3339 on the wire
//! (`2026-11-22T12:00:00.123456Z`).
//!
//! Stored as microseconds since the Unix epoch so that they sort, subtract
//! and index as integers. Parsing accepts any RFC 3339 offset and converts
//! to UTC; finer precision than microseconds is truncated.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A UTC instant, microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

/// Why a timestamp was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 timestamp {input:?}: {reason}")]
pub struct TimestampError {
    pub input: String,
    pub reason: String,
}

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self::from_offset_date_time(OffsetDateTime::now_utc())
    }

    pub fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    /// The earliest instant RFC 3339 can write: 0000-01-01T00:00:00Z.
    pub const MIN_RFC3339_MICROS: i64 = -62_167_219_200_000_000;
    /// The latest instant RFC 3339 can write: 9999-12-31T23:59:59.999999Z.
    pub const MAX_RFC3339_MICROS: i64 = 253_402_300_799_999_999;

    /// `micros` as a timestamp if RFC 3339 can write it (years 0 to 9999),
    /// so that it reads back as itself; `None` past either end.
    pub fn from_micros_checked(micros: i64) -> Option<Self> {
        (Self::MIN_RFC3339_MICROS..=Self::MAX_RFC3339_MICROS)
            .contains(&micros)
            .then_some(Self(micros))
    }

    pub fn as_micros(self) -> i64 {
        self.0
    }

    fn from_offset_date_time(t: OffsetDateTime) -> Self {
        let nanos = t.unix_timestamp_nanos();
        Self(i64::try_from(nanos.div_euclid(1_000)).unwrap_or(i64::MAX))
    }

    fn to_offset_date_time(self) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000).ok()
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OffsetDateTime::parse(s, &Rfc3339)
            .map(Self::from_offset_date_time)
            .map_err(|e| TimestampError {
                input: s.chars().take(64).collect(),
                reason: e.to_string(),
            })
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(t) = self.to_offset_date_time() else {
            return write!(f, "@{}us", self.0);
        };
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc3339_range_writes_and_reads_back_and_past_it_is_refused() {
        for micros in [
            Timestamp::MIN_RFC3339_MICROS,
            0,
            Timestamp::MAX_RFC3339_MICROS,
        ] {
            let t = Timestamp::from_micros_checked(micros).unwrap();
            assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t, "{t}");
        }
        assert_eq!(
            Timestamp::from_micros_checked(Timestamp::MAX_RFC3339_MICROS + 1),
            None
        );
        assert_eq!(
            Timestamp::from_micros_checked(Timestamp::MIN_RFC3339_MICROS - 1),
            None
        );
    }
    use proptest::prelude::*;

    #[test]
    fn formats_with_microseconds_in_utc() {
        let t: Timestamp = "2026-11-22T13:00:00.123456789+01:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-22T12:00:00.123456Z");
    }

    #[test]
    fn rejects_garbage() {
        assert!("yesterday".parse::<Timestamp>().is_err());
        assert!("2026-13-01T00:00:00Z".parse::<Timestamp>().is_err());
    }

    proptest! {
        #[test]
        fn round_trips(micros in 0i64..4_102_444_800_000_000) {
            let t = Timestamp::from_micros(micros);
            prop_assert_eq!(t.to_string().parse::<Timestamp>(), Ok(t));
        }
    }
}
