//! Registry subcommands: `prompt ...`, `deploy`, `expand`, `promote`, `rollback`, `route`,
//! `experiment ...`, `metrics ...`, `canary check`, `audit`. Parsing and printing only; every
//! behaviour is `promptops_registry::Registry`'s.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use promptops_core::generation::GenerationConfig;
use promptops_core::message::Content;
use promptops_core::template::{VarType, VariableSpec, Variables};
use promptops_registry::Registry;
use promptops_registry::experiment::{AnalysisConfig, ExperimentArm};
use promptops_registry::files::FileFormat;
use promptops_registry::metrics::Outcome;
use promptops_registry::review::ReviewStatus;
use promptops_registry::rollback::{CanaryVerdict, RollbackPolicy};
use promptops_registry::routing::Deployment;
use promptops_registry::service::{CanaryCheck, format_timestamp_ms};
use promptops_registry::version::{
    Bump, PromptContent, PromptRef, PromptVersion, Selector, parse_version,
};
use serde_json::{Value, json};

use crate::Outcome as RunOutcome;
use crate::output::{print, print_json, table};

/// The registry's top-level subcommands (flattened into the main command list).
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Add, list, show, render, diff, label, sync and export prompt versions.
    #[command(subcommand)]
    Prompt(PromptCommand),
    /// Start a canary of NAME@VERSION (the first deployment makes it the stable version).
    Deploy(DeployArgs),
    /// Change the candidate's share of traffic.
    Expand(ExpandArgs),
    /// Make the candidate the stable version at 100%.
    Promote(NameArgs),
    /// Drop the candidate at once, or return to an older version with --to.
    Rollback(RollbackArgs),
    /// Show which version serves a request id (or many, from a file).
    Route(RouteArgs),
    /// A/B and multi-arm experiments over versions.
    #[command(subcommand)]
    Experiment(ExperimentCommand),
    /// Record and show per-version metrics.
    #[command(subcommand)]
    Metrics(MetricsCommand),
    /// Judge running canaries against the auto-rollback policy.
    #[command(subcommand)]
    Canary(CanaryCommand),
    /// Show the audit trail; --verify checks its hash chain (exit 1 when broken).
    Audit(AuditArgs),
    /// The review queue of retrieved documents the guard quarantined.
    #[command(subcommand)]
    Review(ReviewCommand),
}

/// `review ...` subcommands.
#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// List queued documents (pending by default).
    List {
        /// pending, approved, rejected or all.
        #[arg(long, default_value = "pending")]
        status: String,
    },
    /// Mark a queued document safe: later retrievals of the same content are used.
    Approve(ReviewDecisionArgs),
    /// Confirm a queued document as malicious: it stays excluded.
    Reject(ReviewDecisionArgs),
}

/// Arguments of a review decision.
#[derive(Debug, clap::Args)]
pub struct ReviewDecisionArgs {
    /// The queue id (from `review list`).
    pub id: i64,
    /// Why (recorded in the audit trail).
    #[arg(long)]
    pub reason: Option<String>,
}

/// `prompt ...` subcommands.
#[derive(Debug, Subcommand)]
pub enum PromptCommand {
    /// Add a version (identical content is a no-op that prints the existing version).
    Add(AddArgs),
    /// List prompts, or the versions of one prompt.
    List {
        /// List this prompt's versions.
        name: Option<String>,
    },
    /// Show NAME, NAME@VERSION or NAME:LABEL.
    Show {
        /// The prompt reference.
        reference: String,
    },
    /// Render NAME[@VERSION|:LABEL] with variables.
    Render {
        /// The prompt reference.
        reference: String,
        /// A variable, `name=value` (JSON values allowed for non-string variables).
        #[arg(long = "var", value_name = "K=V")]
        vars: Vec<String>,
    },
    /// Show what changed between two versions (versions or labels).
    Diff {
        /// The prompt.
        name: String,
        /// The first version or label.
        a: String,
        /// The second version or label.
        b: String,
    },
    /// Point LABEL at NAME@VERSION.
    Label {
        /// The version, `NAME@VERSION`.
        reference: String,
        /// The label to move.
        label: String,
    },
    /// Add a version for each prompt file in DIR whose content changed (all files validated first).
    Sync {
        /// Directory of prompt files (`*.toml`, `*.yaml`, `*.yml`).
        dir: PathBuf,
    },
    /// Write each prompt's production (else latest) version to DIR/NAME.toml (or .yaml).
    Export {
        /// Output directory.
        dir: PathBuf,
        /// File format: toml or yaml.
        #[arg(long, default_value = "toml")]
        format: FileFormat,
    },
}

