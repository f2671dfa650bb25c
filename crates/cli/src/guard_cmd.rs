//! `promptops guard scan`, `guard redact` and `guard eval`: JSONL in, JSONL verdicts or an
//! evaluation table out. All detection lives in `promptops-guard`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use promptops_guard::pii_eval::{evaluate_pii, parse_pii};
use promptops_guard::train::{
    Confusion, FoldScheme, TrainConfig, cross_validate, featurise, parse_labelled,
};
use promptops_guard::{Guard, InjectionDetector, RedactionMode};
use serde::{Deserialize, Serialize};

use crate::Outcome;
use crate::output;

/// Environment variable holding the key for `--mode hash`.
const HASH_KEY_ENV: &str = "PROMPTOPS_GUARD_HASH_KEY";

/// Guard subcommands.
#[derive(Debug, Subcommand)]
pub enum GuardCommand {
    /// Scan JSONL (`{"text": ...}` per line) for injection, PII and secrets; one verdict per line.
    Scan {
        /// Injection sensitivity in [0, 1]; 0.5 is the calibrated default.
        #[arg(long, default_value_t = 0.5)]
        sensitivity: f32,
        /// JSONL file; stdin when absent or `-`.
        file: Option<PathBuf>,
    },
    /// Redact PII and secrets in JSONL (`{"text": ...}` per line).
    Redact {
        /// replace (<EMAIL_1>), mask, hash (HMAC key from PROMPTOPS_GUARD_HASH_KEY) or token
        /// (prints the per-line token mapping).
        #[arg(long, default_value = "replace")]
        mode: String,
        /// JSONL file; stdin when absent or `-`.
        file: Option<PathBuf>,
    },
    /// Evaluate on labelled JSONL: injection files (`label`) or PII files (`spans`).
    Eval {
        /// For injection files: train from scratch and report K-fold cross-validated figures
        /// (stratified and by source) instead of scoring the shipped model.
        #[arg(long, value_name = "K")]
        cv: Option<usize>,
        /// Labelled JSONL file.
        file: PathBuf,
    },
}

/// Runs a guard subcommand.
pub fn run(command: GuardCommand, json: bool) -> anyhow::Result<Outcome> {
    match command {
        GuardCommand::Scan { sensitivity, file } => scan(sensitivity, file.as_deref()),
        GuardCommand::Redact { mode, file } => redact(&mode, file.as_deref()),
        GuardCommand::Eval { cv, file } => eval(&file, cv, json),
    }
}

#[derive(Deserialize)]
struct TextLine {
    text: String,
}

fn open_lines(file: Option<&Path>) -> anyhow::Result<(String, Box<dyn BufRead>)> {
    match file {
        None => Ok(("<stdin>".to_owned(), Box::new(io::stdin().lock()))),
        Some(path) if path.as_os_str() == "-" => {
            Ok(("<stdin>".to_owned(), Box::new(io::stdin().lock())))
        }
        Some(path) => {
            let handle =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            Ok((path.display().to_string(), Box::new(BufReader::new(handle))))
        }
    }
}

/// Calls `on_text` for each JSONL line's `text`, naming the file and line on bad input.
fn for_each_text(
    file: Option<&Path>,
    mut on_text: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (label, reader) = open_lines(file)?;
    for (index, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {label} line {}", index + 1))?;
        let parsed: TextLine = serde_json::from_str(&line).with_context(|| {
            format!(
                "{label}:{}: expected a JSON object with a \"text\" string",
                index + 1
            )
        })?;
        on_text(&parsed.text)?;
    }
    Ok(())
}

fn scan(sensitivity: f32, file: Option<&Path>) -> anyhow::Result<Outcome> {
    let detector = InjectionDetector::shipped()?.with_sensitivity(sensitivity)?;
    let guard = Guard::new()?.with_injection(detector);
    let mut stdout = io::BufWriter::new(io::stdout().lock());
    for_each_text(file, |text| {
        serde_json::to_writer(&mut stdout, &guard.scan(text))?;
        stdout.write_all(b"\n")?;
        Ok(())
    })?;
    stdout.flush()?;
    Ok(Outcome::Success)
}

#[derive(Serialize)]
struct RedactLine<'a> {
    text: &'a str,
    replacements: &'a [promptops_guard::redact::Replacement],
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens: Option<&'a std::collections::BTreeMap<String, String>>,
}

fn redact(mode: &str, file: Option<&Path>) -> anyhow::Result<Outcome> {
    let mode: RedactionMode = mode.parse()?;
    let key = match mode {
        RedactionMode::Hash => match std::env::var(HASH_KEY_ENV) {
            Ok(key) if !key.is_empty() => Some(key.into_bytes()),
            _ => bail!("--mode hash needs a key in the environment variable {HASH_KEY_ENV}"),
        },
        _ => None,
    };
    let guard = Guard::new()?;
    let mut stdout = io::BufWriter::new(io::stdout().lock());
    for_each_text(file, |text| {
        let redacted = guard.redact(text, mode, key.as_deref())?;
        let line = RedactLine {
            text: &redacted.text,
            replacements: &redacted.replacements,
            tokens: redacted.vault.as_ref().map(|v| v.entries()),
        };
        serde_json::to_writer(&mut stdout, &line)?;
        stdout.write_all(b"\n")?;
        Ok(())
    })?;
    stdout.flush()?;
    Ok(Outcome::Success)
}

