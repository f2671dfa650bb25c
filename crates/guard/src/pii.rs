//! PII detection with spans in Unicode scalar offsets. Each type pairs a linear-time pattern
//! with a validator (Luhn, IBAN mod-97, IP parsing, SSN ranges, context cues), so look-alikes
//! such as order numbers, Luhn-failing digit runs and version strings do not fire.

use std::net::Ipv6Addr;
use std::sync::OnceLock;

use aho_corasick::AhoCorasick;
use regex::Regex;
use serde::Serialize;

use crate::spans::byte_to_char_offsets;

/// A PII type, named as in Presidio and the evaluation data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PiiType {
    /// Email address.
    Email,
    /// Phone number (international formats).
    Phone,
    /// US social security number.
    Ssn,
    /// Payment card number (Luhn-checked, known issuer prefix).
    CreditCard,
    /// International bank account number (mod-97 checked).
    Iban,
    /// IPv4 or IPv6 address.
    Ip,
    /// A date of birth (only with a birth cue nearby).
    DateTime,
    /// A street address (number, street name, street type).
    Address,
    /// A person's name (only after a cue such as "my name is", "Dear", "Mr.").
    Person,
}

impl PiiType {
    /// The upper-case name (`EMAIL`, `CREDIT_CARD`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            PiiType::Email => "EMAIL",
            PiiType::Phone => "PHONE",
            PiiType::Ssn => "SSN",
            PiiType::CreditCard => "CREDIT_CARD",
            PiiType::Iban => "IBAN",
            PiiType::Ip => "IP",
            PiiType::DateTime => "DATE_TIME",
            PiiType::Address => "ADDRESS",
            PiiType::Person => "PERSON",
        }
    }

    /// Every type, in priority order (earlier wins an overlap).
    pub const ALL: [PiiType; 9] = [
        PiiType::Iban,
        PiiType::CreditCard,
        PiiType::Ssn,
        PiiType::Email,
        PiiType::Ip,
        PiiType::DateTime,
        PiiType::Phone,
        PiiType::Address,
        PiiType::Person,
    ];
}

/// One detected PII value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PiiMatch {
    /// What it is.
    #[serde(rename = "type")]
    pub kind: PiiType,
    /// Start, in Unicode scalar values.
    pub start: usize,
    /// End (exclusive), in Unicode scalar values.
    pub end: usize,
    /// Confidence in [0, 1].
    pub confidence: f32,
    /// Start byte offset (for slicing in Rust).
    #[serde(skip)]
    pub byte_start: usize,
    /// End byte offset.
    #[serde(skip)]
    pub byte_end: usize,
}

struct Patterns {
    /// The domain half of [`EMAIL`], from the `@` (run anchored, see [`email_matches`]).
    email_domain: regex_automata::meta::Regex,
    /// `[\p{L}\p{N}]`, the first character of the local part of [`EMAIL`].
    letter_or_number: Regex,
    ssn: Regex,
    ssn_cued: Regex,
    card: Regex,
    iban: Regex,
    ipv4: Regex,
    ipv6: Regex,
    phone: Regex,
    date_shape: Regex,
    dob: Regex,
    address: Regex,
    person: Regex,
}

