//! Secret detection: known credential formats (cloud keys, API tokens, private-key blocks,
//! JWTs, connection strings with passwords) plus high-entropy values in key-like context.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex::Regex;
use serde::Serialize;

use crate::spans::byte_to_char_offsets;

/// One detected secret. The value itself is never stored in the finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecretMatch {
    /// Which credential format (`AWS_ACCESS_KEY`, `GITHUB_TOKEN`, ...).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Start, in Unicode scalar values.
    pub start: usize,
    /// End (exclusive), in Unicode scalar values.
    pub end: usize,
    /// Confidence in [0, 1].
    pub confidence: f32,
    /// Start byte offset.
    #[serde(skip)]
    pub byte_start: usize,
    /// End byte offset.
    #[serde(skip)]
    pub byte_end: usize,
}

struct SecretPattern {
    kind: &'static str,
    confidence: f32,
    /// The secret is capture group 1 when the pattern has one, else the whole match.
    regex: Regex,
    /// Extra check on the value.
    check: fn(&str) -> bool,
    /// Literals one of which every match contains, compared ignoring ASCII case (see
    /// [`candidate_patterns`]).
    required: &'static [&'static str],
}

/// A row of the pattern table: kind, confidence, pattern, value check, and literals one of
/// which every match contains (ASCII case ignored).
type PatternRow = (
    &'static str,
    f32,
    &'static str,
    fn(&str) -> bool,
    &'static [&'static str],
);

fn always(_: &str) -> bool {
    true
}

