//! The record's shape, declared once: every field of a [`Record`] with its
//! name (the JSON key in log files, on the wire, in the index and in the
//! API) and its [`FieldKind`].
//!
//! The middleware's layer, the agent's parser and the index schema derive
//! from these declarations instead of writing the names out again; where a
//! crate must decide something per field it matches on [`RecordField`]
//! exhaustively, so a new field is one line here plus a compile error (or a
//! failing test) wherever it must be handled. `Record`'s serde names are
//! checked against these names by the tests in `record.rs`.
//!
//! This module only declares; it must not know how any crate stores,
//! indexes or parses a field (no tantivy, no aliases, no tracing names).
//!
//! [`Record`]: crate::Record

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::ids::SpanLink;
use crate::timestamp::Timestamp;

/// What a record field holds; decides how it is written, parsed and indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldKind {
    /// An exact string matched whole: ids, names, enum values.
    Keyword,
    /// Free text, searched by its words.
    Text,
    /// A point in time: RFC 3339 on the wire, microseconds inside.
    Time,
    /// A whole non-negative number.
    Number,
    /// A JSON object whose keys the writer chooses (`attributes`).
    Object,
    /// A JSON object with declared subfields ([`RecordField::nested`]).
    Nested,
    /// A JSON array of span links, `[{"trace_id","span_id"}]`.
    Links,
}

/// Declares a fieldless enum from one table: variant, name, kind. Generates
/// `COUNT`, `ALL` (declaration order, so `field as usize` indexes it),
/// `name()`, `kind()` and `from_name()`; a variant cannot be left out of
/// any of them.
macro_rules! declare_fields {
    (
        $(#[$enum_meta:meta])*
        pub enum $enum:ident {
            $( $(#[$meta:meta])* $variant:ident = $name:literal : $kind:ident, )+
        }
    ) => {
        $(#[$enum_meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $enum {
            $( $(#[$meta])* $variant, )+
        }

        impl $enum {
            /// How many there are.
            pub const COUNT: usize = [$($enum::$variant),+].len();

            /// Every one, in declaration order: `ALL[f as usize] == f`.
            pub const ALL: [$enum; Self::COUNT] = [$($enum::$variant),+];

            /// The JSON key: lowercase ASCII letters and `_`, so it is written
            /// without escaping and is a valid index field name.
            pub const fn name(self) -> &'static str {
                match self {
                    $( $enum::$variant => $name, )+
                }
            }

            /// What the field holds.
            pub const fn kind(self) -> FieldKind {
                match self {
                    $( $enum::$variant => FieldKind::$kind, )+
                }
            }

            /// The field with this JSON key, if any.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.into_iter().find(|field| field.name() == name)
            }

            /// The position in [`Self::ALL`], for per-field arrays.
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

declare_fields! {
    /// A top-level field of a [`Record`](crate::Record).
    pub enum RecordField {
        Timestamp = "timestamp": Time,
        Level = "level": Keyword,
        Service = "service": Keyword,
        Instance = "instance": Keyword,
        Message = "message": Text,
        Stage = "stage": Keyword,
        TraceId = "trace_id": Keyword,
        SpanId = "span_id": Keyword,
        ParentSpanId = "parent_span_id": Keyword,
        CorrelationId = "correlation_id": Keyword,
        CausationId = "causation_id": Keyword,
        EventId = "event_id": Keyword,
        EventType = "event_type": Keyword,
        /// OpenTelemetry `messaging.system`.
        MessagingSystem = "messaging_system": Keyword,
        /// OpenTelemetry `messaging.destination.name`.
        Destination = "destination": Keyword,
        /// OpenTelemetry `messaging.consumer.group.name`.
        ConsumerGroup = "consumer_group": Keyword,
        DurationUs = "duration_us": Number,
        /// OpenTelemetry `error.type`.
        ErrorType = "error_type": Keyword,
        ErrorMessage = "error_message": Text,
        Attributes = "attributes": Object,
        Malformed = "malformed": Nested,
        /// OpenTelemetry span links: the spans this record's span was
        /// caused by in other traces (a consumer's link to its producer).
        Links = "links": Links,
    }
}

declare_fields! {
    /// A subfield of a [`FieldKind::Nested`] record field; its name is the
    /// key inside the parent's object.
    pub enum NestedField {
        /// `malformed.raw`: the line as it was read.
        MalformedRaw = "raw": Text,
        /// `malformed.reason`: why it could not be read.
        MalformedReason = "reason": Text,
    }
}

impl NestedField {
    /// The record field whose object holds this one.
    pub const fn parent(self) -> RecordField {
        match self {
            NestedField::MalformedRaw | NestedField::MalformedReason => RecordField::Malformed,
        }
    }
}

impl RecordField {
    /// The declared subfields of a [`FieldKind::Nested`] field (none for
    /// any other kind).
    pub fn nested(self) -> impl Iterator<Item = NestedField> {
        NestedField::ALL
            .into_iter()
            .filter(move |nested| nested.parent() == self)
    }
}

/// One field's value in a record, as [`Record::field`](crate::Record::field)
/// hands it out. `Absent` exactly when the JSON line leaves the key out.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Absent,
    /// A [`FieldKind::Keyword`] or [`FieldKind::Text`] value.
    Str(Cow<'a, str>),
    Time(Timestamp),
    Number(u64),
    Object(&'a Map<String, Value>),
    /// The field is present; its subfields are read with
    /// [`Record::nested_field`](crate::Record::nested_field).
    Nested,
    /// A [`FieldKind::Links`] value, never empty.
    Links(&'a [SpanLink]),
}

impl FieldValue<'_> {
    pub fn is_absent(&self) -> bool {
        matches!(self, FieldValue::Absent)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn all_lists_every_field_at_its_index() {
        for (i, field) in RecordField::ALL.into_iter().enumerate() {
            assert_eq!(field.index(), i);
            assert_eq!(RecordField::from_name(field.name()), Some(field));
        }
        for (i, field) in NestedField::ALL.into_iter().enumerate() {
            assert_eq!(field.index(), i);
        }
        assert_eq!(RecordField::from_name("msg"), None);
    }

    #[test]
    fn names_are_unique_plain_snake_case() {
        let names: Vec<&str> = RecordField::ALL.iter().map(|f| f.name()).collect();
        let unique: HashSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        let nested = NestedField::ALL.iter().map(|f| f.name());
        for name in names.iter().copied().chain(nested) {
            assert!(
                !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    && !name.starts_with('_'),
                "{name:?} must be written unescaped and be an index field name"
            );
        }
    }

    #[test]
    fn a_field_has_subfields_exactly_when_it_is_nested() {
        for field in RecordField::ALL {
            let has_subfields = field.nested().next().is_some();
            assert_eq!(
                has_subfields,
                field.kind() == FieldKind::Nested,
                "{field:?}"
            );
        }
        for nested in NestedField::ALL {
            assert!(nested.parent().nested().any(|n| n == nested));
            let names: Vec<_> = nested.parent().nested().map(NestedField::name).collect();
            let unique: HashSet<_> = names.iter().collect();
            assert_eq!(unique.len(), names.len(), "{names:?}");
        }
    }
}