fn patterns() -> Option<&'static Patterns> {
    static PATTERNS: OnceLock<Option<Patterns>> = OnceLock::new();
    PATTERNS
        .get_or_init(|| {
            let re = |p: &str| Regex::new(&crate::rules::ascii_word_boundaries(p)).ok();
            Some(Patterns {
                email_domain: regex_automata::meta::Regex::new(&crate::rules::ascii_word_boundaries(EMAIL_DOMAIN)).ok()?,
                letter_or_number: Regex::new(r"^[\p{L}\p{N}]$").ok()?,
                ssn: re(r"\b\d{3}-\d{2}-\d{4}\b")?,
                ssn_cued: re(r"(?i)\b(?:ssn|social security(?: number| no\.?| #)?|ss#)\s*(?:is|:|#|number)?\s*(\d{3}[ .]?\d{2}[ .]?\d{4})\b")?,
                card: re(r"\b\d(?:[ -]?\d){12,18}\b")?,
                iban: re(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")?,
                ipv4: re(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")?,
                ipv6: re(r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?")?,
                phone: re(r"(?:\+|\b00)?\(?\d[\d ().-]{4,22}\d(?:\s?(?:x|ext\.?|extension)\s?\d{1,6})?")?,
                date_shape: re(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")?,
                dob: re(r"(?i)\b(?:born(?: on| in)?|date of birth|d\.o\.b\.?|dob|birth ?date|birthday)\b\s*(?:is|was|:|-)?\s*(?:on\s+)?(\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{4}-\d{2}-\d{2}|(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.? \d{1,2}(?:st|nd|rd|th)?,? \d{4}|\d{1,2}(?:st|nd|rd|th)? (?:of )?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?,? \d{4})")?,
                address: re(r"\b\d{1,6}[A-Za-z]? (?:\p{Lu}[\p{L}'.-]*\.? ){1,4}(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Boulevard|Blvd|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Trail|Trl|Crescent|Close|Row|Alley|Plaza)\b\.?(?:,? (?:Apt|Apartment|Suite|Ste|Unit)\.? ?#?\d+[A-Za-z]?)?|\bP\.? ?O\.? Box \d{1,6}\b")?,
                person: re(r"(?:\b(?:[Mm]y name is|[Nn]ame is|[Nn]ame:|[Dd]ear|Mr\.?|Mrs\.?|Ms\.?|Miss|Dr\.?|Prof\.?|[Ss]igned,?|[Rr]egards,?|[Ss]incerely,?|[Pp]atient:?|[Cc]ontact person:?|I am|I'm|[Cc]all me)\s+)(\p{Lu}[\p{Ll}'’]+(?:[ -]\p{Lu}[\p{Ll}'’]+){0,2})")?,
            })
        })
        .as_ref()
}

/// Detects PII in text.
#[derive(Debug, Clone, Copy, Default)]
pub struct PiiDetector;

impl PiiDetector {
    /// All PII in `text`, non-overlapping, sorted by start.
    pub fn detect(&self, text: &str) -> Vec<PiiMatch> {
        self.detect_gated(text, true)
    }

    /// [`PiiDetector::detect`]; without `gated`, every pattern runs whatever the byte counts
    /// say (the tests check that the gates never change a result).
    fn detect_gated(&self, text: &str, gated: bool) -> Vec<PiiMatch> {
        let Some(p) = patterns() else {
            return Vec::new();
        };
        let mut candidates: Vec<(PiiType, usize, usize, f32)> = Vec::new();
        let bytes = text.as_bytes();
        let stats = if gated {
            ByteStats::of(text)
        } else {
            ByteStats::ungated(bytes)
        };
        if memchr_byte(bytes, b'@') {
            for (start, end) in email_matches(p, text) {
                candidates.push((PiiType::Email, start, end, 0.95));
            }
        }
        if stats.digits > 0 {
            self.digits(text, p, &stats, &mut candidates);
        }
        if stats.digits > 0 && (!gated || address_shape(bytes)) {
            for m in p.address.find_iter(text) {
                candidates.push((PiiType::Address, m.start(), m.end(), 0.6));
            }
        }
        // The cue gate, then `is_match`: most texts have no cue, and captures cost an
        // allocation per call.
        let person = (!gated || person_cue_possible(bytes)) && p.person.is_match(text);
        for caps in person
            .then(|| p.person.captures_iter(text))
            .into_iter()
            .flatten()
        {
            if let Some(name) = caps.get(1)
                && !is_common_word(name.as_str())
            {
                candidates.push((PiiType::Person, name.start(), name.end(), 0.6));
            }
        }
        resolve(text, candidates)
    }

    /// The digit-based types. Each pattern runs only when the text has what its validator
    /// needs (counted in ASCII digits, which are all the validators accept), so a prompt with a
    /// year or an order number in it does not pay for eight more passes.
    fn digits(
        &self,
        text: &str,
        p: &Patterns,
        stats: &ByteStats,
        out: &mut Vec<(PiiType, usize, usize, f32)>,
    ) {
        // `iban_checks` accepts only `[A-Z0-9]`: a valid IBAN starts with two ASCII capitals
        // and two ASCII digits.
        if stats.iban_head {
            for m in p.iban.find_iter(text) {
                if let Some(end) = valid_iban_prefix(m.as_str()) {
                    out.push((PiiType::Iban, m.start(), m.start() + end, 0.98));
                }
            }
        }
        // `valid_card` wants 13 to 19 ASCII digits.
        if stats.digits >= 13 && (!stats.gated || !stats.ascii || card_run(text.as_bytes())) {
            for m in p.card.find_iter(text) {
                if valid_card(m.as_str())
                    && !negative_cue_before(text, m.start(), CARD_NEGATIVE_CUES)
                {
                    out.push((PiiType::CreditCard, m.start(), m.end(), 0.95));
                }
            }
        }
        // `valid_ssn` parses the area (three digits) as a number, which only ASCII digits are;
        // both SSN patterns hold nine `\d`, all ASCII digits in an ASCII text.
        if stats.digits >= if stats.ascii { 9 } else { 3 } {
            if stats.dashes > 0 {
                for m in p.ssn.find_iter(text) {
                    if valid_ssn(m.as_str()) && !adjacent_digit_group(text, m.start(), m.end()) {
                        out.push((PiiType::Ssn, m.start(), m.end(), 0.9));
                    }
                }
            }
            let cued = ((!stats.gated || cue_words(text, true)) && p.ssn_cued.is_match(text))
                .then(|| p.ssn_cued.captures_iter(text));
            for caps in cued.into_iter().flatten() {
                if let Some(m) = caps.get(1)
                    && valid_ssn(&m.as_str().replace([' ', '.'], "-"))
                {
                    out.push((PiiType::Ssn, m.start(), m.end(), 0.8));
                }
            }
        }
        // `valid_ipv4` parses four ASCII-digit octets around three dots.
        if stats.digits >= 4
            && stats.dots >= 3
            && (!stats.gated || dotted_digits(text.as_bytes()) >= 3)
        {
            for m in p.ipv4.find_iter(text) {
                if valid_ipv4(text, m.start(), m.end()) {
                    out.push((PiiType::Ip, m.start(), m.end(), 0.9));
                }
            }
        }
        // An IPv6 candidate starts with two colons at most four hex digits apart.
        if stats.close_colons {
            for m in p.ipv6.find_iter(text) {
                let candidate = m.as_str();
                if candidate.matches(':').count() >= 2
                    && candidate.parse::<Ipv6Addr>().is_ok()
                    && !text[..m.start()].ends_with(|c: char| c.is_ascii_alphanumeric())
                    && !text[m.end()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == ':')
                {
                    out.push((PiiType::Ip, m.start(), m.end(), 0.9));
                }
            }
        }
        // Every date form of the pattern holds at least four `\d`.
        let dob_possible =
            (!stats.ascii || stats.digits >= 4) && (!stats.gated || cue_words(text, false));
        let dob = (dob_possible && p.dob.is_match(text)).then(|| p.dob.captures_iter(text));
        for caps in dob.into_iter().flatten() {
            if let Some(m) = caps.get(1) {
                out.push((PiiType::DateTime, m.start(), m.end(), 0.8));
            }
        }
        // `phone_confidence` wants at least 7 ASCII digits.
        if stats.digits >= 7 {
            for m in p.phone.find_iter(text) {
                if let Some(confidence) = phone_confidence(text, m.start(), m.end(), p) {
                    out.push((PiiType::Phone, m.start(), m.end(), confidence));
                }
            }
        }
    }
}

/// [`ByteStats::reference`] classes: the counter index in the low three bits, and the
/// IBAN-head class (1 capital, 2 digit) above them.
#[cfg(test)]
const STAT_CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = match b {
            b'0'..=b'9' => 1 | 2 << 3,
            b'A'..=b'Z' => 1 << 3,
            b'-' => 2,
            b'.' => 3,
            _ => 0,
        };
        byte += 1;
    }
    table
};

/// Byte counts that tell which digit-based patterns could yield a valid match.
#[cfg_attr(test, derive(Debug, PartialEq))]
struct ByteStats {
    /// ASCII digits.
    digits: usize,
    dashes: usize,
    dots: usize,
    /// Two ASCII capitals followed by two ASCII digits occur (the head of an IBAN).
    iban_head: bool,
    /// Two colons at most four bytes apart occur (every IPv6 candidate has them).
    close_colons: bool,
    /// The text is ASCII, so `\d` can only match ASCII digits.
    ascii: bool,
    /// The finer per-pattern gates apply (off for the reference run of the tests).
    gated: bool,
}

impl ByteStats {
    /// Counts that let every pattern run (the digit gate keeps its original meaning).
    fn ungated(bytes: &[u8]) -> ByteStats {
        let any_digit = bytes.iter().any(u8::is_ascii_digit);
        ByteStats {
            digits: if any_digit { usize::MAX } else { 0 },
            dashes: usize::MAX,
            dots: usize::MAX,
            iban_head: true,
            close_colons: true,
            ascii: false,
            gated: false,
        }
    }

    /// Counting passes the compiler vectorises, then the two rarer shapes only where they
    /// can occur: IBAN heads only with two digits and a capital, close colons from the
    /// colons' positions.
    fn of(text: &str) -> ByteStats {
        let bytes = text.as_bytes();
        let (mut digits, mut dashes, mut dots) = (0usize, 0usize, 0usize);
        // Byte-wide counters over blocks of 255 bytes: sixteen lanes to a vector register.
        for block in bytes.chunks(255) {
            let (mut d, mut h, mut o) = (0u8, 0u8, 0u8);
            for &b in block {
                d += u8::from(b.wrapping_sub(b'0') < 10);
                h += u8::from(b == b'-');
                o += u8::from(b == b'.');
            }
            digits += usize::from(d);
            dashes += usize::from(h);
            dots += usize::from(o);
        }
        let capitals = digits >= 2 && bytes.iter().any(u8::is_ascii_uppercase);
        let iban_head = capitals
            && bytes.windows(4).any(|w| {
                w[0].is_ascii_uppercase()
                    && w[1].is_ascii_uppercase()
                    && w[2].is_ascii_digit()
                    && w[3].is_ascii_digit()
            });
        let mut close_colons = false;
        let mut last: Option<usize> = None;
        // `match_indices` finds the colons with a vectorised byte search.
        for (at, _) in text.match_indices(':') {
            // At most four bytes between them.
            close_colons |= last.is_some_and(|last| at - last <= 5);
            last = Some(at);
        }
        ByteStats {
            digits,
            dashes,
            dots,
            iban_head,
            close_colons,
            ascii: bytes.is_ascii(),
            gated: true,
        }
    }

    /// The first form of [`ByteStats::of`]: one pass, a counter per byte.
    #[cfg(test)]
    fn reference(bytes: &[u8]) -> ByteStats {
        let mut stats = ByteStats {
            digits: 0,
            dashes: 0,
            dots: 0,
            iban_head: false,
            close_colons: false,
            ascii: bytes.is_ascii(),
            gated: true,
        };
        let mut since_colon = usize::MAX;
        let mut recent: u32 = 0;
        for &byte in bytes {
            let class = STAT_CLASS[usize::from(byte)];
            match class & 7 {
                1 => stats.digits += 1,
                2 => stats.dashes += 1,
                3 => stats.dots += 1,
                _ => {}
            }
            recent = (recent << 2 | u32::from(class >> 3)) & 0xff;
            stats.iban_head |= recent == 0b01_01_10_10;
            let colon = byte == b':';
            stats.close_colons |= colon & (since_colon <= 4);
            since_colon = if colon {
                0
            } else {
                since_colon.saturating_add(1)
            };
        }
        stats
    }
}

/// A necessary condition for the address pattern: a digit, an optional ASCII letter, a space
/// and an upper-case letter in a row, or `Box`. Non-ASCII bytes count as digits and
/// upper-case letters (`\d` and `\p{Lu}` are Unicode classes).
fn address_shape(bytes: &[u8]) -> bool {
    let digit = |b: u8| b.is_ascii_digit() || b >= 0x80;
    let upper = |b: u8| b.is_ascii_uppercase() || b >= 0x80;
    let at = |i: usize| bytes.get(i).copied().unwrap_or(0);
    bytes.iter().enumerate().any(|(i, &b)| {
        (b == b' ' && i > 0 && digit(at(i - 1)) && upper(at(i + 1)))
            || (b == b' '
                && i > 1
                && at(i - 1).is_ascii_alphabetic()
                && digit(at(i - 2))
                && upper(at(i + 1)))
            || (b == b'B' && at(i + 1) == b'o' && at(i + 2) == b'x')
    })
}

/// The cues of the person pattern, as literals (each case variant it allows); an optional
/// `.`, `,` or `:` may follow any of them. [`person_cue_possible`] holds them by last byte; a
/// test checks the two lists agree.
#[cfg(test)]
const PERSON_CUES: &[&str] = &[
    "My name is",
    "my name is",
    "Name is",
    "name is",
    "Name:",
    "name:",
    "Dear",
    "dear",
    "Mr",
    "Mrs",
    "Ms",
    "Miss",
    "Dr",
    "Prof",
    "Signed",
    "signed",
    "Regards",
    "regards",
    "Sincerely",
    "sincerely",
    "Patient",
    "patient",
    "Contact person",
    "contact person",
    "I am",
    "I'm",
    "Call me",
    "call me",
];

/// A necessary condition for the person pattern on ASCII text (other text always passes): an
/// upper-case letter after whitespace, where the text before the whitespace ends with a cue
/// (then optionally `.`, `,` or `:`) that starts at a word boundary. Candidates are the
/// capitals after a space, so the cue comparison runs about once a sentence.
fn person_cue_possible(bytes: &[u8]) -> bool {
    if !bytes.is_ascii() {
        return true;
    }
    // `\s` on ASCII.
    let space = |b: u8| matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ');
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    // Only the cues ending in the byte before `end` are compared.
    let cue_ends_at = |end: usize| {
        let Some(&last) = end.checked_sub(1).and_then(|i| bytes.get(i)) else {
            return false;
        };
        let cues: &[&str] = match last {
            b's' => &[
                "My name is",
                "my name is",
                "Name is",
                "name is",
                "Mrs",
                "Ms",
                "Miss",
                "Regards",
                "regards",
            ],
            b':' => &["Name:", "name:"],
            b'r' => &["Dear", "dear", "Mr", "Dr"],
            b'f' => &["Prof"],
            b'd' => &["Signed", "signed"],
            b'y' => &["Sincerely", "sincerely"],
            b't' => &["Patient", "patient"],
            b'n' => &["Contact person", "contact person"],
            b'm' => &["I am", "I'm"],
            b'e' => &["Call me", "call me"],
            _ => &[],
        };
        cues.iter().any(|cue| {
            bytes[..end].ends_with(cue.as_bytes())
                && (end == cue.len() || !word(bytes[end - cue.len() - 1]))
        })
    };
    bytes.iter().enumerate().skip(1).any(|(at, &b)| {
        if !(b.is_ascii_uppercase() && space(bytes[at - 1])) {
            return false;
        }
        let mut end = at - 1;
        while end > 0 && space(bytes[end - 1]) {
            end -= 1;
        }
        cue_ends_at(end)
            || (end > 0 && matches!(bytes[end - 1], b'.' | b',' | b':') && cue_ends_at(end - 1))
    })
}

/// Whether an ASCII text has a run of at least 13 ASCII digits with at most one space or dash
/// between neighbours: what a match of the card pattern that `valid_card` accepts (13 to 19
/// ASCII digits) needs. Only used on ASCII text (`\d` is Unicode).
fn card_run(bytes: &[u8]) -> bool {
    let mut count = 0;
    for (at, &b) in bytes.iter().enumerate() {
        if b.is_ascii_digit() {
            count += 1;
            if count >= 13 {
                return true;
            }
        } else if !((b == b' ' || b == b'-')
            && at > 0
            && bytes[at - 1].is_ascii_digit()
            && bytes.get(at + 1).is_some_and(u8::is_ascii_digit))
        {
            count = 0;
        }
    }
    false
}

/// Places where an ASCII digit, a dot and an ASCII digit follow each other: a valid IPv4
/// address (`valid_ipv4` wants ASCII-digit octets) has three.
fn dotted_digits(bytes: &[u8]) -> usize {
    bytes
        .windows(3)
        .filter(|w| w[1] == b'.' && w[0].is_ascii_digit() && w[2].is_ascii_digit())
        .count()
}

/// The cue words of the SSN and birth-date patterns (one is in every match, ASCII case
/// ignored: no other letter folds to theirs, except U+017F to `s`, which lets every text
/// through to the SSN pattern).
const SSN_CUES: [&str; 3] = ["ssn", "social security", "ss#"];
const DOB_CUES: [&str; 4] = ["born", "birth", "dob", "d.o.b"];

/// Whether `text` contains one of [`SSN_CUES`] (`ssn`) or [`DOB_CUES`] (ASCII case ignored),
/// or a character that Unicode case folding maps to an ASCII `s` or `k` (then it cannot tell).
fn cue_words(text: &str, ssn: bool) -> bool {
    static AUTOMATA: OnceLock<Option<(AhoCorasick, AhoCorasick)>> = OnceLock::new();
    let automata = AUTOMATA.get_or_init(|| {
        let build = |words: &[&str]| {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(words)
                .ok()
        };
        Some((build(&SSN_CUES)?, build(&DOB_CUES)?))
    });
    let ssn_cues = ssn;
    let Some((ssn, dob)) = automata else {
        return true;
    };
    let automaton = if ssn_cues { ssn } else { dob };
    (!text.is_ascii() && text.contains(['\u{17F}', '\u{212A}'])) || automaton.is_match(text)
}

/// The email pattern: a local part of 1 to 64 letters, numbers and `._%+-` starting with a
/// letter or number, then [`EMAIL_DOMAIN`]. Run whole, its Unicode-class repetition defeats
/// the lazy DFA and every search falls back to a backtracker that clears a large bitmap per
/// call, so [`email_matches`] finds its matches in two cheap steps.
#[cfg(test)]
const EMAIL: &str = r"[\p{L}\p{N}][\p{L}\p{N}._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}\b";
const EMAIL_DOMAIN: &str = r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}\b";

