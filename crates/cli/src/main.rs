//! The `promptops` binary: parses arguments and hands each subcommand to a library crate.

fn main() {}
