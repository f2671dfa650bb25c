//! Prompt versions: the content that a version freezes, its canonical hash, semver bumps,
//! statuses, and `NAME[@VERSION|:LABEL]` references. Pure: no I/O, no clock.

use std::fmt;
use std::str::FromStr;

use promptops_core::generation::GenerationConfig;
use promptops_core::message::{Message, Role};
use promptops_core::template::{ChatTemplate, PromptTemplate, VariableSpec, Variables};
use semver::Version;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{canonical_json_of, sha256_hex};
use crate::error::{RegistryError, Result};

/// Longest prompt name accepted.
pub const MAX_NAME_LEN: usize = 128;

/// Checks a prompt, label or experiment name: 1 to 128 ASCII letters, digits, `_`, `-` or `.`,
/// starting with a letter or digit (so `@` and `:` stay free for references).
pub fn validate_name(name: &str) -> Result<()> {
    let fail = |reason: &str| {
        Err(RegistryError::InvalidName {
            name: name.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if name.is_empty() {
        return fail("must not be empty");
    }
    if name.len() > MAX_NAME_LEN {
        return fail("longer than 128 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return fail("must start with a letter or digit");
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return fail(&format!(
            "character `{bad}` not allowed (use letters, digits, `_`, `-`, `.`)"
        ));
    }
    Ok(())
}

/// Parses `MAJOR.MINOR.PATCH` (pre-release and build metadata are not used by the registry).
pub fn parse_version(input: &str) -> Result<Version> {
    let trimmed = input.strip_prefix('v').unwrap_or(input);
    let version = Version::parse(trimmed).map_err(|err| RegistryError::InvalidVersion {
        input: input.to_owned(),
        reason: err.to_string(),
    })?;
    if !version.pre.is_empty() || !version.build.is_empty() {
        return Err(RegistryError::InvalidVersion {
            input: input.to_owned(),
            reason: "pre-release and build suffixes are not supported".to_owned(),
        });
    }
    Ok(version)
}

/// One message of a prompt: its role and its template source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageTemplate {
    /// Who says it (`system`, `developer`, `user` or `assistant`).
    pub role: Role,
    /// The minijinja template source.
    pub template: String,
}

/// Everything a version freezes; its canonical JSON is what the content hash covers.
///
/// Author, message and creation time are metadata about the version, not content: adding the
/// same content again is a no-op whoever adds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptContent {
    /// The chat messages, in order (typically a system then a user template).
    pub messages: Vec<MessageTemplate>,
    /// Declared variables with their types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<VariableSpec>,
    /// The model the prompt is written for (`PROVIDER/MODEL` or a route name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Sampling and length settings.
    #[serde(default)]
    pub generation: GenerationConfig,
    /// JSON schema the output must satisfy, when the prompt asks for structured output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// Free-form tags for people and searches; kept sorted and unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl PromptContent {
    /// A content of a user template and an optional system template.
    pub fn system_user(system: Option<String>, user: String) -> PromptContent {
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
        PromptContent {
            messages,
            variables: Vec::new(),
            model: None,
            generation: GenerationConfig::default(),
            output_schema: None,
            tags: Vec::new(),
        }
    }

    /// Checks the content and returns it in normal form (tags sorted and unique), so that the
    /// same prompt always hashes the same.
    pub fn validated(mut self, name: &str) -> Result<PromptContent> {
        let invalid = |reason: String| RegistryError::InvalidContent {
            name: name.to_owned(),
            reason,
        };
        if self.messages.is_empty() {
            return Err(invalid("at least one message template is required".into()));
        }
        for (index, message) in self.messages.iter().enumerate() {
            if !matches!(
                message.role,
                Role::System | Role::Developer | Role::User | Role::Assistant
            ) {
                return Err(invalid(format!(
                    "message {} has role `{}`; use system, developer, user or assistant",
                    index + 1,
                    message.role.as_str()
                )));
            }
        }
        if let Some(schema) = &self.output_schema
            && !schema.is_object()
        {
            return Err(invalid("output_schema must be a JSON object".into()));
        }
        if let Some(model) = &self.model
            && model.trim().is_empty()
        {
            return Err(invalid("model must not be empty when given".into()));
        }
        if let Some(tag) = self.tags.iter().find(|tag| tag.trim().is_empty()) {
            return Err(invalid(format!("tag `{tag}` is empty")));
        }
        self.tags.sort();
        self.tags.dedup();
        self.chat_template(name)?;
        Ok(self)
    }

    /// Compiles the message templates with the declared variables.
    pub fn chat_template(&self, name: &str) -> Result<ChatTemplate> {
        let mut chat = ChatTemplate::new();
        for (index, message) in self.messages.iter().enumerate() {
            let template_name = format!("{name}#{}.{}", index + 1, message.role.as_str());
            let template = PromptTemplate::builder(template_name, message.template.clone())
                .variables(self.variables.iter().cloned())
                .build()
                .map_err(|source| RegistryError::Template {
                    name: name.to_owned(),
                    source,
                })?;
            chat = chat.message(message.role, template);
        }
        Ok(chat)
    }

    /// Renders the messages with `vars`; missing or mistyped variables are an error naming them.
    pub fn render(&self, name: &str, vars: &Variables) -> Result<Vec<Message>> {
        self.chat_template(name)?
            .render(vars)
            .map_err(|source| RegistryError::Template {
                name: name.to_owned(),
                source,
            })
    }

    /// The canonical JSON form the hash covers.
    pub fn canonical_json(&self) -> Result<String> {
        canonical_json_of(self)
            .map_err(|err| RegistryError::CorruptRow(format!("content not serialisable: {err}")))
    }

    /// SHA-256 (hex) of the canonical JSON form.
    pub fn content_hash(&self) -> Result<String> {
        Ok(sha256_hex(self.canonical_json()?.as_bytes()))
    }
}

/// How far along its life a version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionStatus {
    /// Added, not serving traffic.
    Draft,
    /// Serving canary traffic as a deployment's candidate.
    Staging,
    /// A deployment's stable version.
    Production,
    /// Replaced by a newer production version.
    Deprecated,
}

impl VersionStatus {
    /// The lowercase name stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionStatus::Draft => "draft",
            VersionStatus::Staging => "staging",
            VersionStatus::Production => "production",
            VersionStatus::Deprecated => "deprecated",
        }
    }
}

