//! The whole promptops config file as the server reads it: `[server]`, `[[providers]]`,
//! `[[routes]]`, `database_url` and `[guard]`, parsed into raw structs that reject unknown keys
//! and validated into a [`GatewayConfig`]; every error names the key at fault.
//!
//! ```toml
//! database_url = "sqlite:///var/lib/promptops/registry.db"
//! [server]
//! listen = "127.0.0.1:8080"
//! workers = 2                      # server threads (default: one per CPU)
//! max_body_bytes = 4194304
//! refresh_interval_ms = 1000       # prompt routing refresh and metrics flush
//! [[providers]]
//! name = "upstream"
//! kind = "openai"
//! base_url = "http://127.0.0.1:18080/v1"
//! [[routes]]
//! name = "fast"
//! targets = ["upstream/gpt-4o-mini", "local/smollm2-135m"]
//! [circuit_breaker]               # one breaker per provider, these settings for all
//! failure_threshold = 5            # consecutive failures that open it
//! open_ms = 30000                  # how long it refuses calls before letting a probe through
//! half_open_probes = 1
//! [guard]
//! enabled = false
//! ```

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use promptops_access::{AccessConfig, AccessError};
use promptops_cache::{CacheConfig, CacheError};
use promptops_llm::config::{RawLlmConfig, RawProvider, RawRoute};
use promptops_llm::{BreakerConfig, LlmConfig};
use promptops_runtime::GuardConfig;
use serde::Deserialize;

use crate::error::GatewayError;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default request body limit (4 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Default interval of the routing refresh and metrics flush.
pub const DEFAULT_REFRESH_MS: u64 = 1000;

/// The config file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[server]`.
    #[serde(default)]
    pub server: RawServer,
    /// `[[providers]]`.
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    /// `[[routes]]`.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// The registry database (`sqlite://...` or `postgres://...`).
    #[serde(default)]
    pub database_url: Option<String>,
    /// `[guard]`.
    #[serde(default)]
    pub guard: GuardConfig,
    /// `[[keys]]`, validated by `promptops_access::AccessConfig`.
    #[serde(default)]
    pub keys: Option<toml::Value>,
    /// `[limits]`, validated by `promptops_access::AccessConfig`.
    #[serde(default)]
    pub limits: Option<toml::Value>,
    /// `[cache]`, validated by `promptops_cache::CacheConfig`.
    #[serde(default)]
    pub cache: Option<toml::Value>,
    /// `[circuit_breaker]`.
    #[serde(default)]
    pub circuit_breaker: RawBreaker,
}

/// `[circuit_breaker]` as written; absent keys keep [`BreakerConfig::default`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    /// Consecutive upstream failures that open a provider's breaker.
    #[serde(default)]
    pub failure_threshold: Option<u32>,
    /// Milliseconds an open breaker refuses calls before letting probes through.
    #[serde(default)]
    pub open_ms: Option<u64>,
    /// Calls let through at once while half-open.
    #[serde(default)]
    pub half_open_probes: Option<u32>,
}

impl RawBreaker {
    fn validate(&self) -> Result<BreakerConfig, GatewayError> {
        let defaults = BreakerConfig::default();
        let at_least_one = |key: &str, value: Option<u32>, default: u32| match value {
            Some(0) => Err(GatewayError::Config {
                key: format!("circuit_breaker.{key}"),
                reason: "must be at least 1".to_owned(),
            }),
            other => Ok(other.unwrap_or(default)),
        };
        let open_for = match self.open_ms {
            None => defaults.open_for,
            Some(ms) if (1..=3_600_000).contains(&ms) => Duration::from_millis(ms),
            Some(ms) => {
                return Err(GatewayError::Config {
                    key: "circuit_breaker.open_ms".to_owned(),
                    reason: format!("{ms} must be from 1 to 3600000"),
                });
            }
        };
        Ok(BreakerConfig {
            failure_threshold: at_least_one(
                "failure_threshold",
                self.failure_threshold,
                defaults.failure_threshold,
            )?,
            open_for,
            half_open_probes: at_least_one(
                "half_open_probes",
                self.half_open_probes,
                defaults.half_open_probes,
            )?,
        })
    }
}

/// Most server threads accepted (far more than any machine has cores).
const MAX_WORKERS: usize = 1024;

/// One server thread per CPU the process may use.
fn default_workers() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// `[server]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// `HOST:PORT` to listen on.
    #[serde(default)]
    pub listen: Option<String>,
    /// Server threads, each with its own runtime (default: one per CPU).
    #[serde(default)]
    pub workers: Option<usize>,
    /// Largest request body accepted, in bytes.
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    /// Prompt routing refresh and metrics flush interval, in milliseconds.
    #[serde(default)]
    pub refresh_interval_ms: Option<u64>,
}

