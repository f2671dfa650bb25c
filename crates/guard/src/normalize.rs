//! Text normalisation before detection: undoes the cheap obfuscations attackers use to slip
//! past patterns (compatibility forms, homoglyphs, invisible characters, leetspeak, spaced-out
//! letters, hidden comments) and reports how much obfuscation it found.

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

/// A normalised view of a text plus counts of what was undone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Normalized {
    /// Lower-cased, folded text; whitespace runs collapse to one space (or one newline).
    pub text: String,
    /// Zero-width, bidi, soft-hyphen and other invisible format characters removed.
    pub invisible: usize,
    /// Unicode tag characters (U+E0020..U+E007E) that smuggled ASCII and were decoded.
    pub tag_smuggled: usize,
    /// Homoglyphs folded to their Latin look-alike.
    pub confusables: usize,
    /// Leetspeak digits and symbols read as letters.
    pub leet: usize,
    /// Runs of spaced-out single letters ("i g n o r e") joined into words.
    pub spaced_runs: usize,
    /// HTML (`<!-- -->`) or markdown (`[//]: #`) comments, invisible once rendered.
    pub hidden_comments: usize,
}

impl Normalized {
    /// Whether any obfuscation was undone (an obfuscated prompt is suspicious in itself).
    pub fn obfuscation_score(&self) -> usize {
        self.invisible + self.tag_smuggled * 4 + self.confusables + self.spaced_runs * 3
    }
}

/// Normalises `input` for detection. Linear in the input length; never panics.
pub fn normalize(input: &str) -> Normalized {
    let mut out = Normalized {
        hidden_comments: count_hidden_comments(input),
        ..Normalized::default()
    };
    let composed: Cow<'_, str> = if input.is_ascii() {
        Cow::Borrowed(input)
    } else {
        Cow::Owned(input.nfkc().collect())
    };
    // Spaced-out letters are joined before whitespace collapses, so the wider gap between
    // spaced words ("i g n o r e  a l l") still separates them.
    let (joined, runs) = join_spaced_letters(composed.as_bytes());
    out.spaced_runs = runs;
    // Only ASCII separator bytes were removed, so the bytes are still UTF-8.
    let joined = String::from_utf8(joined)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned());
    let folded = fold_chars(&joined, &mut out);
    let mut bytes = folded.into_bytes();
    out.leet = read_leetspeak(&mut bytes);
    // Only ASCII bytes were replaced by ASCII bytes, so the text is still UTF-8.
    out.text = String::from_utf8(bytes)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned());
    out
}

fn count_hidden_comments(input: &str) -> usize {
    input.matches("<!--").count() + input.matches("[//]: #").count()
}

/// Removes invisible characters, decodes tag smuggling, lower-cases, folds homoglyphs and
/// collapses whitespace.
fn fold_chars(text: &str, out: &mut Normalized) -> String {
    let mut folded = String::with_capacity(text.len());
    let mut pending_space: Option<char> = None;
    let push = |folded: &mut String, pending: &mut Option<char>, c: char| {
        if let Some(space) = pending.take()
            && !folded.is_empty()
        {
            folded.push(space);
        }
        folded.push(c);
    };
    for c in text.chars() {
        if c.is_ascii() {
            if c.is_ascii_whitespace() {
                note_space(&mut pending_space, c == '\n' || c == '\r');
            } else if c.is_ascii_control() {
                out.invisible += 1;
            } else {
                push(&mut folded, &mut pending_space, c.to_ascii_lowercase());
            }
            continue;
        }
        let code = u32::from(c);
        if (0xE0020..=0xE007E).contains(&code) {
            out.tag_smuggled += 1;
            if let Some(ascii) = char::from_u32(code - 0xE0000) {
                push(&mut folded, &mut pending_space, ascii.to_ascii_lowercase());
            }
            continue;
        }
        if is_invisible(c) {
            out.invisible += 1;
            continue;
        }
        if c.is_whitespace() {
            note_space(&mut pending_space, c == '\u{2028}' || c == '\u{2029}');
            continue;
        }
        for lower in c.to_lowercase() {
            match confusable(lower) {
                Some(latin) => {
                    out.confusables += 1;
                    push(&mut folded, &mut pending_space, latin);
                }
                None => push(&mut folded, &mut pending_space, lower),
            }
        }
    }
    folded
}

fn note_space(pending: &mut Option<char>, newline: bool) {
    *pending = match (*pending, newline) {
        (_, true) | (Some('\n'), false) => Some('\n'),
        _ => Some(' '),
    };
}

/// Format and control characters that render as nothing.
fn is_invisible(c: char) -> bool {
    matches!(u32::from(c),
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8 | 0xE0000..=0xE001F | 0xE007F..=0xE0FFF
        | 0x0080..=0x009F)
}

