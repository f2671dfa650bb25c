//! `promptops tokens count` and `promptops tokens compare`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use promptops_core::catalog::{Catalog, ModelKind, TextComparison, builtin_tokenizer};
use promptops_core::stream_count::{StreamCount, StreamingCounter};
use promptops_core::tokens::{Encoding, Exactness, Tokenizer, tokenizer_for_model};
use serde::Serialize;

use crate::Outcome;
use crate::input::Source;
use crate::output;

/// Token subcommands.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Count the tokens of files (or stdin when none is given).
    Count {
        /// Count with the tokenizer of this model (e.g. gpt-4o, openai/gpt-4, claude-3-5-sonnet).
        #[arg(long, conflicts_with = "encoding")]
        model: Option<String>,
        /// Count with this encoding (o200k_base, cl100k_base). Default: o200k_base.
        #[arg(long)]
        encoding: Option<String>,
        /// Files to count; stdin when none, `-` for stdin.
        files: Vec<PathBuf>,
    },
    /// Compare tokens, cost and chars per token of the input across the catalog's models.
    Compare {
        /// Only these models (repeatable); default: every chat model in the catalog.
        #[arg(long = "model")]
        models: Vec<String>,
        /// Files to read (concatenated); stdin when none.
        files: Vec<PathBuf>,
    },
}

/// Runs a token subcommand.
pub fn run(command: TokensCommand, json: bool) -> anyhow::Result<Outcome> {
    match command {
        TokensCommand::Count {
            model,
            encoding,
            files,
        } => count(model.as_deref(), encoding.as_deref(), &files, json),
        TokensCommand::Compare { models, files } => compare(&models, &files, json),
    }
}

#[derive(Serialize)]
struct CountReport {
    tokenizer: String,
    exactness: Exactness,
    files: Vec<FileCount>,
    total: StreamCount,
}

#[derive(Serialize)]
struct FileCount {
    path: String,
    #[serde(flatten)]
    count: StreamCount,
}

fn count(
    model: Option<&str>,
    encoding: Option<&str>,
    files: &[PathBuf],
    json: bool,
) -> anyhow::Result<Outcome> {
    let tokenizer: Box<dyn Tokenizer> = match (model, encoding) {
        (Some(model), _) => tokenizer_for_model(model)?,
        (None, Some(encoding)) => Box::new(encoding.parse::<Encoding>()?),
        (None, None) => Box::new(Encoding::O200kBase),
    };
    let mut report = CountReport {
        tokenizer: tokenizer.name().to_owned(),
        exactness: tokenizer.exactness(),
        files: Vec::new(),
        total: StreamCount {
            tokens: 0,
            chars: 0,
            bytes: 0,
        },
    };
    for source in Source::from_args(files) {
        let mut counter = StreamingCounter::new(tokenizer.as_ref());
        source.for_each_chunk(|text| counter.push(text))?;
        let count = counter.finish();
        report.total.tokens += count.tokens;
        report.total.chars += count.chars;
        report.total.bytes += count.bytes;
        report.files.push(FileCount {
            path: source.label(),
            count,
        });
    }
    if json {
        output::print_json(&report)?;
    } else {
        output::print(&count_table(&report))?;
    }
    Ok(Outcome::Success)
}

fn count_table(report: &CountReport) -> String {
    let mut rows: Vec<Vec<String>> = report
        .files
        .iter()
        .map(|file| count_row(&file.path, &file.count))
        .collect();
    if report.files.len() > 1 {
        rows.push(count_row("total", &report.total));
    }
    let mut text = output::table(
        &["input", "tokens", "chars", "chars/token"],
        &rows,
        &[1, 2, 3],
    );
    let flag = match report.exactness {
        Exactness::Exact => "exact",
        Exactness::Estimate => "ESTIMATE (no public tokenizer for this model)",
    };
    text.push_str(&format!("tokenizer: {} ({flag})\n", report.tokenizer));
    text
}

fn count_row(label: &str, count: &StreamCount) -> Vec<String> {
    vec![
        label.to_owned(),
        count.tokens.to_string(),
        count.chars.to_string(),
        chars_per_token(count.chars, count.tokens),
    ]
}

fn chars_per_token(chars: usize, tokens: usize) -> String {
    if tokens == 0 {
        "-".to_owned()
    } else {
        format!("{:.2}", chars as f64 / tokens as f64)
    }
}

/// Output tokens reserved when naming the cheapest model that fits the input.
const RESERVED_OUTPUT: usize = 1024;

#[derive(Serialize)]
struct CompareReport {
    catalog_as_of: String,
    #[serde(flatten)]
    comparison: TextComparison,
    reserved_output_tokens: usize,
    cheapest_fitting: Option<String>,
}

fn compare(models: &[String], files: &[PathBuf], json: bool) -> anyhow::Result<Outcome> {
    let catalog = Catalog::builtin()?;
    let mut text = String::new();
    for source in Source::from_args(files) {
        source.for_each_chunk(|piece| text.push_str(piece))?;
    }
    let names: Vec<String> = if models.is_empty() {
        catalog
            .models()
            .filter(|info| info.kind == ModelKind::Chat)
            .map(|info| info.id())
            .collect()
    } else {
        models.to_vec()
    };
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let comparison = catalog
        .compare_models(&text, &names, &builtin_tokenizer)
        .context("cannot compare models")?;
    let report = CompareReport {
        catalog_as_of: catalog.as_of().unwrap_or("unknown date").to_owned(),
        cheapest_fitting: comparison
            .cheapest_fitting(RESERVED_OUTPUT)
            .map(|row| row.model.clone()),
        comparison,
        reserved_output_tokens: RESERVED_OUTPUT,
    };
    if json {
        output::print_json(&report)?;
    } else {
        output::print(&compare_table(&report))?;
    }
    Ok(Outcome::Success)
}

fn compare_table(report: &CompareReport) -> String {
    let rows: Vec<Vec<String>> = report
        .comparison
        .rows
        .iter()
        .map(|row| {
            let tokens = match row.exactness {
                Exactness::Exact => row.tokens.to_string(),
                Exactness::Estimate => format!("~{}", row.tokens),
            };
            vec![
                row.model.clone(),
                tokens,
                format!("{:.2}", row.chars_per_token),
                format!("${:.6}", row.input_cost_usd),
                format!("{:.1}%", row.context_share * 100.0),
                row.tokenizer.clone(),
            ]
        })
        .collect();
    let mut text = output::table(
        &[
            "model",
            "tokens",
            "chars/token",
            "input cost",
            "of context",
            "tokenizer",
        ],
        &rows,
        &[1, 2, 3, 4],
    );
    text.push_str(&format!(
        "{} chars; ~ marks estimates (no public tokenizer); prices: catalog as of {}\n",
        report.comparison.chars, report.catalog_as_of
    ));
    match &report.cheapest_fitting {
        Some(model) => text.push_str(&format!(
            "cheapest model that fits it plus {} output tokens: {model}\n",
            report.reserved_output_tokens
        )),
        None => text.push_str(&format!(
            "no model fits it plus {} output tokens\n",
            report.reserved_output_tokens
        )),
    }
    text
}
