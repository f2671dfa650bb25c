//! The OpenAI-compatible handlers: extract, call one runtime function, convert.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use promptops_llm::{DeltaStream, StreamAccumulator, StreamDelta, Target};
use promptops_runtime::{ChatCall, EmbedCall, Runtime, RuntimeError};
use serde_json::json;

use crate::Caller;
use crate::error::GatewayError;
use crate::metrics::{GatewayMetrics, ModelLabels};
use crate::state::AppState;
use crate::wire::{self, ChunkEncoder, ChunkHeader};

/// The request id of a request (from `x-request-id` or generated).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// What a response served, for the request metrics and the access log: set by the handler as a
/// response extension and read by the `observe` middleware, which never parses bodies.
#[derive(Debug, Clone, Default)]
pub struct Served {
    /// The target that answered; `None` when no model was called (a cache hit).
    pub target: Option<Target>,
    /// Tokens, cost and time to first token of a JSON answer.
    pub account: Account,
    /// A stream's account, filled as it runs: only known when its body ends.
    pub live: Option<Arc<Mutex<Account>>>,
}

/// The accounting of one request, as the access log reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Account {
    /// Prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    /// Prompt tokens read from the provider's prompt cache.
    pub cached_tokens: u64,
    /// Cost in USD, when the model is priced.
    pub cost_usd: Option<f64>,
    /// Time from the upstream call to the first streamed token.
    pub ttft: Option<Duration>,
}

impl Account {
    fn of(usage: &promptops_llm::Usage, cost_usd: Option<f64>) -> Account {
        Account {
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cached_tokens: usage.cached_tokens,
            cost_usd,
            ttft: None,
        }
    }
}

/// Header naming the prompt version used.
pub const PROMPT_VERSION_HEADER: &str = "x-promptops-prompt-version";
/// Header naming the `PROVIDER/MODEL` that answered.
pub const PROVIDER_HEADER: &str = "x-promptops-provider";
/// Header carrying the cost in USD.
pub const COST_HEADER: &str = "x-promptops-cost-usd";
/// Header saying whether the output met the prompt's schema.
pub const OUTPUT_CHECK_HEADER: &str = "x-promptops-output-check";

/// Unix seconds now.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The body bytes, after checking the content type and the size limit.
pub(crate) fn json_bytes(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, GatewayError> {
    if let Some(kind) = headers.get(header::CONTENT_TYPE) {
        let text = kind.to_str().unwrap_or_default();
        let essence = text.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(GatewayError::UnsupportedMediaType {
                found: text.to_owned(),
            });
        }
    }
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            GatewayError::PayloadTooLarge {
                limit: state.max_body_bytes(),
            }
        } else {
            GatewayError::bad_request(None, rejection.body_text())
        }
    })
}

fn set_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

/// What happened to the request's documents, e.g. `used=2; quarantined=1; denied=0;
/// untrusted=0; review_ids=7` (absent when the request had none).
pub const DOCUMENTS_HEADER: &str = "x-promptops-documents";

fn set_documents_header(headers: &mut HeaderMap, report: &promptops_runtime::DocumentReport) {
    let total = report.used + report.denied + report.untrusted + report.quarantined.len();
    if total == 0 {
        return;
    }
    let mut value = format!(
        "used={}; quarantined={}; denied={}; untrusted={}",
        report.used,
        report.quarantined.len(),
        report.denied,
        report.untrusted
    );
    let ids: Vec<String> = report
        .quarantined
        .iter()
        .flatten()
        .map(i64::to_string)
        .collect();
    if !ids.is_empty() {
        value.push_str(&format!("; review_ids={}", ids.join(",")));
    }
    set_header(headers, DOCUMENTS_HEADER, &value);
}

/// Counts guard outcomes of a failed call.
fn count_error(metrics: &GatewayMetrics, error: &RuntimeError) {
    match error {
        RuntimeError::InputBlocked { reasons } => metrics.guard_checks("blocked_input", reasons),
        RuntimeError::OutputBlocked { reasons } => metrics.guard_checks("blocked_output", reasons),
        RuntimeError::Llm(promptops_llm::LlmError::AllModelsFailed { attempts }) => {
            metrics.attempts("(failed)", attempts);
        }
        _ => {}
    }
}

