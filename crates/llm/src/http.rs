//! HTTP plumbing shared by the remote adapters: sending JSON, mapping failures to [`LlmError`]
//! (redacted), reading `Retry-After`, and turning an event-stream body into typed deltas.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use futures_util::StreamExt;
use promptops_core::message::{Message, Tool};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::error::{LlmError, redact};
use crate::provider::DeltaStream;
use crate::sse::{SseEvent, SseParser};
use crate::types::{StreamAccumulator, StreamDelta};
use crate::usage::count_usage;

/// Longest `Retry-After` honoured; longer asks are treated as this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How long to wait for a TCP connection before calling the upstream unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One upstream endpoint: a shared client, the provider name and the key to redact.
#[derive(Clone)]
pub(crate) struct Upstream {
    pub(crate) provider: String,
    pub(crate) client: reqwest::Client,
    pub(crate) api_key: Option<String>,
    /// The env variable the key comes from, named in 401/403 errors when it is unset.
    pub(crate) api_key_env: Option<String>,
}

impl Upstream {
    /// A client for provider `provider`.
    pub(crate) fn new(
        provider: &str,
        api_key: Option<String>,
        api_key_env: Option<String>,
    ) -> Result<Upstream, LlmError> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|error| LlmError::Config {
                key: format!("provider `{provider}`"),
                reason: format!("cannot build the HTTP client: {error}"),
            })?;
        Ok(Upstream {
            provider: provider.to_owned(),
            client,
            api_key,
            api_key_env,
        })
    }

    /// Redacts this upstream's key and key-like words from `text`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let known: Vec<&str> = self.api_key.iter().map(String::as_str).collect();
        redact(text, &known)
    }

    /// POSTs `body` as JSON to `url`; a non-2xx status becomes [`LlmError::Upstream`].
    pub(crate) async fn post_json(
        &self,
        url: &str,
        headers: HeaderMap,
        body: &Value,
    ) -> Result<reqwest::Response, LlmError> {
        let request = self.client.post(url).headers(headers).json(body);
        self.send(url, request).await
    }

    /// [`Upstream::post_json`] to a URL parsed once (parsing a URL is a visible part of the
    /// request path's CPU).
    pub(crate) async fn post_json_url(
        &self,
        url: &reqwest::Url,
        headers: HeaderMap,
        body: &Value,
    ) -> Result<reqwest::Response, LlmError> {
        let request = self.client.post(url.clone()).headers(headers).json(body);
        self.send(url.as_str(), request).await
    }

    /// GETs `url`; a non-2xx status becomes [`LlmError::Upstream`].
    pub(crate) async fn get(
        &self,
        url: &str,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, LlmError> {
        let request = self.client.get(url).headers(headers);
        self.send(url, request).await
    }

    async fn send(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, LlmError> {
        let response = request.send().await.map_err(|error| LlmError::Connect {
            provider: self.provider.clone(),
            url: url.to_owned(),
            reason: self.redact(&error_chain(&error)),
            attempt: 1,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers());
        let body = match response.bytes().await {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(error) => format!("(body unreadable: {})", error_chain(&error)),
        };
        let mut body = self.redact(&body);
        if matches!(status.as_u16(), 401 | 403) && self.api_key.is_none() {
            let hint = match &self.api_key_env {
                Some(env) => format!(" [hint: api_key_env {env} is not set]"),
                None => " [hint: the provider has no api_key_env configured]".to_owned(),
            };
            body.push_str(&hint);
        }
        Err(LlmError::Upstream {
            provider: self.provider.clone(),
            status: status.as_u16(),
            body,
            retry_after,
            attempt: 1,
        })
    }

    /// Reads a whole 2xx body as JSON.
    pub(crate) async fn read_json(
        &self,
        url: &str,
        response: reqwest::Response,
    ) -> Result<Value, LlmError> {
        let bytes = self.read_body(url, response).await?;
        self.parse_json(&bytes)
    }

    /// Reads a whole 2xx body.
    pub(crate) async fn read_body(
        &self,
        url: &str,
        response: reqwest::Response,
    ) -> Result<bytes::Bytes, LlmError> {
        response.bytes().await.map_err(|error| LlmError::Connect {
            provider: self.provider.clone(),
            url: url.to_owned(),
            reason: format!(
                "connection broke while reading the body: {}",
                self.redact(&error_chain(&error))
            ),
            attempt: 1,
        })
    }

    /// A body as JSON; the error quotes the start of the body (redacted).
    pub(crate) fn parse_json(&self, bytes: &[u8]) -> Result<Value, LlmError> {
        serde_json::from_slice(bytes).map_err(|error| LlmError::InvalidResponse {
            provider: self.provider.clone(),
            reason: format!(
                "body is not JSON ({error}): {}",
                self.redact(&String::from_utf8_lossy(&bytes[..bytes.len().min(512)]))
            ),
            attempt: 1,
        })
    }

    /// An [`LlmError::InvalidResponse`] naming what is wrong.
    pub(crate) fn invalid(&self, reason: impl Into<String>) -> LlmError {
        LlmError::InvalidResponse {
            provider: self.provider.clone(),
            reason: self.redact(&reason.into()),
            attempt: 1,
        }
    }
}

/// The error and its sources on one line (reqwest hides the useful part in the sources).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The wait an upstream asked for: `retry-after-ms` (OpenAI) or `Retry-After` in seconds.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|value| value.is_finite() && *value >= 0.0)
    };
    let wait = number("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| number("retry-after"))?;
    Some(Duration::from_secs_f64(
        wait.min(MAX_RETRY_AFTER.as_secs_f64()),
    ))
}

/// A header map from `(name, value)` pairs; a value that is not a valid header is an error
/// naming the header (its value is never echoed, it may be a key).
pub(crate) fn headers(provider: &str, pairs: &[(&str, &str)]) -> Result<HeaderMap, LlmError> {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let header_value = HeaderValue::from_str(value).map_err(|_| LlmError::Config {
            key: format!("provider `{provider}`"),
            reason: format!("the value for header `{name}` is not a valid HTTP header value"),
        })?;
        let header_name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| LlmError::Config {
                key: format!("provider `{provider}`"),
                reason: format!("`{name}` is not a valid HTTP header name"),
            })?;
        map.insert(header_name, header_value);
    }
    Ok(map)
}

