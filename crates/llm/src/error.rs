//! The one error type of promptops-llm, its retry policy and the redaction of upstream bodies.

use std::fmt;
use std::time::Duration;

use thiserror::Error;

/// Most bytes of an upstream body kept in an error (after redaction).
pub const MAX_ERROR_BODY_BYTES: usize = 2048;

/// Errors raised by providers, the router and the configuration loader.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LlmError {
    /// The upstream answered with an HTTP error status.
    #[error(
        "provider `{provider}` answered HTTP {status} (attempt {attempt}){}: {body}",
        retry_after.map(|d| format!(", retry after {} ms", d.as_millis())).unwrap_or_default()
    )]
    Upstream {
        /// The provider name from the config.
        provider: String,
        /// The HTTP status.
        status: u16,
        /// The response body, redacted of secrets and cut to [`MAX_ERROR_BODY_BYTES`].
        body: String,
        /// The `Retry-After` the upstream asked for, if any.
        retry_after: Option<Duration>,
        /// Which attempt (1-based) this was.
        attempt: u32,
    },
    /// The connection could not be made, or broke before a full response arrived.
    #[error("provider `{provider}`: connection to {url} failed (attempt {attempt}): {reason}")]
    Connect {
        /// The provider name.
        provider: String,
        /// The URL requested (no credentials are ever part of it).
        url: String,
        /// What went wrong.
        reason: String,
        /// Which attempt (1-based) this was.
        attempt: u32,
    },
    /// An attempt took longer than its per-attempt timeout, or ran into the overall deadline.
    #[error("provider `{provider}`: no answer within {} ms (attempt {attempt})", after.as_millis())]
    Timeout {
        /// The provider name.
        provider: String,
        /// The time allowed.
        after: Duration,
        /// Which attempt (1-based) this was.
        attempt: u32,
    },
    /// The upstream answered 2xx with a body that is not the expected wire format.
    #[error("provider `{provider}` sent an invalid response (attempt {attempt}): {reason}")]
    InvalidResponse {
        /// The provider name.
        provider: String,
        /// What is wrong, naming the field where possible; any body quoted is redacted.
        reason: String,
        /// Which attempt (1-based) this was.
        attempt: u32,
    },
    /// A stream failed after it had started (an error event, a broken or stalled connection).
    #[error("provider `{provider}`: stream failed (attempt {attempt}): {reason}")]
    Stream {
        /// The provider name.
        provider: String,
        /// What went wrong.
        reason: String,
        /// Whether the failure is transient (a broken connection) rather than a refusal.
        transient: bool,
        /// Which attempt (1-based) this was.
        attempt: u32,
    },
    /// The request asks for something this provider cannot do (e.g. embeddings on Anthropic).
    #[error("provider `{provider}` does not support {feature}")]
    Unsupported {
        /// The provider name.
        provider: String,
        /// What was asked for, e.g. `embeddings` or `n > 1`.
        feature: String,
    },
    /// The request cannot be expressed in the provider's wire format.
    #[error("invalid request for provider `{provider}`: {reason}")]
    InvalidRequest {
        /// The provider name.
        provider: String,
        /// What is wrong, naming the request field.
        reason: String,
    },
    /// An in-process backend (the embedded local model) failed: model file, engine, decoding.
    #[error("provider `{provider}` failed: {reason}")]
    Backend {
        /// The provider name.
        provider: String,
        /// What went wrong, naming the file or setting at fault.
        reason: String,
    },
    /// The upstream's circuit breaker is open: the request was not sent.
    #[error("provider `{provider}` is failing: circuit open for another {} ms", retry_in.as_millis())]
    CircuitOpen {
        /// The provider name.
        provider: String,
        /// Time until the breaker lets a probe through.
        retry_in: Duration,
    },
    /// A configuration error, naming the key at fault (e.g. `providers[1].kind`).
    #[error("config: {key}: {reason}")]
    Config {
        /// Path of the key, e.g. `routes[0].targets[1]`.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A model string names neither a route nor `PROVIDER/MODEL` of a known provider.
    #[error("unknown model `{model}`: {reason}")]
    UnknownModel {
        /// The model string as given.
        model: String,
        /// Why, listing what is known.
        reason: String,
    },
    /// Every target of a fallback chain failed; each attempt is listed.
    #[error("all {} attempt(s) failed: {}", attempts.len(), AttemptList(attempts))]
    AllModelsFailed {
        /// Every attempt, in the order made.
        attempts: Vec<AttemptRecord>,
    },
}