/// Checks the caller's key: allowed model, the end user's request rate (when the key or its
/// guard role limits users), the key's request rate, token rate, budget.
async fn admit(
    state: &AppState,
    caller: &Caller,
    model: &str,
    user: Option<&str>,
    estimated_tokens: u64,
) -> Result<(), GatewayError> {
    let Some(key) = &caller.0 else {
        return Ok(());
    };
    if !key.allows_model(model) {
        return Err(GatewayError::Forbidden {
            code: "model_not_allowed",
            param: Some("model".to_owned()),
            message: format!("key `{}` may not use model `{model}`", key.name),
        });
    }
    let limiter = state.limiter();
    let limited = |code: &'static str, message: String, wait: Option<Duration>| {
        state
            .metrics()
            .rate_limited
            .get_or_create(&crate::metrics::NameLabels {
                name: code.to_owned(),
            })
            .inc();
        GatewayError::RateLimited {
            code,
            message,
            retry_after: wait.unwrap_or(Duration::from_secs(1)),
        }
    };
    // The end-user limit: the key's own, or its guard role's (`[guard.rbac.roles.R]
    // rate_limit_per_minute`), whichever is lower.
    let role_limit = state.runtime().guard_user_rate_limit(key.guard_role());
    let per_user = match (key.user_requests_per_minute, role_limit) {
        (Some(own), Some(role)) => Some(own.min(role)),
        (own, role) => own.or(role),
    };
    if let Some(per_user) = per_user {
        let user_limits = promptops_access::Limits {
            requests_per_minute: Some(per_user),
            ..promptops_access::Limits::default()
        };
        let decision = limiter
            .check_request(&key.user_bucket(user), &user_limits)
            .await
            .map_err(GatewayError::Limiter)?;
        if !decision.allowed {
            return Err(limited(
                "user_rate_limit_exceeded",
                format!(
                    "this end user of key `{}` exceeded its requests per minute",
                    key.name
                ),
                decision.retry_after,
            ));
        }
    }
    let decision = limiter
        .check_request(&key.name, &key.limits)
        .await
        .map_err(GatewayError::Limiter)?;
    if !decision.allowed {
        return Err(limited(
            "rate_limit_exceeded",
            format!("key `{}` exceeded its requests per minute", key.name),
            decision.retry_after,
        ));
    }
    let decision = limiter
        .check_tokens(&key.name, &key.limits, estimated_tokens)
        .await
        .map_err(GatewayError::Limiter)?;
    if !decision.allowed {
        return Err(limited(
            "tokens_per_minute_exceeded",
            format!("key `{}` exceeded its tokens per minute", key.name),
            decision.retry_after,
        ));
    }
    if let Some(left) = limiter
        .budget_left(&key.name, &key.limits)
        .await
        .map_err(GatewayError::Limiter)?
        && left <= 0.0
    {
        return Err(limited(
            "budget_exceeded",
            format!("key `{}` has spent its budget", key.name),
            Some(Duration::from_secs(60)),
        ));
    }
    Ok(())
}

