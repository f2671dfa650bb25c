//! The `[[keys]]` and `[limits]` sections of the config file.
//!
//! ```toml
//! [[keys]]
//! name = "ci"
//! key_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! role = "user"                    # or "admin"
//! models = ["gpt-4o-mini", "prompt:*"]   # optional; absent = every model
//! requests_per_minute = 60         # optional
//! user_requests_per_minute = 10    # optional: per end user (the request's `user` field)
//! tokens_per_minute = 100000       # optional
//! budget_usd = 25.0                # optional
//!
//! [limits]
//! backend = "memory"               # or "redis"
//! redis_url = "redis://127.0.0.1:6379"
//! redis_prefix = "promptops:limits:"
//! max_body_bytes = 4194304
//! max_messages = 1024
//! ```

use serde::Deserialize;

use crate::{AccessError, KeyStore};

/// Default maximum request body size the gateway accepts: 4 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Default maximum number of messages in one chat request.
pub const DEFAULT_MAX_MESSAGES: usize = 1024;
/// Default Redis key prefix of the limiter.
pub const DEFAULT_LIMITS_PREFIX: &str = "promptops:limits:";

/// One raw `[[keys]]` entry as written in TOML (validated by [`KeyStore::from_entries`]).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Unique key name (letters, digits, `-`, `_`, `.`); limits and spend are tracked by it.
    pub name: String,
    /// Hex SHA-256 of the secret key.
    pub key_sha256: String,
    /// `"admin"` or `"user"`.
    pub role: String,
    /// Allowed models/routes (`name`, `prompt:NAME`, `prefix*`); absent = all.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Requests per minute (absent = unlimited).
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Requests per minute for each end user of this key, told apart by the request's `user`
    /// field (requests without one share a single bucket); absent = no per-user limit.
    #[serde(default)]
    pub user_requests_per_minute: Option<u32>,
    /// Tokens per minute (absent = unlimited).
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    /// The `[guard.rbac]` role this key's requests act as (default: `admin` or `user`).
    #[serde(default)]
    pub guard_role: Option<String>,
    /// Total spend budget in USD (absent = unlimited).
    #[serde(default)]
    pub budget_usd: Option<f64>,
}

/// The raw `[limits]` section.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// `"memory"` (default) or `"redis"`.
    #[serde(default)]
    pub backend: Option<String>,
    /// Redis URL, required with `backend = "redis"`.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// Redis key prefix (default `promptops:limits:`).
    #[serde(default)]
    pub redis_prefix: Option<String>,
    /// Maximum request body in bytes (default 4 MiB).
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    /// Maximum messages per request (default 1024).
    #[serde(default)]
    pub max_messages: Option<usize>,
}

/// Where rate-limit and spend counters live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimiterBackend {
    /// In process (one replica).
    Memory,
    /// In Redis, shared by every replica.
    Redis {
        /// Connection URL.
        url: String,
        /// Prefix of every key written.
        prefix: String,
    },
}

/// The validated `[limits]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Limiter backend.
    pub backend: LimiterBackend,
    /// Maximum request body in bytes (enforced by the gateway).
    pub max_body_bytes: usize,
    /// Maximum messages per request (enforced by the gateway).
    pub max_messages: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            backend: LimiterBackend::Memory,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_messages: DEFAULT_MAX_MESSAGES,
        }
    }
}

pub(crate) fn config_error(key: impl Into<String>, reason: impl Into<String>) -> AccessError {
    AccessError::Config {
        key: key.into(),
        reason: reason.into(),
    }
}

