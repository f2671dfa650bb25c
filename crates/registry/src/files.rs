//! Prompts as plain files, one TOML or YAML file per prompt, so teams keep prompts in git and
//! `sync` a directory into the registry. Every file is parsed and validated before anything is
//! written. Both formats have the same fields; the extension (`.toml`, `.yaml`, `.yml`) picks the
//! parser.
//!
//! ```toml
//! name = "greet"                 # optional: defaults to the file stem
//! model = "upstream/gpt-4o-mini" # optional
//! tags = ["support"]
//! system = "You are terse."      # shorthand for a system message ...
//! user = "Hello {{ who }}"       # ... and a user message; or a [[messages]] list
//!
//! [[variables]]
//! name = "who"
//! type = "string"
//!
//! [generation]
//! temperature = 0.2
//!
//! [output_schema]                # optional JSON schema, written as a TOML table
//! type = "object"
//! ```
//!
//! The same prompt in YAML:
//!
//! ```yaml
//! name: greet
//! system: You are terse.
//! user: "Hello {{ who }}"
//! variables:
//!   - { name: who, type: string }
//! generation: { temperature: 0.2 }
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use promptops_core::generation::GenerationConfig;
use promptops_core::message::Role;
use promptops_core::template::VariableSpec;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{RegistryError, Result};
use crate::version::{MessageTemplate, PromptContent, validate_name};

/// Keys the `[generation]` table accepts (typos are errors, not silently ignored).
const GENERATION_KEYS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "seed",
    "n",
    "logprobs",
    "top_logprobs",
    "response_format",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPromptFile {
    name: Option<String>,
    model: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    system: Option<String>,
    user: Option<String>,
    messages: Option<Vec<MessageTemplate>>,
    #[serde(default)]
    variables: Vec<VariableSpec>,
    generation: Option<serde_json::Map<String, Value>>,
    output_schema: Option<Value>,
}

/// The two file formats a prompt can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileFormat {
    /// `NAME.toml`.
    #[default]
    Toml,
    /// `NAME.yaml` (`.yml` is read too).
    Yaml,
}

impl FileFormat {
    /// The format a path's extension names, if it names one.
    pub fn of_path(path: &Path) -> Option<FileFormat> {
        match path.extension()?.to_str()? {
            "toml" => Some(FileFormat::Toml),
            "yaml" | "yml" => Some(FileFormat::Yaml),
            _ => None,
        }
    }

    /// The extension written for this format.
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Toml => "toml",
            FileFormat::Yaml => "yaml",
        }
    }
}

impl std::str::FromStr for FileFormat {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<FileFormat, String> {
        match text {
            "toml" => Ok(FileFormat::Toml),
            "yaml" | "yml" => Ok(FileFormat::Yaml),
            other => Err(format!(
                "unknown prompt file format `{other}` (known: toml, yaml)"
            )),
        }
    }
}

#[derive(Debug, Serialize)]
struct PromptFileOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    tags: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<&'a [MessageTemplate]>,
    #[serde(skip_serializing_if = "<[VariableSpec]>::is_empty")]
    variables: &'a [VariableSpec],
    #[serde(skip_serializing_if = "Option::is_none")]
    generation: Option<&'a GenerationConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_schema: Option<&'a Value>,
}

/// A prompt read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptFile {
    /// The file it came from.
    pub path: PathBuf,
    /// The prompt's name.
    pub name: String,
    /// Its validated content.
    pub content: PromptContent,
}