/// Arguments of `prompt add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The prompt's name.
    name: String,
    /// File with the user message template.
    #[arg(long)]
    template: PathBuf,
    /// File with the system message template.
    #[arg(long)]
    system: Option<PathBuf>,
    /// The model the prompt is written for.
    #[arg(long)]
    model: Option<String>,
    /// Declare a variable, `name[:type]` (string, integer, number, boolean, array, object, any).
    #[arg(long = "variable", value_name = "NAME[:TYPE]")]
    variables: Vec<String>,
    /// Sampling temperature.
    #[arg(long)]
    temperature: Option<f64>,
    /// Maximum completion tokens.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// JSON schema file the output must satisfy.
    #[arg(long)]
    output_schema: Option<PathBuf>,
    /// A tag (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Which part of the version number to increment.
    #[arg(long, value_enum, default_value_t = BumpArg::Patch)]
    bump: BumpArg,
    /// Why this version exists.
    #[arg(short = 'm', long = "message")]
    message: Option<String>,
}

/// `--bump` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BumpArg {
    /// X.0.0
    Major,
    /// x.Y.0
    Minor,
    /// x.y.Z
    Patch,
}

/// Arguments of `deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The version to roll out, `NAME@VERSION`.
    target: String,
    /// Share of request ids routed to it (0 to 1).
    #[arg(long, allow_negative_numbers = true)]
    canary: f64,
    /// Why (recorded in the audit trail).
    #[arg(long)]
    reason: Option<String>,
}

/// Arguments of `expand`.
#[derive(Debug, Args)]
pub struct ExpandArgs {
    /// The prompt.
    name: String,
    /// New share of request ids for the candidate (0 to 1).
    #[arg(long, allow_negative_numbers = true)]
    traffic: f64,
    /// Why (recorded in the audit trail).
    #[arg(long)]
    reason: Option<String>,
}

/// A prompt name and an optional reason.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The prompt.
    name: String,
    /// Why (recorded in the audit trail).
    #[arg(long)]
    reason: Option<String>,
}

/// Arguments of `rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The prompt.
    name: String,
    /// Make this older version the stable one instead of just dropping the candidate.
    #[arg(long)]
    to: Option<String>,
    /// Why (recorded in the audit trail).
    #[arg(long)]
    reason: Option<String>,
}

/// Arguments of `route`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("ids").required(true).args(["request_id", "ids_from"]))]
pub struct RouteArgs {
    /// The prompt.
    name: String,
    /// One request id.
    #[arg(long)]
    request_id: Option<String>,
    /// A file of request ids, one per line (`-` for stdin).
    #[arg(long)]
    ids_from: Option<PathBuf>,
    /// With --ids-from: print only the count per version.
    #[arg(long)]
    summary: bool,
}

/// `experiment ...` subcommands.
#[derive(Debug, Subcommand)]
pub enum ExperimentCommand {
    /// Create an experiment; the first --arm is the control.
    Create {
        /// The experiment's name.
        name: String,
        /// The prompt whose versions are compared.
        #[arg(long)]
        prompt: String,
        /// An arm, `VERSION[=WEIGHT]` (weight 1 by default); at least two.
        #[arg(long = "arm", value_name = "VERSION[=WEIGHT]", required = true)]
        arms: Vec<String>,
    },
    /// Show the arm a unit is assigned to.
    Assign {
        /// The experiment.
        name: String,
        /// The unit (user, session, request).
        #[arg(long)]
        unit: String,
    },
    /// Record an outcome for a unit.
    Record {
        /// The experiment.
        name: String,
        /// The unit.
        #[arg(long)]
        unit: String,
        /// The version (arm) that served it (default: the unit's assignment).
        #[arg(long = "arm", value_name = "VERSION")]
        arm: Option<String>,
        /// Binary result.
        #[arg(long)]
        success: Option<bool>,
        /// Numeric score.
        #[arg(long)]
        score: Option<f64>,
    },
    /// Analyse the outcomes so far.
    Analyze {
        /// The experiment.
        name: String,
        /// Significance level.
        #[arg(long, default_value_t = 0.05)]
        alpha: f64,
        /// Power used for the minimum sample size.
        #[arg(long, default_value_t = 0.8)]
        power: f64,
        /// Smallest absolute change in success rate worth detecting.
        #[arg(long, default_value_t = 0.05)]
        min_effect: f64,
        /// Smallest change in mean score worth detecting, in standard deviations.
        #[arg(long, default_value_t = 0.2)]
        min_effect_sd: f64,
    },
}

/// `metrics ...` subcommands.
#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// Record outcomes of NAME@VERSION (the same outcome --count times).
    Record(RecordArgs),
    /// Show metrics of a version, or of a deployment's stable and candidate versions.
    Show {
        /// `NAME`, `NAME@VERSION` or `NAME:LABEL`.
        reference: String,
    },
}