/// The validated server configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Server threads (`promptops serve`), each with its own runtime.
    pub workers: NonZeroUsize,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Routing refresh and metrics flush interval.
    pub refresh_interval: Duration,
    /// Providers and routes.
    pub llm: LlmConfig,
    /// The registry database, if any.
    pub database_url: Option<String>,
    /// The guard section.
    pub guard: GuardConfig,
    /// API keys and limits (`[[keys]]`, `[limits]`); no keys means unauthenticated.
    pub access: AccessConfig,
    /// The response cache, when a `[cache]` section is present.
    pub cache: Option<CacheConfig>,
    /// Every provider's circuit breaker.
    pub breaker: BreakerConfig,
}

impl Default for GatewayConfig {
    /// No config file: the embedded local model only, no registry, guard off.
    fn default() -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: default_workers(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            refresh_interval: Duration::from_millis(DEFAULT_REFRESH_MS),
            llm: LlmConfig::local_only(),
            database_url: None,
            guard: GuardConfig::default(),
            access: AccessConfig {
                keys: promptops_access::KeyStore::default(),
                limits: promptops_access::LimitsConfig::default(),
            },
            cache: None,
            breaker: BreakerConfig::default(),
        }
    }
}

impl GatewayConfig {
    /// Parses and validates a whole config file.
    pub fn from_toml(text: &str) -> Result<GatewayConfig, GatewayError> {
        let value: toml::Value = toml::from_str(text).map_err(|error| GatewayError::Config {
            key: "(file)".to_owned(),
            reason: error.to_string().trim().to_owned(),
        })?;
        let raw: RawConfig =
            serde_path_to_error::deserialize(value).map_err(|error| GatewayError::Config {
                key: {
                    let path = error.path().to_string();
                    if path.is_empty() || path == "." {
                        "(file)".to_owned()
                    } else {
                        path
                    }
                },
                reason: first_line(&error.into_inner().to_string()),
            })?;
        let access = AccessConfig::from_toml_str(text).map_err(|error| match error {
            AccessError::Config { key, reason } => GatewayError::Config { key, reason },
            other => GatewayError::Config {
                key: "keys".to_owned(),
                reason: other.to_string(),
            },
        })?;
        let cache = if raw.cache.is_some() {
            Some(
                CacheConfig::from_toml_str(text).map_err(|error| match error {
                    CacheError::Config { key, message } => GatewayError::Config {
                        key: key.to_owned(),
                        reason: message,
                    },
                    other => GatewayError::Config {
                        key: "cache".to_owned(),
                        reason: other.to_string(),
                    },
                })?,
            )
        } else {
            None
        };
        GatewayConfig::validate(raw, access, cache)
    }

    /// Validates raw sections; `access` and `cache` come validated by their crates.
    pub fn validate(
        raw: RawConfig,
        access: AccessConfig,
        cache: Option<CacheConfig>,
    ) -> Result<GatewayConfig, GatewayError> {
        let listen_text = raw.server.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen_text.parse().map_err(|_| GatewayError::Config {
            key: "server.listen".to_owned(),
            reason: format!("`{listen_text}` is not HOST:PORT with a numeric IP address"),
        })?;
        let workers = match raw.server.workers {
            None => default_workers(),
            Some(count) => NonZeroUsize::new(count)
                .filter(|count| count.get() <= MAX_WORKERS)
                .ok_or_else(|| GatewayError::Config {
                    key: "server.workers".to_owned(),
                    reason: format!("must be between 1 and {MAX_WORKERS}, got {count}"),
                })?,
        };
        let max_body_bytes = raw
            .server
            .max_body_bytes
            .unwrap_or(access.limits.max_body_bytes);
        if max_body_bytes < 1024 {
            return Err(GatewayError::Config {
                key: "server.max_body_bytes".to_owned(),
                reason: format!("{max_body_bytes} is below the minimum of 1024"),
            });
        }
        let refresh_ms = raw.server.refresh_interval_ms.unwrap_or(DEFAULT_REFRESH_MS);
        if !(10..=3_600_000).contains(&refresh_ms) {
            return Err(GatewayError::Config {
                key: "server.refresh_interval_ms".to_owned(),
                reason: format!("{refresh_ms} must be from 10 to 3600000"),
            });
        }
        let llm = if raw.providers.is_empty() && raw.routes.is_empty() {
            LlmConfig::local_only()
        } else {
            LlmConfig::validate(RawLlmConfig {
                providers: raw.providers,
                routes: raw.routes,
            })
            .map_err(|error| match error {
                promptops_llm::LlmError::Config { key, reason } => {
                    GatewayError::Config { key, reason }
                }
                other => GatewayError::Config {
                    key: "providers".to_owned(),
                    reason: other.to_string(),
                },
            })?
        };
        if let Some(url) = &raw.database_url
            && url.trim().is_empty()
        {
            return Err(GatewayError::Config {
                key: "database_url".to_owned(),
                reason: "must not be empty when given".to_owned(),
            });
        }
        raw.guard.validate().map_err(|error| match error {
            promptops_runtime::RuntimeError::Config { key, reason } => {
                GatewayError::Config { key, reason }
            }
            other => GatewayError::Config {
                key: "guard".to_owned(),
                reason: other.to_string(),
            },
        })?;
        // With RBAC on, a key acting as a role the policy does not define would be refused
        // every tool and document at request time: refuse the config instead.
        if let Some(rbac) = raw.guard.rbac.as_ref().filter(|_| raw.guard.enabled) {
            let mut keys: Vec<_> = access.keys.keys().collect();
            keys.sort_by(|a, b| a.name.cmp(&b.name));
            for key in keys {
                let role = key.guard_role();
                if !rbac.roles.contains_key(role) {
                    return Err(GatewayError::Config {
                        key: format!("keys.{}.guard_role", key.name),
                        reason: format!("role `{role}` is not defined in [guard.rbac.roles]"),
                    });
                }
            }
        }
        let breaker = raw.circuit_breaker.validate()?;
        Ok(GatewayConfig {
            listen,
            workers,
            max_body_bytes,
            refresh_interval: Duration::from_millis(refresh_ms),
            llm,
            database_url: raw.database_url,
            guard: raw.guard,
            access,
            cache,
            breaker,
        })
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_err(text: &str, key: &str) {
        match GatewayConfig::from_toml(text) {
            Err(GatewayError::Config { key: found, reason }) => {
                assert!(
                    found.contains(key),
                    "key {found} ({reason}) should name {key}"
                )
            }
            other => panic!("expected a config error at {key}, got {other:?}"),
        }
    }

    #[test]
    fn design_example_parses() {
        let config = GatewayConfig::from_toml(
            r#"
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
"#,
        )
        .unwrap();
        assert_eq!(config.llm.routes[0].name, "fast");
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.workers, default_workers());
        assert!(!config.guard.enabled);
    }

