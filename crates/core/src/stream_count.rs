//! Counting tokens of arbitrarily large inputs piece by piece, with the exact result of counting
//! the whole text at once.
//!
//! Byte-pair encoders for GPT-style models first split text with a regex ("pre-tokens") and never
//! merge across those pieces. No pre-token of the o200k/cl100k patterns contains a line break
//! followed by a letter, so the text can be cut there and the parts counted separately with an
//! identical total. That lets `promptops tokens count` stream a multi-gigabyte file while holding
//! only a bounded window of it.

use crate::tokens::Tokenizer;

/// Accumulates text in chunks and counts the tokens of every safely cuttable prefix.
pub struct StreamingCounter<'a> {
    tokenizer: &'a dyn Tokenizer,
    pending: String,
    total: usize,
    /// Bytes of `pending` already known to hold no safe cut.
    searched: usize,
    chars: usize,
    bytes: usize,
    /// Pending text is counted once it grows past this many bytes (if it has a safe cut).
    flush_at: usize,
}

impl<'a> StreamingCounter<'a> {
    /// A counter that flushes its pending text once it exceeds 256 KiB.
    pub fn new(tokenizer: &'a dyn Tokenizer) -> Self {
        Self::with_flush_threshold(tokenizer, 256 * 1024)
    }

    /// A counter with an explicit flush threshold (small values are useful in tests).
    pub fn with_flush_threshold(tokenizer: &'a dyn Tokenizer, flush_at: usize) -> Self {
        StreamingCounter {
            tokenizer,
            pending: String::new(),
            total: 0,
            searched: 0,
            chars: 0,
            bytes: 0,
            flush_at,
        }
    }

    /// Adds the next piece of text.
    pub fn push(&mut self, chunk: &str) {
        self.chars += chunk.chars().count();
        self.bytes += chunk.len();
        self.pending.push_str(chunk);
        if self.pending.len() < self.flush_at {
            return;
        }
        // Only the unsearched tail can hold a new cut (one byte back: a line break may end the
        // searched part while its letter arrives now), so a long line costs linear time.
        let from = self.searched.saturating_sub(1);
        match last_safe_cut(&self.pending, from) {
            Some(cut) => {
                self.total += self.tokenizer.count(&self.pending[..cut]);
                self.pending.drain(..cut);
                self.searched = 0;
            }
            None => self.searched = self.pending.len(),
        }
    }

    /// Counts what is left and returns the totals.
    pub fn finish(mut self) -> StreamCount {
        if !self.pending.is_empty() {
            self.total += self.tokenizer.count(&self.pending);
            self.pending.clear();
        }
        StreamCount {
            tokens: self.total,
            chars: self.chars,
            bytes: self.bytes,
        }
    }
}

/// Totals of a streamed count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StreamCount {
    /// Tokens in the whole text.
    pub tokens: usize,
    /// Unicode scalar values in the whole text.
    pub chars: usize,
    /// UTF-8 bytes in the whole text.
    pub bytes: usize,
}

/// Byte offset of the last position that follows a line break (at or after byte `from`) and
/// precedes a letter.
fn last_safe_cut(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut search_end = bytes.len();
    while let Some(found) = bytes
        .get(from..search_end)?
        .iter()
        .rposition(|&b| b == b'\n')
    {
        let newline = from + found;
        // A line break is one byte and never part of a multi-byte character, so `cut` is a
        // character boundary.
        let cut = newline + 1;
        if text[cut..].chars().next().is_some_and(char::is_alphabetic) {
            return Some(cut);
        }
        search_end = newline;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::Encoding;
    use proptest::prelude::*;

    fn streamed(encoding: Encoding, text: &str, flush_at: usize, piece: usize) -> usize {
        let mut counter = StreamingCounter::with_flush_threshold(&encoding, flush_at);
        let mut rest = text;
        while !rest.is_empty() {
            let mut end = piece.min(rest.len());
            while !rest.is_char_boundary(end) {
                end += 1;
            }
            counter.push(&rest[..end]);
            rest = &rest[end..];
        }
        counter.finish().tokens
    }

    #[test]
    fn cut_points_follow_a_newline_and_precede_a_letter() {
        assert_eq!(last_safe_cut("ab\ncd\n12", 0), Some(3));
        assert_eq!(last_safe_cut("ab\ncd\n12", 3), None);
        assert_eq!(last_safe_cut("ab\ncd\nxy", 5), Some(6));
        assert_eq!(last_safe_cut("ab\n\n  x", 0), None);
        assert_eq!(last_safe_cut("no newline", 0), None);
        assert_eq!(last_safe_cut("日本\n語", 0), Some(7));
        assert_eq!(last_safe_cut("日本\n語", 1), Some(7));
        assert_eq!(last_safe_cut("ab", 5), None);
    }

    #[test]
    fn streamed_count_equals_whole_count_on_mixed_text() {
        let text = "Hello world!\n\nfn main() {\n    println!(\"hi\");\n}\n日本語のテキスト\n\
                    Émoji 👩‍👩‍👧 ok\n  indented\nlast line without newline"
            .repeat(50);
        for encoding in [Encoding::O200kBase, Encoding::Cl100kBase] {
            let whole = encoding.count(&text);
            for (flush_at, piece) in [(1, 1), (7, 3), (64, 17), (1024, 100)] {
                assert_eq!(streamed(encoding, &text, flush_at, piece), whole);
            }
        }
    }

    proptest! {
        #[test]
        fn streamed_count_equals_whole_count(
            lines in proptest::collection::vec("[ a-zA-Z0-9é日\t!?.,'\"-]{0,12}", 0..30),
            flush_at in 1usize..64,
            piece in 1usize..32,
        ) {
            let text = lines.join("\n");
            for encoding in [Encoding::O200kBase, Encoding::Cl100kBase] {
                prop_assert_eq!(streamed(encoding, &text, flush_at, piece), encoding.count(&text));
            }
        }
    }
}
