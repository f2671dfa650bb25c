//! The `[[providers]]` and `[[routes]]` sections of the promptops TOML config: raw structs that
//! reject unknown keys, validated into [`LlmConfig`] with errors naming the key at fault.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::anthropic::ANTHROPIC_BASE_URL;
use crate::error::LlmError;
use crate::ollama::OLLAMA_BASE_URL;
use crate::openai::OPENAI_BASE_URL;
use crate::provider::ProviderKind;

/// The provider name of the embedded local model, usable in targets without declaring it.
pub const LOCAL_PROVIDER: &str = "local";
/// Per-attempt timeout of a route that sets no `timeout_ms`.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Retries per target of a route that sets no `retries`.
pub const DEFAULT_RETRIES: u32 = 1;
/// Most retries per target a route may ask for (bounded: no retry storms).
pub const MAX_RETRIES: u32 = 10;
/// Longest per-attempt timeout or deadline accepted (one hour).
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// One `[[providers]]` entry as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// The `PROVIDER` of `PROVIDER/MODEL`.
    pub name: String,
    /// `openai`, `anthropic`, `ollama` or `local`.
    pub kind: ProviderKind,
    /// API root; defaults to the vendor's public endpoint (Ollama: `http://127.0.0.1:11434`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Environment variable holding the API key; an unset variable means no key.
    #[serde(default)]
    pub api_key_env: Option<String>,
}

/// One `[[routes]]` entry as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// The name clients send as `model`.
    pub name: String,
    /// `PROVIDER/MODEL` targets in priority order (first is tried first), or tables
    /// `{ model, order, weight }` for deployments balanced by weight.
    pub targets: Vec<RawTarget>,
    /// Per-attempt timeout in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Retries per target on retryable errors.
    #[serde(default)]
    pub retries: Option<u32>,
    /// Overall deadline in milliseconds across all attempts; defaults to
    /// `timeout_ms × (retries + 1) × targets`.
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// Cache this route's answers even when sampling is not deterministic (a route whose
    /// answers may be reused, e.g. classification with a default temperature).
    #[serde(default)]
    pub cache: Option<bool>,
}

/// One route target as written: `"PROVIDER/MODEL"`, or a table that puts several deployments of
/// one model in a load-balanced group:
///
/// ```toml
/// targets = [
///   { model = "azure-east/gpt-4o-mini", order = 0, weight = 3 },
///   { model = "azure-west/gpt-4o-mini", order = 0, weight = 1 },
///   "openai/gpt-4o-mini",   # order 2 (its position): the fallback when both fail
/// ]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "toml::Value")]
pub enum RawTarget {
    /// `PROVIDER/MODEL`; its order is its position in the list.
    Plain(String),
    /// A deployment with an explicit order and weight.
    Weighted(RawWeightedTarget),
}

impl TryFrom<toml::Value> for RawTarget {
    type Error = String;

    fn try_from(value: toml::Value) -> Result<RawTarget, String> {
        match value {
            toml::Value::String(text) => Ok(RawTarget::Plain(text)),
            toml::Value::Table(table) => table
                .try_into()
                .map(RawTarget::Weighted)
                .map_err(|error: toml::de::Error| error.message().to_owned()),
            other => Err(format!(
                "expected \"PROVIDER/MODEL\" or a {{ model, order, weight }} table, found {}",
                other.type_str()
            )),
        }
    }
}

/// A `{ model, order, weight }` route target.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeightedTarget {
    /// `PROVIDER/MODEL`.
    pub model: String,
    /// Lower orders are tried first; targets sharing an order are balanced by weight. Defaults
    /// to the target's position in the list.
    pub order: Option<u32>,
    /// Share of the group's traffic (relative; default 1, at least 1).
    pub weight: Option<u32>,
}

/// A validated route target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTarget {
    /// The model and its provider.
    pub target: Target,
    /// Lower orders are tried first; equal orders form a weighted load-balanced group.
    pub order: u32,
    /// Relative share of its group's traffic (at least 1).
    pub weight: u32,
}

/// The sections of the config file this crate reads; other sections are other crates' business.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct RawLlmConfig {
    /// `[[providers]]`.
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    /// `[[routes]]`.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