    #[test]
    fn errors_name_the_key() {
        check_err("[server]\nlisten = \"nowhere\"\n", "server.listen");
        check_err("[server]\nlistn = \"x\"\n", "server");
        check_err("[server]\nmax_body_bytes = 10\n", "server.max_body_bytes");
        check_err("[server]\nworkers = 0\n", "server.workers");
        check_err("[server]\nworkers = 100000\n", "server.workers");
        check_err(
            "[[providers]]\nname = \"u\"\nkind = \"nope\"\n",
            "providers[0]",
        );
        check_err("[guard]\nenabld = true\n", "guard");
        check_err(
            "[guard.output]\necho_block = 3.0\n",
            "guard.output.echo_block",
        );
        check_err("databse_url = \"x\"\n", "databse_url");
        check_err("[cache]\nttl = 1\n", "cache");
        check_err("[limits]\nbackend = \"nope\"\n", "limits.backend");
        check_err("[[keys]]\nname = \"a\"\n", "keys[0]");
        check_err(
            "[circuit_breaker]\nfailure_threshold = 0\n",
            "circuit_breaker.failure_threshold",
        );
        check_err(
            "[circuit_breaker]\nopen_ms = 0\n",
            "circuit_breaker.open_ms",
        );
        check_err(
            "[circuit_breaker]\nhalf_open_probes = 0\n",
            "circuit_breaker.half_open_probes",
        );
        check_err("[circuit_breaker]\nopen_s = 1\n", "circuit_breaker");
    }

    #[test]
    fn circuit_breaker_keys_override_the_defaults() {
        assert_eq!(
            GatewayConfig::from_toml("").unwrap().breaker,
            BreakerConfig::default()
        );
        let config =
            GatewayConfig::from_toml("[circuit_breaker]\nfailure_threshold = 2\nopen_ms = 1500\n")
                .unwrap();
        assert_eq!(
            config.breaker,
            BreakerConfig {
                failure_threshold: 2,
                open_for: Duration::from_millis(1500),
                half_open_probes: BreakerConfig::default().half_open_probes,
            }
        );
    }

    #[test]
    fn the_readme_config_example_is_valid() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("A config file")
            .and_then(|at| {
                readme[at..]
                    .find("```toml")
                    .map(|i| at + i + "```toml".len())
            })
            .expect("README has the config example");
        let end = start + readme[start..].find("```").expect("the example ends");
        let config = GatewayConfig::from_toml(&readme[start..end]).unwrap();
        assert!(config.guard.enabled && config.guard.rbac.is_some());
    }

    #[test]
    fn keys_must_act_as_defined_rbac_roles() {
        let hash = "a".repeat(64);
        let text = format!(
            "[guard]\nenabled = true\n[guard.rbac.roles.support]\naccess_level = \"internal\"\n\
             [[keys]]\nname = \"bot\"\nkey_sha256 = \"{hash}\"\nrole = \"user\"\n"
        );
        check_err(&text, "keys.bot.guard_role");
        let fixed = text.replace(
            "role = \"user\"\n",
            "role = \"user\"\nguard_role = \"support\"\n",
        );
        GatewayConfig::from_toml(&fixed).unwrap();
    }

    #[test]
    fn guard_section_parses() {
        let config = GatewayConfig::from_toml(
            "[guard]\nenabled = true\nderedact_output = true\n[guard.input]\ninjection = \"block\"\n",
        )
        .unwrap();
        assert!(config.guard.enabled);
        assert!(config.guard.deredact_output);
    }
}
