//! Official SDK compatibility: the OpenAI Python and Node SDKs, installed from PyPI and npm in
//! the test setup, drive the gateway on loopback (non-stream, stream, stream helpers, tool calls,
//! embeddings, errors), and both drive the embedded local model. A failed install
//! fails the test with the installer's output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use tokio::process::Command;

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk")
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn python_has_openai() -> bool {
    Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .await
        .is_ok_and(|o| o.status.success())
}

/// Installs the `openai` Python package unless it is importable already. Test processes
/// install one at a time (a file lock): pip run twice at once into one environment fails on
/// the half-installed package of the other.
async fn ensure_python_openai() {
    let lock_path = std::env::temp_dir().join("promptops-sdk-tests-pip.lock");
    let lock = std::fs::File::create(&lock_path).unwrap();
    lock.lock().unwrap();
    if !python_has_openai().await {
        let install = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "openai"])
            .output()
            .await
            .expect("python3 must be installed to run the SDK test");
        assert!(
            install.status.success(),
            "installing the `openai` Python package failed:\n{}",
            describe(&install)
        );
        assert!(
            python_has_openai().await,
            "`openai` still not importable after pip install"
        );
    }
    lock.unlock().unwrap();
}

/// Runs `script` against `gw` and asserts it succeeded and printed `ok`.
async fn run_python(script: &str, gw: &common::Gateway, ok: &str) {
    let output = Command::new("python3")
        .arg(sdk_dir().join(script))
        .env("OPENAI_BASE_URL", gw.url("/v1"))
        .env("OPENAI_API_KEY", "sk-test")
        .env_remove("OPENAI_ORG_ID")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "python SDK script {script} failed:\n{}",
        describe(&output)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains(ok));
}

/// The embedded chat model as provider `local`.
fn local_model() -> promptops_local::LocalProvider {
    let cache = promptops_local::ModelCache::from_env().unwrap();
    promptops_local::LocalProvider::from_cache(
        "local",
        &cache,
        promptops_local::ChatOptions::default(),
    )
    .expect("the embedded chat model must be installed (`promptops models pull`)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_works_unchanged() {
    ensure_python_openai().await;
    let gw = common::start("", false).await;
    run_python("openai_python.py", &gw, "python sdk ok").await;
}

/// The embedded model behind the real server, as `local/smollm2-135m`. Serialised with the
/// other embedded-model tests by `.config/nextest.toml` (the name must keep `embedded`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_drives_the_embedded_model() {
    ensure_python_openai().await;
    let gw = common::start_with("", false, |providers| {
        providers.insert(std::sync::Arc::new(local_model()));
    })
    .await;
    run_python("openai_local.py", &gw, "python local ok").await;
}

/// A temporary directory with the `openai` npm package installed and the Node scripts.
async fn node_sdk_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in ["package.json", "openai_node.mjs", "openai_node_local.mjs"] {
        std::fs::copy(sdk_dir().join(file), dir.path().join(file)).unwrap();
    }
    let install = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent"])
        .current_dir(dir.path())
        .output()
        .await
        .expect("npm must be installed to run the SDK test");
    assert!(
        install.status.success(),
        "installing the `openai` npm package failed:\n{}",
        describe(&install)
    );
    dir
}

/// Runs the Node `script` (installed in `dir`) against `gw`; asserts it succeeded and printed `ok`.
async fn run_node(dir: &Path, script: &str, gw: &common::Gateway, ok: &str) {
    let output = Command::new("node")
        .arg(dir.join(script))
        .current_dir(dir)
        .env("OPENAI_BASE_URL", gw.url("/v1"))
        .env("OPENAI_API_KEY", "sk-test")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "node SDK script {script} failed:\n{}",
        describe(&output)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains(ok));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_node_sdk_works_unchanged() {
    let dir = node_sdk_dir().await;
    let gw = common::start("", false).await;
    run_node(dir.path(), "openai_node.mjs", &gw, "node sdk ok").await;
}

/// As the Python test above: serialised with the other embedded-model tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_node_sdk_drives_the_embedded_model() {
    let dir = node_sdk_dir().await;
    let gw = common::start_with("", false, |providers| {
        providers.insert(std::sync::Arc::new(local_model()));
    })
    .await;
    run_node(dir.path(), "openai_node_local.mjs", &gw, "node local ok").await;
}