/// A validated provider entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    /// The provider name.
    pub name: String,
    /// Its kind.
    pub kind: ProviderKind,
    /// Its API root (defaults filled in); `None` for kind `local`.
    pub base_url: Option<String>,
    /// The environment variable holding its key, if any.
    pub api_key_env: Option<String>,
}

/// `PROVIDER/MODEL`: a model at a provider.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The provider name.
    pub provider: String,
    /// The model name at that provider (may itself contain `/`).
    pub model: String,
}

impl Target {
    /// Splits `PROVIDER/MODEL` at the first `/`; `None` when either side is empty.
    pub fn parse(text: &str) -> Option<Target> {
        let (provider, model) = text.split_once('/')?;
        (!provider.trim().is_empty() && !model.trim().is_empty()).then(|| Target {
            provider: provider.to_owned(),
            model: model.to_owned(),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider, self.model)
    }
}

/// A validated route: an ordered fallback list with its time limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// The route name.
    pub name: String,
    /// Targets in the order written (attempt order comes from each one's `order`).
    pub targets: Vec<RouteTarget>,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Retries per target.
    pub retries: u32,
    /// Overall deadline across all attempts.
    pub deadline: Duration,
    /// `cache = true`: the gateway's exact cache keeps this route's answers even for
    /// non-deterministic requests.
    pub cache: bool,
}

/// The validated providers and routes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LlmConfig {
    /// Declared providers, plus the implicit `local` when a target uses it undeclared.
    pub providers: Vec<ProviderConfig>,
    /// Routes.
    pub routes: Vec<RouteConfig>,
}

impl LlmConfig {
    /// Reads the `providers` and `routes` sections of a whole promptops config file (other
    /// top-level sections are ignored here) and validates them.
    pub fn from_toml(text: &str) -> Result<LlmConfig, LlmError> {
        let table: toml::Table = toml::from_str(text).map_err(|error| LlmError::Config {
            key: "(file)".to_owned(),
            reason: error.to_string().trim().to_owned(),
        })?;
        let mut sections = toml::Table::new();
        for key in ["providers", "routes"] {
            if let Some(value) = table.get(key) {
                sections.insert(key.to_owned(), value.clone());
            }
        }
        let raw: RawLlmConfig = serde_path_to_error::deserialize(toml::Value::Table(sections))
            .map_err(|error| LlmError::Config {
                key: error.path().to_string(),
                reason: first_line(&error.into_inner().to_string()),
            })?;
        LlmConfig::validate(raw)
    }

    /// The configuration used when there is no config file: only the embedded local model.
    pub fn local_only() -> LlmConfig {
        LlmConfig {
            providers: vec![local_provider()],
            routes: Vec::new(),
        }
    }

