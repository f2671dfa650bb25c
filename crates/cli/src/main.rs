//! The `promptops` binary: parses arguments and hands each subcommand to a library crate.
//!
//! Exit codes are decided in one place, [`exit_code`]: 0 on success, 1 on a failed check,
//! 2 on usage or input errors (clap uses 2 for usage errors too).

mod input;
mod output;
mod tokens_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// promptops: run prompts against LLMs in production.
#[derive(Debug, Parser)]
#[command(name = "promptops", version, about, propagate_version = true)]
struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Count tokens and compare costs across models.
    #[command(subcommand)]
    Tokens(tokens_cmd::TokensCommand),
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