/// Charges a call's tokens and cost to the caller's key (in the background).
fn settle(state: &AppState, caller: &Caller, tokens: u64, cost: Option<f64>) {
    let Some(key) = caller.0.clone() else {
        return;
    };
    let limiter = state.limiter().clone();
    state.tasks().spawn(async move {
        let _ = limiter.record_tokens(&key.name, tokens).await;
        if let Some(cost) = cost {
            let _ = limiter.record_spend(&key.name, cost).await;
        }
    });
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let bytes = json_bytes(&state, &headers, body)?;
    let parsed = wire::parse_chat(&bytes)?;
    if parsed.request.messages.len() > state.max_messages() {
        return Err(GatewayError::bad_request(
            Some("messages".to_owned()),
            format!(
                "{} messages exceed the limit of {}",
                parsed.request.messages.len(),
                state.max_messages()
            ),
        ));
    }
    if parsed.documents.len() > state.max_messages() {
        return Err(GatewayError::bad_request(
            Some("documents".to_owned()),
            format!(
                "{} documents exceed the limit of {}",
                parsed.documents.len(),
                state.max_messages()
            ),
        ));
    }
    let estimate = u64::try_from(bytes.len() / 4).unwrap_or(u64::MAX)
        + u64::from(parsed.request.generation.max_tokens().unwrap_or(0));
    let user = parsed
        .request
        .extra
        .get("user")
        .and_then(serde_json::Value::as_str);
    admit(&state, &caller, &parsed.model, user, estimate).await?;
    let cacheable = cacheable_body(&state, &parsed, &bytes);
    let cache_key = cacheable.as_ref().map(promptops_cache::CacheKey::of);
    if let (Some(key), Some((cache, _))) = (&cache_key, state.cache()) {
        // A cache backend failure is a miss.
        if let Ok(Some(hit)) = cache.get(key).await
            && let Ok(entry) = serde_json::from_slice::<CachedEntry>(&hit)
        {
            count_cache(&state, "hit");
            return Ok(replay(
                &entry,
                &request_id,
                parsed.stream,
                parsed.include_usage,
            ));
        }
        count_cache(&state, "miss");
    }
    let semantic = match (&cacheable, parsed.request.messages.last()) {
        (Some(body), Some(last)) => semantic_probe(&state, body, last).await,
        _ => None,
    };
    if let Some(probe) = &semantic
        && let Some(hit) = &probe.hit
        && let Ok(entry) = serde_json::from_slice::<CachedEntry>(&hit.value)
    {
        count_cache(&state, "semantic_hit");
        let mut response = replay(&entry, &request_id, parsed.stream, parsed.include_usage);
        set_header(response.headers_mut(), CACHE_HEADER, "semantic-hit");
        set_header(
            response.headers_mut(),
            SIMILARITY_HEADER,
            &format!("{:.4}", hit.similarity),
        );
        return Ok(response);
    }
    if semantic.is_some() {
        count_cache(&state, "semantic_miss");
    }
    let call = ChatCall {
        request_id: request_id.clone(),
        model: parsed.model.clone(),
        request: parsed.request,
        prompt_variables: parsed.prompt_variables,
        caller_role: caller.0.as_ref().map(|key| key.guard_role().to_owned()),
        documents: parsed.documents,
    };
    let runtime = state.runtime();
    let metrics = state.metrics();
    if parsed.stream {
        let (meta, stream) = match runtime.chat_stream(call).await {
            Ok(opened) => opened,
            Err(error) => {
                count_error(metrics, &error);
                return Err(error.into());
            }
        };
        metrics.attempts(&parsed.model, &meta.attempts);
        metrics.guard_passed(runtime.guard_enabled(), &meta.guard_warnings);
        let header = ChunkHeader {
            id: format!("chatcmpl-{request_id}"),
            created: now_secs(),
            model: meta.target.model.clone(),
        };
        let fill = match (cache_key, state.cache()) {
            (Some(key), Some(_)) => Some(CacheFill {
                key,
                semantic,
                accumulator: StreamAccumulator::new(),
            }),
            _ => None,
        };
        let live = Arc::new(Mutex::new(Account::default()));
        let sse = Sse {
            fill,
            caller: caller.clone(),
            inner: stream,
            encoder: ChunkEncoder::new(header, parsed.include_usage),
            state: state.clone(),
            target: meta.target.clone(),
            started: meta.started,
            account: Arc::clone(&live),
            first_token: false,
            done: false,
        };
        let body = Body::from_stream(futures_util::stream::unfold(sse, Sse::next));
        let mut response = Response::new(body);
        response.extensions_mut().insert(Served {
            target: Some(meta.target.clone()),
            account: Account::default(),
            live: Some(live),
        });
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        set_header(headers, PROVIDER_HEADER, &meta.target.to_string());
        set_documents_header(headers, &meta.documents);
        if let Some(prompt) = &meta.prompt {
            set_header(headers, PROMPT_VERSION_HEADER, &prompt.label());
        }
        if state.cache().is_some() && cacheable.is_some() {
            set_header(headers, CACHE_HEADER, "miss");
        }
        return Ok(response);
    }
    let outcome = match runtime.chat(call).await {
        Ok(outcome) => outcome,
        Err(error) => {
            count_error(metrics, &error);
            return Err(error.into());
        }
    };
    metrics.attempts(&parsed.model, &outcome.attempts);
    settle(
        &state,
        &caller,
        outcome.response.usage.total_tokens(),
        outcome.cost_usd,
    );
    metrics.usage(
        &outcome.target.provider,
        &outcome.target.model,
        &outcome.response.usage,
        outcome.cost_usd,
    );
    metrics.guard_passed(runtime.guard_enabled(), &outcome.guard_warnings);
    let fallback_id = format!("chatcmpl-{request_id}");
    let completion = wire::ChatCompletion::new(
        &outcome.response,
        &fallback_id,
        &outcome.target.model,
        now_secs(),
        outcome.cost_usd,
    );
    let body = serde_json::to_vec(&completion).map_err(std::io::Error::from)?;
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    set_header(headers, PROVIDER_HEADER, &outcome.target.to_string());
    set_documents_header(headers, &outcome.documents);
    if let Some(prompt) = &outcome.prompt {
        set_header(headers, PROMPT_VERSION_HEADER, &prompt.label());
        let check = match &outcome.output_check {
            promptops_runtime::OutputCheck::NotChecked => "not_checked",
            promptops_runtime::OutputCheck::Valid => "valid",
            promptops_runtime::OutputCheck::ParseError(_) => "parse_error",
            promptops_runtime::OutputCheck::SchemaViolation(_) => "schema_violation",
        };
        set_header(headers, OUTPUT_CHECK_HEADER, check);
    }
    if let Some(cost) = outcome.cost_usd {
        set_header(headers, COST_HEADER, &format!("{cost:.8}"));
    }
    if let Some(key) = cache_key {
        set_header(headers, CACHE_HEADER, "miss");
        if let Ok(value) = serde_json::to_value(&completion) {
            store_in_caches(&state, key, semantic, &outcome.target.to_string(), value);
        }
    }
    response.extensions_mut().insert(Served {
        account: Account::of(&outcome.response.usage, outcome.cost_usd),
        target: Some(outcome.target),
        live: None,
    });
    Ok(response)
}

