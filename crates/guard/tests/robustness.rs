#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Property tests: the normaliser, decoders and detectors never panic, keep spans inside the
//! text, and finish on 1 MB adversarial inputs (the regex engine has no backtracking, so this
//! is linear; there is deliberately no timing assertion).

use promptops_guard::decode::{decode_payloads, rot13};
use promptops_guard::normalize::normalize;
use promptops_guard::pii::PiiDetector;
use promptops_guard::secrets::SecretDetector;
use promptops_guard::{Guard, RedactionMode};
use proptest::prelude::*;

fn check_spans(text: &str) {
    let chars = text.chars().count();
    for m in PiiDetector.detect(text) {
        assert!(m.start < m.end && m.end <= chars, "{m:?}");
        assert!(text.is_char_boundary(m.byte_start) && text.is_char_boundary(m.byte_end));
    }
    for m in SecretDetector.detect(text) {
        assert!(m.start < m.end && m.end <= chars, "{m:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let normalized = normalize(&text);
        prop_assert!(normalized.text.len() <= text.len() * 4 + 4);
        let _ = decode_payloads(&text);
        prop_assert_eq!(rot13(&rot13(&text)), text.clone());
        check_spans(&text);
        let guard = Guard::new().unwrap();
        let report = guard.scan(&text);
        prop_assert!((0.0..=1.0).contains(&report.injection.score));
        let redacted = guard.redact(&text, RedactionMode::Token, None).unwrap();
        prop_assert_eq!(redacted.vault.unwrap().restore(&redacted.text), text);
    }

    #[test]
    fn prompt_like_text_never_panics(text in "[a-zA-Z0-9 @.:/+=%<>!\\-\\[\\]()\\n]{0,400}") {
        check_spans(&text);
        let _ = Guard::new().unwrap().scan(&text);
    }
}

/// Units that stress each detector when repeated to 1 MB.
const ADVERSARIAL_UNITS: &[&str] = &[
    "ignore ",
    "a ",
    "aGVsbG8g",
    "%41",
    "1234-",
    "1 ",
    "a@",
    "<!--",
    "\\x41",
    "i\u{200b}",
    "-----BEGIN PRIVATE KEY-----",
    "sk-",
    "9.9.",
    "ff:",
    "(1) ",
    "Mr. A",
    "![x](http://a?",
    // The gates and fast paths of the scan-throughput work.
    "://",
    ":=",
    "= ",
    "password=",
    "\u{3000}:",
    "aB",
    "x\n",
    "system\n",
    " ## \n",
    "a.b.",
    "1 A",
    "Dear ",
    " Box",
    "1a ",
    "4 ",
    "Abcdefghij ",
    ":aaaaaaaaaaaa",
    "  =>bbbbbbbbbbbbbbbb",
];

/// Every unit of the scan-throughput gates, each repeated to 1 MB (the proptest above samples
/// only a few units per run).
#[test]
fn gate_units_complete_on_one_megabyte_inputs() {
    let guard = Guard::new().unwrap();
    let start = ADVERSARIAL_UNITS.iter().position(|u| *u == "://").unwrap();
    for unit in &ADVERSARIAL_UNITS[start..] {
        let text = unit.repeat((1 << 20) / unit.len());
        let report = guard.scan(&text);
        assert!((0.0..=1.0).contains(&report.injection.score), "{unit:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]

    #[test]
    fn one_megabyte_adversarial_inputs_complete(unit in proptest::sample::select(ADVERSARIAL_UNITS)) {
        let text = unit.repeat((1 << 20) / unit.len());
        let guard = Guard::new().unwrap();
        let report = guard.scan(&text);
        prop_assert!((0.0..=1.0).contains(&report.injection.score));
        let _ = guard.redact(&text, RedactionMode::Replace, None).unwrap();
    }
}