fn secret_patterns() -> &'static [SecretPattern] {
    static PATTERNS: OnceLock<Vec<SecretPattern>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let table: [PatternRow; 17] = [
            // Header only: the block is extended to its footer by `private_key_blocks`, in linear time
            // (a lazy `[\s\S]*?` up to an optional footer rescans to the end for every header).
            ("PRIVATE_KEY", 0.99, PRIVATE_KEY_HEADER, always, &["-----BEGIN "]),
            ("AWS_ACCESS_KEY", 0.95, r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA|A3T[A-Z0-9])[A-Z0-9]{16}\b", always, &["AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA", "A3T"]),
            ("AWS_SECRET_KEY", 0.9, r#"(?i)aws.{0,20}(?:secret|private).{0,20}?['"]?\s*[:=]\s*['"]?([A-Za-z0-9/+=]{40})\b"#, always, &["aws"]),
            ("GCP_API_KEY", 0.95, r"\bAIza[0-9A-Za-z_-]{35}", always, &["AIza"]),
            ("GCP_SERVICE_ACCOUNT", 0.9, r#""type"\s*:\s*"service_account""#, always, &["\"service_account\""]),
            ("AZURE_STORAGE_KEY", 0.95, r"(?i)\bAccountKey=([A-Za-z0-9+/]{40,}={0,2})", always, &["AccountKey="]),
            ("AZURE_SAS_TOKEN", 0.85, r"\bsig=([A-Za-z0-9%+/]{30,}(?:%3D|=){0,2})", always, &["sig="]),
            ("ANTHROPIC_API_KEY", 0.98, r"\bsk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_-]{20,}|\bsk-ant-[A-Za-z0-9_-]{32,}", always, &["sk-ant-"]),
            ("OPENAI_API_KEY", 0.95, r"\bsk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}", not_anthropic, &["sk-"]),
            ("GITHUB_TOKEN", 0.98, r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b|\bgithub_pat_[A-Za-z0-9_]{50,255}\b", always, &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"]),
            ("SLACK_TOKEN", 0.95, r"\bxox[abposre]-[A-Za-z0-9-]{10,}", always, &["xox"]),
            ("SLACK_WEBHOOK", 0.95, r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+", always, &["https://hooks.slack.com/services/T"]),
            ("STRIPE_KEY", 0.97, r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b", always, &["_live_", "_test_"]),
            ("JWT", 0.9, r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", always, &["eyJ"]),
            ("CONNECTION_STRING", 0.9, r"\b(?i:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|redis|rediss|amqps?|mssql|sqlserver|oracle|ftp|sftp|smtp|ldap)://[^\s:/@'\x22]+:([^\s@/'\x22]+)@[^\s'\x22]+", not_placeholder, &["://"]),
            ("CONNECTION_STRING", 0.85, r"(?i)\b(?:password|pwd)=([^;'\x22\s]{4,})(?:;|$)", not_placeholder, &["password=", "pwd="]),
            ("GENERIC_SECRET", 0.7, r#"(?i)\b[a-z0-9_.-]{0,20}(?:api[_-]?key|apikey|secret|token|passw(?:or)?d|passwd|pwd|auth[_-]?key|access[_-]?key|client[_-]?secret|private[_-]?key|credentials?)[a-z0-9_.-]{0,20}['"]?\s*(?:[:=]|=>|:=)\s*['"]?([A-Za-z0-9_\-+/=.~!@#$%^&*]{12,})"#, high_entropy, &["api", "secret", "token", "passw", "pwd", "auth", "access", "private", "credential"]),
        ];
        table
            .into_iter()
            .filter_map(|(kind, confidence, pattern, check, required)| {
                let regex = Regex::new(&crate::rules::ascii_word_boundaries(pattern)).ok()?;
                Some(SecretPattern {
                    kind,
                    confidence,
                    regex,
                    check,
                    required,
                })
            })
            .collect()
    })
}

const PRIVATE_KEY_HEADER: &str = r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----";
const PRIVATE_KEY_FOOTER: &str = r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----";

fn private_key_footer() -> Option<&'static Regex> {
    static FOOTER: OnceLock<Option<Regex>> = OnceLock::new();
    FOOTER
        .get_or_init(|| Regex::new(PRIVATE_KEY_FOOTER).ok())
        .as_ref()
}

/// Private-key blocks: each header through the first footer after it (or the header alone when
/// no footer follows), non-overlapping. The footer search result is reused across headers, so
/// the whole scan is linear even with many headers and no footer.
fn private_key_blocks(text: &str, header: &Regex) -> Vec<(usize, usize)> {
    let mut blocks = Vec::new();
    let Some(footer) = private_key_footer() else {
        return blocks;
    };
    // The last footer search: where it started and what it found.
    let mut searched: Option<(usize, Option<(usize, usize)>)> = None;
    let mut at = 0;
    while let Some(head) = header.find_at(text, at) {
        let from = head.end();
        let found = match searched {
            Some((start, Some((f_start, f_end)))) if start <= from && f_start >= from => {
                Some((f_start, f_end))
            }
            Some((start, None)) if start <= from => None,
            _ => {
                let found = footer.find_at(text, from).map(|m| (m.start(), m.end()));
                searched = Some((from, found));
                found
            }
        };
        let end = found.map_or(from, |(_, f_end)| f_end);
        blocks.push((head.start(), end));
        at = end.max(head.start() + 1);
        if at > text.len() {
            break;
        }
    }
    blocks
}

fn not_anthropic(value: &str) -> bool {
    !value.starts_with("sk-ant-")
}

fn not_placeholder(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    !(lower.starts_with('$')
        || lower.starts_with('{')
        || lower.starts_with('<')
        || lower.starts_with('%')
        || matches!(
            lower.as_str(),
            "password" | "pass" | "secret" | "xxxx" | "xxxxxx" | "changeme" | "****" | "******"
        ))
}

/// Shannon entropy in bits per character.
pub fn shannon_entropy(value: &str) -> f64 {
    let mut counts = [0u32; 256];
    let mut total = 0u32;
    for byte in value.bytes() {
        counts[usize::from(byte)] += 1;
        total += 1;
    }
    if total == 0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / f64::from(total);
            -p * p.log2()
        })
        .sum()
}

/// A value in key-like context counts as a secret when it looks random: enough entropy and
/// a mix of character classes (so `password = correcthorse` does, `token = true` does not).
fn high_entropy(value: &str) -> bool {
    let classes = [
        value.bytes().any(|b| b.is_ascii_lowercase()),
        value.bytes().any(|b| b.is_ascii_uppercase()),
        value.bytes().any(|b| b.is_ascii_digit()),
        value.bytes().any(|b| !b.is_ascii_alphanumeric()),
    ]
    .into_iter()
    .filter(|&present| present)
    .count();
    not_placeholder(value) && classes >= 2 && shannon_entropy(value) >= 3.3
}

/// The required literals of every pattern in one ASCII case-insensitive automaton, with the
/// patterns (bits of a mask) each literal belongs to.
struct LiteralFilter {
    automaton: AhoCorasick,
    owners: Vec<u64>,
}

