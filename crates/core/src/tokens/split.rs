//! Pre-tokenization (the regex split that comes before byte-pair merging), with a hand-written
//! fast path for ASCII.
//!
//! tiktoken splits text with a regex and merges bytes only inside each piece. bpe-openai runs that
//! regex with regex-automata; for plain ASCII text a direct scan finds the same pieces several
//! times faster. The scan decides a piece only when every byte that can influence it is ASCII;
//! otherwise (a non-ASCII letter, digit, mark or space could extend or end it) the piece comes
//! from bpe-openai's regex, started at the same position. Every piece is therefore exactly the one
//! the regex gives, which `tests/tiktoken_parity.rs` checks piece for piece against bpe-openai.
//!
//! The rules, as the o200k and cl100k regexes state them, for ASCII:
//! - a word: letters, optionally led by one character that is not a line break, letter or digit
//!   (` word`, `(word`, `\tword`); o200k splits `camelCase` before each upper-case letter that
//!   follows a lower-case one and keeps a contraction suffix (`don't`), cl100k makes the
//!   contraction (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`, any case) a piece of its own;
//! - one to three digits;
//! - punctuation, optionally led by a space, then any line breaks (o200k: and slashes);
//! - whitespace: up to its last line break; all of it at the end of the text; otherwise all but
//!   its last character, which leads the next piece (or the one character it is).

/// Which encoding's split rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rules {
    /// o200k_base: case-aware words with optional contraction suffix, `/` after punctuation.
    O200k,
    /// cl100k_base: contractions as their own piece, then letters of any case.
    Cl100k,
}

/// The pieces of `text` under `rules`, with `regex` giving the piece at a position the ASCII scan
/// cannot decide.
pub struct Pieces<'a> {
    text: &'a str,
    pos: usize,
    rules: Rules,
    regex: &'static bpe_openai::Tokenizer,
}

impl<'a> Pieces<'a> {
    /// The pieces of `text`.
    pub(crate) fn new(text: &'a str, rules: Rules, regex: &'static bpe_openai::Tokenizer) -> Self {
        Pieces {
            text,
            pos: 0,
            rules,
            regex,
        }
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let start = self.pos;
        if start >= self.text.len() {
            return None;
        }
        let bytes = self.text.as_bytes();
        let end = match ascii_piece_end(bytes, start, self.rules) {
            Some(end) => end,
            None => {
                let rest = &self.text[start..];
                start + self.regex.split(rest).next().map_or(rest.len(), str::len)
            }
        };
        self.pos = end;
        Some(&self.text[start..end])
    }
}

/// What one byte is, for the split rules; `Other` is any non-ASCII byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Upper,
    Lower,
    Digit,
    /// `\r` or `\n`.
    LineBreak,
    /// Space, tab, vertical tab, form feed.
    Space,
    /// ASCII that is not a letter, digit or whitespace (punctuation, symbols, controls).
    Punct,
    Other,
}

fn class_at(bytes: &[u8], at: usize) -> Option<Class> {
    bytes.get(at).map(|&byte| match byte {
        b'A'..=b'Z' => Class::Upper,
        b'a'..=b'z' => Class::Lower,
        b'0'..=b'9' => Class::Digit,
        b'\r' | b'\n' => Class::LineBreak,
        b' ' | b'\t' | 0x0B | 0x0C => Class::Space,
        0x80..=0xFF => Class::Other,
        _ => Class::Punct,
    })
}

fn is_letter(class: Class) -> bool {
    matches!(class, Class::Upper | Class::Lower)
}

/// End of the piece that starts at `start`, if ASCII alone decides it.
fn ascii_piece_end(bytes: &[u8], start: usize, rules: Rules) -> Option<usize> {
    let first = class_at(bytes, start)?;
    let next = class_at(bytes, start + 1);
    if first == Class::Other || next == Some(Class::Other) {
        return None;
    }
    if rules == Rules::Cl100k
        && bytes[start] == b'\''
        && let Some(end) = contraction_end(bytes, start)?
    {
        return Some(end);
    }
    // One character that is not a line break, letter or digit may lead a word.
    let prefixed_letter =
        matches!(first, Class::Space | Class::Punct) && next.is_some_and(is_letter);
    if is_letter(first) || prefixed_letter {
        let letters = if is_letter(first) { start } else { start + 1 };
        return match rules {
            Rules::O200k => o200k_word_end(bytes, letters),
            Rules::Cl100k => run_end(bytes, letters, is_letter),
        };
    }
    match first {
        Class::Digit => digits_end(bytes, start),
        Class::Punct => punct_end(bytes, start, rules),
        Class::Space if bytes[start] == b' ' && next == Some(Class::Punct) => {
            punct_end(bytes, start + 1, rules)
        }
        Class::Space | Class::LineBreak => whitespace_end(bytes, start),
        _ => None,
    }
}

/// End of the run of bytes of classes `member` from `from`; `None` if a non-ASCII byte ends it
/// (it might belong to the run).
fn run_end(bytes: &[u8], from: usize, member: fn(Class) -> bool) -> Option<usize> {
    let mut at = from;
    loop {
        match class_at(bytes, at) {
            Some(class) if member(class) => at += 1,
            Some(Class::Other) => return None,
            _ => return Some(at),
        }
    }
}