/// Stores a completed answer under its exact key (in the background) and, when the request was
/// probed, in the semantic index.
fn store_in_caches(
    state: &AppState,
    key: promptops_cache::CacheKey,
    semantic: Option<SemanticProbe>,
    provider: &str,
    completion: serde_json::Value,
) {
    let Some((cache, ttl)) = state.cache() else {
        return;
    };
    let entry = CachedEntry {
        provider: provider.to_owned(),
        completion,
    };
    let Ok(bytes) = serde_json::to_vec(&entry) else {
        return;
    };
    let bytes = Bytes::from(bytes);
    if let (Some(probe), Some((index, _))) = (semantic, state.semantic_cache()) {
        // A vector the index refuses (zero, NaN) only means no semantic entry.
        let _ = index.insert(&probe.scope, probe.vector, bytes.clone());
    }
    let cache = cache.clone();
    let ttl = *ttl;
    state.tasks().spawn(async move {
        let _ = cache.put(&key, bytes, ttl).await;
    });
}

/// What a streamed cache miss needs to fill the caches once the stream has ended cleanly.
struct CacheFill {
    key: promptops_cache::CacheKey,
    semantic: Option<SemanticProbe>,
    accumulator: StreamAccumulator,
}

/// Header with the cosine similarity of a semantic cache hit.
pub const SIMILARITY_HEADER: &str = "x-promptops-cache-similarity";

/// A semantic cache lookup: the scope and vector (kept to insert the answer on a miss).
struct SemanticProbe {
    scope: String,
    vector: Vec<f32>,
    hit: Option<promptops_cache::SemanticHit>,
}