/// What `Regex::new(EMAIL).find_iter(text)` yields, as byte spans, without running it: a match
/// holds exactly one `@`, so per `@` (from the end of the previous match on), the end is
/// where the domain pattern matches anchored at the `@` (the local part before it has a
/// single way to reach the `@`, so it does not change the domain's preferred end), and the
/// start is the leftmost one the local part allows: the furthest letter or number among the
/// (at most 64) local-part characters right before the `@`.
fn email_matches(p: &Patterns, text: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut cursor = 0;
    let at_signs = text.bytes().enumerate().filter(|(_, b)| *b == b'@');
    for (at, _) in at_signs {
        if at < cursor {
            continue;
        }
        let domain = regex_automata::Input::new(text)
            .range(at..)
            .anchored(regex_automata::Anchored::Yes);
        let Some(domain) = p.email_domain.find(domain) else {
            continue;
        };
        let letter_or_number = |c: char| {
            c.is_ascii_alphanumeric()
                || (!c.is_ascii() && p.letter_or_number.is_match(c.encode_utf8(&mut [0; 4])))
        };
        let mut start = None;
        for (offset, c) in text[cursor..at].char_indices().rev().take(64) {
            if letter_or_number(c) {
                start = Some(cursor + offset);
            } else if !matches!(c, '.' | '_' | '%' | '+' | '-') {
                break;
            }
        }
        if let Some(start) = start {
            cursor = domain.end();
            found.push((start, cursor));
        }
    }
    found
}

