#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! `promptops models list` and `promptops models pull`, run as the real binary against a
//! private models directory.

use std::process::Command;

const GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn promptops(models_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_promptops"))
        .env("PROMPTOPS_MODELS_DIR", models_dir)
        .args(args)
        .output()
        .unwrap()
}

/// The chat model in the shared cache (scripts/test.sh pulls it before the tests run).
fn installed_gguf() -> std::path::PathBuf {
    let root = std::env::var_os("PROMPTOPS_MODELS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap())
                .join(".cache/promptops/models")
        });
    let path = root.join("smollm2-135m").join(GGUF);
    assert!(
        path.exists(),
        "{} missing: run `promptops models pull smollm2-135m`",
        path.display()
    );
    path
}

#[test]
fn list_shows_missing_models_with_the_command_to_fetch_them() {
    let dir = tempfile::tempdir().unwrap();
    let output = promptops(dir.path(), &["models", "list"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("smollm2-135m"), "{stdout}");
    assert!(stdout.contains("all-minilm-l6-v2"), "{stdout}");
    assert!(stdout.contains("missing"), "{stdout}");
    assert!(
        stdout.contains("promptops models pull smollm2-135m"),
        "{stdout}"
    );
}

#[test]
fn pull_from_a_local_file_installs_and_list_then_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let source = installed_gguf();
    let output = promptops(
        dir.path(),
        &[
            "models",
            "pull",
            "smollm2-135m",
            "--from",
            source.to_str().unwrap(),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("SHA-256 verified"), "{stdout}");
    assert!(dir.path().join("smollm2-135m").join(GGUF).exists());

    let output = promptops(dir.path(), &["--json", "models", "list"]);
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let chat = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["name"] == "smollm2-135m")
        .unwrap();
    assert_eq!(chat["state"], "installed");
    assert_eq!(chat["size"], 98_362_432);

    let output = promptops(dir.path(), &["models", "verify", "smollm2-135m"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn pull_of_an_unknown_model_fails_listing_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let output = promptops(dir.path(), &["models", "pull", "gpt-9"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("unknown local model `gpt-9`"), "{stderr}");
    assert!(stderr.contains("smollm2-135m"), "{stderr}");
}

#[test]
fn pull_of_a_file_that_does_not_match_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake.gguf");
    std::fs::write(&fake, b"GGUF but not the model").unwrap();
    let cache = dir.path().join("cache");
    let output = promptops(
        &cache,
        &[
            "models",
            "pull",
            "smollm2-135m",
            "--from",
            fake.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("does not match the registry"), "{stderr}");
    assert!(!cache.join("smollm2-135m").exists());
}