/// Looks the request up in the semantic cache: `last`, the final user turn, is embedded with
/// `[cache.semantic] embedding_model` (local MiniLM by default) and compared within a scope that
/// must match exactly: `body` (the cacheable request) without that turn, i.e. the model, every
/// earlier message including the system prompt, tools and parameters. `None` when the cache is
/// off, the last message is not a user turn, or embedding fails (a failure is a miss, never an
/// error for the client).
async fn semantic_probe(
    state: &AppState,
    body: &serde_json::Value,
    last: &promptops_core::message::Message,
) -> Option<SemanticProbe> {
    let (index, embedding_model) = state.semantic_cache()?;
    if last.role != promptops_core::message::Role::User || last.content.is_none() {
        return None;
    }
    let text = last.text();
    let mut scope_body = body.clone();
    scope_body.get_mut("messages")?.as_array_mut()?.pop()?;
    let scope = promptops_cache::CacheKey::of(&scope_body).to_string();
    let outcome = state
        .runtime()
        .embed(EmbedCall {
            model: embedding_model.clone(),
            input: vec![text],
            dimensions: None,
            extra: promptops_core::message::Extra::new(),
        })
        .await
        .ok()?;
    let vector = outcome.response.embeddings.into_iter().next()?;
    let hit = index.lookup(&scope, &vector);
    Some(SemanticProbe { scope, vector, hit })
}

/// Header saying whether the response came from the cache.
pub const CACHE_HEADER: &str = "x-promptops-cache";

/// What the exact cache stores for a chat request.
#[derive(serde::Serialize, serde::Deserialize)]
struct CachedEntry {
    provider: String,
    completion: serde_json::Value,
}

fn count_cache(state: &AppState, outcome: &str) {
    state
        .metrics()
        .cache
        .get_or_create(&crate::metrics::NameLabels {
            name: outcome.to_owned(),
        })
        .inc();
}

/// The body both caches key on, for a deterministic request (temperature 0 or a seed, or any
/// sampling on a route with `cache = true`; one choice, no prompt reference, guard off): the
/// request without its transport fields.
fn cacheable_body(
    state: &AppState,
    parsed: &wire::ChatBody,
    bytes: &[u8],
) -> Option<serde_json::Value> {
    state.cache()?;
    let generation = &parsed.request.generation;
    let deterministic = generation.temperature() == Some(0.0)
        || generation.seed().is_some()
        || state.caches_sampled(&parsed.model);
    if !deterministic
        || generation.n().unwrap_or(1) > 1
        || parsed.model.starts_with(promptops_runtime::PROMPT_PREFIX)
        || state.runtime().guard_enabled()
    {
        return None;
    }
    let mut body: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(bytes).ok()?;
    for transport in ["stream", "stream_options", "user"] {
        body.remove(transport);
    }
    Some(serde_json::Value::Object(body))
}

/// A cached completion as a JSON response or replayed as an SSE stream.
fn replay(entry: &CachedEntry, request_id: &str, stream: bool, include_usage: bool) -> Response {
    let mut response = if stream {
        let completion = &entry.completion;
        let mut encoder = ChunkEncoder::new(
            ChunkHeader {
                id: format!("chatcmpl-{request_id}"),
                created: now_secs(),
                model: completion["model"].as_str().unwrap_or_default().to_owned(),
            },
            include_usage,
        );
        // A replay costs nothing, as its header says.
        encoder.set_cost(Some(0.0));
        let mut text = String::new();
        for delta in completion_deltas(completion) {
            for chunk in encoder.encode(&delta) {
                text.push_str("data: ");
                text.push_str(&chunk);
                text.push_str("\n\n");
            }
        }
        text.push_str("data: [DONE]\n\n");
        let mut response = Response::new(Body::from(text));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        response
    } else {
        // A replay costs nothing: the stored answer's cost member (if any) says so too.
        let mut completion = entry.completion.clone();
        if let Some(usage) = completion
            .get_mut("usage")
            .and_then(serde_json::Value::as_object_mut)
        {
            usage.insert(wire::COST_MEMBER.to_owned(), serde_json::json!(0.0));
        }
        axum::Json(completion).into_response()
    };
    let headers = response.headers_mut();
    set_header(headers, CACHE_HEADER, "hit");
    set_header(headers, PROVIDER_HEADER, &entry.provider);
    set_header(headers, COST_HEADER, "0.00000000");
    response.extensions_mut().insert(Served {
        target: None,
        account: Account {
            cost_usd: Some(0.0),
            ..Account::default()
        },
        live: None,
    });
    response
}