    /// Checks a raw config: names, kinds, URLs, key variables, targets and time limits.
    pub fn validate(raw: RawLlmConfig) -> Result<LlmConfig, LlmError> {
        let mut names = BTreeSet::new();
        let mut providers = Vec::with_capacity(raw.providers.len() + 1);
        for (index, provider) in raw.providers.into_iter().enumerate() {
            let key = |field: &str| format!("providers[{index}].{field}");
            check_name(&provider.name, &key("name"))?;
            if !names.insert(provider.name.clone()) {
                return Err(config_error(
                    key("name"),
                    format!("provider `{}` is declared twice", provider.name),
                ));
            }
            let base_url = match (provider.kind, provider.base_url) {
                (ProviderKind::Local, Some(_)) => {
                    return Err(config_error(
                        key("base_url"),
                        "a `local` provider runs in-process and takes no base_url",
                    ));
                }
                (ProviderKind::Local, None) => None,
                (_, Some(url)) => Some(check_url(&url, &key("base_url"))?),
                (kind, None) => Some(default_base_url(kind).to_owned()),
            };
            if let Some(env) = &provider.api_key_env {
                check_env_name(env, &key("api_key_env"))?;
                if provider.kind == ProviderKind::Local {
                    return Err(config_error(
                        key("api_key_env"),
                        "a `local` provider needs no API key",
                    ));
                }
            }
            providers.push(ProviderConfig {
                name: provider.name,
                kind: provider.kind,
                base_url,
                api_key_env: provider.api_key_env,
            });
        }
        let mut route_names = BTreeSet::new();
        let mut routes = Vec::with_capacity(raw.routes.len());
        let mut uses_implicit_local = false;
        for (index, route) in raw.routes.into_iter().enumerate() {
            let key = |field: &str| format!("routes[{index}].{field}");
            check_name(&route.name, &key("name"))?;
            if !route_names.insert(route.name.clone()) {
                return Err(config_error(
                    key("name"),
                    format!("route `{}` is declared twice", route.name),
                ));
            }
            if route.targets.is_empty() {
                return Err(config_error(
                    key("targets"),
                    "a route needs at least one target",
                ));
            }
            let mut targets = Vec::with_capacity(route.targets.len());
            for (position, raw) in route.targets.iter().enumerate() {
                let target_key = format!("routes[{index}].targets[{position}]");
                let position = u32::try_from(position).unwrap_or(u32::MAX);
                let (text, order, weight) = match raw {
                    RawTarget::Plain(text) => (text, position, 1),
                    RawTarget::Weighted(w) => {
                        (&w.model, w.order.unwrap_or(position), w.weight.unwrap_or(1))
                    }
                };
                if weight == 0 {
                    return Err(config_error(
                        format!("{target_key}.weight"),
                        "a weight must be at least 1 (remove the target to send it nothing)",
                    ));
                }
                let target = Target::parse(text).ok_or_else(|| {
                    config_error(
                        target_key.clone(),
                        format!("`{text}` is not PROVIDER/MODEL (e.g. `upstream/gpt-4o-mini`)"),
                    )
                })?;
                if !names.contains(&target.provider) {
                    if target.provider == LOCAL_PROVIDER {
                        uses_implicit_local = true;
                    } else {
                        let known: Vec<&str> = names.iter().map(String::as_str).collect();
                        return Err(config_error(
                            target_key,
                            format!(
                                "unknown provider `{}` (declared: {}; `local` is always available)",
                                target.provider,
                                if known.is_empty() {
                                    "none".to_owned()
                                } else {
                                    known.join(", ")
                                }
                            ),
                        ));
                    }
                }
                targets.push(RouteTarget {
                    target,
                    order,
                    weight,
                });
            }
            let timeout_ms = route.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
            check_millis(timeout_ms, &key("timeout_ms"))?;
            let retries = route.retries.unwrap_or(DEFAULT_RETRIES);
            if retries > MAX_RETRIES {
                return Err(config_error(
                    key("retries"),
                    format!("{retries} retries per target is more than the {MAX_RETRIES} allowed"),
                ));
            }
            let deadline_ms = match route.deadline_ms {
                Some(deadline) => {
                    check_millis(deadline, &key("deadline_ms"))?;
                    deadline
                }
                None => timeout_ms
                    .saturating_mul(u64::from(retries) + 1)
                    .saturating_mul(targets.len() as u64)
                    .min(MAX_TIMEOUT_MS),
            };
            routes.push(RouteConfig {
                name: route.name,
                targets,
                timeout: Duration::from_millis(timeout_ms),
                retries,
                deadline: Duration::from_millis(deadline_ms),
                cache: route.cache.unwrap_or(false),
            });
        }
        if uses_implicit_local {
            providers.push(local_provider());
        }
        Ok(LlmConfig { providers, routes })
    }

    /// The route named `name`.
    pub fn route(&self, name: &str) -> Option<&RouteConfig> {
        self.routes.iter().find(|route| route.name == name)
    }
}

/// The first line of a deserialiser message (the toml crate appends `in `path`` lines that
/// repeat what the key path already says).
fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_owned()
}

fn local_provider() -> ProviderConfig {
    ProviderConfig {
        name: LOCAL_PROVIDER.to_owned(),
        kind: ProviderKind::Local,
        base_url: None,
        api_key_env: None,
    }
}

