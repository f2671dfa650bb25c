//! Fuzz target: secret detection on any UTF-8. Spans are sorted, non-overlapping, inside the
//! text on character boundaries, with scalar offsets consistent with byte offsets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promptops_guard::secrets::{SecretDetector, shannon_entropy};

mod common;

fuzz_target!(|text: &str| {
    let found = SecretDetector.detect(text);
    let spans: Vec<_> = found
        .iter()
        .map(|m| (m.start, m.end, m.byte_start, m.byte_end, m.confidence))
        .collect();
    common::check_spans(text, &spans, "secret");
    for m in &found {
        assert!(!m.kind.is_empty());
    }
    let entropy = shannon_entropy(text);
    assert!(entropy >= 0.0 && entropy <= 8.0 + 1e-9, "entropy {entropy}");
});
