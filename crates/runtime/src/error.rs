//! The one error type of promptops-runtime, with the HTTP policy a gateway applies to it.

use std::time::Duration;

use promptops_guard::GuardError;
use promptops_llm::LlmError;
use promptops_registry::RegistryError;
use thiserror::Error;

/// Errors of the request pipeline; each names the input at fault.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// A request field that is missing or invalid.
    #[error("invalid request: {param}: {reason}")]
    InvalidRequest {
        /// The request field at fault, e.g. `messages[0].role`.
        param: String,
        /// What is wrong.
        reason: String,
    },
    /// `prompt:...` was asked for but no registry is configured.
    #[error("model `{model}` is a prompt reference, but no prompt registry is configured")]
    NoRegistry {
        /// The model string as given.
        model: String,
    },
    /// The prompt, version or label does not exist.
    #[error("prompt `{reference}` not found: {source}")]
    PromptNotFound {
        /// The reference as given (without `prompt:`).
        reference: String,
        /// The registry's error.
        source: Box<RegistryError>,
    },
    /// The prompt's variables are missing, unknown or of the wrong type.
    #[error("prompt `{prompt}`: {reason}")]
    PromptVariables {
        /// `NAME@VERSION`.
        prompt: String,
        /// The offending variable, when one is named.
        variable: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// The prompt version names no model and the request gave none.
    #[error("prompt `{prompt}` names no model; add `model` to the prompt version")]
    PromptWithoutModel {
        /// `NAME@VERSION`.
        prompt: String,
    },
    /// The registry failed (database, corrupt data).
    #[error("prompt registry")]
    Registry(#[source] Box<RegistryError>),
    /// The provider call failed (after fallback and retries where they apply).
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// The input guard blocked the request.
    #[error("request blocked by the input guard: {}", reasons.join(", "))]
    InputBlocked {
        /// Which checks fired, e.g. `injection:0.97`.
        reasons: Vec<String>,
    },
    /// The output guard blocked the response.
    #[error("response blocked by the output guard: {}", reasons.join(", "))]
    OutputBlocked {
        /// Which checks fired, e.g. `canary leaked`.
        reasons: Vec<String>,
    },
    /// The guard itself failed (bad key, redaction).
    #[error("guard")]
    Guard(#[source] GuardError),
    /// A configuration error naming the key at fault.
    #[error("config: {key}: {reason}")]
    Config {
        /// The key, e.g. `guard.output.canary_key_env`.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl RuntimeError {
    /// A 400 naming `param`.
    pub fn invalid(param: impl Into<String>, reason: impl Into<String>) -> RuntimeError {
        RuntimeError::InvalidRequest {
            param: param.into(),
            reason: reason.into(),
        }
    }

    /// The HTTP status a front end answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            RuntimeError::InvalidRequest { .. }
            | RuntimeError::NoRegistry { .. }
            | RuntimeError::PromptVariables { .. }
            | RuntimeError::PromptWithoutModel { .. }
            | RuntimeError::InputBlocked { .. } => 400,
            RuntimeError::PromptNotFound { source, .. } => match **source {
                RegistryError::InvalidReference { .. }
                | RegistryError::InvalidName { .. }
                | RegistryError::InvalidVersion { .. } => 400,
                _ => 404,
            },
            RuntimeError::OutputBlocked { .. } => 422,
            RuntimeError::Registry(_) | RuntimeError::Guard(_) | RuntimeError::Config { .. } => 500,
            RuntimeError::Llm(LlmError::UnknownModel { .. }) => 404,
            RuntimeError::Llm(error) => error.status_hint(),
        }
    }

    /// The OpenAI error `type`.
    pub fn error_type(&self) -> &'static str {
        match self.http_status() {
            400 | 404 | 422 => "invalid_request_error",
            429 => "rate_limit_error",
            500 => "server_error",
            _ => "upstream_error",
        }
    }

    /// The OpenAI error `code`.
    pub fn code(&self) -> &'static str {
        match self {
            RuntimeError::InvalidRequest { .. } => "invalid_request",
            RuntimeError::NoRegistry { .. } => "prompt_registry_disabled",
            RuntimeError::PromptNotFound { .. } => "prompt_not_found",
            RuntimeError::PromptVariables { .. } => "invalid_prompt_variables",
            RuntimeError::PromptWithoutModel { .. } => "prompt_without_model",
            RuntimeError::Registry(_) => "registry_error",
            RuntimeError::InputBlocked { reasons } => {
                if reasons.iter().any(|reason| reason.starts_with("injection")) {
                    "prompt_injection_detected"
                } else {
                    "input_blocked_by_guard"
                }
            }
            RuntimeError::OutputBlocked { .. } => "output_blocked_by_guard",
            RuntimeError::Guard(_) => "guard_error",
            RuntimeError::Config { .. } => "config_error",
            RuntimeError::Llm(error) => match error {
                LlmError::UnknownModel { .. } => "model_not_found",
                LlmError::Unsupported { .. } => "unsupported_by_provider",
                LlmError::InvalidRequest { .. } => "invalid_request",
                LlmError::Upstream { status: 429, .. } => "rate_limit_exceeded",
                LlmError::Upstream { .. } => "upstream_error",
                LlmError::Timeout { .. } => "upstream_timeout",
                LlmError::CircuitOpen { .. } => "upstream_circuit_open",
                LlmError::AllModelsFailed { .. } => "all_models_failed",
                _ => "upstream_error",
            },
        }
    }

    /// The OpenAI error `param`: the request field at fault, when there is one.
    pub fn param(&self) -> Option<String> {
        match self {
            RuntimeError::InvalidRequest { param, .. } => Some(param.clone()),
            RuntimeError::NoRegistry { .. }
            | RuntimeError::PromptNotFound { .. }
            | RuntimeError::Llm(LlmError::UnknownModel { .. }) => Some("model".to_owned()),
            RuntimeError::PromptVariables { variable, .. } => Some(match variable {
                Some(name) => format!("prompt_variables.{name}"),
                None => "prompt_variables".to_owned(),
            }),
            RuntimeError::InputBlocked { .. } => Some("messages".to_owned()),
            _ => None,
        }
    }

    /// How long a client should wait before retrying (a 429 or an open circuit).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RuntimeError::Llm(LlmError::CircuitOpen { retry_in, .. }) => Some(*retry_in),
            RuntimeError::Llm(error) => error.retry_after(),
            _ => None,
        }
    }

    /// The message for clients: the error and its sources, on one line.
    pub fn client_message(&self) -> String {
        promptops_core::error_chain(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        let blocked = RuntimeError::InputBlocked {
            reasons: vec!["injection:0.99".into()],
        };
        assert_eq!(blocked.http_status(), 400);
        assert_eq!(blocked.code(), "prompt_injection_detected");
        let unknown = RuntimeError::Llm(LlmError::UnknownModel {
            model: "x".into(),
            reason: "no".into(),
        });
        assert_eq!(unknown.http_status(), 404);
        assert_eq!(unknown.param().as_deref(), Some("model"));
        let variables = RuntimeError::PromptVariables {
            prompt: "p@1.0.0".into(),
            variable: Some("who".into()),
            reason: "missing".into(),
        };
        assert_eq!(variables.param().as_deref(), Some("prompt_variables.who"));
        let limited = RuntimeError::Llm(LlmError::Upstream {
            provider: "u".into(),
            status: 429,
            body: String::new(),
            retry_after: Some(Duration::from_secs(3)),
            attempt: 1,
        });
        assert_eq!(limited.http_status(), 429);
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(limited.error_type(), "rate_limit_error");
    }
}