/// The public endpoint of a remote kind.
pub fn default_base_url(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::OpenAi => OPENAI_BASE_URL,
        ProviderKind::Anthropic => ANTHROPIC_BASE_URL,
        ProviderKind::Ollama => OLLAMA_BASE_URL,
        ProviderKind::Local => "",
    }
}

fn config_error(key: impl Into<String>, reason: impl Into<String>) -> LlmError {
    LlmError::Config {
        key: key.into(),
        reason: reason.into(),
    }
}

fn check_name(name: &str, key: &str) -> Result<(), LlmError> {
    if name.trim().is_empty() {
        return Err(config_error(key, "must not be empty"));
    }
    if name.contains('/') || name.chars().any(char::is_whitespace) {
        return Err(config_error(
            key,
            format!("`{name}` must not contain `/` or whitespace (it is used in PROVIDER/MODEL)"),
        ));
    }
    Ok(())
}

fn check_url(url: &str, key: &str) -> Result<String, LlmError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|error| config_error(key, format!("`{url}` is not a URL: {error}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(config_error(
            key,
            format!("`{url}` must be an http:// or https:// URL with a host"),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(config_error(
            key,
            "credentials do not belong in base_url; use api_key_env",
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn check_env_name(name: &str, key: &str) -> Result<(), LlmError> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(config_error(
            key,
            format!("`{name}` is not an environment variable name (letters, digits, `_`)"),
        ))
    }
}

fn check_millis(value: u64, key: &str) -> Result<(), LlmError> {
    if value == 0 || value > MAX_TIMEOUT_MS {
        return Err(config_error(
            key,
            format!("{value} ms is outside 1..={MAX_TIMEOUT_MS}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The design document's minimal file.
    const DESIGN_EXAMPLE: &str = r#"
[[providers]]
name = "upstream"
kind = "openai"
base_url = "http://127.0.0.1:18080/v1"
api_key_env = "UPSTREAM_API_KEY"

[[routes]]
name = "fast"
targets = ["upstream/gpt-4o-mini", "local/smollm2-135m"]
timeout_ms = 20000
retries = 1

[server]
listen = "127.0.0.1:8080"
"#;

    fn check_error(text: &str, expected: &str) {
        match LlmConfig::from_toml(text) {
            Ok(config) => panic!("expected `{expected}`, got {config:?}"),
            Err(error) => assert_eq!(error.to_string(), expected),
        }
    }

    #[test]
    fn weighted_targets_form_groups_by_order() {
        let config = LlmConfig::from_toml(
            r#"
[[routes]]
name = "r"
targets = [
  { model = "local/a", order = 0, weight = 3 },
  { model = "local/b", order = 0 },
  "local/c",
]
"#,
        )
        .unwrap();
        let targets = &config.route("r").unwrap().targets;
        let shape: Vec<(String, u32, u32)> = targets
            .iter()
            .map(|t| (t.target.to_string(), t.order, t.weight))
            .collect();
        assert_eq!(
            shape,
            [
                ("local/a".to_owned(), 0, 3),
                ("local/b".to_owned(), 0, 1),
                ("local/c".to_owned(), 2, 1)
            ]
        );
    }

    #[test]
    fn reads_the_design_example() {
        let config = LlmConfig::from_toml(DESIGN_EXAMPLE).unwrap();
        assert_eq!(config.providers.len(), 2);
        assert_eq!(config.providers[1].kind, ProviderKind::Local);
        let route = config.route("fast").unwrap();
        assert_eq!(route.targets[0].target.to_string(), "upstream/gpt-4o-mini");
        assert_eq!(route.timeout, Duration::from_millis(20_000));
        assert_eq!(route.retries, 1);
        assert_eq!(route.deadline, Duration::from_millis(80_000));
        assert!(!route.cache, "caching sampled answers is opt-in");
    }

    #[test]
    fn a_route_may_opt_into_caching() {
        let config = LlmConfig::from_toml(
            "[[routes]]\nname = \"r\"\ntargets = [\"local/m\"]\ncache = true\n",
        )
        .unwrap();
        assert!(config.route("r").unwrap().cache);
        check_error(
            "[[routes]]\nname = \"r\"\ntargets = [\"local/m\"]\ncache = \"yes\"\n",
            "config: routes[0].cache: invalid type: string \"yes\", expected a boolean",
        );
        check_error(
            "[[routes]]\nname = \"r\"\ntargets = [\"local/m\"]\ncached = true\n",
            "config: routes[0].cached: unknown field `cached`, expected one of `name`, `targets`, `timeout_ms`, `retries`, `deadline_ms`, `cache`",
        );
    }

    #[test]
    fn errors_point_at_the_key() {
        check_error(
            "[[providers]]\nname = \"x\"\nkind = \"gemini\"\n",
            "config: providers[0].kind: unknown variant `gemini`, expected one of `openai`, `anthropic`, `ollama`, `local`",
        );
        check_error(
            "[[providers]]\nname = \"x\"\nkind = \"openai\"\napi_key = \"sk\"\n",
            "config: providers[0].api_key: unknown field `api_key`, expected one of `name`, `kind`, `base_url`, `api_key_env`",
        );
        check_error(
            "[[providers]]\nname = \"x\"\nkind = \"openai\"\nbase_url = \"ftp://h\"\n",
            "config: providers[0].base_url: `ftp://h` must be an http:// or https:// URL with a host",
        );
        check_error(
            "[[providers]]\nname = \"x\"\nkind = \"openai\"\napi_key_env = \"MY-KEY\"\n",
            "config: providers[0].api_key_env: `MY-KEY` is not an environment variable name (letters, digits, `_`)",
        );
        check_error(
            "[[routes]]\nname = \"r\"\ntargets = [\"nowhere/m\"]\n",
            "config: routes[0].targets[0]: unknown provider `nowhere` (declared: none; `local` is always available)",
        );
        check_error(
            "[[routes]]\nname = \"r\"\ntargets = [{ model = \"local/m\", wieght = 2 }]\n",
            "config: routes[0].targets[0]: unknown field `wieght`, expected one of `model`, `order`, `weight`",
        );
        check_error(
            "[[routes]]\nname = \"r\"\ntargets = [{ model = \"local/m\", weight = 0 }]\n",
            "config: routes[0].targets[0].weight: a weight must be at least 1 (remove the target to send it nothing)",
        );
        check_error(
            "[[routes]]\nname = \"r\"\ntargets = [3]\n",
            "config: routes[0].targets[0]: expected \"PROVIDER/MODEL\" or a { model, order, weight } table, found integer",
        );
        check_error(
            "[[routes]]\nname = \"r\"\ntargets = [\"gpt-4o\"]\n",
            "config: routes[0].targets[0]: `gpt-4o` is not PROVIDER/MODEL (e.g. `upstream/gpt-4o-mini`)",
        );
        check_error(
            "[[routes]]\nname = \"r\"\ntargets = [\"local/m\"]\nretries = 50\n",
            "config: routes[0].retries: 50 retries per target is more than the 10 allowed",
        );
        check_error(
            "[[routes]]\nname = \"r\"\ntargets = [\"local/m\"]\ntimeout_ms = 0\n",
            "config: routes[0].timeout_ms: 0 ms is outside 1..=3600000",
        );
        check_error(
            "[[providers]]\nname = \"a\"\nkind = \"ollama\"\n[[providers]]\nname = \"a\"\nkind = \"openai\"\n",
            "config: providers[1].name: provider `a` is declared twice",
        );
        check_error(
            "[[providers]]\nname = \"l\"\nkind = \"local\"\nbase_url = \"http://x\"\n",
            "config: providers[0].base_url: a `local` provider runs in-process and takes no base_url",
        );
    }

    #[test]
    fn fills_vendor_defaults() {
        let config = LlmConfig::from_toml(
            "[[providers]]\nname = \"a\"\nkind = \"anthropic\"\n[[providers]]\nname = \"o\"\nkind = \"ollama\"\n",
        )
        .unwrap();
        assert_eq!(
            config.providers[0].base_url.as_deref(),
            Some(ANTHROPIC_BASE_URL)
        );
        assert_eq!(
            config.providers[1].base_url.as_deref(),
            Some(OLLAMA_BASE_URL)
        );
        assert_eq!(LlmConfig::from_toml("").unwrap(), LlmConfig::default());
    }
}
