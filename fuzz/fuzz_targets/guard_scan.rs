//! Fuzz target: `Guard::scan` (what `promptops guard scan` runs) on any UTF-8. Checks the
//! score range, that `flagged` agrees with the threshold, and that every PII and secret span
//! lies inside the text on character boundaries with scalar offsets matching byte offsets.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use promptops_guard::Guard;

mod common;

fn guard() -> &'static Guard {
    static GUARD: OnceLock<Guard> = OnceLock::new();
    GUARD.get_or_init(|| Guard::new().expect("the shipped model loads"))
}

fuzz_target!(|text: &str| {
    let report = guard().scan(text);
    let score = report.injection.score;
    assert!((0.0..=1.0).contains(&score), "score {score}");
    // The reported score is rounded to 4 decimals; the default threshold is 0.5.
    if report.injection.flagged {
        assert!(score >= 0.5, "flagged at {score}");
    } else {
        assert!(score <= 0.5, "not flagged at {score}");
    }
    for reason in &report.injection.reasons {
        assert!(!reason.is_empty());
    }
    let pii: Vec<_> = report
        .pii
        .iter()
        .map(|m| (m.start, m.end, m.byte_start, m.byte_end, m.confidence))
        .collect();
    common::check_spans(text, &pii, "pii");
    let secrets: Vec<_> = report
        .secrets
        .iter()
        .map(|m| (m.start, m.end, m.byte_start, m.byte_end, m.confidence))
        .collect();
    common::check_spans(text, &secrets, "secret");
});