/// The Latin letter a lower-case homoglyph imitates (Cyrillic, Greek, Armenian, IPA and
/// letterlike symbols NFKC leaves alone).
fn confusable(c: char) -> Option<char> {
    Some(match c {
        'а' | 'ɑ' | 'α' | 'ａ' => 'a',
        'в' | 'ь' | 'β' => 'b',
        'с' | 'ϲ' | 'ᴄ' => 'c',
        'ԁ' | 'ժ' => 'd',
        'е' | 'ё' | 'ε' | 'є' | 'ҽ' => 'e',
        'ғ' => 'f',
        'ɡ' | 'ց' => 'g',
        'һ' | 'н' | 'հ' => 'h',
        'і' | 'ї' | 'ι' | 'ɩ' | 'ı' | 'ӏ' | 'ǀ' => 'i',
        'ј' | 'ϳ' => 'j',
        'к' | 'κ' => 'k',
        'ℓ' | 'ⅼ' => 'l',
        'м' => 'm',
        'п' | 'η' | 'ո' => 'n',
        'о' | 'ο' | 'օ' | 'σ' | 'ᴏ' => 'o',
        'р' | 'ρ' | 'ϱ' => 'p',
        'ԛ' => 'q',
        'г' => 'r',
        'ѕ' | 'ꜱ' => 's',
        'т' | 'τ' => 't',
        'υ' | 'ս' | 'ц' => 'u',
        'ν' | 'ѵ' => 'v',
        'ѡ' | 'ԝ' | 'ω' | 'ш' => 'w',
        'х' | 'χ' | 'ж' => 'x',
        'у' | 'ү' | 'γ' => 'y',
        'ᴢ' => 'z',
        _ => return None,
    })
}

/// Reads digits and symbols as letters inside words that are mostly letters
/// ("1gn0r3", "pr3v10us" -> "ignore", "previous"); plain numbers and digit-heavy tokens
/// ("2024", "h264") stay as they are.
fn read_leetspeak(bytes: &mut [u8]) -> usize {
    let leet = |byte: u8| match byte {
        b'0' => Some(b'o'),
        b'1' => Some(b'i'),
        b'3' => Some(b'e'),
        b'4' => Some(b'a'),
        b'5' => Some(b's'),
        b'7' => Some(b't'),
        b'@' => Some(b'a'),
        b'$' => Some(b's'),
        _ => None,
    };
    let in_token = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'@' || byte == b'$';
    let mut changed = 0;
    let mut start = 0;
    while start < bytes.len() {
        if !in_token(bytes[start]) {
            start += 1;
            continue;
        }
        let mut end = start;
        while end < bytes.len() && in_token(bytes[end]) {
            end += 1;
        }
        let token = &bytes[start..end];
        let letters = token.iter().filter(|b| b.is_ascii_lowercase()).count();
        let leets = token.iter().filter(|&&b| leet(b).is_some()).count();
        let others = token.len() - letters - leets;
        if letters > 0 && leets > 0 && others == 0 && letters * 2 >= token.len() {
            for byte in &mut bytes[start..end] {
                if let Some(mapped) = leet(*byte) {
                    *byte = mapped;
                    changed += 1;
                }
            }
        }
        start = end;
    }
    changed
}

fn is_word(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte >= 0x80
}

/// Joins runs of at least four single letters separated by one separator each
/// ("i g n o r e", "i.g.n.o.r.e"). Words of a run separated by a wider gap stay apart.
fn join_spaced_letters(bytes: &[u8]) -> (Vec<u8>, usize) {
    let len = bytes.len();
    let is_single = |index: usize| {
        bytes[index].is_ascii_alphanumeric()
            && (index == 0 || !is_word(bytes[index - 1]))
            && (index + 1 == len || !is_word(bytes[index + 1]))
    };
    let is_separator = |byte: u8| {
        matches!(
            byte,
            b' ' | b'.' | b'-' | b'_' | b'*' | b'|' | b'/' | b'+' | b','
        )
    };
    let mut out = Vec::with_capacity(len);
    let mut runs = 0;
    let mut index = 0;
    while index < len {
        if is_single(index) {
            // Measure the run of singles separated by exactly one separator.
            let mut end = index;
            let mut count = 1;
            while end + 2 < len && is_separator(bytes[end + 1]) && is_single(end + 2) {
                end += 2;
                count += 1;
            }
            if count >= 4 {
                runs += 1;
                let mut at = index;
                while at <= end {
                    out.push(bytes[at]);
                    at += 2;
                }
                index = end + 1;
                continue;
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    (out, runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(normalize(input).text, expected, "input: {input:?}");
    }

    #[test]
    fn undoes_common_obfuscations() {
        check("Ignore   ALL\tprevious", "ignore all previous");
        check("ＩＧＮＯＲＥ previous", "ignore previous");
        check("іgnоrе prеvіоus", "ignore previous");
        check("ig\u{200b}no\u{200d}re", "ignore");
        check(
            "1gn0r3 pr3v10us 1nstruct10ns",
            "ignore previous instructions",
        );
        check("i g n o r e  p r e v i o u s", "ignore previous");
        check("i.g.n.o.r.e the rules", "ignore the rules");
        check("𝐢𝐠𝐧𝐨𝐫𝐞", "ignore");
        check("line one\n\n  line two", "line one\nline two");
    }

    #[test]
    fn keeps_numbers_and_short_words() {
        check("I have 2 cats and 300 dogs", "i have 2 cats and 300 dogs");
        check("a b c", "a b c");
        check("version 1.2.3", "version 1.2.3");
    }

    #[test]
    fn counts_what_was_undone() {
        let tags: String = "ignore"
            .chars()
            .map(|c| char::from_u32(0xE0000 + u32::from(c)).unwrap())
            .collect();
        let normalized = normalize(&format!("hello {tags} <!-- hidden --> \u{202e}x"));
        assert_eq!(normalized.text, "hello ignore <!-- hidden --> x");
        assert_eq!(normalized.tag_smuggled, 6);
        assert_eq!(normalized.invisible, 1);
        assert_eq!(normalized.hidden_comments, 1);
        assert!(normalized.obfuscation_score() > 0);
    }
}