/// One attempt of a routed request: which target, how it ended and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// `PROVIDER/MODEL`.
    pub target: String,
    /// 1-based attempt number at this target.
    pub attempt: u32,
    /// Why it failed (the error's message), or `None` when it succeeded.
    pub cause: Option<String>,
    /// Whether the failure was one that retries could fix.
    pub retryable: bool,
    /// HTTP status of the failure, when the upstream answered.
    pub status: Option<u16>,
    /// Wall time of the attempt (zero when the circuit breaker refused it).
    pub duration: Duration,
}

/// Formats attempt records on one line for [`LlmError::AllModelsFailed`].
struct AttemptList<'a>(&'a [AttemptRecord]);

impl fmt::Display for AttemptList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, record) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "{} #{} after {} ms: {}",
                record.target,
                record.attempt,
                record.duration.as_millis(),
                record.cause.as_deref().unwrap_or("ok")
            )?;
        }
        Ok(())
    }
}

impl LlmError {
    /// Whether the same request may succeed if sent again to the same upstream: 408, 409, 425,
    /// 429 and 5xx statuses (including Anthropic's 529), connection failures, timeouts and
    /// streams broken by the network. A 4xx refusal, a malformed body or a config error is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Upstream { status, .. } => is_retryable_status(*status),
            LlmError::Connect { .. } | LlmError::Timeout { .. } => true,
            LlmError::Stream { transient, .. } => *transient,
            _ => false,
        }
    }

    /// Whether the failure says the upstream is unhealthy (what the circuit breaker counts).
    pub fn is_upstream_failure(&self) -> bool {
        self.is_retryable()
            || matches!(self, LlmError::InvalidResponse { .. })
            || matches!(self, LlmError::Stream { .. })
    }

    /// The upstream HTTP status, when the upstream answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            LlmError::Upstream { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The wait the upstream asked for (`Retry-After`), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::Upstream { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The 1-based attempt number, for errors of a single attempt.
    pub fn attempt(&self) -> Option<u32> {
        match self {
            LlmError::Upstream { attempt, .. }
            | LlmError::Connect { attempt, .. }
            | LlmError::Timeout { attempt, .. }
            | LlmError::InvalidResponse { attempt, .. }
            | LlmError::Stream { attempt, .. } => Some(*attempt),
            _ => None,
        }
    }

    /// The same error marked as attempt `number` (the router numbers attempts; providers say 1).
    pub fn with_attempt(mut self, number: u32) -> Self {
        match &mut self {
            LlmError::Upstream { attempt, .. }
            | LlmError::Connect { attempt, .. }
            | LlmError::Timeout { attempt, .. }
            | LlmError::InvalidResponse { attempt, .. }
            | LlmError::Stream { attempt, .. } => *attempt = number,
            _ => {}
        }
        self
    }

    /// The HTTP status a gateway should answer with for this error.
    pub fn status_hint(&self) -> u16 {
        match self {
            LlmError::Upstream {
                status: 400 | 404 | 413 | 422,
                ..
            } => 400,
            LlmError::Upstream { status: 429, .. } => 429,
            LlmError::Timeout { .. } => 504,
            LlmError::CircuitOpen { .. } => 503,
            LlmError::Unsupported { .. }
            | LlmError::InvalidRequest { .. }
            | LlmError::UnknownModel { .. } => 400,
            LlmError::Config { .. } | LlmError::Backend { .. } => 500,
            LlmError::AllModelsFailed { attempts } => {
                let all_timeouts = !attempts.is_empty()
                    && attempts
                        .iter()
                        .all(|record| record.status.is_none() && record.retryable);
                if all_timeouts { 504 } else { 502 }
            }
            _ => 502,
        }
    }
}

/// Whether an HTTP status is worth retrying: request timeout, conflict, too early, rate limit,
/// and every server error (Anthropic's 529 "overloaded" included).
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 425 | 429) || (500..=599).contains(&status)
}

