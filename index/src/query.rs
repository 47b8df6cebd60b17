//! The bounds a search query string must keep before tantivy's parser sees
//! it, and the bounds of what a read may return.
//!
//! tantivy's query grammar is recursive: about 2,100 nested parentheses, or
//! `NOT ` repeated 10,000 times, overflowed a worker thread's stack and
//! aborted the whole process. A stack overflow is not a panic and cannot be
//! caught, so the query is measured first, in one pass that allocates
//! nothing: its length, and its nesting (parentheses, plus the unary
//! operators `NOT`, `+` and `-` chained in front of one operand). This
//! module must stay a cheap, conservative gate: it refuses what could be
//! deep, it does not parse.

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
            max_query_depth: 32,
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
            "the query nests {depth} levels deep (parentheses and chained NOT, +, -), the \
             limit is {}",
            bounds.max_query_depth
        )));
    }
    Ok(())
}

/// The deepest nesting of `query`: open parentheses, plus the unary
/// operators chained in front of the operand each level is waiting for.
/// Text inside double quotes is a phrase and nests nothing.
pub fn nesting_depth(query: &str) -> usize {
    let mut scan = Scan::default();
    let mut word = 0..0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (at, c) in query.char_indices() {
        if in_quotes {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_quotes = false,
                _ => {}
            }
            continue;
        }
        let delimiter = c.is_whitespace() || matches!(c, '(' | ')' | '"');
        if !delimiter {
            if word.is_empty() {
                word = at..at;
            }
            word.end = at + c.len_utf8();
            continue;
        }
        scan.word(&query[word.clone()]);
        word = 0..0;
        match c {
            '(' => scan.open(),
            ')' => scan.close(),
            '"' => {
                in_quotes = true;
                scan.operand();
            }
            _ => {}
        }
    }
    scan.word(&query[word]);
    scan.deepest
}

#[derive(Debug, Default)]
struct Scan {
    /// Unary operators waiting for their operand at each open parenthesis.
    pending_outside: usize,
    /// Open parentheses.
    open: usize,
    /// Chains saved by the parentheses that are open, innermost last, kept
    /// as a count per level so closing one restores the one outside it.
    saved: Vec<usize>,
    /// Unary operators chained at this level, waiting for an operand.
    chain: usize,
    deepest: usize,
}

impl Scan {
    fn note(&mut self) {
        self.deepest = self
            .deepest
            .max(self.pending_outside + self.open + self.chain);
    }

    fn word(&mut self, word: &str) {
        if word.is_empty() {
            return;
        }
        match word {
            "NOT" => self.unary(1),
            "AND" | "OR" | "&&" | "||" => {}
            _ => {
                let signs = word
                    .bytes()
                    .take_while(|b| matches!(b, b'+' | b'-'))
                    .count();
                self.unary(signs);
                if signs < word.len() {
                    self.operand();
                }
            }
        }
    }

    fn unary(&mut self, count: usize) {
        self.chain += count;
        self.note();
    }

    fn operand(&mut self) {
        self.chain = 0;
    }

    fn open(&mut self) {
        // Past a few thousand levels the count only needs to stay above the
        // limit; the saved chains stop growing so a hostile query costs no
        // memory.
        if self.saved.len() < 4096 {
            self.saved.push(self.chain);
        }
        self.pending_outside += self.chain;
        self.chain = 0;
        self.open += 1;
        self.note();
    }

    fn close(&mut self) {
        if self.open == 0 {
            // An unbalanced `)`: the parser will say so; it nests nothing.
            self.operand();
            return;
        }
        self.open -= 1;
        let outside = self.saved.pop().unwrap_or(0);
        self.pending_outside = self.pending_outside.saturating_sub(outside);
        // The group is the operand of the chain in front of it.
        self.chain = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_queries_are_shallow() {
        for (query, depth) in [
            ("", 0),
            ("stage:failed", 0),
            ("service:payment AND message:declined", 0),
            ("NOT stage:handled", 1),
            ("-stage:handled +service:x", 1),
            ("(a OR b) AND (c OR (d AND NOT e))", 3),
            ("message:\"((((( NOT NOT\"", 0),
            ("timestamp:[2026-01-01T00:00:00Z TO *]", 0),
            ("NOT (NOT (a))", 4),
            ("a) ) (b", 1),
        ] {
            assert_eq!(nesting_depth(query), depth, "{query}");
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
        assert!(error.contains("nests 1000 levels"), "{error}");
        let nots = format!("{}a", "NOT ".repeat(10_000));
        let error = check_query(&nots, &bounds).unwrap_err().to_string();
        assert!(error.contains("bytes long"), "{error}");
        let nots = format!("{}a", "NOT ".repeat(100));
        let error = check_query(&nots, &bounds).unwrap_err().to_string();
        assert!(error.contains("nests 100 levels"), "{error}");
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

    #[test]
    fn an_escaped_quote_does_not_end_a_phrase() {
        assert_eq!(nesting_depth(r#"message:"a \" (((" b"#), 0);
    }
}
