//! Making untrusted text safe: header values bounded and free of control
//! characters, and log text stripped of escape sequences before display.

/// The longest header value we write or accept, in bytes.
pub const MAX_HEADER_VALUE_LEN: usize = 512;

/// Returns the value if it is fit to be a header value: at most
/// [`MAX_HEADER_VALUE_LEN`] bytes, no control characters (CR, LF, NUL, ESC,
/// DEL, ...), not empty after trimming spaces. `None` means "drop it and
/// start a fresh context"; it is never repaired, so it is never echoed.
pub fn clean_header_value(value: &str) -> Option<&str> {
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    if value.is_empty() || value.len() > MAX_HEADER_VALUE_LEN {
        return None;
    }
    // Printable ASCII, the usual case, needs no decoding; anything else is
    // checked as characters (C1 controls are two bytes in UTF-8).
    let printable_ascii = value.bytes().all(|b| (0x20..0x7f).contains(&b));
    if !printable_ascii && value.chars().any(char::is_control) {
        return None;
    }
    Some(value)
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
}