fn memchr_byte(bytes: &[u8], needle: u8) -> bool {
    bytes.contains(&needle)
}

/// Keeps the highest-priority candidates that do not overlap, converts offsets, sorts by start.
fn resolve(text: &str, mut candidates: Vec<(PiiType, usize, usize, f32)>) -> Vec<PiiMatch> {
    let priority = |kind: PiiType| {
        PiiType::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(usize::MAX)
    };
    candidates.sort_by(|a, b| {
        priority(a.0)
            .cmp(&priority(b.0))
            .then((b.2 - b.1).cmp(&(a.2 - a.1)))
            .then(a.1.cmp(&b.1))
    });
    // Kept spans by start byte: they are disjoint, so a candidate is free when the last kept
    // span starting before its end ends by its start (one lookup, not a scan of all kept
    // spans, which was quadratic on texts with many matches).
    let mut by_start: std::collections::BTreeMap<usize, (PiiType, usize, usize, f32)> =
        std::collections::BTreeMap::new();
    for candidate in candidates {
        if candidate.1 >= candidate.2 {
            continue;
        }
        let free = by_start
            .range(..candidate.2)
            .next_back()
            .is_none_or(|(_, k)| k.2 <= candidate.1);
        if free {
            by_start.insert(candidate.1, candidate);
        }
    }
    let kept: Vec<(PiiType, usize, usize, f32)> = by_start.into_values().collect();
    let offsets: Vec<usize> = kept.iter().flat_map(|k| [k.1, k.2]).collect();
    let chars = byte_to_char_offsets(text, &offsets);
    kept.iter()
        .enumerate()
        .map(|(i, k)| PiiMatch {
            kind: k.0,
            start: chars[2 * i],
            end: chars[2 * i + 1],
            confidence: k.3,
            byte_start: k.1,
            byte_end: k.2,
        })
        .collect()
}

