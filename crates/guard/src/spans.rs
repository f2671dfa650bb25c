//! Byte offsets (what `regex` reports) to Unicode scalar offsets (what callers, Python and
//! Presidio count), converted in one pass over the text.

/// Converts sorted-or-not byte offsets into scalar offsets; offsets inside a character or past
/// the end are clamped to the character start / text end.
pub fn byte_to_char_offsets(text: &str, byte_offsets: &[usize]) -> Vec<usize> {
    if byte_offsets.is_empty() {
        return Vec::new();
    }
    if text.is_ascii() {
        return byte_offsets.iter().map(|&b| b.min(text.len())).collect();
    }
    let mut order: Vec<usize> = (0..byte_offsets.len()).collect();
    order.sort_unstable_by_key(|&i| byte_offsets[i]);
    let mut out = vec![0; byte_offsets.len()];
    let mut chars = 0;
    let mut iter = text.char_indices().peekable();
    for i in order {
        let target = byte_offsets[i];
        while let Some(&(byte, c)) = iter.peek() {
            if byte + c.len_utf8() <= target {
                chars += 1;
                iter.next();
            } else {
                break;
            }
        }
        out[i] = chars;
    }
    out
}

/// Converts a scalar offset into a byte offset (the text end when past it).
pub fn char_to_byte(text: &str, char_offset: usize) -> usize {
    text.char_indices()
        .nth(char_offset)
        .map_or(text.len(), |(byte, _)| byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_scalars_not_bytes() {
        let text = "né 日本 a";
        let bytes = [0, 1, 3, 4, 7, 10, 11, 12];
        assert_eq!(
            byte_to_char_offsets(text, &bytes),
            vec![0, 1, 2, 3, 4, 5, 6, 7]
        );
        assert_eq!(byte_to_char_offsets("abc", &[3, 1]), vec![3, 1]);
        assert_eq!(char_to_byte(text, 4), 7);
        assert_eq!(char_to_byte(text, 99), text.len());
    }
}
