//! Reading a line longer than `agent.max_line_bytes` that holds a JSON
//! object, straight from the file and in bounded memory, so that it keeps
//! its fields (ids, service, level, timestamp) instead of becoming a
//! malformed record.
//!
//! [`read_long_object`] reads the line's bytes once, as a stream, and never
//! holds the line. What it keeps is about `max_kept_bytes` in all (each
//! kept member or element costs its text plus [`ENTRY_COST`] bytes of
//! bookkeeping) and at most `max_value_bytes` of one string. A quarter of
//! the budget is reserved for what comes later: a string or a nested
//! object or array may spend what is left above the reserve, and once only
//! the reserve is left a string keeps at most 256 bytes and a nested value
//! 4 KiB, so a few huge values never starve the small fields written after
//! them (ids, level). A nested object or array has its share as its own
//! budget, with the same rule inside.
//!
//! A longer string (value or key) keeps its prefix, cut on a character
//! boundary, followed by the model's marker `…[cut N bytes]` (as
//! `causeway_model::wire::cut_text` writes it). A member or array element
//! met once the budget is spent is read, checked and dropped (counted). An
//! array or object nested deeper than [`MAX_DEPTH`] levels is kept as a
//! string, its JSON text cut like any long string; inside it only strings
//! and bracket balance are checked. Invalid UTF-8 in a string becomes
//! U+FFFD, as does a lone surrogate escape. Anything that is not one JSON
//! object (not JSON, an array, trailing characters, the line ending inside
//! the object, a number of over 1 KiB) is an `Err` with the reason, and the
//! caller keeps the cut raw line instead.
//!
//! [`long_line_record`] maps the object as the caller says (the source's
//! format mapping, then the model's lenient `parse_object`) and marks the
//! record with the attribute [`LINE_CUT`], `line.cut`, e.g. `line of
//! 1048700 bytes exceeds max_line_bytes 262144; 982000 bytes of long
//! values cut`, followed, when there were any, by `; 12 members or
//! elements dropped past the memory budget` and `; 1 value nested deeper
//! than 64 levels kept as cut text`. A `line.cut` key of the line itself
//! is overwritten.
//!
//! Memory: the reader holds its 64 KiB buffer, the kept fields
//! (`kept_bytes` at most `max_kept_bytes` plus one number or marker that
//! ends past it, [`MAX_OVERSHOOT`]), one key of up to `max_value_bytes`
//! while it is read, and a recursion at most [`MAX_DEPTH`] deep; never the
//! line, whatever its length, key count or nesting.
//!
//! This module does no I/O of its own: the caller hands it a reader over
//! the line's bytes (without the newline).

use std::io::{ErrorKind, Read};

use causeway_model::{Record, char_prefix};
use serde_json::{Map, Number, Value};

/// The attribute that says a record comes from a line cut to fit.
pub(crate) const LINE_CUT: &str = "line.cut";
/// Objects and arrays nested deeper than this (the line's object is level
/// 1) are kept as cut JSON text.
pub(crate) const MAX_DEPTH: usize = 64;
/// What keeping one value costs beyond its text: the map entry or array
/// slot, the `Value` and the `String` headers.
pub(crate) const ENTRY_COST: usize = 64;
/// What a string may keep once only the budget's reserve is left.
const SMALL_STRING: usize = 256;
/// What a nested object or array may spend once only the reserve is left.
const SMALL_CONTAINER: usize = 4096;
/// The longest number read; a longer one makes the line unreadable.
const MAX_NUMBER_LEN: usize = 1024;
/// How far past `max_kept_bytes` the kept fields may end: the slot of the
/// last value kept was within the budget, its number or cut marker may not.
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "the bound the tests hold the reader to")
)]
pub(crate) const MAX_OVERSHOOT: usize = MAX_NUMBER_LEN + 64;
/// The read buffer: the only copy of the line's bytes held at one time.
const BUF_LEN: usize = 64 * 1024;

/// What was read of one over-long line that holds a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LongObject {
    /// The object's members, long strings cut, members past the budget
    /// dropped.
    pub fields: Map<String, Value>,
    /// Bytes of kept strings (values, keys, too-deep values' text) cut off.
    pub cut_bytes: u64,
    /// Members and array elements dropped because the budget was spent.
    pub dropped: u64,
    /// Values nested deeper than [`MAX_DEPTH`], kept as cut JSON text.
    pub too_deep: u64,
    /// What the kept fields cost against `max_kept_bytes`.
    pub kept_bytes: usize,
}

impl LongObject {
    /// The text of the [`LINE_CUT`] attribute.
    pub(crate) fn note(&self, line_len: u64, max_line_bytes: usize) -> String {
        let mut note = format!(
            "line of {line_len} bytes exceeds max_line_bytes {max_line_bytes}; {} bytes of long values cut",
            self.cut_bytes
        );
        if self.dropped > 0 {
            note.push_str(&format!(
                "; {} members or elements dropped past the memory budget",
                self.dropped
            ));
        }
        if self.too_deep > 0 {
            note.push_str(&format!(
                "; {} {} nested deeper than {MAX_DEPTH} levels kept as cut text",
                self.too_deep,
                if self.too_deep == 1 {
                    "value"
                } else {
                    "values"
                }
            ));
        }
        note
    }
}