/// Parses one prompt file's text; `path` names the file in errors, gives the default name and,
/// by its extension, the format (TOML unless it ends in `.yaml`/`.yml`).
pub fn parse_prompt_file(path: &Path, text: &str) -> Result<PromptFile> {
    let invalid = |reason: String| RegistryError::InvalidFile {
        path: path.to_owned(),
        reason,
    };
    let raw: RawPromptFile = match FileFormat::of_path(path).unwrap_or_default() {
        FileFormat::Toml => toml::from_str(text).map_err(|err| invalid(err.to_string()))?,
        FileFormat::Yaml => yaml_serde::from_str(text).map_err(|err| invalid(err.to_string()))?,
    };
    let name = match raw.name {
        Some(name) => name,
        None => path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .map(str::to_owned)
            .ok_or_else(|| invalid("no `name` and no usable file name".to_owned()))?,
    };
    validate_name(&name).map_err(|err| invalid(err.to_string()))?;
    let messages = match (raw.messages, raw.system, raw.user) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(invalid(
                "use either `system`/`user` or a `[[messages]]` list, not both".to_owned(),
            ));
        }
        (Some(messages), None, None) => messages,
        (None, system, Some(user)) => {
            let mut messages = Vec::new();
            if let Some(system) = system {
                messages.push(MessageTemplate {
                    role: Role::System,
                    template: system,
                });
            }
            messages.push(MessageTemplate {
                role: Role::User,
                template: user,
            });
            messages
        }
        (None, _, None) => {
            return Err(invalid(
                "missing the prompt: give `user` (and optionally `system`) or `[[messages]]`"
                    .to_owned(),
            ));
        }
    };
    let generation = match raw.generation {
        None => GenerationConfig::default(),
        Some(table) => {
            if let Some(key) = table
                .keys()
                .find(|k| !GENERATION_KEYS.contains(&k.as_str()))
            {
                return Err(invalid(format!(
                    "unknown key `generation.{key}` (known: {})",
                    GENERATION_KEYS.join(", ")
                )));
            }
            serde_json::from_value(Value::Object(table))
                .map_err(|err| invalid(format!("generation: {err}")))?
        }
    };
    let content = PromptContent {
        messages,
        variables: raw.variables,
        model: raw.model,
        generation,
        output_schema: raw.output_schema,
        tags: raw.tags,
    }
    .validated(&name)
    .map_err(|err| invalid(err.to_string()))?;
    Ok(PromptFile {
        path: path.to_owned(),
        name,
        content,
    })
}

/// Reads every `*.toml`, `*.yaml` and `*.yml` file of `dir` (sorted by file name); any bad file
/// or duplicate name fails the whole read.
pub fn read_prompt_dir(dir: &Path) -> Result<Vec<PromptFile>> {
    let io = |source| RegistryError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(io)?;
    paths.retain(|p| FileFormat::of_path(p).is_some() && p.is_file());
    paths.sort();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut files = Vec::new();
    for path in paths {
        let text = fs::read_to_string(&path).map_err(|source| RegistryError::Io {
            path: path.clone(),
            source,
        })?;
        let file = parse_prompt_file(&path, &text)?;
        if let Some(first) = seen.insert(file.name.clone(), path.clone()) {
            return Err(RegistryError::InvalidFile {
                path,
                reason: format!(
                    "prompt `{}` is already defined in {}",
                    file.name,
                    first.display()
                ),
            });
        }
        files.push(file);
    }
    Ok(files)
}

/// The text of a prompt file (system/user shorthand when the messages have that shape).
pub fn render_prompt_file(
    name: &str,
    content: &PromptContent,
    format: FileFormat,
) -> Result<String> {
    let (system, user, messages) = match content.messages.as_slice() {
        [only] if only.role == Role::User => (None, Some(only.template.as_str()), None),
        [first, second] if first.role == Role::System && second.role == Role::User => (
            Some(first.template.as_str()),
            Some(second.template.as_str()),
            None,
        ),
        other => (None, None, Some(other)),
    };
    let generation =
        (content.generation != GenerationConfig::default()).then_some(&content.generation);
    let out = PromptFileOut {
        name,
        model: content.model.as_deref(),
        tags: &content.tags,
        system,
        user,
        messages,
        variables: &content.variables,
        generation,
        output_schema: content.output_schema.as_ref(),
    };
    let written = match format {
        FileFormat::Toml => toml::to_string_pretty(&out).map_err(|err| err.to_string()),
        FileFormat::Yaml => yaml_serde::to_string(&out).map_err(|err| err.to_string()),
    };
    written.map_err(|reason| RegistryError::InvalidContent {
        name: name.to_owned(),
        reason: format!("cannot be written as {format:?}: {reason}"),
    })
}