/// `base` and `path` joined with exactly one `/`.
pub(crate) fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Turns the events of one provider's stream into deltas.
pub(crate) trait EventDecoder: Send + 'static {
    /// The deltas one event carries; an `Err` ends the stream.
    fn decode(&mut self, event: SseEvent) -> Result<Vec<StreamDelta>, LlmError>;
    /// Whether the provider has said the stream is complete.
    fn is_done(&self) -> bool;
}

/// What is needed to count usage locally when a stream ends without any.
pub(crate) struct UsageFallback {
    pub(crate) model: String,
    pub(crate) messages: Vec<Message>,
    pub(crate) tools: Vec<Tool>,
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// The state of a delta stream between polls.
struct StreamState<D> {
    body: ByteStream,
    parser: SseParser,
    decoder: D,
    pending: VecDeque<StreamDelta>,
    seen: StreamAccumulator,
    finished: bool,
    failure: Option<LlmError>,
    provider: String,
    fallback: UsageFallback,
}

/// The typed deltas of an event-stream `response`, ending with a usage delta (counted locally
/// when the provider sent none) or one `Err` (error event, broken or truncated stream).
pub(crate) fn delta_stream<D: EventDecoder>(
    provider: &str,
    response: reqwest::Response,
    decoder: D,
    fallback: UsageFallback,
) -> DeltaStream {
    let state = StreamState {
        body: Box::pin(response.bytes_stream()),
        parser: SseParser::new(),
        decoder,
        pending: VecDeque::new(),
        seen: StreamAccumulator::new(),
        finished: false,
        failure: None,
        provider: provider.to_owned(),
        fallback,
    };
    Box::pin(futures_util::stream::unfold(state, next_delta))
}

async fn next_delta<D: EventDecoder>(
    mut state: StreamState<D>,
) -> Option<(Result<StreamDelta, LlmError>, StreamState<D>)> {
    loop {
        if let Some(delta) = state.pending.pop_front() {
            state.seen.push(&delta);
            return Some((Ok(delta), state));
        }
        if let Some(error) = state.failure.take() {
            state.finished = true;
            return Some((Err(error), state));
        }
        if state.finished {
            return None;
        }
        if state.decoder.is_done() {
            state.finished = true;
            if !state.seen.has_usage() {
                let fallback = &state.fallback;
                let usage = count_usage(
                    &fallback.model,
                    &fallback.messages,
                    &fallback.tools,
                    &state.seen.output_text(),
                );
                state.pending.push_back(StreamDelta::Usage(usage));
            }
            continue;
        }
        // Deltas that arrived before a failure are delivered first, then the failure.
        state.failure = match state.body.next().await {
            Some(Ok(chunk)) => match state.parser.feed(&chunk) {
                Ok(events) => decode_events(&mut state, events),
                Err(error) => Some(stream_error(&state.provider, error.reason, false)),
            },
            Some(Err(error)) => Some(stream_error(
                &state.provider,
                format!("connection broke mid-stream: {}", error_chain(&error)),
                true,
            )),
            None => Some(stream_error(
                &state.provider,
                "the connection closed before the stream was complete".to_owned(),
                true,
            )),
        };
    }
}

/// Decodes `events` into the pending deltas, stopping at the first error or the end event.
fn decode_events<D: EventDecoder>(
    state: &mut StreamState<D>,
    events: Vec<SseEvent>,
) -> Option<LlmError> {
    for event in events {
        if state.decoder.is_done() {
            break;
        }
        match state.decoder.decode(event) {
            Ok(deltas) => state.pending.extend(deltas),
            Err(error) => return Some(error),
        }
    }
    None
}

/// An [`LlmError::Stream`] for `provider`.
pub(crate) fn stream_error(provider: &str, reason: String, transient: bool) -> LlmError {
    LlmError::Stream {
        provider: provider.to_owned(),
        reason,
        transient,
        attempt: 1,
    }
}