/// Replaces secrets in `text`: each of `known` (the provider's own key) wherever it appears, the
/// token after `Bearer`, and words that look like API keys (`sk-…`, `sk-ant-…`, `AIza…`, `key-…`,
/// `gsk_…`, `xai-…`); then cuts the result to [`MAX_ERROR_BODY_BYTES`] on a character boundary.
pub fn redact(text: &str, known: &[&str]) -> String {
    let mut redacted = text.to_owned();
    for secret in known.iter().filter(|secret| secret.len() >= 4) {
        redacted = redacted.replace(secret, "[REDACTED]");
    }
    let mut out = String::with_capacity(redacted.len());
    let mut previous_word_bearer = false;
    for piece in split_keep_separators(&redacted) {
        let is_word = piece
            .chars()
            .next()
            .is_some_and(|c| is_token_char(c) && c != ' ');
        if !is_word {
            out.push_str(piece);
            continue;
        }
        if (previous_word_bearer && piece != "[REDACTED]") || looks_like_key(piece) {
            out.push_str("[REDACTED]");
        } else {
            out.push_str(piece);
        }
        previous_word_bearer = piece.eq_ignore_ascii_case("bearer");
    }
    truncate_on_char_boundary(out, MAX_ERROR_BODY_BYTES)
}

/// Characters that can be part of a key-like word.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '[' | ']' | '~' | '+' | '/' | '=')
}

/// Splits text into maximal runs of token characters and of other characters.
fn split_keep_separators(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut current: Option<bool> = None;
    for (index, c) in text.char_indices() {
        let kind = is_token_char(c);
        match current {
            Some(previous) if previous != kind => {
                pieces.push(&text[start..index]);
                start = index;
            }
            _ => {}
        }
        current = Some(kind);
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// Whether a word has the shape of a vendor API key.
fn looks_like_key(word: &str) -> bool {
    const PREFIXES: [&str; 6] = ["sk-", "sk_", "AIza", "key-", "gsk_", "xai-"];
    let long_enough = word.len() >= 16;
    long_enough && PREFIXES.iter().any(|prefix| word.starts_with(prefix))
}

/// `text` cut to at most `max` bytes, on a character boundary, with `…` when cut.
fn truncate_on_char_boundary(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, known: &[&str], expected: &str) {
        assert_eq!(redact(input, known), expected, "input {input:?}");
    }

    #[test]
    fn redacts_keys_bearer_tokens_and_known_secrets() {
        check(
            r#"{"error":{"message":"Incorrect API key provided: sk-proj-abcdefghijklmnop1234."}}"#,
            &[],
            r#"{"error":{"message":"Incorrect API key provided: [REDACTED]"}}"#,
        );
        check(
            "Authorization: Bearer abc.def-ghi rejected",
            &[],
            "Authorization: Bearer [REDACTED] rejected",
        );
        check(
            "key hunter2secret leaked",
            &["hunter2secret"],
            "key [REDACTED] leaked",
        );
        check(
            "x-api-key: sk-ant-api03-AAAAAAAAAAAAAAAA",
            &[],
            "x-api-key: [REDACTED]",
        );
        check("short sk-1 stays", &[], "short sk-1 stays");
        check("nothing secret here", &[], "nothing secret here");
    }

    #[test]
    fn cuts_long_bodies_on_a_char_boundary() {
        let body = "é".repeat(MAX_ERROR_BODY_BYTES);
        let cut = redact(&body, &[]);
        assert!(cut.len() <= MAX_ERROR_BODY_BYTES + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn retry_policy_follows_the_status() {
        let upstream = |status| LlmError::Upstream {
            provider: "p".into(),
            status,
            body: String::new(),
            retry_after: None,
            attempt: 1,
        };
        for status in [408, 409, 425, 429, 500, 502, 503, 504, 529] {
            assert!(upstream(status).is_retryable(), "{status}");
        }
        for status in [400, 401, 403, 404, 422] {
            assert!(!upstream(status).is_retryable(), "{status}");
        }
        let invalid = LlmError::InvalidResponse {
            provider: "p".into(),
            reason: "x".into(),
            attempt: 1,
        };
        assert!(!invalid.is_retryable());
        assert!(invalid.is_upstream_failure());
        assert_eq!(upstream(503).with_attempt(3).attempt(), Some(3));
    }
}
