//! The one error type of promptops-gateway and its HTTP form: every error, including axum's
//! own rejections, answers with the OpenAI envelope `{"error":{"message","type","param","code"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use promptops_registry::RegistryError;
use promptops_runtime::RuntimeError;
use serde_json::json;
use thiserror::Error;

/// Errors of the HTTP layer, the config loader and the admin API.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The request pipeline failed; it carries its own status policy.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The request body or a parameter is invalid.
    #[error("{message}")]
    BadRequest {
        /// The field at fault, e.g. `messages[0].role`.
        param: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The body is larger than `server.max_body_bytes`.
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is not `application/json`.
    #[error("expected `Content-Type: application/json`, got `{found}`")]
    UnsupportedMediaType {
        /// The content type sent.
        found: String,
    },
    /// No such route, or no such admin object.
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not for this method.
    #[error("method not allowed for this route")]
    MethodNotAllowed,
    /// A registry operation of the admin API failed.
    #[error("{0}")]
    Registry(#[from] RegistryError),
    /// The admin API needs a registry and none is configured.
    #[error("no prompt registry is configured (set `database_url`)")]
    NoRegistry,
    /// A configuration error naming the key at fault.
    #[error("config: {key}: {reason}")]
    Config {
        /// The key, e.g. `server.listen` or `routes[0].targets[1]`.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Refusing to serve without authentication on a non-loopback address.
    #[error(
        "refusing to listen on {addr} without API keys: only loopback addresses may serve \
         unauthenticated (configure keys or pass --allow-unauthenticated)"
    )]
    UnauthenticatedBind {
        /// The address asked for.
        addr: std::net::SocketAddr,
    },
    /// No or an unknown API key.
    #[error("{0}")]
    Unauthorized(String),
    /// The key may not do this (admin route, model not in its allow list).
    #[error("{message}")]
    Forbidden {
        /// `permission_denied` or `model_not_allowed`.
        code: &'static str,
        /// The field at fault, if any.
        param: Option<String>,
        /// What was refused.
        message: String,
    },
    /// A rate limit or the spend budget of the key is exhausted.
    #[error("{message}")]
    RateLimited {
        /// `rate_limit_exceeded`, `tokens_per_minute_exceeded` or `budget_exceeded`.
        code: &'static str,
        /// Which limit.
        message: String,
        /// When to retry.
        retry_after: std::time::Duration,
    },
    /// The limiter backend failed (e.g. Redis unreachable): fail closed.
    #[error("rate limiter unavailable")]
    Limiter(#[source] promptops_access::AccessError),
    /// Serving failed (bind, accept).
    #[error("server I/O")]
    Io(#[from] std::io::Error),
}

impl GatewayError {
    /// A 400 naming `param`.
    pub fn bad_request(param: Option<String>, message: impl Into<String>) -> GatewayError {
        GatewayError::BadRequest {
            param,
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        let code = match self {
            GatewayError::Runtime(error) => error.http_status(),
            GatewayError::BadRequest { .. } => 400,
            GatewayError::PayloadTooLarge { .. } => 413,
            GatewayError::UnsupportedMediaType { .. } => 415,
            GatewayError::NotFound(_) => 404,
            GatewayError::MethodNotAllowed => 405,
            GatewayError::Registry(error) => registry_status(error),
            GatewayError::NoRegistry => 404,
            GatewayError::Unauthorized(_) => 401,
            GatewayError::Forbidden { .. } => 403,
            GatewayError::RateLimited { .. } => 429,
            GatewayError::Limiter(_) => 503,
            GatewayError::Config { .. }
            | GatewayError::UnauthenticatedBind { .. }
            | GatewayError::Io(_) => 500,
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The OpenAI error `type`, `code` and `param`.
    fn parts(&self) -> (&'static str, &'static str, Option<String>) {
        match self {
            GatewayError::Runtime(error) => (error.error_type(), error.code(), error.param()),
            GatewayError::BadRequest { param, .. } => {
                ("invalid_request_error", "invalid_request", param.clone())
            }
            GatewayError::PayloadTooLarge { .. } => {
                ("invalid_request_error", "request_too_large", None)
            }
            GatewayError::UnsupportedMediaType { .. } => {
                ("invalid_request_error", "unsupported_media_type", None)
            }
            GatewayError::NotFound(_) => ("invalid_request_error", "not_found", None),
            GatewayError::MethodNotAllowed => ("invalid_request_error", "method_not_allowed", None),
            GatewayError::Registry(error) => match registry_status(error) {
                500 => ("server_error", "registry_error", None),
                404 => ("invalid_request_error", "not_found", None),
                409 => ("invalid_request_error", "conflict", None),
                _ => ("invalid_request_error", "invalid_request", None),
            },
            GatewayError::NoRegistry => ("invalid_request_error", "prompt_registry_disabled", None),
            GatewayError::Unauthorized(_) => ("invalid_request_error", "invalid_api_key", None),
            GatewayError::Forbidden { code, param, .. } => {
                ("invalid_request_error", code, param.clone())
            }
            GatewayError::RateLimited { code, .. } => ("rate_limit_error", code, None),
            GatewayError::Limiter(_) => ("server_error", "rate_limiter_unavailable", None),
            GatewayError::Config { .. }
            | GatewayError::UnauthenticatedBind { .. }
            | GatewayError::Io(_) => ("server_error", "internal_error", None),
        }
    }

    /// The message for clients: the error and its sources on one line.
    pub fn client_message(&self) -> String {
        match self {
            GatewayError::Runtime(error) => error.client_message(),
            other => promptops_core::error_chain(other),
        }
    }

    /// The OpenAI error envelope as JSON.
    pub fn envelope(&self) -> serde_json::Value {
        let (kind, code, param) = self.parts();
        json!({"error": {
            "message": self.client_message(),
            "type": kind,
            "param": param,
            "code": code,
        }})
    }
}

/// HTTP status for a registry error of the admin API.
fn registry_status(error: &RegistryError) -> u16 {
    match error {
        RegistryError::UnknownPrompt(_)
        | RegistryError::UnknownVersion { .. }
        | RegistryError::UnknownLabel { .. }
        | RegistryError::UnknownExperiment(_)
        | RegistryError::UnknownReview(_) => 404,
        RegistryError::InvalidTransition { .. }
        | RegistryError::Contention { .. }
        | RegistryError::ReviewAlreadyResolved { .. }
        | RegistryError::ExperimentExists(_) => 409,
        RegistryError::InvalidName { .. }
        | RegistryError::InvalidVersion { .. }
        | RegistryError::InvalidReference { .. }
        | RegistryError::InvalidFraction { .. }
        | RegistryError::InvalidContent { .. }
        | RegistryError::Template { .. }
        | RegistryError::InvalidExperiment { .. }
        | RegistryError::InvalidOutcome(_)
        | RegistryError::InvalidStatistics(_)
        | RegistryError::InvalidReview(_) => 400,
        _ => 500,
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            GatewayError::Runtime(error) => error.retry_after(),
            GatewayError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let retry_after = match retry_after {
            None if status == StatusCode::TOO_MANY_REQUESTS => {
                Some(std::time::Duration::from_secs(1))
            }
            other => other,
        };
        let mut response = (status, axum::Json(self.envelope())).into_response();
        if let Some(wait) = retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}