/// Arguments of `metrics record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The version, `NAME@VERSION`.
    target: String,
    /// How many identical outcomes to record.
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// The requests failed.
    #[arg(long)]
    failure: bool,
    /// The answers failed to parse (implies --failure).
    #[arg(long)]
    parse_error: bool,
    /// The answers failed validation (implies --failure).
    #[arg(long)]
    validation_error: bool,
    /// Latency in milliseconds.
    #[arg(long)]
    latency_ms: f64,
    /// Prompt tokens per request.
    #[arg(long, default_value_t = 0)]
    input_tokens: u64,
    /// Completion tokens per request.
    #[arg(long, default_value_t = 0)]
    output_tokens: u64,
    /// Cost per request in USD.
    #[arg(long, default_value_t = 0.0)]
    cost: f64,
}

/// `canary ...` subcommands.
#[derive(Debug, Subcommand)]
pub enum CanaryCommand {
    /// Judge a canary (or all running canaries); a breach rolls back and exits 1.
    Check(CheckArgs),
}

/// Arguments of `canary check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The prompt; all prompts with a candidate when omitted.
    name: Option<String>,
    /// Lowest acceptable success rate.
    #[arg(long, default_value_t = RollbackPolicy::default().min_success_rate)]
    min_success_rate: f64,
    /// Highest acceptable parse error rate.
    #[arg(long, default_value_t = RollbackPolicy::default().max_parse_error_rate)]
    max_parse_error_rate: f64,
    /// Highest acceptable candidate/stable p95 latency ratio.
    #[arg(long, default_value_t = RollbackPolicy::default().max_latency_p95_ratio)]
    max_latency_ratio: f64,
    /// Highest acceptable candidate/stable cost ratio.
    #[arg(long, default_value_t = RollbackPolicy::default().max_cost_ratio)]
    max_cost_ratio: f64,
    /// Requests each version needs before it is judged.
    #[arg(long, default_value_t = RollbackPolicy::default().min_requests)]
    min_requests: u64,
}

/// Arguments of `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only the changes to this prompt.
    name: Option<String>,
    /// Check the whole hash chain instead of listing (exit 1 when broken).
    #[arg(long)]
    verify: bool,
}

/// The database URL: the flag or env var, else an SQLite file under the user's data directory.
pub(crate) fn database_url(given: Option<&str>) -> anyhow::Result<String> {
    if let Some(url) = given {
        return Ok(url.to_owned());
    }
    let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".local").join("share"),
            None => bail!(
                "no database given: pass --database-url or set PROMPTOPS_DATABASE_URL (HOME is unset)"
            ),
        },
    };
    let dir = base.join("promptops");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(format!("sqlite://{}", dir.join("promptops.db").display()))
}

/// Who is making changes: `PROMPTOPS_ACTOR`, else the login name.
fn actor() -> String {
    ["PROMPTOPS_ACTOR", "USER", "USERNAME"]
        .iter()
        .find_map(|key| std::env::var(key).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Runs a registry subcommand.
pub fn run(
    command: RegistryCommand,
    database: Option<&str>,
    json: bool,
) -> anyhow::Result<RunOutcome> {
    let url = database_url(database)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let registry = Registry::open(&url).await?;
        dispatch(&registry, command, json).await
    })
}

async fn dispatch(
    reg: &Registry,
    command: RegistryCommand,
    json: bool,
) -> anyhow::Result<RunOutcome> {
    let who = actor();
    match command {
        RegistryCommand::Prompt(command) => prompt(reg, command, json).await,
        RegistryCommand::Review(command) => review(reg, command, &who, json).await,
        RegistryCommand::Deploy(args) => {
            let (name, version) = exact_ref(&args.target)?;
            let t = reg
                .deploy(&name, &version, args.canary, &who, args.reason.as_deref())
                .await?;
            print_deployment(&t.after, json)
        }
        RegistryCommand::Expand(args) => {
            let t = reg
                .expand(&args.name, args.traffic, &who, args.reason.as_deref())
                .await?;
            print_deployment(&t.after, json)
        }
        RegistryCommand::Promote(args) => {
            let t = reg
                .promote(&args.name, &who, args.reason.as_deref())
                .await?;
            print_deployment(&t.after, json)
        }
        RegistryCommand::Rollback(args) => {
            let to = args.to.as_deref().map(parse_version).transpose()?;
            let t = reg
                .rollback(&args.name, to.as_ref(), &who, args.reason.as_deref())
                .await?;
            print_deployment(&t.after, json)
        }
        RegistryCommand::Route(args) => route(reg, args, json).await,
        RegistryCommand::Experiment(command) => experiment(reg, command, json, &who).await,
        RegistryCommand::Metrics(command) => metrics(reg, command, json).await,
        RegistryCommand::Canary(CanaryCommand::Check(args)) => {
            canary_check(reg, args, json, &who).await
        }
        RegistryCommand::Audit(args) => audit(reg, args, json).await,
    }
}

