//! Prints the full `Guard::scan` record (injection verdict with its unrounded logit parts,
//! PII and secrets) for every line of a JSONL file with a `text` field, one JSON line each.
//! Used to check that a speed change keeps every verdict:
//! `cargo run --release -p promptops-guard --example scan_dump -- data.jsonl > before.jsonl`,
//! change the code, run again and `diff` the two outputs.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::process::ExitCode;

use promptops_guard::Guard;
use promptops_guard::features::analyse;
use promptops_guard::model::Model;

#[derive(serde::Deserialize)]
struct Line {
    text: String,
}

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: scan_dump DATA.jsonl");
        return ExitCode::from(2);
    };
    let data = match std::fs::read_to_string(&path) {
        Ok(data) => data,
        Err(error) => {
            eprintln!("cannot read {path}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (guard, model) = match (Guard::new(), Model::shipped()) {
        (Ok(guard), Ok(model)) => (guard, model),
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("cannot load the shipped model: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (index, line) in data.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = match serde_json::from_str(line) {
            Ok(parsed) => parsed,
            Err(error) => {
                eprintln!("{path}:{}: {error}", index + 1);
                return ExitCode::FAILURE;
            }
        };
        let report = guard.scan(&parsed.text);
        let parts = model.logit(&analyse(&parsed.text));
        let record = serde_json::json!({
            "line": index + 1,
            "report": report,
            "ngrams": parts.ngrams,
            "named": parts.named,
        });
        if writeln!(out, "{record}").is_err() {
            return ExitCode::FAILURE;
        }
    }
    if out.flush().is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
