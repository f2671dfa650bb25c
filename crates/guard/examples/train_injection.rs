//! Trains the injection model and reports cross-validated figures.
//!
//! `cargo run --release -p promptops-guard --example train_injection -- DATA.jsonl [OUT.weights]`
//! prints stratified and by-source 5-fold cross-validation figures (out-of-fold, with the
//! operating point calibrated inside each training fold), then trains on all of DATA and
//! writes the weight file to OUT (default `crates/guard/data/injection.weights`).
//! `SHOW_MISSES=1` lists the out-of-fold errors; `TARGET_FPR=0.02` moves the operating point.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use promptops_guard::train::{
    FoldScheme, TrainConfig, cross_validate, featurise, parse_labelled, train_final,
};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(data_path) = args.next() else {
        eprintln!("usage: train_injection DATA.jsonl [OUT.weights]");
        return ExitCode::from(2);
    };
    let out_path = args
        .next()
        .unwrap_or_else(|| "crates/guard/data/injection.weights".to_owned());
    let text = match std::fs::read_to_string(&data_path) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("cannot read {data_path}: {error}");
            return ExitCode::from(2);
        }
    };
    let examples = match parse_labelled(&text) {
        Ok(examples) => examples,
        Err(error) => {
            eprintln!("{data_path}: {error}");
            return ExitCode::from(2);
        }
    };
    let show_misses = std::env::var_os("SHOW_MISSES").is_some();
    let mut config = TrainConfig::default();
    if let Some(fpr) = std::env::var("TARGET_FPR")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.target_fpr = fpr;
    }
    let data = featurise(&examples, config.bits);
    for (name, scheme) in [
        ("stratified", FoldScheme::Stratified),
        ("by-source", FoldScheme::BySource),
    ] {
        let cv = cross_validate(&examples, &data, 5, scheme, &config);
        let c = cv.overall;
        println!(
            "5-fold {name:<10}  precision {:.3}  recall {:.3}  F1 {:.3}  FPR {:.3}  (tp {} fp {} tn {} fn {})",
            c.precision(),
            c.recall(),
            c.f1(),
            c.fpr(),
            c.tp,
            c.fp,
            c.tn,
            c.fn_
        );
        if show_misses && scheme == FoldScheme::Stratified {
            for (example, score) in examples.iter().zip(&cv.scores) {
                if (*score >= 0.5) != (example.label == 1) {
                    let head: String = example.text.chars().take(160).collect();
                    println!(
                        "  MISS label {} score {score:.2} [{}] {head:?}",
                        example.label, example.source
                    );
                }
            }
        }
        for (source, c) in &cv.per_source {
            println!(
                "    {source:<60} n {:>4}  recall {:.3}  FPR {:.3}",
                c.tp + c.fp + c.tn + c.fn_,
                c.recall(),
                c.fpr()
            );
        }
    }
    let model = train_final(&examples, &data, &config);
    if let Err(error) = std::fs::write(&out_path, model.to_bytes()) {
        eprintln!("cannot write {out_path}: {error}");
        return ExitCode::from(2);
    }
    println!(
        "wrote {out_path} (calibration offset {:.3})",
        model.calibration
    );
    ExitCode::SUCCESS
}