impl fmt::Display for VersionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VersionStatus {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "draft" => Ok(VersionStatus::Draft),
            "staging" => Ok(VersionStatus::Staging),
            "production" => Ok(VersionStatus::Production),
            "deprecated" => Ok(VersionStatus::Deprecated),
            other => Err(RegistryError::CorruptRow(format!(
                "unknown version status `{other}`"
            ))),
        }
    }
}

/// A stored, immutable prompt version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptVersion {
    /// The prompt's name.
    pub name: String,
    /// Its semantic version.
    pub version: Version,
    /// What the version freezes.
    pub content: PromptContent,
    /// SHA-256 of the content's canonical JSON.
    pub content_hash: String,
    /// Where it is in its life.
    pub status: VersionStatus,
    /// Who added it.
    pub author: String,
    /// Why it was added (like a commit message).
    pub message: Option<String>,
    /// When it was added, Unix milliseconds.
    pub created_at_ms: i64,
}

/// Which part of the version number a new version increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bump {
    /// Breaking change: `2.0.0` after `1.4.2`.
    Major,
    /// Compatible addition: `1.5.0` after `1.4.2`.
    Minor,
    /// Fix or wording change: `1.4.3` after `1.4.2`.
    #[default]
    Patch,
}

/// The version after `latest`; the first version of a prompt is `1.0.0` whatever the bump.
pub fn next_version(latest: Option<&Version>, bump: Bump) -> Version {
    match latest {
        None => Version::new(1, 0, 0),
        Some(v) => match bump {
            Bump::Major => Version::new(v.major.saturating_add(1), 0, 0),
            Bump::Minor => Version::new(v.major, v.minor.saturating_add(1), 0),
            Bump::Patch => Version::new(v.major, v.minor, v.patch.saturating_add(1)),
        },
    }
}

/// Which version of a prompt a reference selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The highest version.
    Latest,
    /// An exact version (`NAME@1.2.0`).
    Exact(Version),
    /// The version a label points at (`NAME:production`).
    Label(String),
}