/// `'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d` (any case) at `start`: `Some(Some(end))` when one
/// is there, `Some(None)` when none is, `None` when a non-ASCII byte leaves it open (U+017F
/// folds to `s`).
fn contraction_end(bytes: &[u8], start: usize) -> Option<Option<usize>> {
    let lower = |at: usize| bytes.get(at).map(u8::to_ascii_lowercase);
    if bytes.get(start + 1).is_some_and(|byte| !byte.is_ascii()) {
        return None;
    }
    let end = match (lower(start + 1), lower(start + 2)) {
        (Some(b's' | b't' | b'm' | b'd'), _) => Some(start + 2),
        (Some(b'r'), Some(b'e')) | (Some(b'v'), Some(b'e')) | (Some(b'l'), Some(b'l')) => {
            Some(start + 3)
        }
        _ => None,
    };
    Some(end)
}

/// o200k's word: upper-case letters then lower-case ones (at least one letter), then an optional
/// contraction.
fn o200k_word_end(bytes: &[u8], letters: usize) -> Option<usize> {
    let uppers = run_end(bytes, letters, |class| class == Class::Upper)?;
    let end = run_end(bytes, uppers, |class| class == Class::Lower)?;
    if bytes.get(end) != Some(&b'\'') {
        return Some(end);
    }
    Some(contraction_end(bytes, end)?.unwrap_or(end))
}

/// One to three digits.
fn digits_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut end = start;
    while end < start + 3 {
        match class_at(bytes, end) {
            Some(Class::Digit) => end += 1,
            Some(Class::Other) => return None,
            _ => break,
        }
    }
    Some(end)
}

/// Punctuation from `from`, then line breaks (and, for o200k, slashes).
fn punct_end(bytes: &[u8], from: usize, rules: Rules) -> Option<usize> {
    let end = run_end(bytes, from, |class| class == Class::Punct)?;
    let trailing = |byte: &u8| match rules {
        Rules::O200k => matches!(byte, b'\r' | b'\n' | b'/'),
        Rules::Cl100k => matches!(byte, b'\r' | b'\n'),
    };
    let extra = bytes[end..]
        .iter()
        .take_while(|byte| trailing(byte))
        .count();
    Some(end + extra)
}

/// Whitespace: up to and including the last line break of the run if it has one; the whole run
/// at the end of the text; else the run less its last space (which goes with what follows), or
/// the single space.
fn whitespace_end(bytes: &[u8], start: usize) -> Option<usize> {
    let end = run_end(bytes, start, |class| {
        matches!(class, Class::Space | Class::LineBreak)
    })?;
    let run = &bytes[start..end];
    if let Some(last_break) = run.iter().rposition(|&byte| byte == b'\r' || byte == b'\n') {
        return Some(start + last_break + 1);
    }
    if end == bytes.len() || run.len() == 1 {
        return Some(end);
    }
    Some(end - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` splits into `expected` under `rules`, and the ASCII scan decides every piece of it.
    fn check(rules: Rules, text: &str, expected: &[&str]) {
        let regex = match rules {
            Rules::O200k => bpe_openai::o200k_base(),
            Rules::Cl100k => bpe_openai::cl100k_base(),
        };
        let pieces: Vec<&str> = Pieces::new(text, rules, regex).collect();
        assert_eq!(pieces, expected, "{rules:?} {text:?}");
        let mut start = 0;
        for piece in pieces {
            let end = ascii_piece_end(text.as_bytes(), start, rules);
            assert_eq!(
                end,
                Some(start + piece.len()),
                "{rules:?} {text:?} at {start}"
            );
            start = end.unwrap();
        }
    }

    #[test]
    fn splits_words_like_the_o200k_regex() {
        let o200k = Rules::O200k;
        check(o200k, "Hello world", &["Hello", " world"]);
        check(
            o200k,
            "camelCase HTTPServer",
            &["camel", "Case", " HTTPServer"],
        );
        check(
            o200k,
            "don't YOU'RE it'sx",
            &["don't", " YOU'RE", " it's", "x"],
        );
        check(o200k, "(x) \tword", &["(x", ")", " ", "\tword"]);
        check(o200k, "12345 a/b", &["123", "45", " a", "/b"]);
        check(o200k, "!!\n/x", &["!!\n/", "x"]);
    }

    #[test]
    fn splits_words_like_the_cl100k_regex() {
        let cl100k = Rules::Cl100k;
        check(
            cl100k,
            "camelCase HTTPServer",
            &["camelCase", " HTTPServer"],
        );
        check(
            cl100k,
            "don't YOU'RE 'sa",
            &["don", "'t", " YOU", "'RE", " '", "sa"],
        );
        check(cl100k, "!!\n/x", &["!!\n", "/x"]);
    }

    #[test]
    fn splits_whitespace_like_both_regexes() {
        for rules in [Rules::O200k, Rules::Cl100k] {
            check(rules, "a   b", &["a", "  ", " b"]);
            check(rules, "a \n\n  b", &["a", " \n\n", " ", " b"]);
            check(rules, "end  ", &["end", "  "]);
            check(rules, "x\t1", &["x", "\t", "1"]);
            check(rules, "\n\n\n   \t", &["\n\n\n", "   \t"]);
        }
    }

    #[test]
    fn leaves_pieces_that_non_ascii_could_change_to_the_regex() {
        let bytes = "caf\u{e9} x".as_bytes();
        assert_eq!(ascii_piece_end(bytes, 0, Rules::O200k), None);
        assert_eq!(ascii_piece_end(b"'s", 0, Rules::Cl100k), Some(2));
        assert_eq!(
            ascii_piece_end("'\u{17f}".as_bytes(), 0, Rules::Cl100k),
            None
        );
        assert_eq!(
            ascii_piece_end("  \u{3000}".as_bytes(), 0, Rules::O200k),
            None
        );
        assert_eq!(
            ascii_piece_end("12\u{663}".as_bytes(), 0, Rules::O200k),
            None
        );
        assert_eq!(
            ascii_piece_end("123\u{663}".as_bytes(), 0, Rules::O200k),
            Some(3)
        );
    }
}
