//! Runs `Guard::scan` over the scan bench's mixed corpus (256 KiB) a given number of times
//! (default 1): a fixed workload for instruction counts and profiles,
//! `scan_profile [PASSES] [full|injection|pii|secrets]` (one part alone with the last three).
//! One warm-up pass runs first; count only the measured passes with
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='scan_profile::counted'`.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use promptops_guard::pii::PiiDetector;
use promptops_guard::secrets::SecretDetector;
use promptops_guard::{Guard, InjectionDetector};
use std::hint::black_box;

#[path = "../benches/common/corpus.rs"]
mod corpus;
use corpus::mixed_corpus;

fn main() {
    let mut args = std::env::args().skip(1);
    let passes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let mode = args.next().unwrap_or_else(|| "full".to_owned());
    let corpus = mixed_corpus(256 * 1024);
    let bytes: usize = corpus.iter().map(String::len).sum();
    let guard = Guard::new().expect("shipped model");
    let detector = InjectionDetector::shipped().expect("shipped model");
    // One warm-up pass (regex compilation, lazy DFA states), then the measured ones.
    measured(&corpus, &guard, &detector, &mode, 1);
    counted(&corpus, &guard, &detector, &mode, passes);
    eprintln!("{} texts, {bytes} bytes, {passes} passes", corpus.len());
}

/// The measured passes (the function callgrind's `--toggle-collect` names).
#[inline(never)]
fn counted(
    corpus: &[String],
    guard: &Guard,
    detector: &InjectionDetector,
    mode: &str,
    passes: usize,
) {
    measured(corpus, guard, detector, mode, passes);
}

fn measured(
    corpus: &[String],
    guard: &Guard,
    detector: &InjectionDetector,
    mode: &str,
    passes: usize,
) {
    for _ in 0..passes {
        for text in corpus {
            match mode {
                "injection" => drop(black_box(detector.scan(black_box(text)))),
                "pii" => drop(black_box(PiiDetector.detect(black_box(text)))),
                "secrets" => drop(black_box(SecretDetector.detect(black_box(text)))),
                _ => drop(black_box(guard.scan(black_box(text)))),
            }
        }
    }
}
