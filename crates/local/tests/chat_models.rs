#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The model cache with the real chat model: pulling from a local source verifies SHA-256,
//! and a missing or corrupted model gives an error that names the file and the fix.

use std::io::{Seek, SeekFrom, Write};

use promptops_local::chat::ChatOptions;
use promptops_local::models::{CHAT_MODEL, ModelState, find_model};
use promptops_local::{LocalChat, LocalError, ModelCache, ModelSource};

fn installed_gguf() -> std::path::PathBuf {
    let cache = ModelCache::from_env().unwrap();
    let dir = cache
        .require(CHAT_MODEL)
        .unwrap_or_else(|error| panic!("{error}"));
    dir.join(find_model(CHAT_MODEL).unwrap().files[0].path)
}

/// A private cache holding a copy of the real model, for tests that damage it.
fn private_copy() -> (tempfile::TempDir, ModelCache, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModelCache::at(dir.path());
    let report = cache
        .pull(CHAT_MODEL, &ModelSource::Path(installed_gguf()))
        .unwrap();
    let file = report
        .dir
        .join(find_model(CHAT_MODEL).unwrap().files[0].path);
    (dir, cache, file)
}

#[test]
fn pull_from_a_local_file_verifies_and_installs_it() {
    let (_dir, cache, file) = private_copy();
    assert_eq!(
        cache.status(find_model(CHAT_MODEL).unwrap()).state,
        ModelState::Installed
    );
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 98_362_432);
    cache.verify(CHAT_MODEL).unwrap();
    // A second pull replaces the first atomically and leaves no staging directories.
    cache
        .pull(CHAT_MODEL, &ModelSource::Path(installed_gguf()))
        .unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(cache.root())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from(CHAT_MODEL)]);
}

#[test]
fn a_missing_model_names_the_command_that_fetches_it() {
    let dir = tempfile::tempdir().unwrap();
    let error =
        LocalChat::from_cache(&ModelCache::at(dir.path()), ChatOptions::default()).unwrap_err();
    assert!(matches!(error, LocalError::ModelMissing { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("promptops models pull smollm2-135m"),
        "{message}"
    );
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
}

#[test]
fn a_damaged_header_is_reported_as_a_corrupted_model() {
    let (_dir, cache, file) = private_copy();
    let mut handle = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    handle.write_all(b"JUNK").unwrap();
    drop(handle);
    let error = LocalChat::from_cache(&cache, ChatOptions::default()).unwrap_err();
    assert!(
        matches!(error, LocalError::ModelCorrupted { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("GGUF magic"), "{error}");
}

#[test]
fn a_damaged_tensor_table_is_reported_as_a_corrupted_model() {
    let (_dir, cache, file) = private_copy();
    // Keep the magic, wreck the version and counts that follow it.
    let mut handle = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    handle.seek(SeekFrom::Start(4)).unwrap();
    handle.write_all(&[0xff; 64]).unwrap();
    drop(handle);
    let error = LocalChat::from_cache(&cache, ChatOptions::default()).unwrap_err();
    assert!(
        matches!(error, LocalError::ModelCorrupted { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains(&file.display().to_string()),
        "{error}"
    );
}

#[test]
fn a_truncated_model_is_reported_before_loading() {
    let (_dir, cache, file) = private_copy();
    let handle = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    handle.set_len(1_000_000).unwrap();
    drop(handle);
    let error = LocalChat::from_cache(&cache, ChatOptions::default()).unwrap_err();
    assert!(
        matches!(error, LocalError::ModelCorrupted { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("size is 1000000 bytes"),
        "{error}"
    );
}

#[test]
fn verify_finds_a_flipped_byte_that_keeps_the_size() {
    let (_dir, cache, file) = private_copy();
    let mut handle = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    handle.seek(SeekFrom::Start(50_000_000)).unwrap();
    handle.write_all(&[0x5a]).unwrap();
    drop(handle);
    let error = cache.verify(CHAT_MODEL).unwrap_err();
    assert!(
        matches!(error, LocalError::ModelCorrupted { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("SHA-256"), "{error}");
}

#[test]
fn pulling_from_a_path_that_does_not_exist_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModelCache::at(dir.path());
    let missing = dir.path().join("nowhere.whl");
    let error = cache
        .pull(CHAT_MODEL, &ModelSource::Path(missing.clone()))
        .unwrap_err();
    assert!(matches!(error, LocalError::BadSource { .. }), "{error}");
    assert!(
        error.to_string().contains(&missing.display().to_string()),
        "{error}"
    );
}
