//! Fuzz target: every parser of outside input guard owns, on any bytes: the injection weight
//! file, labelled injection and PII JSONL (then scored), a sealed vault, the input policy, the
//! RBAC config (then compiled) and redaction-mode names. Errors are fine; panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promptops_guard::model::Model;
use promptops_guard::pii_eval::{evaluate_pii, parse_pii};
use promptops_guard::rbac::{Rbac, RbacConfig};
use promptops_guard::train::parse_labelled;
use promptops_guard::{InputPolicy, RedactionMode, Vault};

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = Model::from_bytes(data) {
        assert_eq!(model.hashed.len(), 1 << model.bits);
        assert!(model.bias.is_finite() && model.calibration.is_finite());
        // What was read serialises to a file that reads back with the same shape.
        let again = Model::from_bytes(&model.to_bytes()).expect("re-reading a written model");
        assert_eq!((again.bits, again.named.len()), (model.bits, model.named.len()));
    }
    let _ = Vault::open(&[3; 32], data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(rows) = parse_labelled(text) {
        assert!(rows.iter().all(|row| row.label <= 1));
    }
    if let Ok(rows) = parse_pii(text) {
        let evaluation = evaluate_pii(&rows);
        for counts in evaluation.per_type.values() {
            assert!(counts.exact <= counts.predicted && counts.overlap <= counts.predicted);
        }
    }
    let _ = serde_json::from_str::<InputPolicy>(text);
    if let Ok(config) = serde_json::from_str::<RbacConfig>(text) {
        let _ = Rbac::new(config);
    }
    let _ = text.parse::<RedactionMode>();
});