/// Luhn checksum over the digits of `s`.
pub fn luhn_valid(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.is_empty() {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

const CARD_NEGATIVE_CUES: &[&str] = &[
    "tracking",
    "order",
    "batch",
    "reference",
    "invoice",
    "isbn",
    "sku",
    "serial",
    "ticket",
    "account no",
    "shipment",
    "parcel",
    "imei",
];

fn valid_card(candidate: &str) -> bool {
    let digits: String = candidate.chars().filter(char::is_ascii_digit).collect();
    if !(13..=19).contains(&digits.len()) || !luhn_valid(&digits) {
        return false;
    }
    // Separators, when present, must be one kind in card-like groups.
    let separators: Vec<char> = candidate.chars().filter(|c| !c.is_ascii_digit()).collect();
    if let Some(&first) = separators.first() {
        if separators.iter().any(|&c| c != first) {
            return false;
        }
        let groups: Vec<usize> = candidate.split(first).map(str::len).collect();
        let card_like = matches!(
            groups.as_slice(),
            [4, 4, 4, 4]
                | [4, 4, 4, 4, 3]
                | [4, 6, 5]
                | [4, 6, 4]
                | [4, 4, 4, 4, 1, 2]
                | [4, 4, 4, 1]
        );
        if !card_like {
            return false;
        }
    }
    known_issuer(&digits)
}

/// Whether the number starts with an issuer prefix of a card network.
fn known_issuer(digits: &str) -> bool {
    let prefix = |n: usize| {
        digits
            .get(..n)
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let first = prefix(1);
    match first {
        4 => true,
        5 => (50..=55).contains(&prefix(2)) || (56..=58).contains(&prefix(2)),
        2 => {
            (2221..=2720).contains(&prefix(4))
                || prefix(4) == 2131
                || prefix(4) == 2014
                || prefix(4) == 2149
        }
        3 => matches!(prefix(2), 30 | 34 | 35 | 36 | 37 | 38 | 39),
        6 => true,
        1 => prefix(4) == 1800,
        _ => false,
    }
}

fn valid_ssn(candidate: &str) -> bool {
    let parts: Vec<&str> = candidate.split('-').collect();
    let [area, group, serial] = parts.as_slice() else {
        return false;
    };
    let area: u32 = area.parse().unwrap_or(0);
    area != 0 && area != 666 && area < 900 && *group != "00" && *serial != "0000"
}

/// An SSN-shaped run glued to more digit groups is something else (a longer id, a date).
fn adjacent_digit_group(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().rev().take(2).collect::<String>();
    let after: String = text[end..].chars().take(2).collect();
    let glued = |s: &str| {
        let mut chars = s.chars();
        matches!((chars.next(), chars.next()), (Some('-' | '.' | '/'), Some(d)) if d.is_ascii_digit())
    };
    // `before` is reversed: its first char is the one right before the match.
    glued(&after) || glued(&before)
}

/// Expected IBAN length per country (ISO 13616 registry, common countries).
fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "AD" => 24,
        "AE" => 23,
        "AL" => 28,
        "AT" => 20,
        "AZ" => 28,
        "BA" => 20,
        "BE" => 16,
        "BG" => 22,
        "BH" => 22,
        "BR" => 29,
        "CH" => 21,
        "CR" => 22,
        "CY" => 28,
        "CZ" => 24,
        "DE" => 22,
        "DK" => 18,
        "DO" => 28,
        "EE" => 20,
        "ES" => 24,
        "FI" => 18,
        "FO" => 18,
        "FR" => 27,
        "GB" => 22,
        "GE" => 22,
        "GI" => 23,
        "GL" => 18,
        "GR" => 27,
        "GT" => 28,
        "HR" => 21,
        "HU" => 28,
        "IE" => 22,
        "IL" => 23,
        "IS" => 26,
        "IT" => 27,
        "JO" => 30,
        "KW" => 30,
        "KZ" => 20,
        "LB" => 28,
        "LI" => 21,
        "LT" => 20,
        "LU" => 20,
        "LV" => 21,
        "MC" => 27,
        "MD" => 24,
        "ME" => 22,
        "MK" => 19,
        "MR" => 27,
        "MT" => 31,
        "MU" => 30,
        "NL" => 18,
        "NO" => 15,
        "PK" => 24,
        "PL" => 28,
        "PS" => 29,
        "PT" => 25,
        "QA" => 29,
        "RO" => 24,
        "RS" => 22,
        "SA" => 24,
        "SE" => 24,
        "SI" => 19,
        "SK" => 24,
        "SM" => 27,
        "TN" => 24,
        "TR" => 26,
        "UA" => 29,
        "VG" => 24,
        "XK" => 20,
        _ => return None,
    })
}