/// Writes `DIR/NAME.toml` or `DIR/NAME.yaml`.
pub fn write_prompt_file(
    dir: &Path,
    name: &str,
    content: &PromptContent,
    format: FileFormat,
) -> Result<PathBuf> {
    let text = render_prompt_file(name, content, format)?;
    let path = dir.join(format!("{name}.{}", format.extension()));
    fs::write(&path, text).map_err(|source| RegistryError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
name = "greet"
model = "upstream/gpt-4o-mini"
tags = ["support", "en"]
system = "You are terse."
user = "Hello {{ who }}"

[[variables]]
name = "who"
type = "string"

[generation]
temperature = 0.2
max_tokens = 100

[output_schema]
type = "object"
"#;

    #[test]
    fn parses_and_round_trips() {
        let file = parse_prompt_file(Path::new("x/greet.toml"), SAMPLE).unwrap();
        assert_eq!(file.name, "greet");
        assert_eq!(file.content.messages.len(), 2);
        assert_eq!(file.content.tags, ["en", "support"]);
        for (format, path) in [
            (FileFormat::Toml, "greet.toml"),
            (FileFormat::Yaml, "greet.yaml"),
        ] {
            let text = render_prompt_file("greet", &file.content, format).unwrap();
            let again = parse_prompt_file(Path::new(path), &text).unwrap();
            assert_eq!(again.content, file.content, "{format:?}:\n{text}");
            assert_eq!(
                again.content.content_hash().unwrap(),
                file.content.content_hash().unwrap()
            );
        }
    }

    #[test]
    fn yaml_and_toml_of_the_same_prompt_are_the_same_version() {
        let yaml = r#"
name: greet
model: upstream/gpt-4o-mini
tags: [support, en]
system: You are terse.
user: "Hello {{ who }}"
variables:
  - name: who
    type: string
generation:
  temperature: 0.2
  max_tokens: 100
output_schema:
  type: object
"#;
        let from_toml = parse_prompt_file(Path::new("greet.toml"), SAMPLE).unwrap();
        let from_yaml = parse_prompt_file(Path::new("greet.yml"), yaml).unwrap();
        assert_eq!(from_yaml.content, from_toml.content);
    }

    #[test]
    fn yaml_errors_name_the_file_and_problem() {
        let cases = [
            ("user: [1, 2]", "invalid type"),
            ("system: only", "missing the prompt"),
            (
                "user: x\ngeneration:\n  temprature: 1",
                "generation.temprature",
            ),
            ("user: x\ngeneration:\n  temperature: 9", "temperature"),
            ("user: x\nbogus: 1", "bogus"),
            ("user: x\n  - : :", "greet.yaml"),
        ];
        for (text, needle) in cases {
            let err = parse_prompt_file(Path::new("dir/greet.yaml"), text).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with("dir/greet.yaml"), "{msg}");
            assert!(msg.contains(needle), "{text:?}: {msg}");
        }
    }

    #[test]
    fn errors_name_the_file_and_problem() {
        let cases = [
            ("user = 3", "invalid type"),
            ("system = \"only\"", "missing the prompt"),
            (
                "user = \"x\"\n[generation]\ntemprature = 1",
                "generation.temprature",
            ),
            ("user = \"x\"\n[generation]\ntemperature = 9", "temperature"),
            ("user = \"x\"\nbogus = 1", "bogus"),
            ("user = \"{{ x\"", "greet"),
            ("name = \"a b\"\nuser = \"x\"", "invalid prompt name"),
        ];
        for (text, needle) in cases {
            let err = parse_prompt_file(Path::new("dir/greet.toml"), text).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with("dir/greet.toml"), "{msg}");
            assert!(msg.contains(needle), "{text:?}: {msg}");
        }
    }
}