/// Reads one line (its bytes without the newline, as `reader`) as a JSON
/// object, streaming, keeping about `max_kept_bytes` in all and at most
/// `max_value_bytes` of any one string (see the module docs). `Err` holds
/// why the line is not one JSON object, or the read error.
pub(crate) fn read_long_object(
    reader: impl Read,
    max_kept_bytes: usize,
    max_value_bytes: usize,
) -> Result<LongObject, String> {
    let mut parser = Parser {
        input: Input::new(reader),
        max_kept: max_kept_bytes,
        max_value: max_value_bytes,
        kept: 0,
        cut_bytes: 0,
        dropped: 0,
        too_deep: 0,
    };
    parser.whitespace()?;
    match parser.input.peek()? {
        Some(b'{') => parser.input.bump(),
        Some(byte) => return Err(not_an_object(byte, parser.input.position())),
        None => return Err("an empty line, not a JSON object".to_owned()),
    }
    let fields = parser.object(1, true)?;
    parser.whitespace()?;
    if parser.input.peek()?.is_some() {
        return Err(format!(
            "trailing characters after the JSON object at byte {}",
            parser.input.position()
        ));
    }
    Ok(LongObject {
        fields,
        cut_bytes: parser.cut_bytes,
        dropped: parser.dropped,
        too_deep: parser.too_deep,
        kept_bytes: parser.kept,
    })
}

/// Maps what [`read_long_object`] kept of a line of `line_len` bytes onto
/// a record with `to_record`, the mapping a line within the limit gets
/// from its source (the format's own mapping and renames, then the
/// lenient `parse_object`), and adds the [`LINE_CUT`] attribute saying what
/// was cut.
pub(crate) fn long_line_record(
    object: LongObject,
    line_len: u64,
    max_line_bytes: usize,
    to_record: impl FnOnce(Map<String, Value>) -> Record,
) -> Record {
    let note = object.note(line_len, max_line_bytes);
    let mut record = to_record(object.fields);
    record
        .attributes
        .insert(LINE_CUT.to_owned(), Value::String(note));
    record
}

fn not_an_object(first: u8, at: u64) -> String {
    let kind = match first {
        b'[' => "an array",
        b'"' => "a string",
        b'-' | b'0'..=b'9' => "a number",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        other => return format!("not JSON: {} at byte {at}", describe(Some(other))),
    };
    format!("not a JSON object but {kind}")
}

fn describe(byte: Option<u8>) -> String {
    match byte {
        None => "the end of the line".to_owned(),
        Some(b) if b.is_ascii_graphic() => format!("'{}'", b as char),
        Some(b) => format!("byte 0x{b:02x}"),
    }
}

/// The line's bytes through one fixed buffer.
struct Input<R> {
    reader: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// Bytes of the line before `buf[0]`.
    offset: u64,
    eof: bool,
}

impl<R: Read> Input<R> {
    fn new(reader: R) -> Self {
        Self {
            reader,
            buf: vec![0; BUF_LEN].into_boxed_slice(),
            pos: 0,
            end: 0,
            offset: 0,
            eof: false,
        }
    }

    /// Moves the unread bytes to the front and reads more after them;
    /// returns whether any byte was added.
    fn fill(&mut self) -> Result<bool, String> {
        if self.eof {
            return Ok(false);
        }
        self.buf.copy_within(self.pos..self.end, 0);
        self.offset += self.pos as u64;
        self.end -= self.pos;
        self.pos = 0;
        loop {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(format!("reading the line failed: {error}")),
            }
        }
    }

    fn peek(&mut self) -> Result<Option<u8>, String> {
        if self.pos == self.end && !self.fill()? {
            return Ok(None);
        }
        Ok(Some(self.buf[self.pos]))
    }

    /// Consumes the byte [`Self::peek`] returned.
    fn bump(&mut self) {
        self.pos += 1;
    }

    fn next(&mut self) -> Result<Option<u8>, String> {
        let byte = self.peek()?;
        if byte.is_some() {
            self.bump();
        }
        Ok(byte)
    }

    fn position(&self) -> u64 {
        self.offset + self.pos as u64
    }
}

/// A string being kept: at most `cap` bytes, then only counted.
struct Sink {
    text: String,
    cap: usize,
    cut: u64,
}

impl Sink {
    fn new(cap: usize) -> Self {
        Self {
            text: String::new(),
            cap,
            cut: 0,
        }
    }

    fn full(&self) -> bool {
        self.cut > 0
    }

    fn push(&mut self, s: &str) {
        if self.full() {
            self.cut += s.len() as u64;
            return;
        }
        let kept = char_prefix(s, self.cap - self.text.len());
        self.text.push_str(kept);
        self.cut += (s.len() - kept.len()) as u64;
    }

    fn push_char(&mut self, c: char) {
        self.push(c.encode_utf8(&mut [0; 4]));
    }

    fn finish(mut self) -> (String, u64) {
        if self.cut > 0 {
            self.text.push_str(&format!("…[cut {} bytes]", self.cut));
        }
        (self.text, self.cut)
    }
}

