//! Fuzz target: redaction of PII and secrets in any UTF-8. In token mode, de-redacting the
//! redacted text restores the original exactly, and the sealed vault opens to the same
//! mapping; every mode reports replacements inside the original text, in order.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use promptops_guard::{Guard, RedactionMode, Vault};

fn guard() -> &'static Guard {
    static GUARD: OnceLock<Guard> = OnceLock::new();
    GUARD.get_or_init(|| Guard::new().expect("the shipped model loads"))
}

const KEY: [u8; 32] = [7; 32];

fuzz_target!(|text: &str| {
    let chars = text.chars().count();
    for mode in [
        RedactionMode::Token,
        RedactionMode::Replace,
        RedactionMode::Mask,
        RedactionMode::Hash,
    ] {
        let redacted = guard()
            .redact(text, mode, Some(b"fuzz-hash-key"))
            .expect("redaction with a key never fails");
        let mut previous_end = 0;
        for r in &redacted.replacements {
            assert!(r.start < r.end && r.end <= chars, "replacement {r:?}");
            assert!(r.start >= previous_end, "replacements overlap");
            previous_end = r.end;
        }
        if redacted.replacements.is_empty() {
            assert_eq!(redacted.text, text);
        }
        if mode == RedactionMode::Token {
            let vault = redacted.vault.expect("token mode keeps a vault");
            assert_eq!(vault.restore(&redacted.text), text, "de-redaction");
            let sealed = vault.seal(&KEY, &[1; 12]).expect("seal");
            assert_eq!(Vault::open(&KEY, &sealed).expect("open"), vault);
        }
    }
});
