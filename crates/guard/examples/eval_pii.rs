//! Per-type PII precision/recall on labelled JSONL without building the CLI:
//! `cargo run --release -p promptops-guard --example eval_pii -- pii.dev.jsonl`
//! (same figures as `promptops guard eval pii.dev.jsonl`).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use promptops_guard::pii_eval::{evaluate_pii, parse_pii};

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: eval_pii DATA.jsonl");
        return ExitCode::from(2);
    };
    let rows = match std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|t| parse_pii(&t).map_err(|e| e.to_string()))
    {
        Ok(rows) => rows,
        Err(error) => {
            eprintln!("{path}: {error}");
            return ExitCode::from(2);
        }
    };
    let evaluation = evaluate_pii(&rows);
    println!("| type | gold | predicted | precision | recall | F1 | overlap precision |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (kind, c) in &evaluation.per_type {
        println!(
            "| {kind} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
            c.gold,
            c.predicted,
            c.precision(),
            c.recall(),
            c.f1(),
            c.overlap_precision()
        );
    }
    println!(
        "\nhard-negative texts (no labelled span): {}, with any detection: {}",
        evaluation.negative_texts, evaluation.negative_texts_fired
    );
    ExitCode::SUCCESS
}