impl LimitsSection {
    /// Check values, apply defaults and build a [`LimitsConfig`].
    pub fn validate(&self) -> Result<LimitsConfig, AccessError> {
        let backend = match self.backend.as_deref().unwrap_or("memory") {
            "memory" => {
                for (key, set) in [
                    ("limits.redis_url", self.redis_url.is_some()),
                    ("limits.redis_prefix", self.redis_prefix.is_some()),
                ] {
                    if set {
                        return Err(config_error(
                            key,
                            "is only allowed with backend = \"redis\"",
                        ));
                    }
                }
                LimiterBackend::Memory
            }
            "redis" => {
                let Some(url) = self.redis_url.clone() else {
                    return Err(config_error(
                        "limits.redis_url",
                        "is required when backend = \"redis\"",
                    ));
                };
                if let Err(e) = redis::Client::open(url.as_str()) {
                    return Err(config_error(
                        "limits.redis_url",
                        format!("{url:?} is not a Redis URL: {e}"),
                    ));
                }
                let prefix = self
                    .redis_prefix
                    .clone()
                    .unwrap_or_else(|| DEFAULT_LIMITS_PREFIX.to_string());
                LimiterBackend::Redis { url, prefix }
            }
            other => {
                return Err(config_error(
                    "limits.backend",
                    format!("{other:?} is not one of \"memory\", \"redis\""),
                ));
            }
        };
        let max_body_bytes = self.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 {
            return Err(config_error("limits.max_body_bytes", "must be at least 1"));
        }
        let max_messages = self.max_messages.unwrap_or(DEFAULT_MAX_MESSAGES);
        if max_messages == 0 {
            return Err(config_error("limits.max_messages", "must be at least 1"));
        }
        Ok(LimitsConfig {
            backend,
            max_body_bytes,
            max_messages,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccess {
    #[serde(default)]
    keys: Vec<KeyEntry>,
    #[serde(default)]
    limits: LimitsSection,
}

/// The validated `[[keys]]` and `[limits]` sections together.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// Configured keys (empty when the file has no `[[keys]]`).
    pub keys: KeyStore,
    /// Limits section (defaults when absent).
    pub limits: LimitsConfig,
}

impl AccessConfig {
    /// Read `[[keys]]` and `[limits]` from a whole config file (other top-level sections are
    /// ignored) and validate them. Errors name the offending key, e.g. `keys[1].role`.
    pub fn from_toml_str(text: &str) -> Result<AccessConfig, AccessError> {
        let table: toml::Table = toml::from_str(text)
            .map_err(|e| config_error("(file)", e.to_string().trim().to_string()))?;
        let mut sections = toml::Table::new();
        for key in ["keys", "limits"] {
            if let Some(value) = table.get(key) {
                sections.insert(key.to_string(), value.clone());
            }
        }
        let raw: RawAccess = serde_path_to_error::deserialize(toml::Value::Table(sections))
            .map_err(|e| {
                let key = e.path().to_string();
                let reason = e.into_inner().to_string();
                config_error(key, reason.lines().next().unwrap_or_default().to_string())
            })?;
        Ok(AccessConfig {
            keys: KeyStore::from_entries(&raw.keys)?,
            limits: raw.limits.validate()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sha256_hex;

    /// Parse `toml`; expect success or an error mentioning every fragment.
    fn check_err(toml: &str, fragments: &[&str]) {
        let err = AccessConfig::from_toml_str(toml).unwrap_err().to_string();
        for f in fragments {
            assert!(err.contains(f), "error {err:?} lacks {f:?}");
        }
    }

    fn key(name: &str, extra: &str) -> String {
        format!(
            "[[keys]]\nname = \"{name}\"\nkey_sha256 = \"{}\"\nrole = \"user\"\n{extra}",
            sha256_hex(name)
        )
    }

    #[test]
    fn defaults_without_sections() {
        let cfg = AccessConfig::from_toml_str("[server]\nport = 8080\n").unwrap();
        assert!(cfg.keys.is_empty());
        assert_eq!(cfg.limits, LimitsConfig::default());
        assert_eq!(cfg.limits.max_body_bytes, 4 * 1024 * 1024);
        assert_eq!(cfg.limits.max_messages, 1024);
    }

    #[test]
    fn limits_section() {
        let cfg = AccessConfig::from_toml_str(
            "[limits]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:6379\"\nmax_body_bytes = 10\nmax_messages = 3\n",
        )
        .unwrap();
        assert_eq!(
            cfg.limits,
            LimitsConfig {
                backend: LimiterBackend::Redis {
                    url: "redis://127.0.0.1:6379".into(),
                    prefix: DEFAULT_LIMITS_PREFIX.into()
                },
                max_body_bytes: 10,
                max_messages: 3,
            }
        );
    }

    #[test]
    fn errors_name_the_field() {
        check_err(
            "[[keys]]\nname = \"a\"\nrole = \"user\"\n",
            &["keys[0]", "key_sha256"],
        );
        check_err(
            &format!("{}\n[[keys]]\nnam = \"b\"\n", key("a", "")),
            &["keys[1]", "nam"],
        );
        check_err(&key("a", "role2 = 1\n"), &["keys[0]", "role2"]);
        check_err(
            &key("a", "").replace("\"user\"", "\"root\""),
            &["keys[0].role", "\"root\""],
        );
        check_err(
            "[[keys]]\nname = \"a\"\nkey_sha256 = \"abc\"\nrole = \"user\"\n",
            &["keys[0].key_sha256", "64 hex"],
        );
        check_err(&key("a b", ""), &["keys[0].name"]);
        check_err(
            &format!("{}{}", key("a", ""), key("a", "")),
            &["keys[1].name", "earlier"],
        );
        check_err(
            &format!(
                "{}{}",
                key("a", ""),
                key("a", "").replace("name = \"a\"", "name = \"b\"")
            ),
            &["keys[1].key_sha256", "same digest"],
        );
        check_err(&key("a", "models = [\"a*b\"]\n"), &["keys[0].models[0]"]);
        check_err(
            &key("a", "requests_per_minute = 0\n"),
            &["keys[0].requests_per_minute"],
        );
        check_err(
            &key("a", "requests_per_minute = -3\n"),
            &["keys[0].requests_per_minute"],
        );
        check_err(
            &key("a", "tokens_per_minute = 0\n"),
            &["keys[0].tokens_per_minute"],
        );
        check_err(&key("a", "budget_usd = -1.0\n"), &["keys[0].budget_usd"]);
        check_err(&key("a", "budget_usd = nan\n"), &["keys[0].budget_usd"]);
        check_err("[limits]\nbackend = \"disk\"\n", &["limits.backend"]);
        check_err(
            "[limits]\nbackend = \"redis\"\n",
            &["limits.redis_url", "required"],
        );
        check_err(
            "[limits]\nredis_url = \"redis://x\"\n",
            &["limits.redis_url", "only allowed"],
        );
        check_err(
            "[limits]\nbackend = \"redis\"\nredis_url = \"ftp://x\"\n",
            &["limits.redis_url"],
        );
        check_err("[limits]\nmax_body_bytes = 0\n", &["limits.max_body_bytes"]);
        check_err("[limits]\nmax_messages = 0\n", &["limits.max_messages"]);
        check_err("[limits]\nmax_bytes = 1\n", &["limits", "max_bytes"]);
        check_err("keys = [", &["(file)"]);
    }
}
