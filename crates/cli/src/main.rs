//! The `promptops` binary: parses arguments and hands each subcommand to a library crate.
//!
//! Exit codes are decided in one place, [`exit_code`]: 0 on success, 1 on a failed check,
//! 2 on usage or input errors (clap uses 2 for usage errors too).

mod guard_cmd;
mod input;
mod models_cmd;
mod output;
mod registry_cmd;
mod serve_cmd;
mod tokens_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: the gateway's request path is dominated by small, short-lived
/// allocations (JSON values, headers), where it is markedly cheaper.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// promptops: run prompts against LLMs in production.
#[derive(Debug, Parser)]
#[command(name = "promptops", version, about, propagate_version = true)]
struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Registry database: `sqlite:PATH` or `postgres://...` (default: an SQLite file under the
    /// user's data directory).
    #[arg(
        long,
        global = true,
        env = "PROMPTOPS_DATABASE_URL",
        value_name = "URL"
    )]
    database_url: Option<String>,
    /// Config file (TOML): providers, routes, keys, limits, cache, guard, database URL.
    #[arg(long, global = true, env = "PROMPTOPS_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the OpenAI-compatible gateway (the embedded model is served as `local/...`).
    Serve(serve_cmd::ServeArgs),
    /// Count tokens and compare costs across models.
    #[command(subcommand)]
    Tokens(tokens_cmd::TokensCommand),
    #[command(flatten)]
    Registry(registry_cmd::RegistryCommand),
    /// Scan, redact and evaluate: injection, PII and secrets.
    #[command(subcommand)]
    Guard(guard_cmd::GuardCommand),
    /// Fetch, verify and list the embedded local models.
    #[command(subcommand)]
    Models(models_cmd::ModelsCommand),
}

/// What a successful run concluded.
enum Outcome {
    /// Everything asked for was done.
    Success,
    /// A check ran and failed (exit code 1). Unused until `eval` and `lint` land.
    #[allow(dead_code)]
    CheckFailed,
}

fn main() -> ExitCode {
    exit_code(run(Cli::parse()))
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Tokens(command) => tokens_cmd::run(command, cli.json),
        Command::Models(command) => models_cmd::run(command, cli.json),
        Command::Serve(args) => {
            serve_cmd::run(args, cli.config.as_deref(), cli.database_url.as_deref())
        }
        Command::Registry(command) => {
            registry_cmd::run(command, cli.database_url.as_deref(), cli.json)
        }
        Command::Guard(command) => guard_cmd::run(command, cli.json),
    }
}

fn exit_code(result: anyhow::Result<Outcome>) -> ExitCode {
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::CheckFailed) => ExitCode::from(1),
        Err(error) if output::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            output::print_error(&error);
            ExitCode::from(2)
        }
    }
}
