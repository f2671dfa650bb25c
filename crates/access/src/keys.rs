//! API keys: configuration, authentication, model allow lists and key generation.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::config_error;
use crate::{AccessError, KeyEntry, Limits};

/// What a key may do beyond calling models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// May use the admin endpoints.
    Admin,
    /// May only call models.
    User,
}

/// One entry of a model allow list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelPattern {
    /// The exact model, route or `prompt:NAME`.
    Exact(String),
    /// Any name starting with this prefix (written with a trailing `*`).
    Prefix(String),
}

impl ModelPattern {
    /// Parse `name` or `prefix*`; `*` anywhere but at the end is rejected.
    pub fn parse(pattern: &str) -> Result<ModelPattern, String> {
        if pattern.is_empty() {
            return Err("empty model pattern".to_string());
        }
        let (body, glob) = match pattern.strip_suffix('*') {
            Some(body) => (body, true),
            None => (pattern, false),
        };
        if body.contains('*') {
            return Err(format!("{pattern:?}: `*` is only allowed once, at the end"));
        }
        Ok(if glob {
            ModelPattern::Prefix(body.to_string())
        } else {
            ModelPattern::Exact(body.to_string())
        })
    }

    /// Whether `model` matches.
    pub fn matches(&self, model: &str) -> bool {
        match self {
            ModelPattern::Exact(name) => name == model,
            ModelPattern::Prefix(prefix) => model.starts_with(prefix.as_str()),
        }
    }
}

/// An authenticated key: its name, role, allow list and limits (never the secret).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    /// Unique name; limits and spend are tracked under it.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Allowed models; `None` = all.
    pub models: Option<Vec<ModelPattern>>,
    /// Rate limits and budget.
    pub limits: Limits,
    /// Requests per minute per end user of the key (`None` = no per-user limit).
    pub user_requests_per_minute: Option<u32>,
    /// The guard's RBAC role for this key's requests (`None` = the role's name).
    pub guard_role: Option<String>,
    digest: [u8; 32],
}

impl ApiKey {
    /// The limiter bucket of end user `user` of this key: the user id is hashed so that ids
    /// (often emails) never reach the limiter's store.
    pub fn user_bucket(&self, user: Option<&str>) -> String {
        match user {
            Some(user) => format!("{}/user/{}", self.name, &crate::sha256_hex(user)[..32]),
            None => format!("{}/user/-", self.name),
        }
    }

    /// Whether this key may call `model` (a model/route name or `prompt:NAME`).
    pub fn allows_model(&self, model: &str) -> bool {
        match &self.models {
            None => true,
            Some(patterns) => patterns.iter().any(|p| p.matches(model)),
        }
    }

    /// The `[guard.rbac]` role this key's requests act as: `guard_role`, else `admin`/`user`.
    pub fn guard_role(&self) -> &str {
        match (&self.guard_role, self.role) {
            (Some(role), _) => role,
            (None, Role::Admin) => "admin",
            (None, Role::User) => "user",
        }
    }

