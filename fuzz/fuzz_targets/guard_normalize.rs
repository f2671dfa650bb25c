//! Fuzz target: normalisation, payload decoding and the full injection analysis on any
//! UTF-8. Normalised text never grows beyond NFKC's bound, decoded payloads never exceed the
//! input size in total and read as text, rot13 is an involution, rule hits name real rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promptops_guard::decode::{decode_payloads, rot13};
use promptops_guard::features::{analyse, named_features, named_values};
use promptops_guard::normalize::normalize;
use promptops_guard::rules::rules;

fuzz_target!(|text: &str| {
    let normalized = normalize(text);
    // NFKC expands a scalar to at most 18 scalars (U+FDFA); each is at most 4 bytes.
    assert!(normalized.text.len() <= text.len() * 18 + 4);
    let decoded = decode_payloads(text);
    let total: usize = decoded.iter().map(|d| d.text.len()).sum();
    assert!(total <= text.len(), "decoded {total} bytes from {}", text.len());
    for payload in &decoded {
        assert!(payload.text.chars().count() >= 6);
    }
    assert_eq!(rot13(&rot13(text)), text);
    let analysis = analyse(text);
    assert_eq!(analysis.chars, text.chars().count());
    for &(rule, _) in &analysis.rule_hits {
        assert!(rule < rules().len());
    }
    let features = named_features().len();
    for (index, value) in named_values(&analysis) {
        assert!(index < features && value.is_finite());
    }
});