/// The deltas that replay a stored OpenAI completion.
fn completion_deltas(completion: &serde_json::Value) -> Vec<StreamDelta> {
    let mut deltas = Vec::new();
    let as_u32 = |value: &serde_json::Value| {
        value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
    };
    for choice in completion["choices"].as_array().into_iter().flatten() {
        let index = as_u32(&choice["index"]);
        let message = &choice["message"];
        if let Some(text) = message["content"].as_str() {
            deltas.push(StreamDelta::Text {
                choice: index,
                text: text.to_owned(),
            });
        }
        if let Some(content) = choice["logprobs"]["content"]
            .as_array()
            .filter(|content| !content.is_empty())
        {
            deltas.push(StreamDelta::Logprobs {
                choice: index,
                content: content.clone(),
            });
        }
        for (position, call) in message["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            deltas.push(StreamDelta::ToolCall {
                choice: index,
                index: u32::try_from(position).unwrap_or(u32::MAX),
                id: call["id"].as_str().map(str::to_owned),
                name: call["function"]["name"].as_str().map(str::to_owned),
                arguments: call["function"]["arguments"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        deltas.push(StreamDelta::Finish {
            choice: index,
            reason: promptops_llm::FinishReason::from_openai(
                choice["finish_reason"].as_str().unwrap_or("stop"),
            ),
        });
    }
    let usage = &completion["usage"];
    deltas.push(StreamDelta::Usage(promptops_llm::Usage::reported(
        usage["prompt_tokens"].as_u64().unwrap_or(0),
        usage["completion_tokens"].as_u64().unwrap_or(0),
        usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0),
    )));
    deltas
}

/// A stream of deltas turned into SSE bytes.
struct Sse {
    /// Set on a cacheable miss: the deltas are folded so a clean end fills the caches.
    fill: Option<CacheFill>,
    caller: Caller,
    inner: DeltaStream,
    encoder: ChunkEncoder,
    state: AppState,
    target: Target,
    started: Instant,
    /// Shared with the response's [`Served`]: read by `observe` when the body ends.
    account: Arc<Mutex<Account>>,
    first_token: bool,
    done: bool,
}

impl Sse {
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Sse)> {
        if self.done {
            return None;
        }
        loop {
            match self.inner.next().await {
                Some(Ok(delta)) => {
                    self.observe(&delta);
                    let chunks = self.encoder.encode(&delta);
                    if chunks.is_empty() {
                        continue;
                    }
                    let mut out = String::new();
                    for chunk in chunks {
                        out.push_str("data: ");
                        out.push_str(&chunk);
                        out.push_str("\n\n");
                    }
                    return Some((Ok(Bytes::from(out)), self));
                }
                Some(Err(error)) => {
                    self.done = true;
                    self.state
                        .metrics()
                        .upstream_errors
                        .get_or_create(&crate::metrics::NameLabels {
                            name: self.target.provider.clone(),
                        })
                        .inc();
                    let envelope = GatewayError::Runtime(RuntimeError::Llm(error)).envelope();
                    let text = format!("data: {envelope}\n\n");
                    return Some((Ok(Bytes::from(text)), self));
                }
                None => {
                    self.done = true;
                    self.fill_caches();
                    return Some((Ok(Bytes::from_static(b"data: [DONE]\n\n")), self));
                }
            }
        }
    }

    /// Stores the streamed answer, if this was a cacheable miss and every choice finished (a
    /// stream cut short by an error or the client is never cached).
    fn fill_caches(&mut self) {
        let Some(fill) = self.fill.take() else {
            return;
        };
        if !fill.accumulator.is_complete() {
            return;
        }
        let id = self.encoder.id().to_owned();
        let response = fill.accumulator.finish(
            &id,
            &self.target.provider,
            &self.target.model,
            serde_json::Value::Null,
        );
        let Some(completion) =
            wire::chat_completion_json(&response, &id, &self.target.model, self.encoder.created())
        else {
            return;
        };
        let provider = self.target.to_string();
        store_in_caches(&self.state, fill.key, fill.semantic, &provider, completion);
    }

    fn observe(&mut self, delta: &StreamDelta) {
        if let Some(fill) = &mut self.fill {
            fill.accumulator.push(delta);
        }
        match delta {
            StreamDelta::Text { .. } | StreamDelta::ToolCall { .. } if !self.first_token => {
                self.first_token = true;
                let ttft = self.started.elapsed();
                self.state
                    .metrics()
                    .ttft
                    .get_or_create(&ModelLabels {
                        provider: self.target.provider.clone(),
                        model: self.target.model.clone(),
                    })
                    .observe(ttft.as_secs_f64());
                self.account
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .ttft = Some(ttft);
            }
            StreamDelta::Usage(usage) => {
                let runtime: &Runtime = self.state.runtime();
                let cost = runtime.cost(&self.target, usage);
                self.encoder.set_cost(cost);
                {
                    let mut account = self.account.lock().unwrap_or_else(PoisonError::into_inner);
                    let ttft = account.ttft;
                    *account = Account {
                        ttft,
                        ..Account::of(usage, cost)
                    };
                }
                settle(&self.state, &self.caller, usage.total_tokens(), cost);
                self.state
                    .metrics()
                    .usage(&self.target.provider, &self.target.model, usage, cost);
            }
            _ => {}
        }
    }
}

