//! Trains the injection model and reports cross-validated figures.
//!
//! `cargo run --release -p promptops-guard --example train_injection -- DATA.jsonl [OUT.weights]`
//! prints stratified and by-source 5-fold cross-validation figures (out-of-fold, with the
//! operating point calibrated inside each training fold), then trains on all of DATA and
//! writes the weight file to OUT (default `crates/guard/data/injection.weights`).
//! `SHOW_MISSES=1` lists the out-of-fold errors (`SHOW_MISSES=by-source` those of the
//! leave-source-out run); `TARGET_FPR=0.02` moves the operating point; `L2_HASHED`, `L2_NAMED`,
//! `LEARNING_RATE`, `EPOCHS` and `HASH_BITS` override the training defaults for experiments;
//! `DUMP_ANALYSIS=FILE` writes each example's scanned text and fired rules as JSONL.
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
    // SHOW_MISSES=1 (or =stratified) lists the stratified out-of-fold errors; =by-source lists
    // the leave-source-out ones.
    let show_misses = std::env::var("SHOW_MISSES").ok();
    let mut config = TrainConfig::default();
    if let Some(fpr) = std::env::var("TARGET_FPR")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.target_fpr = fpr;
    }
    // Hyper-parameter overrides for experiments (the defaults are what ships).
    let env_f32 = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<f32>().ok());
    if let Some(v) = env_f32("L2_HASHED") {
        config.l2_hashed = v;
    }
    if let Some(v) = env_f32("L2_NAMED") {
        config.l2_named = v;
    }
    if let Some(v) = env_f32("LEARNING_RATE") {
        config.learning_rate = v;
    }
    if let Some(v) = env_f32("EPOCHS") {
        config.epochs = v as usize;
    }
    if let Some(v) = env_f32("HASH_BITS") {
        config.bits = v as u32;
    }
    let data = featurise(&examples, config.bits);
    if let Some(dump) = std::env::var_os("DUMP_ANALYSIS") {
        // One JSON line per example: the scanned (normalised + decoded) text and the rules
        // that fired, for studying rule coverage outside the trainer.
        let mut out = String::new();
        for example in &examples {
            let analysis = promptops_guard::features::analyse(&example.text);
            let fired: Vec<&str> = analysis
                .rule_hits
                .iter()
                .map(|(rule, _)| promptops_guard::rules::rules()[*rule].id)
                .collect();
            let line = serde_json::json!({
                "text": analysis.scan_text,
                "label": example.label,
                "source": example.source,
                "rules": fired,
            });
            out.push_str(&line.to_string());
            out.push('\n');
        }
        if let Err(error) = std::fs::write(&dump, out) {
            eprintln!("cannot write dump: {error}");
            return ExitCode::from(2);
        }
    }
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
        let wanted = match show_misses.as_deref() {
            Some("by-source") => scheme == FoldScheme::BySource,
            Some(_) => scheme == FoldScheme::Stratified,
            None => false,
        };
        if wanted {
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