fn literal_filter(patterns: &[SecretPattern]) -> Option<&'static LiteralFilter> {
    static FILTER: OnceLock<Option<LiteralFilter>> = OnceLock::new();
    FILTER
        .get_or_init(|| {
            if patterns.len() > 64 {
                return None;
            }
            let mut literals: Vec<String> = Vec::new();
            let mut owners: Vec<u64> = Vec::new();
            for (index, pattern) in patterns.iter().enumerate() {
                for literal in pattern.required {
                    let literal = literal.to_ascii_lowercase();
                    match literals.iter().position(|l| *l == literal) {
                        Some(at) => owners[at] |= 1 << index,
                        None => {
                            literals.push(literal);
                            owners.push(1 << index);
                        }
                    }
                }
            }
            let automaton = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .kind(Some(AhoCorasickKind::DFA))
                // Common letters start these literals: a prefilter restarting at every word
                // costs more than the plain automaton walk.
                .prefilter(false)
                .build(&literals)
                .ok()?;
            Some(LiteralFilter { automaton, owners })
        })
        .as_ref()
}

/// The patterns (as a bit mask over `patterns`) that can match `text`: those with one of their
/// required literals in it. Case-insensitive patterns can also match the two non-ASCII
/// letters Unicode case folding maps to ASCII ones (U+017F long s, U+212A Kelvin sign), which
/// an ASCII comparison misses, so a text with either runs every pattern, as does any failure
/// to build the filter.
fn candidate_patterns(patterns: &[SecretPattern], text: &str) -> u64 {
    let all = if patterns.len() >= 64 {
        u64::MAX
    } else {
        (1u64 << patterns.len()) - 1
    };
    let Some(filter) = literal_filter(patterns) else {
        return all;
    };
    if !text.is_ascii() && text.contains(['\u{17F}', '\u{212A}']) {
        return all;
    }
    if !could_hold_a_secret(text) {
        return 0;
    }
    let mut wanted = 0;
    for found in filter.automaton.find_overlapping_iter(text) {
        wanted |= filter.owners[found.pattern().as_usize()];
        if wanted == all {
            break;
        }
    }
    wanted
}

/// A cheap first gate for the whole table. The token forms need a run of at least ten
/// `[A-Za-z0-9_-]` bytes (the shortest, a JWT head `eyJ` plus eight, and a `-----BEGIN` key
/// header, are ten long) holding a byte other than a lower-case letter (each form has a
/// capital, digit, `_` or `-` in a fixed part: `AKIA`, `AIza`, `sk-`, `gh?_`, `xox?-`,
/// `_live_`, `eyJ`, `-----BEGIN`), which long English words do not. The key-value forms need
/// a `:` or `=` with a value after it:
///
/// - the URL forms contain `://`, then an `@` (`scheme://user:password@`) or are the Slack
///   webhook (`hooks.slack.com`);
/// - `password=`/`pwd=` (ASCII case ignored) take at least four bytes right after the `=`
///   (counted as anything but ASCII whitespace, quotes and `;`, a superset of the value);
/// - every other form (AWS, Azure, the GCP service account, the generic `key: value`) has,
///   after the separator (`:`, `=`, `=>`, `:=`), optional whitespace and an optional quote,
///   at least twelve bytes of `[A-Za-z0-9_+/=.~!@#$%^&*-]` (the union of their value classes;
///   `"service_account"` counts from its opening quote), and a key before it (see
///   [`KEY_WORDS`]).
///
/// Texts with U+017F or U+212A never get here (see [`candidate_patterns`]), so the ASCII
/// comparisons stand for the case-insensitive ones.
fn could_hold_a_secret(text: &str) -> bool {
    let bytes = text.as_bytes();
    if marked_token_run(bytes) {
        return true;
    }
    let loose_value = |b: u8| !(b.is_ascii_whitespace() || matches!(b, 0x0b | b'\'' | b'"' | b';'));
    let loose_run = |from: usize| {
        bytes[from..]
            .iter()
            .take_while(|&&b| loose_value(b))
            .count()
    };
    let value = |b: u8| b.is_ascii_alphanumeric() || b"_+/=.~!@#$%^&*-".contains(&b);
    // The value after `from`: whitespace (`\s`, any Unicode space), then an optional quote.
    let value_after = |from: usize| {
        let mut at = from;
        for c in text.get(from..).unwrap_or_default().chars() {
            if !c.is_whitespace() {
                break;
            }
            at += c.len_utf8();
        }
        if matches!(bytes.get(at), Some(b'\'' | b'"')) {
            at += 1;
        }
        bytes[at..]
            .iter()
            .take(12)
            .take_while(|&&b| value(b))
            .count()
            >= 12
    };
    // Where the last `@` and Slack host are, found once at the first `://` (not per colon,
    // so the scan stays linear).
    let url_ends = std::cell::OnceCell::new();
    let url_continues = |at: usize| {
        let &(at_sign, slack) = url_ends.get_or_init(|| {
            (
                bytes.iter().rposition(|&b| b == b'@'),
                text.rfind("hooks.slack.com"),
            )
        });
        at_sign.is_some_and(|last: usize| last > at) || slack.is_some_and(|last: usize| last > at)
    };
    // The key before a separator at `at`: past ASCII whitespace (a non-ASCII byte there could
    // be a Unicode space: allowed), a closing quote (the GCP `"type"`) allows, otherwise one of
    // the key words must occur in the hundred bytes before (the generic key word with its
    // twenty-byte affixes, `aws` ... `secret` twenty characters away, `AccountKey`, `sig`).
    let key_before = |at: usize| {
        let mut end = at;
        while end > 0 && bytes[end - 1].is_ascii_whitespace() {
            end -= 1;
        }
        match bytes[..end].last() {
            None => false,
            Some(&b) if b >= 0x80 || b == b'"' || b == b'\'' => true,
            Some(_) => {
                key_words().is_none_or(|words| words.is_match(&bytes[end.saturating_sub(100)..end]))
            }
        }
    };
    let colon = |at: usize| {
        (bytes[at + 1..].starts_with(b"//") && url_continues(at))
            || ((value_after(at + 1) || (bytes.get(at + 1) == Some(&b'=') && value_after(at + 2)))
                && key_before(at))
    };
    let equals = |at: usize| {
        let key =
            |name: &[u8]| at >= name.len() && bytes[at - name.len()..at].eq_ignore_ascii_case(name);
        ((key(b"password") || key(b"pwd")) && loose_run(at + 1) >= 4)
            || ((value_after(at + 1) || (bytes.get(at + 1) == Some(&b'>') && value_after(at + 2)))
                && key_before(at))
    };
    // `match_indices` finds the bytes with a vectorised search.
    text.match_indices(':').any(|(at, _)| colon(at))
        || text.match_indices('=').any(|(at, _)| equals(at))
}