    /// Whether this key has the admin role.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// The configured keys, indexed by the SHA-256 digest of their secret.
#[derive(Debug, Clone, Default)]
pub struct KeyStore {
    by_digest: HashMap<[u8; 32], Arc<ApiKey>>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = hex.get(2 * i..2 * i + 2)?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Lowercase hex SHA-256 of `secret` (what goes into `key_sha256`).
pub fn sha256_hex(secret: &str) -> String {
    digest(secret).iter().map(|b| format!("{b:02x}")).collect()
}

/// A new secret key `po-` + 43 base64url characters (32 random bytes from the OS) and its
/// hex SHA-256. Show the secret once; store only the digest.
pub fn generate_key() -> Result<(String, String), AccessError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AccessError::Random(e.to_string()))?;
    let secret = format!(
        "po-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = sha256_hex(&secret);
    Ok((secret, hash))
}

impl KeyStore {
    /// Validate `[[keys]]` entries; errors name `keys[i].field`. Names and digests must be unique.
    pub fn from_entries(entries: &[KeyEntry]) -> Result<KeyStore, AccessError> {
        let mut by_digest = HashMap::with_capacity(entries.len());
        let mut names = HashSet::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let key = |field: &str| format!("keys[{i}].{field}");
            if !valid_name(&e.name) {
                return Err(config_error(
                    key("name"),
                    format!("{:?} must be 1-64 letters, digits, `-`, `_` or `.`", e.name),
                ));
            }
            if !names.insert(e.name.as_str()) {
                return Err(config_error(
                    key("name"),
                    format!("{:?} is used by an earlier key", e.name),
                ));
            }
            let Some(digest) = parse_digest(&e.key_sha256) else {
                return Err(config_error(
                    key("key_sha256"),
                    "must be 64 hex digits (the SHA-256 of the secret key, never the key itself)",
                ));
            };
            let role = match e.role.as_str() {
                "admin" => Role::Admin,
                "user" => Role::User,
                other => {
                    return Err(config_error(
                        key("role"),
                        format!("{other:?} is not one of \"admin\", \"user\""),
                    ));
                }
            };
            let models = match &e.models {
                None => None,
                Some(list) => {
                    let mut patterns = Vec::with_capacity(list.len());
                    for (j, p) in list.iter().enumerate() {
                        patterns.push(ModelPattern::parse(p).map_err(|reason| {
                            config_error(format!("keys[{i}].models[{j}]"), reason)
                        })?);
                    }
                    Some(patterns)
                }
            };
            if e.requests_per_minute == Some(0) {
                return Err(config_error(
                    key("requests_per_minute"),
                    "must be at least 1",
                ));
            }
            if e.user_requests_per_minute == Some(0) {
                return Err(config_error(
                    key("user_requests_per_minute"),
                    "must be at least 1",
                ));
            }
            if e.tokens_per_minute == Some(0) {
                return Err(config_error(key("tokens_per_minute"), "must be at least 1"));
            }
            if let Some(b) = e.budget_usd
                && !(b.is_finite() && b >= 0.0)
            {
                return Err(config_error(
                    key("budget_usd"),
                    format!("{b} is not a non-negative amount"),
                ));
            }
            let api_key = ApiKey {
                name: e.name.clone(),
                role,
                models,
                limits: Limits {
                    requests_per_minute: e.requests_per_minute,
                    tokens_per_minute: e.tokens_per_minute,
                    budget_usd: e.budget_usd,
                },
                user_requests_per_minute: e.user_requests_per_minute,
                guard_role: e.guard_role.clone(),
                digest,
            };
            if by_digest.insert(digest, Arc::new(api_key)).is_some() {
                return Err(config_error(
                    key("key_sha256"),
                    "is the same digest as an earlier key",
                ));
            }
        }
        Ok(KeyStore { by_digest })
    }

    /// Authenticate a presented secret key (without any `Bearer ` prefix).
    ///
    /// The presented key is hashed and the digest looked up in a hash map, then confirmed with
    /// a constant-time comparison. The lookup's timing can only depend on the *digest* of what
    /// the client sent, which the client can compute itself; learning that its digest shares
    /// some bytes with a configured digest does not help find a key with that digest (SHA-256
    /// preimage resistance). This is unlike comparing plaintext secrets, where an early-exit
    /// comparison leaks the secret byte by byte. The constant-time confirmation keeps the final
    /// accept/reject comparison itself free of data-dependent branches.
    pub fn authenticate(&self, presented: &str) -> Result<Arc<ApiKey>, AccessError> {
        if presented.is_empty() {
            return Err(AccessError::MissingKey);
        }
        let d = digest(presented);
        match self.by_digest.get(&d) {
            Some(key) if bool::from(key.digest.ct_eq(&d)) => Ok(Arc::clone(key)),
            _ => Err(AccessError::InvalidKey),
        }
    }