/// The byte length of the longest prefix of `candidate` (ending at a group boundary) that is
/// a valid IBAN, if any.
fn valid_iban_prefix(candidate: &str) -> Option<usize> {
    let mut end = candidate.len();
    loop {
        let prefix = &candidate[..end];
        if iban_checks(prefix) {
            return Some(end);
        }
        // Drop the last group (and the space before it) and retry.
        let cut = prefix
            .rfind(' ')
            .unwrap_or(0)
            .max(prefix.len().saturating_sub(4));
        let cut = if prefix[..cut].ends_with(' ') {
            cut - 1
        } else {
            cut
        };
        if cut < 15 || cut >= end {
            return None;
        }
        end = cut;
    }
}

fn iban_checks(candidate: &str) -> bool {
    let compact: String = candidate.chars().filter(|c| *c != ' ').collect();
    let Some(expected) = iban_length(compact.get(..2).unwrap_or("")) else {
        return false;
    };
    if compact.len() != expected {
        return false;
    }
    let rearranged = compact[4..].chars().chain(compact[..4].chars());
    let mut remainder: u32 = 0;
    for c in rearranged {
        let value = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

const VERSION_CUES: &[&str] = &[
    "version",
    "build",
    "release",
    "firmware",
    " v.",
    "upgrade",
    "update to",
];

fn valid_ipv4(text: &str, start: usize, end: usize) -> bool {
    let candidate = &text[start..end];
    if !candidate
        .split('.')
        .all(|octet| octet.parse::<u16>().is_ok_and(|v| v <= 255))
    {
        return false;
    }
    let before = &text[..start];
    let after = &text[end..];
    let glued_before =
        before.ends_with('.') || before.ends_with(|c: char| c.is_ascii_alphanumeric());
    let glued_after =
        after.starts_with('.') && after[1..].starts_with(|c: char| c.is_ascii_digit());
    let versioned = before.ends_with('v') || negative_cue_before(text, start, VERSION_CUES);
    !(glued_before || glued_after || versioned)
}

/// Whether one of `cues` appears (case-insensitively) in the 30 bytes before `start`.
fn negative_cue_before(text: &str, start: usize, cues: &[&str]) -> bool {
    let mut from = start.saturating_sub(30);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    let window = text[from..start].to_ascii_lowercase();
    cues.iter().any(|cue| window.contains(cue))
}

const PHONE_CUES: &[&str] = &[
    "phone", "tel", "call", "mobile", "cell", "fax", "contact", "reach", "whatsapp", "sms",
    "text me", "number", "dial", "ring",
];

fn phone_confidence(text: &str, start: usize, end: usize, p: &Patterns) -> Option<f32> {
    let candidate = &text[start..end];
    let main = candidate
        .split(['x', 'e'])
        .next()
        .unwrap_or(candidate)
        .trim_end();
    let digits = main.chars().filter(char::is_ascii_digit).count();
    if !(7..=15).contains(&digits) {
        return None;
    }
    let before = &text[..start];
    let after = &text[end..];
    if before.ends_with(|c: char| {
        c.is_alphanumeric() || matches!(c, '-' | '/' | '_' | '#' | '$' | '€' | '£')
    }) || (before.ends_with('.')
        && before[..before.len() - 1].ends_with(|c: char| c.is_ascii_digit()))
        || after.starts_with(|c: char| c.is_alphanumeric() || matches!(c, ':' | '/' | '%' | '_'))
        || ((after.starts_with('.') || after.starts_with(',') || after.starts_with('-'))
            && after[1..].starts_with(|c: char| c.is_ascii_digit()))
    {
        return None;
    }
    if p.date_shape.is_match(main) || negative_cue_before(text, start, VERSION_CUES) {
        return None;
    }
    // Groups of digits between separators; parentheses and a leading + frame a group.
    let plus = main.starts_with('+');
    let body = main.trim_start_matches('+');
    let parens = body.contains('(');
    let groups: Vec<&str> = body
        .split([' ', '.', '-', '(', ')'])
        .filter(|g| !g.is_empty())
        .collect();
    if groups
        .iter()
        .any(|g| !g.chars().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    let short_groups = groups.iter().skip(1).filter(|g| g.len() < 2).count();
    let first_short = groups.first().is_some_and(|g| g.len() < 2) && !plus && !parens;
    if first_short || short_groups > usize::from(parens) {
        return None;
    }
    let dotted_quad =
        groups.len() == 4 && main.contains('.') && groups.iter().all(|g| g.len() <= 3);
    if dotted_quad {
        return None;
    }
    let cued = negative_cue_before(text, start, PHONE_CUES);
    match groups.len() {
        0 => None,
        1 if (10..=11).contains(&digits) && (main.starts_with('0') || cued) => Some(0.6),
        1 if plus && digits >= 10 => Some(0.7),
        1 => None,
        2 if plus || parens || cued => Some(0.7),
        2 => None,
        _ => Some(if plus || parens || cued { 0.85 } else { 0.75 }),
    }
}

/// Capitalised words that follow a cue but are not names ("I am Happy", "Dear Sir").
fn is_common_word(name: &str) -> bool {
    const WORDS: &[&str] = &[
        "Sir",
        "Madam",
        "Customer",
        "Team",
        "All",
        "Colleague",
        "Colleagues",
        "Friend",
        "Friends",
        "Sorry",
        "Happy",
        "Glad",
        "Not",
        "Going",
        "Here",
        "The",
        "Looking",
        "Writing",
        "Interested",
        "Sure",
        "Fine",
        "Good",
        "Available",
        "Unable",
        "Trying",
        "Hiring",
        "Manager",
        "Support",
        "Admin",
        "User",
        "Valued",
        "Hi",
        "Hello",
        "Thanks",
        "Thank",
        "Please",
        "Regards",
    ];
    let first = name.split([' ', '-']).next().unwrap_or(name);
    WORDS.contains(&first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(PiiType, String)> {
        PiiDetector
            .detect(text)
            .into_iter()
            .map(|m| (m.kind, text[m.byte_start..m.byte_end].to_owned()))
            .collect()
    }

    fn check(text: &str, expected: &[(PiiType, &str)]) {
        let expected: Vec<(PiiType, String)> = expected
            .iter()
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect();
        assert_eq!(found(text), expected, "text: {text:?}");
    }

    #[test]
    fn core_types_with_exact_spans() {
        check(
            "Mail jane.doe+x@mail.example.co.uk now.",
            &[(PiiType::Email, "jane.doe+x@mail.example.co.uk")],
        );
        check("SSN 123-45-6789.", &[(PiiType::Ssn, "123-45-6789")]);
        check(
            "Card 4111 1111 1111 1111 ok",
            &[(PiiType::CreditCard, "4111 1111 1111 1111")],
        );
        check(
            "amex 378282246310005.",
            &[(PiiType::CreditCard, "378282246310005")],
        );
        check(
            "IBAN GB82 WEST 1234 5698 7654 32 please",
            &[(PiiType::Iban, "GB82 WEST 1234 5698 7654 32")],
        );
        check(
            "pay DE89370400440532013000.",
            &[(PiiType::Iban, "DE89370400440532013000")],
        );
        check(
            "from 192.168.10.7 and 2001:db8::8a2e:370:7334 today",
            &[
                (PiiType::Ip, "192.168.10.7"),
                (PiiType::Ip, "2001:db8::8a2e:370:7334"),
            ],
        );
        check(
            "Call (373) 435-7716 or +49 (0) 8932 019517",
            &[
                (PiiType::Phone, "(373) 435-7716"),
                (PiiType::Phone, "+49 (0) 8932 019517"),
            ],
        );
        check(
            "ring +1-872-330-2329x64981 today",
            &[(PiiType::Phone, "+1-872-330-2329x64981")],
        );
        check(
            "She was born on 10/5/1971 in Ohio.",
            &[(PiiType::DateTime, "10/5/1971")],
        );
        check(
            "Ship to 2437 Main St, Apt 4 please",
            &[(PiiType::Address, "2437 Main St, Apt 4")],
        );
        check(
            "Hello, my name is Diane Murphy.",
            &[(PiiType::Person, "Diane Murphy")],
        );
    }

    #[test]
    fn hard_negatives_do_not_fire() {
        for text in [
            "Reference number 1605 8795 2863 2974 is not a valid card, please re-check.",
            "The tracking ID is 8187211364549444; expected delivery 1970-10-26.",
            "Build 7346.346.289.87 failed on CI.",
            "Upgrade from version 6.7.40.894 to the latest release.",
            "Upgrade from version 1.2.3.4 to 1.2.4.0.",
            "Build 10.2.0.1 is out.",
            "Population grew from 1,604,284 to 6,689,287.",
            "The coordinates are 30.5861005, 175.441743.",
            "ISBN 491-2-635-68249-9 is out of stock.",
            "Meeting moved to 1977-05-15 at 05:02 in room 584.",
            "The product SKU is DE12-1615-9167 (not a bank account).",
            "Batch 690181837226917 contains 169 items.",
            "Card 4111 1111 1111 1112 fails Luhn.",
            "Dear Sir, thanks.",
        ] {
            assert_eq!(found(text), vec![], "text: {text:?}");
        }
    }

    #[test]
    fn spans_count_unicode_scalars() {
        let text = "Müller’s mail: jürgen@example.de";
        let matches = PiiDetector.detect(text);
        assert_eq!(matches.len(), 1);
        let chars: Vec<char> = text.chars().collect();
        let value: String = chars[matches[0].start..matches[0].end].iter().collect();
        assert_eq!(value, "jürgen@example.de");
        assert_eq!(matches[0].start, 15);
    }

    use proptest::strategy::Strategy;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn email_matches_equal_the_whole_pattern(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => proptest::sample::select(&[
                        "@", ".", "-", "_", "+", "%", " ", "a", "Z", "9", "jane", "ex-ample",
                        "com", "co.uk", "é", "ü", "日本", "١", "_x", "@@", ".c", "\n",
                    ][..]).prop_map(str::to_owned),
                    1 => proptest::prelude::any::<String>(),
                    1 => proptest::string::string_regex("[a-z]{60,70}").unwrap(),
                ],
                0..24,
            )
        ) {
            let text = parts.concat();
            let whole = Regex::new(&crate::rules::ascii_word_boundaries(EMAIL)).unwrap();
            let expected: Vec<(usize, usize)> =
                whole.find_iter(&text).map(|m| (m.start(), m.end())).collect();
            proptest::prop_assert_eq!(email_matches(patterns().unwrap(), &text), expected);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn byte_count_gates_never_change_a_result(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => proptest::sample::select(&[
                        "4111 1111 1111 1111", "123-45-6789", "GB82 WEST 1234 5698 7654 32",
                        "192.168.1.7", "2001:db8::1", "::", "+1 415 555 0199", "(373) 435-7716",
                        "born on 10/5/1971", "SSN 123 45 6789", "2437 Main St", "12", "7", ".",
                        ":", "-", " ", "DE", "89", "１２３", "٣", "version", "order",
                        "My name is", "Dear", "Mrs.", "Mr", "Dr.", "Regards,", "I'm", "call me",
                        "BORN ", "Date of Birth: ", "D.O.B. ", "ssn: ", "Social Security ", "ss#",
                        "1.2", "3.4.", "\u{17F}", "4111-1111-1111-1111", "1 2 3 4 5 6 7 ",
                        "Patient:", "name:", "xMr", "\t", "\n", "Ann", "Jo-Ellen", "É", "Box",
                        "PO Box 12", "12B Elm Road", "4 Élan Way", "5a",
                    ][..]).prop_map(str::to_owned),
                    1 => proptest::prelude::any::<String>(),
                ],
                0..12,
            )
        ) {
            let text = parts.concat();
            proptest::prop_assert_eq!(
                PiiDetector.detect_gated(&text, true),
                PiiDetector.detect_gated(&text, false)
            );
            proptest::prop_assert_eq!(
                ByteStats::of(&text),
                ByteStats::reference(text.as_bytes())
            );
        }
    }

    #[test]
    fn every_person_cue_passes_the_gate() {
        for cue in PERSON_CUES {
            for text in [
                format!("{cue} Ann"),
                format!("x {cue}.  Ann"),
                format!("{cue}:\tAnn"),
            ] {
                assert!(person_cue_possible(text.as_bytes()), "{text:?}");
            }
            // A cue glued to a word is no cue.
            if !cue.contains(' ') {
                assert!(
                    !person_cue_possible(format!("x{cue} Ann").as_bytes()),
                    "{cue}"
                );
            }
        }
        assert!(!person_cue_possible(b"Please call Ann at noon. Thanks Bob"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        #[test]
        fn person_and_address_gates_pass_every_match(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => proptest::sample::select(PERSON_CUES).prop_map(str::to_owned),
                    4 => proptest::sample::select(&[
                        " ", "  ", "\t", "\n", ".", ",", ":", "Ann", "Jo-Ellen", "É", "x", "_",
                        "12", "B", "Box", "Elm", "Road", "St", "PO", "P.O.", "\u{a0}",
                    ][..]).prop_map(str::to_owned),
                    1 => proptest::prelude::any::<String>(),
                ],
                0..12,
            )
        ) {
            let text = parts.concat();
            let p = patterns().unwrap();
            if p.person.is_match(&text) {
                proptest::prop_assert!(person_cue_possible(text.as_bytes()));
            }
            if p.address.is_match(&text) {
                proptest::prop_assert!(address_shape(text.as_bytes()));
            }
        }
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
    }
}