/// What the key of a key-value secret contains (ASCII case ignored): the generic pattern's key
/// words (`apikey`, `passwd`, `auth_key`, `access_key`, `client_secret`, `private_key`,
/// `credentials` contain these), the `secret`/`private` of the AWS form, `AccountKey`, `sig`.
const KEY_WORDS: &[&str] = &[
    "api",
    "secret",
    "token",
    "passw",
    "pwd",
    "auth",
    "access",
    "private",
    "credential",
    "accountkey",
    "sig",
];

/// [`KEY_WORDS`], ASCII case ignored (`None` if it cannot be built: then every key passes).
fn key_words() -> Option<&'static AhoCorasick> {
    static WORDS: OnceLock<Option<AhoCorasick>> = OnceLock::new();
    WORDS
        .get_or_init(|| {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .kind(Some(AhoCorasickKind::DFA))
                .build(KEY_WORDS)
                .ok()
        })
        .as_ref()
}

/// Whether `bytes` hold a maximal run of at least ten `[A-Za-z0-9_-]` bytes with a byte other
/// than `[a-z]` in it. Runs are found from checkpoints ten bytes apart (every such run covers
/// one) and each byte is looked at a bounded number of times.
fn marked_token_run(bytes: &[u8]) -> bool {
    const MIN: usize = 10;
    let token = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    // Bytes before this offset belong to runs already measured.
    let mut measured = 0;
    let mut checkpoint = MIN - 1;
    while checkpoint < bytes.len() {
        if !token(bytes[checkpoint]) {
            checkpoint += MIN;
            continue;
        }
        let mut start = checkpoint;
        while start > measured && token(bytes[start - 1]) {
            start -= 1;
        }
        let mut end = checkpoint + 1;
        while end < bytes.len() && token(bytes[end]) {
            end += 1;
        }
        if end - start >= MIN && !bytes[start..end].iter().all(u8::is_ascii_lowercase) {
            return true;
        }
        measured = end;
        checkpoint = (end + MIN - 1).max(checkpoint + MIN);
    }
    false
}

/// Detects secrets in text.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecretDetector;

impl SecretDetector {
    /// All secrets in `text`, non-overlapping (more specific formats win), sorted by start.
    pub fn detect(&self, text: &str) -> Vec<SecretMatch> {
        self.detect_gated(text, true)
    }