fn eval(file: &Path, cv: Option<usize>, json: bool) -> anyhow::Result<Outcome> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let fields: serde_json::Value = serde_json::from_str(first)
        .with_context(|| format!("{}:1: not a JSON object", file.display()))?;
    if fields.get("label").is_some() {
        eval_injection(file, &text, cv, json)
    } else if fields.get("spans").is_some() {
        if cv.is_some() {
            bail!("--cv applies to injection files (with \"label\"), not PII files");
        }
        eval_pii(file, &text, json)
    } else {
        bail!(
            "{}: cannot tell the format: expected \"label\" (injection) or \"spans\" (PII) fields",
            file.display()
        )
    }
}

#[derive(Serialize)]
struct Row {
    name: String,
    n: usize,
    precision: f64,
    recall: f64,
    f1: f64,
    fpr: f64,
}

fn row(name: &str, c: &Confusion) -> Row {
    Row {
        name: name.to_owned(),
        n: c.tp + c.fp + c.tn + c.fn_,
        precision: c.precision(),
        recall: c.recall(),
        f1: c.f1(),
        fpr: c.fpr(),
    }
}

fn eval_injection(
    file: &Path,
    text: &str,
    cv: Option<usize>,
    json: bool,
) -> anyhow::Result<Outcome> {
    let examples = parse_labelled(text).with_context(|| format!("{}", file.display()))?;
    let mut rows = Vec::new();
    match cv {
        Some(k) => {
            if k < 2 {
                bail!("--cv needs at least 2 folds, got {k}");
            }
            let config = TrainConfig::default();
            let data = featurise(&examples, config.bits);
            for (name, scheme) in [
                ("stratified", FoldScheme::Stratified),
                ("by-source", FoldScheme::BySource),
            ] {
                let result = cross_validate(&examples, &data, k, scheme, &config);
                rows.push(row(
                    &format!("{k}-fold {name} (out-of-fold)"),
                    &result.overall,
                ));
                for (source, confusion) in &result.per_source {
                    rows.push(row(&format!("  {name}: {source}"), confusion));
                }
            }
        }
        None => {
            let detector = InjectionDetector::shipped()?;
            let mut overall = Confusion::default();
            let mut per_source: std::collections::BTreeMap<String, Confusion> = Default::default();
            for example in &examples {
                let flagged = detector.scan(&example.text).flagged;
                overall.add(flagged, example.label == 1);
                per_source
                    .entry(example.source.clone())
                    .or_default()
                    .add(flagged, example.label == 1);
            }
            rows.push(row("shipped model", &overall));
            for (source, confusion) in &per_source {
                rows.push(row(&format!("  {source}"), confusion));
            }
        }
    }
    if json {
        output::print_json(&rows)?;
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    r.n.to_string(),
                    format!("{:.3}", r.precision),
                    format!("{:.3}", r.recall),
                    format!("{:.3}", r.f1),
                    format!("{:.3}", r.fpr),
                ]
            })
            .collect();
        output::print(&output::table(
            &["set", "n", "precision", "recall", "f1", "fpr"],
            &table,
            &[1, 2, 3, 4, 5],
        ))?;
    }
    Ok(Outcome::Success)
}

fn eval_pii(file: &Path, text: &str, json: bool) -> anyhow::Result<Outcome> {
    let rows = parse_pii(text).with_context(|| format!("{}", file.display()))?;
    let evaluation = evaluate_pii(&rows);
    if json {
        output::print_json(&evaluation)?;
        return Ok(Outcome::Success);
    }
    let table: Vec<Vec<String>> = evaluation
        .per_type
        .iter()
        .map(|(kind, c)| {
            vec![
                kind.clone(),
                c.gold.to_string(),
                c.predicted.to_string(),
                format!("{:.3}", c.precision()),
                format!("{:.3}", c.recall()),
                format!("{:.3}", c.f1()),
                format!("{:.3}", c.overlap_precision()),
            ]
        })
        .collect();
    let mut out = output::table(
        &[
            "type",
            "gold",
            "predicted",
            "precision",
            "recall",
            "f1",
            "overlap_precision",
        ],
        &table,
        &[1, 2, 3, 4, 5, 6],
    );
    out.push_str(&format!(
        "hard-negative texts (no labelled PII): {}, with any detection: {}\n",
        evaluation.negative_texts, evaluation.negative_texts_fired
    ));
    output::print(&out)?;
    Ok(Outcome::Success)
}