struct Parser<R> {
    input: Input<R>,
    max_kept: usize,
    max_value: usize,
    kept: usize,
    cut_bytes: u64,
    dropped: u64,
    too_deep: u64,
}

impl<R: Read> Parser<R> {
    fn remaining(&self) -> usize {
        self.max_kept.saturating_sub(self.kept)
    }

    /// What one value may spend of the budget: all of it but a reserve of
    /// a quarter, kept for the values after it; once only the reserve is
    /// left, `small` bytes each while it lasts.
    fn share(&self, small: usize) -> usize {
        let remaining = self.remaining();
        remaining
            .saturating_sub(self.max_kept / 4)
            .max(small.min(remaining))
    }

    /// How long the next kept string may be.
    fn string_cap(&self) -> usize {
        self.max_value.min(self.share(SMALL_STRING))
    }

    /// Reads a nested object or array, its opening bracket consumed, with
    /// its [`Self::share`] of the budget as its own budget.
    fn nested<T>(
        &mut self,
        keep: bool,
        read: impl FnOnce(&mut Self) -> Result<T, String>,
    ) -> Result<T, String> {
        let outer = self.max_kept;
        if keep {
            self.max_kept = self.kept + self.share(SMALL_CONTAINER);
        }
        let result = read(self);
        self.max_kept = outer;
        result
    }

    /// Takes one slot of the budget if there is one left.
    fn take_slot(&mut self, keep: bool) -> bool {
        if !keep {
            return false;
        }
        if self.remaining() < ENTRY_COST {
            self.dropped += 1;
            return false;
        }
        self.kept += ENTRY_COST;
        true
    }

    fn whitespace(&mut self) -> Result<(), String> {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.input.peek()? {
            self.input.bump();
        }
        Ok(())
    }

    fn unexpected(&self, found: Option<u8>, wanted: &str) -> String {
        format!(
            "not JSON: {} at byte {} where {wanted} was expected",
            describe(found),
            self.input
                .position()
                .saturating_sub(u64::from(found.is_some()))
        )
    }

    fn expect(&mut self, wanted: u8, what: &str) -> Result<(), String> {
        match self.input.next()? {
            Some(byte) if byte == wanted => Ok(()),
            other => Err(self.unexpected(other, what)),
        }
    }

    /// Reads an object's members, its `{` consumed; `depth` is its own level.
    fn object(&mut self, depth: usize, keep: bool) -> Result<Map<String, Value>, String> {
        let mut map = Map::new();
        self.whitespace()?;
        if self.input.peek()? == Some(b'}') {
            self.input.bump();
            return Ok(map);
        }
        loop {
            self.whitespace()?;
            self.expect(b'"', "a member name")?;
            // A key is read whole (up to `max_value`) before the member is
            // kept or dropped, so that a key is never kept mangled.
            let (key, key_cut) = self.string(keep.then_some(self.max_value))?;
            let keep_member = keep && self.remaining() >= ENTRY_COST + key.len();
            if keep_member {
                self.kept += ENTRY_COST + key.len();
                self.cut_bytes += key_cut;
            } else if keep {
                self.dropped += 1;
            }
            self.whitespace()?;
            self.expect(b':', "':'")?;
            self.whitespace()?;
            let value = self.value(depth, keep_member)?;
            if keep_member {
                map.insert(key, value);
            }
            self.whitespace()?;
            match self.input.next()? {
                Some(b',') => {}
                Some(b'}') => return Ok(map),
                other => return Err(self.unexpected(other, "',' or '}'")),
            }
        }
    }

    /// Reads an array's elements, its `[` consumed; `depth` is its own level.
    fn array(&mut self, depth: usize, keep: bool) -> Result<Vec<Value>, String> {
        let mut elements = Vec::new();
        self.whitespace()?;
        if self.input.peek()? == Some(b']') {
            self.input.bump();
            return Ok(elements);
        }
        loop {
            self.whitespace()?;
            let keep_element = self.take_slot(keep);
            let value = self.value(depth, keep_element)?;
            if keep_element {
                elements.push(value);
            }
            self.whitespace()?;
            match self.input.next()? {
                Some(b',') => {}
                Some(b']') => return Ok(elements),
                other => return Err(self.unexpected(other, "',' or ']'")),
            }
        }
    }