    /// Number of configured keys.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// True when no keys are configured (the gateway then runs unauthenticated on loopback).
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The configured keys, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &Arc<ApiKey>> {
        self.by_digest.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AccessConfig;

    fn store(toml: &str) -> KeyStore {
        AccessConfig::from_toml_str(toml).unwrap().keys
    }

    fn two_keys() -> String {
        format!(
            "[[keys]]\nname = \"alice\"\nkey_sha256 = \"{}\"\nrole = \"admin\"\n\
             [[keys]]\nname = \"bob\"\nkey_sha256 = \"{}\"\nrole = \"user\"\n\
             models = [\"gpt-4o-mini\", \"prompt:*\", \"local/q*\"]\nrequests_per_minute = 5\n\
             tokens_per_minute = 1000\nbudget_usd = 2.5\n",
            sha256_hex("po-alice-secret"),
            sha256_hex("po-bob-secret").to_uppercase(),
        )
    }

    #[test]
    fn authenticates_the_right_key_only() {
        let keys = store(&two_keys());
        assert_eq!(keys.len(), 2);
        let alice = keys.authenticate("po-alice-secret").unwrap();
        assert_eq!(alice.name, "alice");
        assert!(alice.is_admin());
        assert_eq!(alice.limits, Limits::default());
        let bob = keys.authenticate("po-bob-secret").unwrap();
        assert_eq!(bob.role, Role::User);
        assert_eq!(
            bob.limits,
            Limits {
                requests_per_minute: Some(5),
                tokens_per_minute: Some(1000),
                budget_usd: Some(2.5)
            }
        );
        assert!(matches!(
            keys.authenticate("po-alice-secreT"),
            Err(AccessError::InvalidKey)
        ));
        assert!(matches!(
            keys.authenticate("po-bob-secret "),
            Err(AccessError::InvalidKey)
        ));
        assert!(matches!(
            keys.authenticate(&sha256_hex("po-bob-secret")),
            Err(AccessError::InvalidKey)
        ));
        assert!(matches!(
            keys.authenticate(""),
            Err(AccessError::MissingKey)
        ));
    }

    #[test]
    fn model_allow_lists_and_globs() {
        let keys = store(&two_keys());
        let alice = keys.authenticate("po-alice-secret").unwrap();
        let bob = keys.authenticate("po-bob-secret").unwrap();
        for (model, alice_ok, bob_ok) in [
            ("gpt-4o-mini", true, true),
            ("gpt-4o", true, false),
            ("gpt-4o-mini-2024", true, false),
            ("prompt:summarise", true, true),
            ("prompt:", true, true),
            ("prompts:x", true, false),
            ("local/qwen", true, true),
            ("local/llama", true, false),
            ("", true, false),
        ] {
            assert_eq!(alice.allows_model(model), alice_ok, "alice {model}");
            assert_eq!(bob.allows_model(model), bob_ok, "bob {model}");
        }
        let none = store(&format!(
            "[[keys]]\nname = \"n\"\nkey_sha256 = \"{}\"\nrole = \"user\"\nmodels = []\n",
            sha256_hex("x")
        ));
        assert!(!none.authenticate("x").unwrap().allows_model("gpt-4o"));
    }

    #[test]
    fn generated_keys_authenticate() {
        let (secret, hash) = generate_key().unwrap();
        assert!(secret.starts_with("po-"));
        assert_eq!(secret.len(), 3 + 43);
        assert!(
            secret[3..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(hash, sha256_hex(&secret));
        let (other, _) = generate_key().unwrap();
        assert_ne!(secret, other);
        let keys = store(&format!(
            "[[keys]]\nname = \"gen\"\nkey_sha256 = \"{hash}\"\nrole = \"user\"\n"
        ));
        assert_eq!(keys.authenticate(&secret).unwrap().name, "gen");
        assert!(keys.authenticate(&other).is_err());
    }

    #[test]
    fn sha256_hex_matches_known_vector() {
        assert_eq!(
            sha256_hex("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn model_pattern_parsing() {
        assert_eq!(
            ModelPattern::parse("a*"),
            Ok(ModelPattern::Prefix("a".into()))
        );
        assert_eq!(
            ModelPattern::parse("*"),
            Ok(ModelPattern::Prefix(String::new()))
        );
        assert_eq!(
            ModelPattern::parse("prompt:x"),
            Ok(ModelPattern::Exact("prompt:x".into()))
        );
        assert!(ModelPattern::parse("a*b").is_err());
        assert!(ModelPattern::parse("**").is_err());
        assert!(ModelPattern::parse("").is_err());
    }
}
