//! The bounds a search query string must keep before tantivy's parser sees
//! it, and the bounds of what a read may return.
//!
//! tantivy's query grammar is recursive: about 2,100 nested parentheses, or
//! `NOT ` repeated 10,000 times, overflowed a worker thread's stack and
//! aborted the whole process. A stack overflow is not a panic and cannot be
//! caught, so the query is measured first, in one pass that allocates
//! nothing: its length, and how deep it could nest (every parenthesis and
//! every unary operator `NOT`, `+`, `-` counts). This module must stay a
//! cheap, conservative gate: it refuses what could be deep, it does not
//! parse, and it never guesses where a phrase ends.

use serde::{Deserialize, Serialize};

use crate::error::IndexError;

/// How large a query string and a read may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadBounds {
    /// Longest query string, in bytes.
    pub max_query_bytes: usize,
    /// Deepest nesting of a query string.
    pub max_query_depth: usize,
    /// Most bytes of stored records one read returns; the read stops at the
    /// last whole record within it and says it was cut.
    pub max_response_bytes: usize,
}

impl Default for ReadBounds {
    fn default() -> Self {
        Self {
            max_query_bytes: 4 * 1024,
            max_query_depth: 64,
            max_response_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Refuses a query string longer or deeper than `bounds` allow, with the
/// reason; anything it lets through is safe to hand to tantivy's parser.
pub fn check_query(query: &str, bounds: &ReadBounds) -> Result<(), IndexError> {
    if query.len() > bounds.max_query_bytes {
        return Err(IndexError::Query(format!(
            "the query is {} bytes long, the limit is {}",
            query.len(),
            bounds.max_query_bytes
        )));
    }
    if let Some(c) = query
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        // tantivy joins JSON paths with control bytes; one inside a field
        // name trips an assertion in its term builder.
        return Err(IndexError::Query(format!(
            "the query contains the control character U+{:04X}",
            u32::from(c)
        )));
    }
    let depth = nesting_depth(query);
    if depth > bounds.max_query_depth {
        return Err(IndexError::Query(format!(
            "the query nests up to {depth} levels deep (each parenthesis, NOT, leading + \
             and - counts), the limit is {}",
            bounds.max_query_depth
        )));
    }
    Ok(())
}

/// The most `query` could nest: every `(` and every unary operator (`NOT`,
/// a leading `+` or `-`) counts, wherever it stands, closed or not.
///
/// It does not follow quotes, escapes or closing parentheses on purpose:
/// tantivy's grammar lets a `"` stand inside a word (`\"`), a regex
/// (`/"/`) or a single-quoted phrase (`'"'`), and a counter that guessed
/// where a phrase ends, or let a `)` inside one close a level, could be led
/// to count a deep query as shallow. Counting everything can only refuse
/// an odd query that was in fact shallow; it never lets a deep one through.
pub fn nesting_depth(query: &str) -> usize {
    let mut count = 0usize;
    for token in query.split(|c: char| c.is_whitespace() || c == ')') {
        // `(` opens a level wherever it stands, also inside a word.
        count += token.matches('(').count();
        for word in token.split('(') {
            if word == "NOT" {
                count += 1;
            } else {
                count += word
                    .bytes()
                    .take_while(|b| matches!(b, b'+' | b'-'))
                    .count();
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nesting_operator_counts_wherever_it_stands() {
        for (query, depth) in [
            ("", 0),
            ("stage:failed", 0),
            ("service:payment AND message:declined", 0),
            ("NOT stage:handled", 1),
            ("-stage:handled +service:x", 2),
            ("(a OR b) AND (c OR (d AND NOT e))", 4),
            ("message:\"((( NOT\"", 3),
            ("timestamp:[2026-01-01T00:00:00Z TO *]", 0),
            ("NOT (NOT (a))", 4),
            ("a) ) (b", 1),
            ("field:(a b)", 1),
            ("--+x", 3),
        ] {
            assert_eq!(nesting_depth(query), depth, "{query}");
        }
    }

    /// Shapes that hid their nesting from a counter that followed quotes:
    /// tantivy reads a `"` inside a word, a regex or a single-quoted phrase
    /// as a plain character, so what came after it was really parsed.
    #[test]
    fn a_quote_cannot_hide_nesting() {
        let bounds = ReadBounds::default();
        for prefix in ["\\\" ", "'\"' ", "message:/\"/ ", "\" "] {
            let parens = format!("{prefix}{}a", "(".repeat(1_000));
            assert!(nesting_depth(&parens) >= 1_000, "{parens:.20}");
            assert!(check_query(&parens, &bounds).is_err());
            let nots = format!("{prefix}{}a", "NOT ".repeat(500));
            assert!(nesting_depth(&nots) >= 500, "{nots:.20}");
            let closing = format!("{prefix}{}", "( \")\" ".repeat(200));
            assert!(nesting_depth(&closing) >= 200, "{closing:.20}");
        }
    }

    #[test]
    fn the_reproductions_are_refused_with_a_reason() {
        let bounds = ReadBounds::default();
        let parens = format!("{}a{}", "(".repeat(2_100), ")".repeat(2_100));
        let error = check_query(&parens, &bounds).unwrap_err().to_string();
        assert!(error.contains("bytes long"), "{error}");
        let parens = format!("{}a{}", "(".repeat(1_000), ")".repeat(1_000));
        let error = check_query(&parens, &bounds).unwrap_err().to_string();
        assert!(error.contains("nests up to 1000 levels"), "{error}");
        let nots = format!("{}a", "NOT ".repeat(10_000));
        let error = check_query(&nots, &bounds).unwrap_err().to_string();
        assert!(error.contains("bytes long"), "{error}");
        let nots = format!("{}a", "NOT ".repeat(100));
        let error = check_query(&nots, &bounds).unwrap_err().to_string();
        assert!(error.contains("nests up to 100 levels"), "{error}");
        let signs = format!("{}a", "-".repeat(100));
        assert!(check_query(&signs, &bounds).is_err());
    }

    /// Found by the `search_query` fuzz target: a NUL inside a JSON field
    /// path made tantivy's term builder panic.
    #[test]
    fn control_characters_are_refused_before_the_parser() {
        let bounds = ReadBounds::default();
        let query = "timestamp_us:[1?4 TO 2] +attributes.order\0@_id:1234 -level:DEBUG";
        let error = check_query(query, &bounds).unwrap_err().to_string();
        assert!(error.contains("U+0000"), "{error}");
        assert!(check_query("attributes.a\u{1}b:x", &bounds).is_err());
        assert!(check_query("a\tb\nc", &bounds).is_ok());
    }
}