    /// [`SecretDetector::detect`]; without `gated`, every pattern runs whatever literals the
    /// text holds (the tests check that the literal filter never changes a result).
    fn detect_gated(&self, text: &str, gated: bool) -> Vec<SecretMatch> {
        // Kept spans by start byte (disjoint), so an overlap check is one range lookup.
        let mut found: BTreeMap<usize, (&'static str, usize, f32)> = BTreeMap::new();
        let free =
            |found: &BTreeMap<usize, (&'static str, usize, f32)>, start: usize, end: usize| {
                found
                    .range(..end)
                    .next_back()
                    .is_none_or(|(_, &(_, kept_end, _))| kept_end <= start)
            };
        let patterns = secret_patterns();
        let wanted = if gated {
            candidate_patterns(patterns, text)
        } else {
            u64::MAX
        };
        if wanted == 0 {
            return Vec::new();
        }
        for (index, pattern) in patterns.iter().enumerate() {
            if wanted & (1 << index) == 0 {
                continue;
            }
            if pattern.kind == "PRIVATE_KEY" {
                for (start, end) in private_key_blocks(text, &pattern.regex) {
                    if free(&found, start, end) {
                        found.insert(start, (pattern.kind, end, pattern.confidence));
                    }
                }
                continue;
            }
            for caps in pattern.regex.captures_iter(text) {
                let Some(span) = caps.get(1).or_else(|| caps.get(0)) else {
                    continue;
                };
                if !(pattern.check)(span.as_str()) {
                    continue;
                }
                let (start, end) = (span.start(), span.end());
                if free(&found, start, end) {
                    found.insert(start, (pattern.kind, end, pattern.confidence));
                }
            }
        }
        let found: Vec<(&'static str, usize, usize, f32)> = found
            .into_iter()
            .map(|(start, (kind, end, confidence))| (kind, start, end, confidence))
            .collect();
        let offsets: Vec<usize> = found.iter().flat_map(|f| [f.1, f.2]).collect();
        let chars = byte_to_char_offsets(text, &offsets);
        found
            .iter()
            .enumerate()
            .map(|(i, f)| SecretMatch {
                kind: f.0,
                start: chars[2 * i],
                end: chars[2 * i + 1],
                confidence: f.3,
                byte_start: f.1,
                byte_end: f.2,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(&'static str, String)> {
        SecretDetector
            .detect(text)
            .into_iter()
            .map(|m| (m.kind, text[m.byte_start..m.byte_end].to_owned()))
            .collect()
    }

    #[test]
    fn known_formats() {
        let anthropic = format!("sk-ant-api03-{}", "a1B2".repeat(24));
        let github = format!("ghp_{}", "A1b2C3d4E5f6".repeat(3));
        let cases = [
            ("key AKIAIOSFODNN7EXAMPLE here".to_owned(), "AWS_ACCESS_KEY", "AKIAIOSFODNN7EXAMPLE".to_owned()),
            (format!("export OPENAI_API_KEY=sk-proj-{}", "x9Y8".repeat(10)), "OPENAI_API_KEY", format!("sk-proj-{}", "x9Y8".repeat(10))),
            (format!("use {anthropic} please"), "ANTHROPIC_API_KEY", anthropic.clone()),
            (format!("token: {github}"), "GITHUB_TOKEN", github.clone()),
            ("xoxb-123456789012-abcdefABCDEF".to_owned(), "SLACK_TOKEN", "xoxb-123456789012-abcdefABCDEF".to_owned()),
            ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc".to_owned(), "STRIPE_KEY", "sk_live_4eC39HqLyjWDarjtT1zdp7dc".to_owned()),
            ("AIzaSyA1234567890abcdefghijklmnopqrstuv".to_owned(), "GCP_API_KEY", "AIzaSyA1234567890abcdefghijklmnopqrstuv".to_owned()),
            ("DATABASE_URL=postgres://app:s3cr3tPass@db.internal:5432/app".to_owned(), "CONNECTION_STRING", "s3cr3tPass".to_owned()),
            ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U".to_owned(), "JWT", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U".to_owned()),
            ("client_secret = \"Zx8!kq2LmN4pR7tV\"".to_owned(), "GENERIC_SECRET", "Zx8!kq2LmN4pR7tV".to_owned()),
        ];
        for (text, kind, value) in cases {
            assert_eq!(kinds(&text), vec![(kind, value)], "text: {text}");
        }
        let pem =
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----";
        assert_eq!(kinds(pem), vec![("PRIVATE_KEY", pem.to_owned())]);
    }

    #[test]
    fn private_key_blocks_match_the_lazy_pattern_and_stay_linear() {
        let reference = Regex::new(&format!(
            r"{PRIVATE_KEY_HEADER}(?:[\s\S]*?{PRIVATE_KEY_FOOTER})?"
        ))
        .unwrap();
        let header = Regex::new(PRIVATE_KEY_HEADER).unwrap();
        let begin = "-----BEGIN PRIVATE KEY-----";
        let end = "-----END EC PRIVATE KEY-----";
        for text in [
            format!("{begin}\nabc\n{end}"),
            format!("x {begin} y {begin} z {end} w {end} {begin}"),
            format!("{begin}{end}{begin}"),
            format!("{end} {begin}\n{begin}\nq"),
            "no key here".to_owned(),
        ] {
            let expected: Vec<(usize, usize)> = reference
                .find_iter(&text)
                .map(|m| (m.start(), m.end()))
                .collect();
            assert_eq!(private_key_blocks(&text, &header), expected, "{text:?}");
        }
        // Found by fuzzing the 1 MB robustness units: many headers and no footer used to
        // rescan to the end of the text for each header (quadratic).
        let many = begin.repeat(20_000);
        assert_eq!(private_key_blocks(&many, &header).len(), 20_000);
    }

    #[test]
    fn only_two_non_ascii_letters_fold_to_ascii_ones() {
        // `candidate_patterns` compares literals ignoring ASCII case only; under `(?i)` the
        // regex engine also matches the non-ASCII case variants of ASCII letters.
        let letter = Regex::new(r"(?i)^[a-z]$").unwrap();
        let folding: Vec<char> = ('\u{80}'..=char::MAX)
            .filter(|c| letter.is_match(c.encode_utf8(&mut [0; 4])))
            .collect();
        assert_eq!(folding, vec!['\u{17F}', '\u{212A}']);
    }

    use proptest::strategy::Strategy;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn literal_filter_never_changes_a_result(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => proptest::sample::select(&[
                        "AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key = ", "AWS SECRET: ",
                        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYab", "sk-", "sk-ant-api03-",
                        "sk_live_", "rk_test_", "ghp_", "github_pat_", "xoxb-", "eyJ", ".",
                        "AccountKey=", "sig=", "password=", "PWD=", "api_key", "Token", "secret",
                        "ſecret", "\u{212A}ey", "postgres://", "u:p4ss@h", "=", ":", " ", "\"",
                        "a1B2c3D4e5F6g7H8i9J0", "-----BEGIN RSA PRIVATE KEY-----", "AIza",
                        "\"type\": \"service_account\"", "https://hooks.slack.com/services/T0/B0/x",
                        "pwd=::::", "password=é;", "api_key => ", "secret := ", "\u{a0}", "'",
                        "abcdefghijklmn", "redis://u:=@h", ";", ">", "instructions", "Abcdefghijk",
                        "==abcdefghij", "(0..10)", "\u{3000}", "\u{2003}", "Password=", "\t",
                        "hooks.slack.com", "@", "\n", "https://evil.example/abc", "client_",
                        "aws ", "x: ", "sig", "'", "\u{a0}",
                    ][..]).prop_map(str::to_owned),
                    1 => proptest::prelude::any::<String>(),
                ],
                0..10,
            )
        ) {
            let text = parts.concat();
            proptest::prop_assert_eq!(
                SecretDetector.detect_gated(&text, true),
                SecretDetector.detect_gated(&text, false)
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        #[test]
        fn marked_token_run_equals_the_reference(text in "([a-z]{0,14}[A-Z0-9_-]?[a-z]{0,12}[ .]?){0,8}|.{0,40}") {
            let bytes = text.as_bytes();
            let token = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-';
            let reference = bytes
                .split(|b| !token(b))
                .any(|run| run.len() >= 10 && !run.iter().all(u8::is_ascii_lowercase));
            proptest::prop_assert_eq!(marked_token_run(bytes), reference);
        }
    }

    #[test]
    fn every_pattern_compiles() {
        assert_eq!(secret_patterns().len(), 17);
    }

    #[test]
    fn look_alikes_are_not_secrets() {
        for text in [
            "the password = password",
            "set token = true and api_key: ${API_KEY}",
            "postgres://user:${PASSWORD}@localhost/db",
            "ask-ant-colony about it",
            "my secret is that I like tea",
        ] {
            assert_eq!(kinds(text), vec![], "text: {text}");
        }
    }
}
