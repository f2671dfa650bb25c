//! End-to-end tests of the `promptops` binary: real process, real files in a temp dir.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn promptops(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_promptops"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        // A process that rejects its arguments exits without reading stdin: the pipe is then
        // closed, which is not the test's concern.
        if let Err(error) = input.write_all(bytes) {
            assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe, "{error}");
        }
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout_json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn count_reads_stdin_and_reports_exact_o200k_by_default() {
    let output = promptops(&["tokens", "count", "--json"], Some(b"Hello, world!"));
    let report = stdout_json(&output);
    assert_eq!(report["tokenizer"], "o200k_base");
    assert_eq!(report["exactness"], "exact");
    assert_eq!(report["total"]["tokens"], 4);
    assert_eq!(report["total"]["chars"], 13);
}

#[test]
fn count_of_several_files_adds_up_and_matches_each_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.txt");
    let b = dir.path().join("b.txt");
    std::fs::write(
        &a,
        "The quick brown fox jumps over the lazy dog\n".repeat(5000),
    )
    .unwrap();
    std::fs::write(&b, "敏捷的棕色狐狸跳过懒狗 🦊\n").unwrap();
    let report = stdout_json(&promptops(
        &[
            "tokens",
            "count",
            "--encoding",
            "cl100k_base",
            "--json",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
        None,
    ));
    let files = report["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    // "The quick brown fox jumps over the lazy dog\n" is 10 cl100k tokens; the newline merges
    // with nothing across lines, so 5000 copies are exactly 50000 tokens.
    assert_eq!(files[0]["tokens"], 50_000);
    let sum = files[0]["tokens"].as_u64().unwrap() + files[1]["tokens"].as_u64().unwrap();
    assert_eq!(report["total"]["tokens"].as_u64().unwrap(), sum);
}

#[test]
fn table_output_names_the_tokenizer() {
    let output = promptops(&["tokens", "count", "--model", "gpt-4"], Some(b"hi there"));
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("tokenizer: cl100k_base (exact)"), "{text}");
}

#[test]
fn unknown_encoding_is_a_usage_error_listing_known_ones() {
    let output = promptops(&["tokens", "count", "--encoding", "p50k"], Some(b"x"));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("p50k") && stderr.contains("o200k_base"),
        "{stderr}"
    );
}

#[test]
fn invalid_utf8_names_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.txt");
    std::fs::write(&path, b"good\xfftext").unwrap();
    let output = promptops(&["tokens", "count", path.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("bad.txt: invalid UTF-8 at byte 4"),
        "{stderr}"
    );
}

#[test]
fn missing_file_is_an_input_error() {
    let output = promptops(&["tokens", "count", "/nonexistent/x.txt"], None);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("cannot open /nonexistent/x.txt"),
        "{stderr}"
    );
}