    /// Reads one value inside a container of level `depth`; when `keep` is
    /// false it is only checked and `Null` is returned.
    fn value(&mut self, depth: usize, keep: bool) -> Result<Value, String> {
        let value = match self.input.peek()? {
            Some(b'{' | b'[') if depth >= MAX_DEPTH => return self.too_deep(keep),
            Some(b'{') => {
                self.input.bump();
                Value::Object(self.nested(keep, |p| p.object(depth + 1, keep))?)
            }
            Some(b'[') => {
                self.input.bump();
                Value::Array(self.nested(keep, |p| p.array(depth + 1, keep))?)
            }
            Some(b'"') => {
                self.input.bump();
                let (text, cut) = self.string(keep.then(|| self.string_cap()))?;
                self.kept += text.len();
                self.cut_bytes += cut;
                Value::String(text)
            }
            Some(b'-' | b'0'..=b'9') => return self.number(keep),
            Some(b't') => self.literal("true", Value::Bool(true))?,
            Some(b'f') => self.literal("false", Value::Bool(false))?,
            Some(b'n') => self.literal("null", Value::Null)?,
            other => return Err(self.unexpected(other, "a value")),
        };
        Ok(if keep { value } else { Value::Null })
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, String> {
        for &wanted in word.as_bytes() {
            self.expect(wanted, word)?;
        }
        Ok(value)
    }

    fn number(&mut self, keep: bool) -> Result<Value, String> {
        let start = self.input.position();
        let mut text = String::new();
        let mut take = |parser: &mut Self, byte: u8| -> Result<(), String> {
            parser.input.bump();
            if text.len() == MAX_NUMBER_LEN {
                return Err(format!(
                    "a number longer than {MAX_NUMBER_LEN} bytes at byte {start}"
                ));
            }
            text.push(byte as char);
            Ok(())
        };
        if self.input.peek()? == Some(b'-') {
            take(self, b'-')?;
        }
        match self.input.peek()? {
            Some(b'0') => take(self, b'0')?,
            Some(byte @ b'1'..=b'9') => {
                take(self, byte)?;
                self.digits(&mut take)?;
            }
            other => return Err(self.unexpected(other, "a digit")),
        }
        if self.input.peek()? == Some(b'.') {
            take(self, b'.')?;
            self.first_digit(&mut take)?;
            self.digits(&mut take)?;
        }
        if let Some(byte @ (b'e' | b'E')) = self.input.peek()? {
            take(self, byte)?;
            if let Some(sign @ (b'+' | b'-')) = self.input.peek()? {
                take(self, sign)?;
            }
            self.first_digit(&mut take)?;
            self.digits(&mut take)?;
        }
        if !keep {
            return Ok(Value::Null);
        }
        let number: Number = text
            .parse()
            .map_err(|error| format!("a number at byte {start}: {error}"))?;
        self.kept += text.len();
        Ok(Value::Number(number))
    }

    fn first_digit(
        &mut self,
        take: &mut impl FnMut(&mut Self, u8) -> Result<(), String>,
    ) -> Result<(), String> {
        match self.input.peek()? {
            Some(byte @ b'0'..=b'9') => take(self, byte),
            other => Err(self.unexpected(other, "a digit")),
        }
    }

    fn digits(
        &mut self,
        take: &mut impl FnMut(&mut Self, u8) -> Result<(), String>,
    ) -> Result<(), String> {
        while let Some(byte @ b'0'..=b'9') = self.input.peek()? {
            take(self, byte)?;
        }
        Ok(())
    }

    /// Reads a string, its opening quote consumed: kept up to `cap` bytes
    /// and a marker, with the count of bytes cut; without a cap it is only
    /// checked and the result is empty.
    fn string(&mut self, cap: Option<usize>) -> Result<(String, u64), String> {
        let start = self.input.position();
        let mut sink = Sink::new(cap.unwrap_or(0));
        // A high surrogate escape waiting for its low half.
        let mut high: Option<u16> = None;
        loop {
            if self.input.pos == self.input.end && !self.input.fill()? {
                return Err(format!(
                    "the line ends inside the string started at byte {start}"
                ));
            }
            let run = &self.input.buf[self.input.pos..self.input.end];
            let stop = run
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            let raw_len = match stop {
                Some(stop) => stop,
                // Keep a character cut by the buffer's end for the next fill.
                None => run.len() - incomplete_tail(run),
            };
            if raw_len > 0 {
                if high.take().is_some() {
                    sink.push_char(char::REPLACEMENT_CHARACTER);
                }
                let raw = &run[..raw_len];
                if sink.full() {
                    sink.cut += raw_len as u64;
                } else {
                    sink.push(&String::from_utf8_lossy(raw));
                }
                self.input.pos += raw_len;
            }
            if stop.is_none() {
                if raw_len == 0 && !self.input.fill()? {
                    // Only the start of a character is left: invalid UTF-8.
                    return Err(format!(
                        "the line ends inside the string started at byte {start}"
                    ));
                }
                continue;
            }
            let Some(byte) = self.input.next()? else {
                continue;
            };
            match byte {
                b'"' => {
                    if high.is_some() {
                        sink.push_char(char::REPLACEMENT_CHARACTER);
                    }
                    break;
                }
                b'\\' => self.escape(&mut sink, &mut high)?,
                _ => {
                    return Err(format!(
                        "a control character (0x{byte:02x}) in a string at byte {}",
                        self.input.position() - 1
                    ));
                }
            }
        }
        if cap.is_none() {
            return Ok((String::new(), 0));
        }
        Ok(sink.finish())
    }

    /// Reads one escape, its `\` consumed.
    fn escape(&mut self, sink: &mut Sink, high: &mut Option<u16>) -> Result<(), String> {
        let at = self.input.position() - 1;
        let byte = self.input.next()?;
        let simple = match byte {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let mut unit: u16 = 0;
                for _ in 0..4 {
                    let digit = self
                        .input
                        .next()?
                        .and_then(|b| (b as char).to_digit(16))
                        .ok_or_else(|| format!("a bad \\u escape at byte {at}"))?;
                    unit = unit * 16 + digit as u16;
                }
                match (high.take(), unit) {
                    (Some(first), 0xDC00..=0xDFFF) => {
                        let c = 0x10000
                            + ((u32::from(first) - 0xD800) << 10)
                            + (u32::from(unit) - 0xDC00);
                        sink.push_char(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
                    }
                    (first, _) => {
                        if first.is_some() {
                            sink.push_char(char::REPLACEMENT_CHARACTER);
                        }
                        match unit {
                            0xD800..=0xDBFF => *high = Some(unit),
                            _ => sink.push_char(
                                char::from_u32(u32::from(unit))
                                    .unwrap_or(char::REPLACEMENT_CHARACTER),
                            ),
                        }
                    }
                }
                return Ok(());
            }
            _ => return Err(format!("a bad escape at byte {at}")),
        };
        if high.take().is_some() {
            sink.push_char(char::REPLACEMENT_CHARACTER);
        }
        sink.push_char(simple);
        Ok(())
    }

    /// Reads an object or array nested too deep: its text is kept as a
    /// string cut like a long value, only its strings and bracket balance
    /// checked.
    fn too_deep(&mut self, keep: bool) -> Result<Value, String> {
        let start = self.input.position();
        let cap = if keep { self.string_cap() } else { 0 };
        let mut raw = Vec::new();
        let mut total: u64 = 0;
        let mut depth: u64 = 0;
        let mut in_string = false;
        let mut escaped = false;
        loop {
            let byte = self
                .input
                .next()?
                .ok_or_else(|| format!("the line ends inside the value nested at byte {start}"))?;
            total += 1;
            if raw.len() < cap {
                raw.push(byte);
            }
            if in_string {
                if escaped {
                    escaped = false;
                } else if byte == b'\\' {
                    escaped = true;
                } else if byte == b'"' {
                    in_string = false;
                }
                continue;
            }
            match byte {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
        }
        if !keep {
            return Ok(Value::Null);
        }
        self.too_deep += 1;
        if total > raw.len() as u64 {
            // The kept bytes may end inside a character: leave it out.
            raw.truncate(raw.len() - incomplete_tail(&raw));
        }
        let mut sink = Sink::new(cap);
        sink.push(&String::from_utf8_lossy(&raw));
        sink.cut += total - raw.len() as u64;
        let (text, cut) = sink.finish();
        self.cut_bytes += cut;
        self.kept += text.len();
        Ok(Value::String(text))
    }
}

/// How many bytes at the end of `run` start a UTF-8 character that is not
/// complete yet (0 when none).
fn incomplete_tail(run: &[u8]) -> usize {
    for back in 1..=run.len().min(3) {
        let byte = run[run.len() - back];
        if byte & 0xC0 == 0x80 {
            continue;
        }
        let needed = match byte {
            0xF0..=0xFF => 4,
            0xE0..=0xEF => 3,
            0xC0..=0xDF => 2,
            _ => 1,
        };
        return if needed > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_model::{Level, Stage, Timestamp};
    use proptest::prelude::*;
    use serde_json::json;
    use std::io::Cursor;

    /// Hands the line over at most `chunk` bytes per read, so characters,
    /// escapes and numbers are split across the reader's fills.
    struct Trickle<'a> {
        bytes: &'a [u8],
        chunk: usize,
        read: u64,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.bytes.len().min(self.chunk).min(buf.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            self.read += n as u64;
            Ok(n)
        }
    }

    fn trickle(bytes: &[u8], chunk: usize) -> Trickle<'_> {
        Trickle {
            bytes,
            chunk,
            read: 0,
        }
    }

    fn read(line: &[u8], max_kept: usize, max_value: usize) -> Result<LongObject, String> {
        read_long_object(Cursor::new(line), max_kept, max_value)
    }

    fn marker_count(text: &str) -> u64 {
        let start = text.rfind("…[cut ").expect("a cut marker") + "…[cut ".len();
        text[start..]
            .strip_suffix(" bytes]")
            .expect("the marker's end")
            .parse()
            .expect("a byte count")
    }

    /// The agent's lenient mapping of a JSON line (`parse_object` on the
    /// same fields), reached through the crate's public `parse_line`.
    fn lenient(fields: Map<String, Value>, service: &str, read_at: Timestamp) -> Record {
        let line = serde_json::to_string(&fields).expect("serializes");
        crate::parse_line(&line, service, read_at)
    }

    fn serialized_len(fields: &Map<String, Value>) -> usize {
        serde_json::to_vec(fields).expect("serializes").len()
    }

    #[test]
    fn a_record_with_a_1_mb_message_keeps_its_fields_and_cuts_the_message() {
        let message = format!("order failed: {}", "é-payload ".repeat(100_000));
        let line = json!({
            "timestamp": "2026-11-28T04:01:44.123456Z",
            "level": "ERROR",
            "service": "orders",
            "stage": "failed",
            "message": message,
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "span_id": "00f067aa0ba902b7",
            "correlation_id": "0193a5b2-7c1d-7e3f-9a4b-5c6d7e8f9a0b",
            "event_type": "OrderPlaced",
            "duration_us": 1520,
            "tenant": "acme",
        });
        let bytes = serde_json::to_vec(&line).expect("serializes");
        assert!(bytes.len() > 1_000_000);
        let (max_kept, max_value) = (64 * 1024, 16 * 1024);
        let mut reader = trickle(&bytes, 7_777);
        let object = read_long_object(&mut reader, max_kept, max_value).expect("an object");
        assert_eq!(reader.read, bytes.len() as u64, "read to the end");

        let expected = line.as_object().expect("an object");
        for (key, value) in expected {
            if key != "message" {
                assert_eq!(object.fields.get(key), Some(value), "{key} kept exactly");
            }
        }
        let kept = object.fields["message"]
            .as_str()
            .expect("a string")
            .to_owned();
        let prefix = kept.split("…[cut ").next().expect("a prefix");
        assert!(message.starts_with(prefix));
        assert!(prefix.len() <= max_value && prefix.len() > max_value - 4);
        assert_eq!(marker_count(&kept), (message.len() - prefix.len()) as u64);
        assert_eq!(object.cut_bytes, (message.len() - prefix.len()) as u64);
        assert!(object.kept_bytes <= max_kept);
        assert!(serialized_len(&object.fields) <= max_kept);

        let read_at = Timestamp::from_micros(1_000_000);
        let record = long_line_record(object, bytes.len() as u64, 262_144, |fields| {
            lenient(fields, "fallback", read_at)
        });
        assert_eq!(record.service, "orders");
        assert_eq!(record.level, Level::Error);
        assert_eq!(record.stage, Stage::Failed);
        assert_eq!(record.timestamp.to_string(), "2026-11-28T04:01:44.123456Z");
        assert_eq!(
            record.trace_id.map(|id| id.to_string()).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            record.correlation_id.map(|id| id.to_string()).as_deref(),
            Some("0193a5b2-7c1d-7e3f-9a4b-5c6d7e8f9a0b")
        );
        assert_eq!(record.duration_us, Some(1520));
        assert_eq!(record.message, kept);
        assert!(record.malformed.is_none());
        assert_eq!(record.attributes["tenant"], "acme");
        let note = record.attributes[LINE_CUT].as_str().expect("a note");
        assert_eq!(
            note,
            format!(
                "line of {} bytes exceeds max_line_bytes 262144; {} bytes of long values cut",
                bytes.len(),
                message.len() - prefix.len()
            )
        );
    }

    /// A line made on the fly: `head`, `body_len` bytes of `body`, `tail`.
    struct Generated {
        head: &'static [u8],
        body: u8,
        body_len: u64,
        tail: &'static [u8],
        pos: u64,
    }

    impl Read for Generated {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let head = self.head.len() as u64;
            let body_end = head + self.body_len;
            let n = if self.pos < head {
                let rest = &self.head[self.pos as usize..];
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                n
            } else if self.pos < body_end {
                let n = ((body_end - self.pos) as usize).min(buf.len());
                buf[..n].fill(self.body);
                n
            } else {
                let rest = self
                    .tail
                    .get((self.pos - body_end) as usize..)
                    .unwrap_or(&[]);
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                n
            };
            self.pos += n as u64;
            Ok(n)
        }
    }

