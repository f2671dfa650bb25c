//! Fuzz target: PII detection on any UTF-8. Spans are sorted, non-overlapping, inside the
//! text on character boundaries, with scalar offsets consistent with byte offsets; and the
//! detector is deterministic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promptops_guard::pii::{PiiDetector, luhn_valid};

mod common;

fuzz_target!(|text: &str| {
    let found = PiiDetector.detect(text);
    let spans: Vec<_> = found
        .iter()
        .map(|m| (m.start, m.end, m.byte_start, m.byte_end, m.confidence))
        .collect();
    common::check_spans(text, &spans, "pii");
    assert_eq!(PiiDetector.detect(text), found, "not deterministic");
    for m in &found {
        if m.kind == promptops_guard::pii::PiiType::CreditCard {
            assert!(luhn_valid(&text[m.byte_start..m.byte_end]), "card fails Luhn");
        }
    }
});
