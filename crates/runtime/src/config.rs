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
//! tool_calls = "block"             # tool calls the caller's RBAC role may not make: block | warn
//! [guard.documents]                # retrieved documents sent with a request (`documents`)
//! check = true                     # scan them for injection
//! on_injection = "quarantine"      # quarantine (drop + review queue) | warn (keep)
//! min_trust = 0.3                  # drop documents whose provenance trust is lower
//! spotlight = "datamark"           # delimit | datamark | encode
//! [guard.alerts]                   # promptops_guard::spike::SpikeConfig
//! window_secs = 60
//! factor = 3.0
//! webhook_url = "https://hooks.example/promptops"   # optional, JSON POST per alert
//! [guard.rbac.roles.support]       # promptops_guard::rbac::RbacConfig
//! allowed_tools = ["ticket_status"]
//! access_level = "internal"
//! can_view_pii = true
//! [guard.rbac.tools.ticket_status]
//! parameters = { type = "object", required = ["id"] }
//! [guard.routes."prompt:summary"]  # per route / prompt overrides of input, output, documents
//! input = { injection = "warn" }
//! ```

use std::collections::BTreeMap;

use promptops_guard::InputPolicy;
use promptops_guard::rbac::RbacConfig;
use promptops_guard::sanitize::Spotlight;
use promptops_guard::spike::SpikeConfig;
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
    /// Whether tokens from a reversible (`token`) redaction are restored in the response (only
    /// for callers whose RBAC role may view PII when `[guard.rbac]` is set).
    pub deredact_output: bool,
    /// Retrieved-document checks.
    pub documents: DocumentsConfig,
    /// Injection spike alerts.
    pub alerts: AlertsConfig,
    /// Roles, tools and document access levels; absent = no RBAC checks.
    pub rbac: Option<RbacConfig>,
    /// Overrides per requested model: a route name, `PROVIDER/MODEL` or `prompt:NAME`.
    pub routes: BTreeMap<String, RouteGuardConfig>,
}

/// `[guard.routes.NAME]`: the sections that replace the defaults for one route or prompt.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteGuardConfig {
    /// Input checks for this route.
    pub input: Option<InputPolicy>,
    /// Output checks for this route.
    pub output: Option<OutputGuardConfig>,
    /// Document checks for this route.
    pub documents: Option<DocumentsConfig>,
}

/// What happens to a retrieved document flagged as carrying an injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentAction {
    /// Leave it out of the prompt and put it in the review queue.
    Quarantine,
    /// Keep it (spotlighted like every document) and warn.
    Warn,
}

/// How untrusted document text is marked in the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpotlightMode {
    /// Delimiters only.
    Delimit,
    /// Delimiters, and every space replaced by a marker character.
    Datamark,
    /// Delimiters around base64 of the text.
    Encode,
}

impl SpotlightMode {
    /// The guard's spotlighting for this mode.
    pub fn spotlight(self) -> Spotlight {
        match self {
            SpotlightMode::Delimit => Spotlight::Delimit,
            SpotlightMode::Datamark => Spotlight::Datamark('^'),
            SpotlightMode::Encode => Spotlight::Encode,
        }
    }
}

/// `[guard.documents]` as written.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DocumentsConfig {
    /// Scan documents for injection.
    pub check: bool,
    /// What a flagged document gets.
    pub on_injection: DocumentAction,
    /// Documents whose provenance trust is below this are left out.
    pub min_trust: f32,
    /// How document text is marked as data.
    pub spotlight: SpotlightMode,
}

impl Default for DocumentsConfig {
    fn default() -> Self {
        DocumentsConfig {
            check: true,
            on_injection: DocumentAction::Quarantine,
            min_trust: 0.3,
            spotlight: SpotlightMode::Datamark,
        }
    }
}

/// `[guard.alerts]` as written: the spike detector's settings and where alerts are posted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Whether injection spikes are watched (alerts are logged and counted in metrics).
    pub enabled: bool,
    /// Window length in seconds.
    pub window_secs: u64,
    /// Alert above this multiple of the baseline rate.
    pub factor: f64,
    /// ... and above this absolute rate.
    pub min_rate: f64,
    /// ... with at least this many requests in the window.
    pub min_requests: u64,
    /// Also POST each alert as JSON here.
    pub webhook_url: Option<String>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        let spike = SpikeConfig::default();
        AlertsConfig {
            enabled: true,
            window_secs: spike.window_secs,
            factor: spike.factor,
            min_rate: spike.min_rate,
            min_requests: spike.min_requests,
            webhook_url: None,
        }
    }
}

impl AlertsConfig {
    /// The detector settings.
    pub fn spike(&self) -> SpikeConfig {
        SpikeConfig {
            window_secs: self.window_secs,
            factor: self.factor,
            min_rate: self.min_rate,
            min_requests: self.min_requests,
            ..SpikeConfig::default()
        }
    }
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
    /// What a tool call the caller's RBAC role may not make (or with arguments its schema
    /// rejects) does to the reply: `block` or `warn`.
    pub tool_calls: ToolCallAction,
}

/// What a denied tool call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolCallAction {
    /// Refuse the reply.
    Block,
    /// Pass it on with a warning.
    Warn,
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
            tool_calls: ToolCallAction::Block,
        }
    }
}

impl GuardConfig {
    /// Checks the numbers; errors name the key.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        validate_output(&self.output, "guard.output")?;
        validate_documents(&self.documents, "guard.documents")?;
        for (name, route) in &self.routes {
            if let Some(output) = &route.output {
                validate_output(output, &format!("guard.routes.\"{name}\".output"))?;
            }
            if let Some(documents) = &route.documents {
                validate_documents(documents, &format!("guard.routes.\"{name}\".documents"))?;
            }
        }
        self.alerts
            .spike()
            .validate()
            .map_err(|error| RuntimeError::Config {
                key: "guard.alerts".to_owned(),
                reason: error.to_string(),
            })?;
        if let Some(url) = &self.alerts.webhook_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(RuntimeError::Config {
                key: "guard.alerts.webhook_url".to_owned(),
                reason: format!("`{url}` is not an http(s) URL"),
            });
        }
        Ok(())
    }
}

fn validate_documents(documents: &DocumentsConfig, section: &str) -> Result<(), RuntimeError> {
    if !(0.0..=1.0).contains(&documents.min_trust) {
        return Err(RuntimeError::Config {
            key: format!("{section}.min_trust"),
            reason: format!("{} must be a number from 0 to 1", documents.min_trust),
        });
    }
    Ok(())
}

fn validate_output(output: &OutputGuardConfig, section: &str) -> Result<(), RuntimeError> {
    for (key, value) in [
        (format!("{section}.echo_block"), output.echo_block),
        (format!("{section}.echo_warn"), output.echo_warn),
    ] {
        if !(0.0..=1.0).contains(&value) {
            return Err(RuntimeError::Config {
                key,
                reason: format!("{value} must be a number from 0 to 1"),
            });
        }
    }
    if output.echo_warn > output.echo_block {
        return Err(RuntimeError::Config {
            key: format!("{section}.echo_warn"),
            reason: "must not exceed echo_block".to_owned(),
        });
    }
    Ok(())
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