/// Splits `NAME@VERSION`.
fn exact_ref(target: &str) -> anyhow::Result<(String, promptops_registry::Version)> {
    let parsed: PromptRef = target.parse()?;
    match parsed.selector {
        Selector::Exact(version) => Ok((parsed.name, version)),
        _ => bail!("`{target}`: expected NAME@VERSION"),
    }
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn parse_variable(spec: &str) -> anyhow::Result<VariableSpec> {
    let (name, kind) = spec.split_once(':').unwrap_or((spec, "any"));
    let kind: VarType = serde_json::from_value(Value::String(kind.to_owned())).map_err(|_| {
        anyhow::anyhow!(
            "--variable `{spec}`: unknown type `{kind}` (string, integer, number, boolean, array, object, any)"
        )
    })?;
    Ok(VariableSpec::new(name, kind))
}

async fn prompt(reg: &Registry, command: PromptCommand, json: bool) -> anyhow::Result<RunOutcome> {
    match command {
        PromptCommand::Add(args) => {
            let user = read_text(&args.template)?;
            let system = args.system.as_deref().map(read_text).transpose()?;
            let mut content = PromptContent::system_user(system, user);
            content.model = args.model;
            content.tags = args.tags;
            content.variables = args
                .variables
                .iter()
                .map(|s| parse_variable(s))
                .collect::<anyhow::Result<_>>()?;
            let mut generation = GenerationConfig::builder();
            if let Some(t) = args.temperature {
                generation = generation.temperature(t);
            }
            if let Some(m) = args.max_tokens {
                generation = generation.max_tokens(m);
            }
            content.generation = generation.build()?;
            if let Some(path) = &args.output_schema {
                let text = read_text(path)?;
                content.output_schema = Some(
                    serde_json::from_str(&text)
                        .with_context(|| format!("{}: not valid JSON", path.display()))?,
                );
            }
            let bump = match args.bump {
                BumpArg::Major => Bump::Major,
                BumpArg::Minor => Bump::Minor,
                BumpArg::Patch => Bump::Patch,
            };
            let added = reg
                .add_version(&args.name, content, bump, &actor(), args.message.as_deref())
                .await?;
            if json {
                print_json(&json!({
                    "name": added.version.name,
                    "version": added.version.version.to_string(),
                    "content_hash": added.version.content_hash,
                    "created": added.created,
                }))?;
            } else if added.created {
                print(&format!(
                    "added {}@{} ({})\n",
                    added.version.name,
                    added.version.version,
                    &added.version.content_hash[..12]
                ))?;
            } else {
                print(&format!(
                    "unchanged: identical to {}@{}\n",
                    added.version.name, added.version.version
                ))?;
            }
        }
        PromptCommand::List { name: None } => {
            let list = reg.list().await?;
            if json {
                print_json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|p| {
                        vec![
                            p.name.clone(),
                            p.latest.to_string(),
                            p.versions.to_string(),
                            p.labels
                                .iter()
                                .map(|(l, v)| format!("{l}={v}"))
                                .collect::<Vec<_>>()
                                .join(" "),
                            p.deployment
                                .as_ref()
                                .map(describe_deployment)
                                .unwrap_or_default(),
                        ]
                    })
                    .collect();
                print(&table(
                    &["NAME", "LATEST", "VERSIONS", "LABELS", "DEPLOYMENT"],
                    &rows,
                    &[2],
                ))?;
            }
        }
        PromptCommand::List { name: Some(name) } => {
            let versions = reg.versions(&name).await?;
            if json {
                print_json(&versions)?;
            } else {
                let rows: Vec<Vec<String>> = versions
                    .iter()
                    .map(|v| {
                        vec![
                            v.version.to_string(),
                            v.status.to_string(),
                            v.content_hash[..12].to_owned(),
                            v.author.clone(),
                            format_timestamp_ms(v.created_at_ms),
                            v.message.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                print(&table(
                    &["VERSION", "STATUS", "HASH", "AUTHOR", "CREATED", "MESSAGE"],
                    &rows,
                    &[],
                ))?;
            }
        }
        PromptCommand::Show { reference } => {
            let version = reg.get(&reference).await?;
            if json {
                print_json(&version)?;
            } else {
                print(&describe_version(&version))?;
            }
        }
        PromptCommand::Render { reference, vars } => {
            let version = reg.get(&reference).await?;
            let vars = parse_vars(&vars, &version)?;
            let (_, messages) = reg
                .render(&format!("{}@{}", version.name, version.version), &vars)
                .await?;
            if json {
                print_json(&messages)?;
            } else {
                let mut out = String::new();
                for message in &messages {
                    let text = match &message.content {
                        Some(Content::Text(text)) => text.clone(),
                        other => serde_json::to_string(other)?,
                    };
                    out.push_str(&format!(
                        "[{}]\n{}\n",
                        message.role.as_str(),
                        text.trim_end()
                    ));
                }
                print(&out)?;
            }
        }
        PromptCommand::Diff { name, a, b } => {
            let diff = reg.diff(&name, &a, &b).await?;
            if json {
                print_json(&diff)?;
            } else if diff.is_empty() {
                print("no differences\n")?;
            } else {
                let mut out = diff.templates.clone();
                for change in &diff.fields {
                    out.push_str(&format!(
                        "{}: {} -> {}\n",
                        change.field, change.before, change.after
                    ));
                }
                print(&out)?;
            }
        }
        PromptCommand::Label { reference, label } => {
            let (version, before) = reg.set_label(&reference, &label, &actor()).await?;
            if json {
                print_json(&json!({
                    "name": version.name,
                    "label": label,
                    "version": version.version.to_string(),
                    "before": before.map(|v| v.to_string()),
                }))?;
            } else {
                print(&format!(
                    "{}:{label} -> {}\n",
                    version.name, version.version
                ))?;
            }
        }
        PromptCommand::Sync { dir } => {
            let report = reg.sync_dir(&dir, &actor()).await?;
            if json {
                print_json(&report)?;
            } else {
                let mut out = String::new();
                for (name, version) in &report.created {
                    out.push_str(&format!("added {name}@{version}\n"));
                }
                for (name, version) in &report.unchanged {
                    out.push_str(&format!("unchanged {name}@{version}\n"));
                }
                out.push_str(&format!(
                    "{} added, {} unchanged\n",
                    report.created.len(),
                    report.unchanged.len()
                ));
                print(&out)?;
            }
        }
        PromptCommand::Export { dir, format } => {
            let written = reg.export_dir(&dir, format).await?;
            if json {
                let rows: Vec<Value> = written
                    .iter()
                    .map(|(n, v, p)| json!({"name": n, "version": v.to_string(), "path": p}))
                    .collect();
                print_json(&rows)?;
            } else {
                let out: String = written
                    .iter()
                    .map(|(n, v, p)| format!("{n}@{v} -> {}\n", p.display()))
                    .collect();
                print(&out)?;
            }
        }
    }
    Ok(RunOutcome::Success)
}

/// `k=v` pairs as variables: values of declared string variables stay strings, others are
/// parsed as JSON when they parse.
fn parse_vars(pairs: &[String], version: &PromptVersion) -> anyhow::Result<Variables> {
    let mut vars = Variables::new();
    for pair in pairs {
        let Some((key, raw)) = pair.split_once('=') else {
            bail!("--var `{pair}`: expected NAME=VALUE");
        };
        let declared = version.content.variables.iter().find(|v| v.name == key);
        let value = match declared.map(|v| v.kind) {
            Some(VarType::String) => Value::String(raw.to_owned()),
            _ => serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned())),
        };
        vars.insert(key.to_owned(), value);
    }
    Ok(vars)
}

fn describe_version(v: &PromptVersion) -> String {
    let mut out = format!(
        "{}@{}  status={}  hash={}\nauthor: {}  created: {}\n",
        v.name,
        v.version,
        v.status,
        v.content_hash,
        v.author,
        format_timestamp_ms(v.created_at_ms)
    );
    if let Some(message) = &v.message {
        out.push_str(&format!("message: {message}\n"));
    }
    if let Some(model) = &v.content.model {
        out.push_str(&format!("model: {model}\n"));
    }
    if !v.content.tags.is_empty() {
        out.push_str(&format!("tags: {}\n", v.content.tags.join(", ")));
    }
    for var in &v.content.variables {
        out.push_str(&format!(
            "variable: {} ({}{})\n",
            var.name,
            var.kind,
            if var.required { "" } else { ", optional" }
        ));
    }
    if v.content.generation != GenerationConfig::default() {
        out.push_str(&format!(
            "generation: {}\n",
            serde_json::to_string(&v.content.generation).unwrap_or_default()
        ));
    }
    if let Some(schema) = &v.content.output_schema {
        out.push_str(&format!("output_schema: {schema}\n"));
    }
    for message in &v.content.messages {
        out.push_str(&format!(
            "--- {}\n{}\n",
            message.role.as_str(),
            message.template.trim_end()
        ));
    }
    out
}

fn describe_deployment(d: &Deployment) -> String {
    match &d.candidate {
        Some(candidate) => format!(
            "stable {} + candidate {} at {}%",
            d.stable,
            candidate,
            d.candidate_fraction * 100.0
        ),
        None => format!("stable {}", d.stable),
    }
}

fn print_deployment(d: &Deployment, json: bool) -> anyhow::Result<RunOutcome> {
    if json {
        print_json(d)?;
    } else {
        print(&format!("{}: {}\n", d.prompt, describe_deployment(d)))?;
    }
    Ok(RunOutcome::Success)
}

async fn route(reg: &Registry, args: RouteArgs, json: bool) -> anyhow::Result<RunOutcome> {
    let snapshot = reg.routing_table().await?;
    let resolve = |id: &str| {
        snapshot
            .resolve(&args.name, id)
            .ok_or_else(|| anyhow::anyhow!("unknown prompt `{}`", args.name))
    };
    if let Some(id) = &args.request_id {
        let route = resolve(id)?;
        if json {
            print_json(&json!({
                "name": args.name,
                "request_id": id,
                "version": route.version.version.to_string(),
                "arm": route.arm.as_str(),
            }))?;
        } else {
            print(&format!(
                "{}@{} ({})\n",
                args.name,
                route.version.version,
                route.arm.as_str()
            ))?;
        }
        return Ok(RunOutcome::Success);
    }
    let Some(path) = &args.ids_from else {
        bail!("give --request-id or --ids-from");
    };
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        ))
    };
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut out = String::new();
    for line in reader.lines() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        let id = line.trim_end_matches('\r');
        if id.is_empty() {
            continue;
        }
        let route = resolve(id)?;
        let version = route.version.version.to_string();
        if !args.summary {
            out.push_str(&format!("{id}\t{version}\t{}\n", route.arm.as_str()));
        }
        *counts.entry(version).or_insert(0) += 1;
    }
    if args.summary {
        if json {
            print_json(&counts)?;
        } else {
            let rows: Vec<Vec<String>> = counts
                .iter()
                .map(|(v, n)| vec![v.clone(), n.to_string()])
                .collect();
            print(&table(&["VERSION", "REQUESTS"], &rows, &[1]))?;
        }
    } else {
        print(&out)?;
    }
    Ok(RunOutcome::Success)
}