    #[test]
    fn a_100_mb_message_is_read_without_holding_it() {
        let body_len = 100 << 20;
        let line = Generated {
            head: br#"{"level":"info","message":""#,
            body: b'm',
            body_len,
            tail: br#"","service":"orders","event_id":"e-1"}"#,
            pos: 0,
        };
        let object = read_long_object(line, 8192, 1000).expect("an object");
        assert_eq!(object.fields["service"], "orders");
        assert_eq!(object.fields["event_id"], "e-1");
        let message = object.fields["message"].as_str().expect("a string");
        assert_eq!(
            message,
            format!("{}…[cut {} bytes]", "m".repeat(1000), body_len - 1000)
        );
        assert!(object.kept_bytes <= 8192);
    }

    #[test]
    fn a_tracing_subscriber_line_keeps_its_nested_fields_around_a_huge_one() {
        let payload = "x".repeat(3_000_000);
        let line = format!(
            concat!(
                r#"{{"timestamp":"2026-11-28T04:01:44.123456Z","level":"INFO","#,
                r#""fields":{{"message":"order placed","payload":"{}","order_id":42}},"#,
                r#""target":"orders::api","span":{{"correlation_id":"c-1","name":"handle"}},"#,
                r#""spans":[{{"name":"request","method":"POST"}},{{"name":"handle"}}]}}"#
            ),
            payload
        );
        let object = read(line.as_bytes(), 100_000, 10_000).expect("an object");
        let fields = &object.fields["fields"];
        assert_eq!(fields["message"], "order placed");
        assert_eq!(fields["order_id"], 42);
        let cut = fields["payload"].as_str().expect("a string");
        assert_eq!(cut, format!("{}…[cut 2990000 bytes]", "x".repeat(10_000)));
        assert_eq!(object.fields["target"], "orders::api");
        assert_eq!(
            object.fields["span"],
            json!({"correlation_id": "c-1", "name": "handle"})
        );
        assert_eq!(
            object.fields["spans"],
            json!([{"name": "request", "method": "POST"}, {"name": "handle"}])
        );
        assert_eq!(object.dropped, 0);
        let record = long_line_record(object, line.len() as u64, 262_144, |fields| {
            lenient(fields, "orders", Timestamp::from_micros(0))
        });
        assert_eq!(record.level, Level::Info);
        assert!(
            record.attributes[LINE_CUT]
                .as_str()
                .expect("a note")
                .ends_with("; 2990000 bytes of long values cut")
        );
    }

