//! Text for headers and for people: header values bounded and free of
//! control characters, log text stripped of escape sequences before
//! display, and durations in a readable unit.

/// The longest header value we write or accept, in bytes.
pub const MAX_HEADER_VALUE_LEN: usize = 512;

/// Returns the value if it is fit to be a header value: at most
/// [`MAX_HEADER_VALUE_LEN`] bytes, no control characters (CR, LF, NUL, ESC,
/// DEL, ...), not empty after trimming spaces. `None` means "drop it and
/// start a fresh context"; it is never repaired, so it is never echoed.
pub fn clean_header_value(value: &str) -> Option<&str> {
    // Space and tab are ASCII, so trimming bytes keeps char boundaries.
    let value = trim_blanks(value);
    if value.is_empty() || value.len() > MAX_HEADER_VALUE_LEN {
        return None;
    }
    if has_control_chars(value) {
        return None;
    }
    Some(value)
}

/// Whether `text` holds a control character (C0, DEL or C1). Printable
/// ASCII, the usual case, is checked without decoding and without a branch
/// per byte; anything else is checked as characters (C1 controls are two
/// bytes in UTF-8).
pub fn has_control_chars(text: &str) -> bool {
    let printable_ascii = text
        .bytes()
        .fold(true, |printable, b| printable & (0x20..0x7f).contains(&b));
    !printable_ascii && text.chars().any(char::is_control)
}

/// `value` without leading and trailing spaces and tabs.
pub fn trim_blanks(value: &str) -> &str {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let bytes = value.as_bytes();
    let start = bytes.iter().position(|b| !blank(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |i| i + 1);
    // Both ends sit next to an ASCII byte or at the ends of the string.
    value.get(start..end).unwrap_or_default()
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
pub fn char_prefix(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Removes ANSI escape sequences and control characters (keeping none, not
/// even newlines) so that text from logs cannot move a cursor, change
/// colours or retitle a terminal. Tabs and newlines become spaces.
pub fn strip_control(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.peek() {
                // CSI: ESC [ params final-byte(0x40..=0x7e)
                Some('[') => {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC: ESC ] ... (BEL | ESC \)
                Some(']') => {
                    chars.next();
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' {
                            if chars.peek() == Some(&'\\') {
                                chars.next();
                            }
                            break;
                        }
                    }
                }
                Some(_) => {
                    chars.next();
                }
                None => {}
            },
            '\t' | '\n' | '\r' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A duration for humans: `850µs`, `12.3ms`, `1.25s`, `2m05s`, `1h02m`.
pub fn human_duration(us: u64) -> String {
    if us < 1_000 {
        return format!("{us}µs");
    }
    let tenths_of_ms = (us + 50) / 100;
    if tenths_of_ms < 10_000 {
        return format!("{}.{}ms", tenths_of_ms / 10, tenths_of_ms % 10);
    }
    let hundredths_of_s = (us + 5_000) / 10_000;
    if hundredths_of_s < 6_000 {
        return format!("{}.{:02}s", hundredths_of_s / 100, hundredths_of_s % 100);
    }
    let secs = (us + 500_000) / 1_000_000;
    if secs < 3_600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3_600, (secs % 3_600) / 60)
    }
}

/// The longest raw line kept in a malformed record, in bytes.
pub const MAX_RAW_LEN: usize = 16 * 1024;

/// Cuts `raw` to [`MAX_RAW_LEN`] bytes on a character boundary, with a
/// marker saying how much was cut.
pub fn cut_raw(raw: &str) -> String {
    cut_text(raw, MAX_RAW_LEN)
}

/// Cuts `text` to `max` bytes on a character boundary, with a marker saying
/// how much was cut.
pub fn cut_text(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let kept = char_prefix(text, max);
    format!("{kept}…[cut {} bytes]", text.len() - kept.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_with_crlf_or_c1_controls_are_refused() {
        assert_eq!(clean_header_value("a\u{85}b"), None);
        assert_eq!(clean_header_value("a\u{7f}b"), None);
        assert_eq!(clean_header_value("ünïcode"), Some("ünïcode"));
        assert_eq!(clean_header_value("abc\r\nx: y"), None);
        assert_eq!(clean_header_value("  abc "), Some("abc"));
        assert_eq!(clean_header_value("\t a b\t "), Some("a b"));
        assert_eq!(clean_header_value(" \t "), None);
        assert_eq!(clean_header_value("é "), Some("é"));
        assert_eq!(clean_header_value(""), None);
        assert_eq!(
            clean_header_value(&"a".repeat(MAX_HEADER_VALUE_LEN + 1)),
            None
        );
    }

    #[test]
    fn escape_sequences_are_stripped() {
        assert_eq!(strip_control("\u{1b}[31mred\u{1b}[0m"), "red");
        assert_eq!(strip_control("a\u{1b}]0;pwned\u{7}b"), "ab");
        assert_eq!(strip_control("line1\nline2\u{0}\u{7f}"), "line1 line2");
        assert_eq!(strip_control("plain ünïcode"), "plain ünïcode");
    }

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(human_duration(0), "0µs");
        assert_eq!(human_duration(850), "850µs");
        assert_eq!(human_duration(1_200), "1.2ms");
        assert_eq!(human_duration(999_949), "999.9ms");
        assert_eq!(human_duration(999_950), "1.00s");
        assert_eq!(human_duration(1_250_000), "1.25s");
        assert_eq!(human_duration(125_000_000), "2m05s");
        assert_eq!(human_duration(3_720_000_000), "1h02m");
    }
}