async fn experiment(
    reg: &Registry,
    command: ExperimentCommand,
    json: bool,
    who: &str,
) -> anyhow::Result<RunOutcome> {
    match command {
        ExperimentCommand::Create { name, prompt, arms } => {
            let arms = arms
                .iter()
                .map(|arm| {
                    let (version, weight) = match arm.split_once('=') {
                        Some((v, w)) => (
                            v,
                            w.parse::<f64>().with_context(|| {
                                format!("--arm `{arm}`: weight is not a number")
                            })?,
                        ),
                        None => (arm.as_str(), 1.0),
                    };
                    Ok(ExperimentArm {
                        version: parse_version(version)?,
                        weight,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let created = reg.create_experiment(&name, &prompt, arms, who).await?;
            if json {
                print_json(&created)?;
            } else {
                print(&format!(
                    "created experiment {} on {} with {} arms\n",
                    created.name,
                    created.prompt,
                    created.arms.len()
                ))?;
            }
        }
        ExperimentCommand::Assign { name, unit } => {
            let (exp, arm) = reg.assign(&name, &unit).await?;
            let version = exp.arms[arm].version.to_string();
            if json {
                print_json(
                    &json!({"experiment": name, "unit": unit, "arm": arm, "version": version}),
                )?;
            } else {
                print(&format!("{}@{version} (arm {arm})\n", exp.prompt))?;
            }
        }
        ExperimentCommand::Record {
            name,
            unit,
            arm,
            success,
            score,
        } => {
            let version = arm.as_deref().map(parse_version).transpose()?;
            let arm = reg
                .record_experiment_outcome(&name, &unit, version.as_ref(), success, score)
                .await?;
            if json {
                print_json(&json!({"experiment": name, "unit": unit, "arm": arm}))?;
            } else {
                print(&format!("recorded for arm {arm}\n"))?;
            }
        }
        ExperimentCommand::Analyze {
            name,
            alpha,
            power,
            min_effect,
            min_effect_sd,
        } => {
            let config = AnalysisConfig {
                alpha,
                power,
                min_rate_effect: min_effect,
                min_score_effect_sd: min_effect_sd,
            };
            let report = reg.analyze_experiment(&name, &config).await?;
            if json {
                print_json(&report)?;
            } else {
                let mut out = String::new();
                for (arm, totals) in report.experiment.arms.iter().zip(&report.arms) {
                    out.push_str(&format!(
                        "arm {}  weight {}  units {}  successes {}/{}  scores {}\n",
                        arm.version,
                        arm.weight,
                        totals.units,
                        totals.successes,
                        totals.binary_n,
                        totals.score_n
                    ));
                }
                for c in &report.comparisons {
                    out.push_str(&format!("{} of {} vs control: ", c.metric, c.version));
                    match &c.result {
                        Some(r) => out.push_str(&format!(
                            "{:.4} vs {:.4}, lift {}, {}% CI [{:.4}, {:.4}], p = {:.4}{}\n",
                            r.treatment,
                            r.control,
                            r.relative_lift.map_or_else(
                                || "n/a".to_owned(),
                                |l| format!("{:+.2}%", l * 100.0)
                            ),
                            (1.0 - alpha) * 100.0,
                            r.confidence_interval.0,
                            r.confidence_interval.1,
                            r.p_value,
                            if r.significant { " (significant)" } else { "" }
                        )),
                        None => out.push('\n'),
                    }
                    if let Some(note) = &c.note {
                        out.push_str(&format!("  note: {note}\n"));
                    }
                }
                out.push_str(&format!(
                    "sample ratio check: chi2 = {:.3}, p = {:.4}{}\n",
                    report.srm.chi_square,
                    report.srm.p_value,
                    if report.srm.mismatch {
                        " - MISMATCH: assignment or logging is broken, do not trust the results"
                    } else {
                        ""
                    }
                ));
                print(&out)?;
            }
        }
    }
    Ok(RunOutcome::Success)
}

async fn metrics(
    reg: &Registry,
    command: MetricsCommand,
    json: bool,
) -> anyhow::Result<RunOutcome> {
    match command {
        MetricsCommand::Record(args) => {
            let (name, version) = exact_ref(&args.target)?;
            let failed = args.failure || args.parse_error || args.validation_error;
            let outcome = Outcome {
                success: !failed,
                parse_error: args.parse_error,
                validation_error: args.validation_error,
                latency_ms: args.latency_ms,
                input_tokens: args.input_tokens,
                output_tokens: args.output_tokens,
                cost: args.cost,
            };
            let outcomes = vec![outcome; args.count as usize];
            reg.record_outcomes(&name, &version, &outcomes).await?;
            let total = reg.metrics(&name, &version).await?;
            if json {
                print_json(
                    &json!({"name": name, "version": version.to_string(), "summary": total.summary()}),
                )?;
            } else {
                print(&format!(
                    "{name}@{version}: {} requests recorded\n",
                    total.requests
                ))?;
            }
        }
        MetricsCommand::Show { reference } => {
            let parsed: PromptRef = reference.parse()?;
            let mut versions = Vec::new();
            match (&parsed.selector, reg.deployment(&parsed.name).await?) {
                (Selector::Latest, Some(d)) => {
                    versions.push(d.stable.clone());
                    versions.extend(d.candidate.clone());
                }
                _ => versions.push(reg.resolve(&parsed).await?.version),
            }
            let mut rows = Vec::new();
            let mut out_json = Vec::new();
            for version in versions {
                let m = reg.metrics(&parsed.name, &version).await?;
                let s = m.summary();
                out_json.push(json!({"version": version.to_string(), "metrics": m, "summary": s}));
                rows.push(match s {
                    Some(s) => vec![
                        version.to_string(),
                        s.requests.to_string(),
                        format!("{:.4}", s.success_rate),
                        format!("{:.4}", s.parse_error_rate),
                        format!("{:.1}", s.latency_p50_ms),
                        format!("{:.1}", s.latency_p95_ms),
                        format!("{:.1}", s.latency_p99_ms),
                        format!("{:.6}", s.avg_cost),
                    ],
                    None => vec![version.to_string(), "0".into()],
                });
            }
            if json {
                print_json(&out_json)?;
            } else {
                print(&table(
                    &[
                        "VERSION",
                        "REQUESTS",
                        "SUCCESS",
                        "PARSE_ERR",
                        "P50_MS",
                        "P95_MS",
                        "P99_MS",
                        "AVG_COST",
                    ],
                    &rows,
                    &[1, 2, 3, 4, 5, 6, 7],
                ))?;
            }
        }
    }
    Ok(RunOutcome::Success)
}

async fn canary_check(
    reg: &Registry,
    args: CheckArgs,
    json: bool,
    who: &str,
) -> anyhow::Result<RunOutcome> {
    let policy = RollbackPolicy {
        min_success_rate: args.min_success_rate,
        max_parse_error_rate: args.max_parse_error_rate,
        max_latency_p95_ratio: args.max_latency_ratio,
        max_cost_ratio: args.max_cost_ratio,
        min_requests: args.min_requests,
    };
    let checks: Vec<CanaryCheck> = match &args.name {
        Some(name) => vec![reg.check_canary(name, &policy, who).await?],
        None => reg.check_all_canaries(&policy, who).await?,
    };
    let rolled_back = checks.iter().any(|c| c.rolled_back.is_some());
    if json {
        print_json(&checks)?;
    } else {
        let mut out = String::new();
        for check in &checks {
            let d = &check.deployment;
            let candidate = d
                .candidate
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            match &check.verdict {
                CanaryVerdict::InsufficientData { candidate_requests, stable_requests, min_requests } => {
                    out.push_str(&format!(
                        "{}: not enough data yet (candidate {candidate}: {candidate_requests}, stable {}: {stable_requests}; need {min_requests} each)\n",
                        d.prompt, d.stable
                    ));
                }
                CanaryVerdict::Healthy { candidate: c, stable: s } => out.push_str(&format!(
                    "{}: candidate {candidate} healthy (success {:.4}, parse errors {:.4}, p95 {:.1} ms vs {:.1} ms, cost {:.6} vs {:.6})\n",
                    d.prompt, c.success_rate, c.parse_error_rate, c.latency_p95_ms, s.latency_p95_ms, c.avg_cost, s.avg_cost
                )),
                CanaryVerdict::Breach { breaches, .. } => {
                    out.push_str(&format!("{}: candidate {candidate} rolled back:\n", d.prompt));
                    for b in breaches {
                        out.push_str(&format!("  {} = {:.4} (limit {})\n", b.check, b.observed, b.limit));
                    }
                }
            }
        }
        if checks.is_empty() {
            out.push_str("no canaries running\n");
        }
        print(&out)?;
    }
    Ok(if rolled_back {
        RunOutcome::CheckFailed
    } else {
        RunOutcome::Success
    })
}

async fn audit(reg: &Registry, args: AuditArgs, json: bool) -> anyhow::Result<RunOutcome> {
    if args.verify {
        let verification = reg.verify_audit().await?;
        if json {
            print_json(&verification)?;
        } else {
            match &verification.broken_at {
                None => print(&format!("audit chain intact: {} rows\n", verification.rows))?,
                Some((seq, reason)) => {
                    print(&format!("audit chain BROKEN at row {seq}: {reason}\n"))?
                }
            }
        }
        return Ok(if verification.is_intact() {
            RunOutcome::Success
        } else {
            RunOutcome::CheckFailed
        });
    }
    let entries = reg.audit(args.name.as_deref()).await?;
    if json {
        print_json(&entries)?;
    } else {
        let rows: Vec<Vec<String>> = entries
            .iter()
            .map(|e| {
                let details = &e.draft.details;
                let summary = match details.get("reason").and_then(Value::as_str) {
                    Some(reason) => reason.to_owned(),
                    None => summarize(details),
                };
                vec![
                    e.seq.to_string(),
                    format_timestamp_ms(e.draft.at_ms),
                    e.draft.actor.clone(),
                    e.draft.action.clone(),
                    e.draft.prompt.clone().unwrap_or_default(),
                    summary,
                ]
            })
            .collect();
        print(&table(
            &["SEQ", "AT", "ACTOR", "ACTION", "PROMPT", "DETAILS"],
            &rows,
            &[0],
        ))?;
    }
    Ok(RunOutcome::Success)
}

async fn review(
    reg: &Registry,
    command: ReviewCommand,
    who: &str,
    json: bool,
) -> anyhow::Result<RunOutcome> {
    let (args, decision) = match command {
        ReviewCommand::List { status } => {
            let status = match status.as_str() {
                "all" => None,
                other => Some(other.parse::<ReviewStatus>()?),
            };
            let items = reg.reviews(status).await?;
            if json {
                print_json(&items)?;
            } else {
                let rows: Vec<Vec<String>> = items
                    .iter()
                    .map(|item| {
                        let preview: String = item
                            .content
                            .chars()
                            .take(60)
                            .map(|c| if c.is_control() { ' ' } else { c })
                            .collect();
                        vec![
                            item.id.to_string(),
                            item.status.to_string(),
                            format!("{:.2}", item.score),
                            item.hits.to_string(),
                            item.source.clone(),
                            format_timestamp_ms(item.created_at_ms),
                            preview,
                        ]
                    })
                    .collect();
                print(&table(
                    &[
                        "ID", "STATUS", "SCORE", "HITS", "SOURCE", "QUEUED", "CONTENT",
                    ],
                    &rows,
                    &[0, 2, 3],
                ))?;
            }
            return Ok(RunOutcome::Success);
        }
        ReviewCommand::Approve(args) => (args, ReviewStatus::Approved),
        ReviewCommand::Reject(args) => (args, ReviewStatus::Rejected),
    };
    let item = reg
        .resolve_review(args.id, decision, who, args.reason.as_deref())
        .await?;
    if json {
        print_json(&item)?;
    } else {
        print(&format!(
            "document {} ({}) {}\n",
            item.id, item.source, item.status
        ))?;
    }
    Ok(RunOutcome::Success)
}

/// A one-line summary of an audit row's details.
fn summarize(details: &Value) -> String {
    if let (Some(before), Some(after)) = (details.get("before"), details.get("after"))
        && after.is_object()
    {
        let show = |d: &Value| match d.get("candidate").and_then(Value::as_str) {
            Some(c) => format!(
                "{} + {c}@{}",
                d["stable"].as_str().unwrap_or("?"),
                d["candidate_fraction"]
            ),
            None => d["stable"].as_str().unwrap_or("-").to_owned(),
        };
        return format!(
            "{} -> {}",
            if before.is_null() {
                "-".to_owned()
            } else {
                show(before)
            },
            show(after)
        );
    }
    if let Some(version) = details.get("version").and_then(Value::as_str) {
        return format!("version {version}");
    }
    if let (Some(label), Some(after)) = (details.get("label"), details.get("after")) {
        return format!(
            "{} -> {}",
            label.as_str().unwrap_or("?"),
            after.as_str().unwrap_or("?")
        );
    }
    details.to_string()
}