    #[test]
    fn small_fields_after_many_huge_ones_are_still_kept() {
        let mut line = String::from(r#"{"service":"orders""#);
        for i in 0..20 {
            line.push_str(&format!(r#","blob{i}":"{}""#, "b".repeat(500_000)));
        }
        line.push_str(r#","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","level":"warn"}"#);
        let max_kept = 200_000;
        let object = read(line.as_bytes(), max_kept, 50_000).expect("an object");
        assert_eq!(
            object.fields["trace_id"],
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(object.fields["level"], "warn");
        assert_eq!(
            object.fields["blob0"].as_str().map(marker_count),
            Some(450_000)
        );
        assert!(object.kept_bytes <= max_kept);
        assert!(serialized_len(&object.fields) <= max_kept);
    }

    #[test]
    fn a_million_keys_are_kept_up_to_the_budget_and_the_rest_counted() {
        let keys = 1_000_000;
        let mut line = String::from(r#"{"service":"orders","level":"info""#);
        for i in 0..keys {
            line.push_str(&format!(r#","k{i}":{i}"#));
        }
        line.push('}');
        let max_kept = 256 * 1024;
        let object = read(line.as_bytes(), max_kept, 4096).expect("an object");
        let kept = object.fields.len() as u64;
        assert_eq!(kept + object.dropped, keys + 2);
        assert!(kept > 3_000, "kept {kept}");
        assert!(object.dropped > 990_000);
        assert_eq!(object.fields["service"], "orders");
        assert_eq!(object.fields["k0"], 0);
        assert_eq!(object.fields.get("k999999"), None);
        assert!(object.kept_bytes <= max_kept);
        assert_eq!(object.cut_bytes, 0);
        assert!(object.note(line.len() as u64, 262_144).ends_with(&format!(
            "; {} members or elements dropped past the memory budget",
            object.dropped
        )));
    }

    #[test]
    fn a_huge_array_is_kept_up_to_the_budget() {
        let line = format!(r#"{{"ids":[{}1],"after":"yes"}}"#, "1,".repeat(2_000_000));
        let object = read(line.as_bytes(), 100_000, 4096).expect("an object");
        let ids = object.fields["ids"].as_array().expect("an array");
        assert!(!ids.is_empty() && ids.len() < 2_000);
        assert_eq!(object.dropped, 2_000_001 - ids.len() as u64);
        assert_eq!(object.fields["after"], "yes", "the reserve kept it");
        assert!(object.kept_bytes <= 100_000);
    }

    #[test]
    fn nesting_past_the_bound_is_kept_as_cut_text() {
        let levels = 10_000;
        let deep = format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
        let line = format!(r#"{{"service":"orders","deep":{deep},"after":true}}"#);
        let object = read(line.as_bytes(), 64 * 1024, 4096).expect("an object");
        assert_eq!(object.fields["after"], true);
        assert_eq!(object.too_deep, 1);
        // Arrays down to level MAX_DEPTH are values, the one below is text.
        let mut value = &object.fields["deep"];
        for _ in 1..MAX_DEPTH {
            let elements = value.as_array().expect("an array");
            assert_eq!(elements.len(), 1);
            value = &elements[0];
        }
        let text = value.as_str().expect("the nested rest as text");
        let rest = levels - (MAX_DEPTH - 1);
        assert!(text.starts_with(&"[".repeat(100)));
        let prefix = text.split("…[cut ").next().expect("a prefix");
        assert!(prefix.len() >= SMALL_STRING && prefix.bytes().all(|b| b == b'['));
        assert_eq!(prefix.len() + marker_count(text) as usize, 2 * rest + 1);
        assert_eq!(object.cut_bytes, marker_count(text));
        let note = object.note(line.len() as u64, 1024);
        assert!(note.ends_with("; 1 value nested deeper than 64 levels kept as cut text"));

        let objects = format!(
            r#"{{"a":{}1{}}}"#,
            r#"{"a":"#.repeat(levels),
            "}".repeat(levels)
        );
        let object = read(objects.as_bytes(), 64 * 1024, 1_000_000).expect("an object");
        assert_eq!(object.too_deep, 1);

        let unbalanced = format!(r#"{{"deep":{}"#, "[".repeat(levels));
        let error = read(unbalanced.as_bytes(), 64 * 1024, 4096).expect_err("unbalanced");
        assert!(error.contains("ends inside"), "{error}");
    }

    #[test]
    fn nesting_within_the_bound_is_read_as_serde_json_reads_it() {
        let depth = MAX_DEPTH - 1;
        let line = format!(
            r#"{{"a":{}{{"b":"c"}}{}}}"#,
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        );
        let object = read(line.as_bytes(), 64 * 1024, 4096).expect("an object");
        let expected: Map<String, Value> = serde_json::from_str(&line).expect("valid");
        assert_eq!(object.fields, expected);
        assert_eq!(object.too_deep, 0);
    }

    #[test]
    fn invalid_utf8_in_strings_is_replaced() {
        let mut line =
            b"{\"message\":\"caf\xc3\xa9 \xff\xfe bad \xe2\x82\",\"\xc0key\":\"v\",".to_vec();
        line.extend_from_slice(b"\"service\":\"orders\"}");
        for chunk in [1, 2, 3, 5, 64 * 1024] {
            let object = read_long_object(trickle(&line, chunk), 4096, 4096).expect("an object");
            assert_eq!(
                object.fields["message"],
                "café \u{fffd}\u{fffd} bad \u{fffd}"
            );
            assert_eq!(object.fields["\u{fffd}key"], "v");
            assert_eq!(object.fields["service"], "orders");
        }
        // A character split by the cut is left out whole.
        let line = format!(r#"{{"m":"{}"}}"#, "é".repeat(100));
        let object = read(line.as_bytes(), 4096, 11).expect("an object");
        assert_eq!(
            object.fields["m"],
            format!("{}…[cut 190 bytes]", "é".repeat(5))
        );
    }

    #[test]
    fn escapes_and_surrogates_are_decoded() {
        let line = br#"{"m":"a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00\ud800x\udc00"}"#;
        for chunk in [1, 3, 64] {
            let object = read_long_object(trickle(line, chunk), 4096, 4096).expect("an object");
            assert_eq!(
                object.fields["m"],
                "a\"b\\c/d\u{8}\u{c}\n\r\t\u{e9}\u{1f600}\u{fffd}x\u{fffd}"
            );
        }
    }

    #[test]
    fn what_is_not_one_json_object_is_refused_with_a_reason() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"   ", "empty"),
            (b"plain text log line", "not JSON"),
            (b"[1,2,3]", "an array"),
            (b"\"a string\"", "a string"),
            (b"42", "a number"),
            (b"null", "null"),
            (br#"{"a":1} trailing"#, "trailing characters"),
            (br#"{"a":1}{"b":2}"#, "trailing characters"),
            (br#"{"a":1"#, "end of the line"),
            (br#"{"a":"unterminated"#, "ends inside the string"),
            (br#"{"a":1,}"#, "member name"),
            (br#"{"a" 1}"#, "':'"),
            (br#"{"a":tru}"#, "true"),
            (br#"{"a":01}"#, "',' or '}'"),
            (br#"{"a":-}"#, "a digit"),
            (br#"{"a":1.}"#, "a digit"),
            (br#"{"a":1e}"#, "a digit"),
            (br#"{"a":1e400}"#, "a number"),
            (b"{\"a\":\"tab\there\"}", "control character"),
            (br#"{"a":"\x"}"#, "bad escape"),
            (br#"{"a":"\u12g4"}"#, "bad \\u escape"),
            (br#"{"a":[1,2}"#, "',' or ']'"),
            (br#"{a:1}"#, "member name"),
        ];
        for (line, reason) in cases {
            let error = read(line, 4096, 4096).expect_err(&String::from_utf8_lossy(line));
            assert!(
                error.contains(reason),
                "{}: {error}",
                String::from_utf8_lossy(line)
            );
            assert!(
                serde_json::from_slice::<Map<String, Value>>(line).is_err(),
                "serde_json agrees"
            );
        }
        let long_number = format!(r#"{{"a":{}}}"#, "1".repeat(2 * MAX_NUMBER_LEN));
        let error = read(long_number.as_bytes(), 4096, 4096).expect_err("too long");
        assert!(error.contains("longer than"), "{error}");
    }

    #[test]
    fn whitespace_around_the_object_is_allowed() {
        let object = read(b" \t{ \"a\" : [ 1 , { } ] }\r ", 4096, 4096).expect("an object");
        assert_eq!(object.fields["a"], json!([1, {}]));
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[\"\\\\\u{0}-\u{1f}é😀]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn within_the_budgets_it_reads_what_serde_json_reads(
            members in prop::collection::btree_map(any::<String>(), arb_json(), 0..8),
            pretty in any::<bool>(),
            chunk in 1usize..40,
        ) {
            let object: Map<String, Value> = members.into_iter().collect();
            let line = if pretty {
                serde_json::to_vec_pretty(&object)
            } else {
                serde_json::to_vec(&object)
            }
            .expect("serializes");
            let expected: Map<String, Value> = serde_json::from_slice(&line).expect("valid");
            let read = read_long_object(trickle(&line, chunk), 1 << 20, 1 << 16)
                .map_err(TestCaseError::fail)?;
            prop_assert_eq!(&read.fields, &expected);
            prop_assert_eq!(read.cut_bytes, 0);
            prop_assert_eq!(read.dropped, 0);
            prop_assert_eq!(read.too_deep, 0);
        }

        #[test]
        fn any_bytes_give_an_answer_and_never_more_than_the_budget(
            bytes in prop::collection::vec(any::<u8>(), 0..200),
            prefix in prop::sample::select(vec![&b""[..], b"{\"a\":", b"{\"a\":\"", b"{\"a\":["]),
        ) {
            let line = [prefix, &bytes].concat();
            if let Ok(object) = read(&line, 256, 64) {
                prop_assert!(object.kept_bytes <= 256 + MAX_OVERSHOOT);
            }
        }
    }
}