/// `POST /v1/embeddings`.
pub async fn embeddings(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let bytes = json_bytes(&state, &headers, body)?;
    let parsed = wire::parse_embeddings(&bytes)?;
    let estimate = u64::try_from(bytes.len() / 4).unwrap_or(u64::MAX);
    let user = parsed.extra.get("user").and_then(serde_json::Value::as_str);
    admit(&state, &caller, &parsed.model, user, estimate).await?;
    let outcome = state
        .runtime()
        .embed(EmbedCall {
            model: parsed.model.clone(),
            input: parsed.input,
            dimensions: parsed.dimensions,
            extra: parsed.extra,
        })
        .await?;
    settle(
        &state,
        &caller,
        outcome.response.usage.total_tokens(),
        outcome.cost_usd,
    );
    state.metrics().usage(
        &outcome.target.provider,
        &outcome.target.model,
        &outcome.response.usage,
        outcome.cost_usd,
    );
    let data: Vec<serde_json::Value> = outcome
        .response
        .embeddings
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            json!({
                "object": "embedding",
                "index": index,
                "embedding": wire::embedding_json(vector, parsed.base64),
            })
        })
        .collect();
    let usage = &outcome.response.usage;
    let body = json!({
        "object": "list",
        "data": data,
        "model": outcome.target.model,
        "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.total_tokens()},
    });
    let mut response = axum::Json(body).into_response();
    let headers = response.headers_mut();
    set_header(headers, PROVIDER_HEADER, &outcome.target.to_string());
    if let Some(cost) = outcome.cost_usd {
        set_header(headers, COST_HEADER, &format!("{cost:.8}"));
    }
    response.extensions_mut().insert(Served {
        account: Account::of(&outcome.response.usage, outcome.cost_usd),
        target: Some(outcome.target),
        live: None,
    });
    Ok(response)
}

/// `GET /v1/models`.
pub async fn models(State(state): State<AppState>) -> Response {
    let data: Vec<serde_json::Value> = state
        .runtime()
        .models()
        .await
        .into_iter()
        .map(|entry| {
            json!({
                "id": entry.id,
                "object": "model",
                "created": 0,
                "owned_by": entry.owned_by,
                "promptops_source": entry.source,
            })
        })
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}
