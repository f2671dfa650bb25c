//! The `[guard]` section of the config file: which checks run on input and output, and what
//! they do. Absent or `enabled = false` (the default) means plain requests pay nothing.
//!
//! ```toml
//! [guard]
//! enabled = true
//! deredact_output = false          # restore redacted PII in the response
//! [guard.input]                    # promptops_guard::InputPolicy
//! injection = "block"              # block | warn | log
//! pii = "redact"                   # block | redact | warn | log
//! secrets = "redact"
//! harmful = "block"
//! redaction = "token"              # replace | mask | hash | token
//! [guard.output]
//! enabled = true
//! canary = true                    # inject a keyed canary into the system prompt; a leak blocks
//! canary_key_env = "PROMPTOPS_CANARY_KEY"
//! system_prompt_echo = true        # block replies that echo the system prompt
//! echo_block = 0.5
//! echo_warn = 0.2
//! block_secrets = true
//! ```

use promptops_guard::InputPolicy;
use serde::{Deserialize, Serialize};

use crate::error::RuntimeError;

/// `[guard]` as written.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Master switch; off by default.
    pub enabled: bool,
    /// Input checks and their actions.
    pub input: InputPolicy,
    /// Output checks.
    pub output: OutputGuardConfig,
    /// Whether tokens from a reversible (`token`) redaction are restored in the response.
    pub deredact_output: bool,
}

/// `[guard.output]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputGuardConfig {
    /// Whether outputs are checked at all (when the guard is enabled).
    pub enabled: bool,
    /// Inject a per-request canary into the system prompt and block a reply that leaks it.
    pub canary: bool,
    /// Environment variable holding the canary key; a random per-process key when unset.
    pub canary_key_env: Option<String>,
    /// Block (or warn on) replies that echo the system prompt.
    pub system_prompt_echo: bool,
    /// Share of the system prompt's word 5-grams in the reply that blocks.
    pub echo_block: f32,
    /// Share that warns.
    pub echo_warn: f32,
    /// Whether secrets in the reply block it (else warn).
    pub block_secrets: bool,
}

impl Default for OutputGuardConfig {
    fn default() -> Self {
        OutputGuardConfig {
            enabled: true,
            canary: true,
            canary_key_env: None,
            system_prompt_echo: true,
            echo_block: 0.5,
            echo_warn: 0.2,
            block_secrets: true,
        }
    }
}

impl GuardConfig {
    /// Checks the numbers; errors name the key.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        for (key, value) in [
            ("guard.output.echo_block", self.output.echo_block),
            ("guard.output.echo_warn", self.output.echo_warn),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(RuntimeError::Config {
                    key: key.to_owned(),
                    reason: format!("{value} must be a number from 0 to 1"),
                });
            }
        }
        if self.output.echo_warn > self.output.echo_block {
            return Err(RuntimeError::Config {
                key: "guard.output.echo_warn".to_owned(),
                reason: "must not exceed echo_block".to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promptops_guard::guard::Action;

    #[test]
    fn defaults_are_off_and_sections_parse() {
        let off: GuardConfig = toml_from("");
        assert!(!off.enabled);
        let on: GuardConfig = toml_from(
            "enabled = true\n[input]\npii = \"warn\"\n[output]\ncanary = false\necho_block = 0.6\n",
        );
        assert!(on.enabled);
        assert_eq!(on.input.pii, Action::Warn);
        assert!(!on.output.canary);
        on.validate().unwrap();
        let bad: GuardConfig = toml_from("[output]\necho_block = 2.0\n");
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("echo_block")
        );
    }

    fn toml_from(text: &str) -> GuardConfig {
        toml::from_str(text).unwrap()
    }
}
