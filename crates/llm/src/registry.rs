//! The providers of a config, built once and shared: remote kinds built here, `local` through a
//! caller-supplied factory (crates/local depends on this crate, not the other way round).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::anthropic::AnthropicProvider;
use crate::config::{LlmConfig, ProviderConfig, Target};
use crate::error::LlmError;
use crate::ollama::OllamaProvider;
use crate::openai::{OpenAiProvider, RemoteSettings};
use crate::provider::{Provider, ProviderKind};

/// Builds the provider of a `kind = "local"` entry (supplied by whoever links crates/local).
pub type LocalFactory<'a> = &'a dyn Fn(&ProviderConfig) -> Result<Arc<dyn Provider>, LlmError>;

/// Reads an environment variable (injectable so tests need not touch the process environment).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Providers by name.
#[derive(Clone, Default)]
pub struct ProviderSet {
    providers: BTreeMap<String, Arc<dyn Provider>>,
}

impl std::fmt::Debug for ProviderSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.providers.keys()).finish()
    }
}

impl ProviderSet {
    /// An empty set.
    pub fn new() -> Self {
        ProviderSet::default()
    }

    /// Builds every provider of `config`: keys read through `env` (an unset variable means no
    /// key, except for a vendor's public endpoint, which always needs one), `local` entries
    /// through `local` (an error naming the entry when no factory is given).
    pub fn from_config(
        config: &LlmConfig,
        env: EnvLookup<'_>,
        local: Option<LocalFactory<'_>>,
    ) -> Result<ProviderSet, LlmError> {
        let mut set = ProviderSet::new();
        for (index, entry) in config.providers.iter().enumerate() {
            let provider = match entry.kind {
                ProviderKind::Local => match local {
                    Some(factory) => factory(entry)?,
                    None => {
                        return Err(LlmError::Config {
                            key: format!("providers[{index}] ({})", entry.name),
                            reason: "kind `local` needs the embedded model, which this build \
                                     does not provide"
                                .to_owned(),
                        });
                    }
                },
                _ => build_remote(entry, env)?,
            };
            set.insert_as(&entry.name, provider);
        }
        Ok(set)
    }

    /// Adds (or replaces) a provider under its own name.
    pub fn insert(&mut self, provider: Arc<dyn Provider>) {
        let name = provider.name().to_owned();
        self.insert_as(&name, provider);
    }

    fn insert_as(&mut self, name: &str, provider: Arc<dyn Provider>) {
        self.providers.insert(name.to_owned(), provider);
    }

    /// The provider named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.get(name)
    }

    /// Provider names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.providers.keys().map(String::as_str).collect()
    }

    /// The provider and model of `PROVIDER/MODEL`, or an error listing the providers.
    pub fn resolve(&self, target: &str) -> Result<(Arc<dyn Provider>, String), LlmError> {
        let parsed = Target::parse(target).ok_or_else(|| LlmError::UnknownModel {
            model: target.to_owned(),
            reason: "expected PROVIDER/MODEL".to_owned(),
        })?;
        let provider = self
            .get(&parsed.provider)
            .ok_or_else(|| LlmError::UnknownModel {
                model: target.to_owned(),
                reason: format!(
                    "no provider `{}` (known: {})",
                    parsed.provider,
                    self.names().join(", ")
                ),
            })?;
        Ok((Arc::clone(provider), parsed.model))
    }
}

/// Builds one remote provider from its validated entry.
pub fn build_remote(
    entry: &ProviderConfig,
    env: EnvLookup<'_>,
) -> Result<Arc<dyn Provider>, LlmError> {
    let base_url = entry.base_url.clone().unwrap_or_default();
    let api_key = entry
        .api_key_env
        .as_deref()
        .and_then(env)
        .filter(|key| !key.trim().is_empty());
    let public_endpoint = base_url == crate::config::default_base_url(entry.kind)
        && entry.kind != ProviderKind::Ollama;
    if api_key.is_none() && public_endpoint {
        return Err(LlmError::Config {
            key: format!("provider `{}`.api_key_env", entry.name),
            reason: match &entry.api_key_env {
                Some(env) => format!(
                    "{base_url} needs an API key, but environment variable {env} is not set"
                ),
                None => format!(
                    "{base_url} needs an API key: set api_key_env to the variable that holds it"
                ),
            },
        });
    }
    let settings = RemoteSettings {
        name: entry.name.clone(),
        base_url,
        api_key,
        api_key_env: entry.api_key_env.clone(),
    };
    Ok(match entry.kind {
        ProviderKind::OpenAi => Arc::new(OpenAiProvider::new(&settings)?),
        ProviderKind::Anthropic => Arc::new(AnthropicProvider::new(&settings)?),
        ProviderKind::Ollama => Arc::new(OllamaProvider::new(&settings)?),
        ProviderKind::Local => {
            return Err(LlmError::Config {
                key: format!("provider `{}`", entry.name),
                reason: "kind `local` is not a remote provider".to_owned(),
            });
        }
    })
}

/// Checks at start that every remote provider's host accepts TCP connections within `timeout`,
/// so a typo in `base_url` is reported before the first request; the error names the provider
/// and the URL.
pub async fn check_reachable(config: &LlmConfig, timeout: Duration) -> Result<(), LlmError> {
    for entry in &config.providers {
        let Some(base_url) = &entry.base_url else {
            continue;
        };
        let unreachable = |reason: String| LlmError::Connect {
            provider: entry.name.clone(),
            url: base_url.clone(),
            reason,
            attempt: 1,
        };
        let url = reqwest::Url::parse(base_url).map_err(|error| unreachable(error.to_string()))?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        match tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(unreachable(format!("unreachable at start: {error}"))),
            Err(_) => {
                return Err(unreachable(format!(
                    "unreachable at start: no TCP connection within {} ms",
                    timeout.as_millis()
                )));
            }
        }
    }
    Ok(())
}