/// A parsed `NAME`, `NAME@VERSION` or `NAME:LABEL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptRef {
    /// The prompt's name.
    pub name: String,
    /// Which of its versions.
    pub selector: Selector,
}

impl FromStr for PromptRef {
    type Err = RegistryError;

    fn from_str(input: &str) -> Result<Self> {
        let invalid = |reason: &str| RegistryError::InvalidReference {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let (name, selector) = if let Some((name, version)) = input.split_once('@') {
            (name, Selector::Exact(parse_version(version)?))
        } else if let Some((name, label)) = input.split_once(':') {
            validate_name(label).map_err(|_| invalid("label must be a valid name"))?;
            (name, Selector::Label(label.to_owned()))
        } else {
            (input, Selector::Latest)
        };
        validate_name(name)?;
        Ok(PromptRef {
            name: name.to_owned(),
            selector,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promptops_core::template::VarType;
    use serde_json::json;

    fn content() -> PromptContent {
        let mut content =
            PromptContent::system_user(Some("You are terse.".into()), "Hi {{ who }}".into());
        content.variables = vec![VariableSpec::new("who", VarType::String)];
        content
    }

    #[test]
    fn hash_ignores_tag_order_but_not_template_changes() {
        let mut a = content();
        a.tags = vec!["b".into(), "a".into(), "a".into()];
        let mut b = content();
        b.tags = vec!["a".into(), "b".into()];
        let a = a.validated("p").unwrap();
        let b = b.validated("p").unwrap();
        assert_eq!(a.content_hash().unwrap(), b.content_hash().unwrap());
        let mut c = b.clone();
        c.messages[1].template = "Hello {{ who }}".into();
        assert_ne!(a.content_hash().unwrap(), c.content_hash().unwrap());
    }

    #[test]
    fn render_checks_variables() {
        let content = content().validated("p").unwrap();
        let vars = json!({"who": "Ann"}).as_object().unwrap().clone();
        let messages = content.render("p", &vars).unwrap();
        assert_eq!(messages.len(), 2);
        let missing = content.render("p", &Variables::new()).unwrap_err();
        // The variable is named by the template error the registry error wraps as its source.
        let chain: Vec<String> =
            std::iter::successors(Some(&missing as &dyn std::error::Error), |e| e.source())
                .map(ToString::to_string)
                .collect();
        assert!(chain.join(": ").contains("who"), "{chain:?}");
        let wrong = json!({"who": 3}).as_object().unwrap().clone();
        assert!(content.render("p", &wrong).is_err());
    }

    #[test]
    fn invalid_content_is_rejected() {
        let mut bad = content();
        bad.messages.clear();
        assert!(bad.validated("p").is_err());
        let mut bad = content();
        bad.output_schema = Some(json!([1]));
        assert!(bad.validated("p").is_err());
        let mut bad = content();
        bad.messages[1].template = "{{ unclosed".into();
        assert!(matches!(
            bad.validated("p"),
            Err(RegistryError::Template { .. })
        ));
    }

    #[test]
    fn bumps() {
        let v = Version::new(1, 4, 2);
        assert_eq!(next_version(None, Bump::Major), Version::new(1, 0, 0));
        assert_eq!(next_version(Some(&v), Bump::Patch), Version::new(1, 4, 3));
        assert_eq!(next_version(Some(&v), Bump::Minor), Version::new(1, 5, 0));
        assert_eq!(next_version(Some(&v), Bump::Major), Version::new(2, 0, 0));
    }

    #[test]
    fn references() {
        let r: PromptRef = "greet@1.2.3".parse().unwrap();
        assert_eq!(r.selector, Selector::Exact(Version::new(1, 2, 3)));
        let r: PromptRef = "greet:production".parse().unwrap();
        assert_eq!(r.selector, Selector::Label("production".into()));
        let r: PromptRef = "greet".parse().unwrap();
        assert_eq!(r.selector, Selector::Latest);
        assert!("greet@1.2".parse::<PromptRef>().is_err());
        assert!("gr eet".parse::<PromptRef>().is_err());
        assert!("".parse::<PromptRef>().is_err());
        assert!("greet@1.0.0-beta".parse::<PromptRef>().is_err());
    }
}
