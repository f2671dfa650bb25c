//! promptops-gateway: the HTTP front end of `promptops serve` (axum). OpenAI-compatible
//! `/v1/chat/completions` (JSON and SSE), `/v1/embeddings` and `/v1/models`, the admin API under
//! `/admin/v1/` with its OpenAPI 3.1 document at `/openapi.json`, `/healthz`, `/readyz` and
//! Prometheus `/metrics`. Handlers are thin: extract, call one [`promptops_runtime::Runtime`]
//! function, convert; every error answers with the OpenAI error envelope.
//!
//! The CLI calls [`GatewayConfig::from_toml`], [`check_bind`], [`AppState::from_config`] and
//! [`serve`].

pub mod admin;
pub mod config;
pub mod error;
pub mod metrics;
pub mod openai;
pub mod ops;
pub mod state;
pub mod wire;
pub mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::serve::ListenerExt;

pub use config::GatewayConfig;
pub use error::GatewayError;
pub use openai::{Account, RequestId, Served};
pub use promptops_access::ApiKey;
pub use state::AppState;

/// The request id header, read and echoed.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest client-supplied request id kept; longer or non-printable ids are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The HTTP routes over `state`.
pub fn router(state: AppState) -> axum::Router {
    let limit = state.max_body_bytes();
    axum::Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/models", get(openai::models))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(admin::openapi))
        .route("/admin/v1/prompts", get(admin::list_prompts))
        .route("/admin/v1/prompts/{name}", get(admin::show_prompt))
        .route(
            "/admin/v1/prompts/{name}/versions",
            post(admin::add_version),
        )
        .route(
            "/admin/v1/prompts/{name}/versions/{version}",
            get(admin::show_version),
        )
        .route(
            "/admin/v1/prompts/{name}/versions/{version}/metrics",
            get(admin::version_metrics).post(admin::record_metrics),
        )
        .route(
            "/admin/v1/prompts/{name}/versions/{version}/render",
            post(admin::render),
        )
        .route(
            "/admin/v1/prompts/{name}/labels/{label}",
            put(admin::set_label),
        )
        .route("/admin/v1/prompts/{name}/diff", get(admin::diff))
        .route(
            "/admin/v1/prompts/{name}/canary/check",
            post(admin::check_canary),
        )
        .route("/admin/v1/canary/check", post(admin::check_all_canaries))
        .route("/admin/v1/experiments", post(admin::create_experiment))
        .route("/admin/v1/experiments/{name}", get(admin::show_experiment))
        .route(
            "/admin/v1/experiments/{name}/assignment",
            get(admin::assign),
        )
        .route(
            "/admin/v1/experiments/{name}/outcomes",
            post(admin::record_outcome),
        )
        .route("/admin/v1/experiments/{name}/analysis", get(admin::analyze))
        .route("/admin/v1/export", get(admin::export))
        .route("/admin/v1/audit/verify", get(admin::verify_audit))
        .route("/admin/v1/prompts/{name}/deploy", post(admin::deploy))
        .route("/admin/v1/prompts/{name}/expand", post(admin::expand))
        .route("/admin/v1/prompts/{name}/promote", post(admin::promote))
        .route("/admin/v1/prompts/{name}/rollback", post(admin::rollback))
        .route("/admin/v1/prompts/{name}/route", get(admin::route))
        .route("/admin/v1/audit", get(admin::audit))
        .route("/admin/v1/reviews", get(admin::list_reviews))
        .route("/admin/v1/reviews/{id}", post(admin::decide_review))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> GatewayError {
    GatewayError::NotFound(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed() -> GatewayError {
    GatewayError::MethodNotAllowed
}

/// Assigns the request id (echoed in the response), authenticates, and records request
/// metrics and the access log (one layer: each extra layer costs a boxed future and a service
/// clone per request). Both come from the response's [`Served`] extension; a streamed answer's
/// are recorded when its body ends (see [`Observed`]).
async fn observe(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= MAX_REQUEST_ID_LEN
                && id.bytes().all(|b| b.is_ascii_graphic())
        })
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let route = request.extensions().get::<MatchedPath>().cloned();
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = match authenticate(&state, &mut request) {
        Ok(()) => next.run(request).await.into_response(),
        Err(refused) => refused.into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let status = response.status().as_u16();
    let served = response.extensions().get::<Served>();
    if let Some(live) = served.and_then(|served| served.live.clone()) {
        let (provider, model) = served_labels(served);
        let header = |name: &str| header_str(&response, name).to_owned();
        let end = StreamEnd {
            state,
            id,
            route: route.to_owned(),
            status,
            provider: provider.to_owned(),
            model: model.to_owned(),
            provider_header: header(openai::PROVIDER_HEADER),
            prompt_version: header(openai::PROMPT_VERSION_HEADER),
            cache: header(openai::CACHE_HEADER),
            started,
            live,
        };
        let (parts, body) = response.into_parts();
        let observed = Observed {
            inner: body.into_data_stream(),
            end: Some(end),
        };
        return Response::from_parts(parts, axum::body::Body::from_stream(observed));
    }
    let elapsed = started.elapsed();
    let (provider, model) = served_labels(served);
    state
        .metrics()
        .request(route, provider, model, status, elapsed.as_secs_f64());
    let account = served.map(|served| served.account).unwrap_or_default();
    access_log(&AccessEntry {
        id: &id,
        route,
        status,
        elapsed,
        provider: header_str(&response, openai::PROVIDER_HEADER),
        prompt_version: header_str(&response, openai::PROMPT_VERSION_HEADER),
        cache: header_str(&response, openai::CACHE_HEADER),
        account: &account,
        streamed: false,
        finished: true,
    });
    response
}

/// The `provider` and `model` labels of a response: its served target, or `none`.
fn served_labels(served: Option<&Served>) -> (&str, &str) {
    served
        .and_then(|served| served.target.as_ref())
        .map_or((metrics::NOT_SERVED, metrics::NOT_SERVED), |target| {
            (target.provider.as_str(), target.model.as_str())
        })
}

fn header_str<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
}

/// What the access log says of one request.
struct AccessEntry<'a> {
    id: &'a str,
    route: &'a str,
    status: u16,
    elapsed: std::time::Duration,
    /// The `x-promptops-provider` header (`PROVIDER/MODEL`).
    provider: &'a str,
    prompt_version: &'a str,
    cache: &'a str,
    account: &'a Account,
    streamed: bool,
    /// False when the client left before a streamed body ended.
    finished: bool,
}

/// One structured access-log event per request (target `promptops::access`), built only from
/// the matched route, the status, the response's own `x-promptops-*` headers and its
/// [`Served`] accounting: bodies, prompts, completions and keys never reach the log.
fn access_log(entry: &AccessEntry<'_>) {
    let account = entry.account;
    tracing::info!(
        target: "promptops::access",
        request_id = entry.id,
        route = entry.route,
        status = entry.status,
        latency_ms = entry.elapsed.as_secs_f64() * 1000.0,
        provider = entry.provider,
        prompt_version = entry.prompt_version,
        cache = entry.cache,
        input_tokens = account.input_tokens,
        output_tokens = account.output_tokens,
        cached_tokens = account.cached_tokens,
        cost_usd = account.cost_usd,
        ttft_ms = account.ttft.map(|ttft| ttft.as_secs_f64() * 1000.0),
        streamed = entry.streamed,
        finished = entry.finished,
        "request"
    );
}

/// What a streamed response's metrics and access log need once its body ends.
struct StreamEnd {
    state: AppState,
    id: String,
    route: String,
    status: u16,
    provider: String,
    model: String,
    provider_header: String,
    prompt_version: String,
    cache: String,
    started: Instant,
    live: std::sync::Arc<std::sync::Mutex<Account>>,
}

impl StreamEnd {
    fn record(self, finished: bool) {
        let elapsed = self.started.elapsed();
        self.state.metrics().request(
            &self.route,
            &self.provider,
            &self.model,
            self.status,
            elapsed.as_secs_f64(),
        );
        let account = *self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        access_log(&AccessEntry {
            id: &self.id,
            route: &self.route,
            status: self.status,
            elapsed,
            provider: &self.provider_header,
            prompt_version: &self.prompt_version,
            cache: &self.cache,
            account: &account,
            streamed: true,
            finished,
        });
    }
}

/// A streamed body that records its request when it ends, or when it is dropped unfinished
/// (the client went away): a stream's latency and usage are only known then.
struct Observed {
    inner: axum::body::BodyDataStream,
    end: Option<StreamEnd>,
}

impl futures_util::Stream for Observed {
    type Item = Result<axum::body::Bytes, axum::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_next(cx);
        if let std::task::Poll::Ready(None) = polled
            && let Some(end) = self.end.take()
        {
            end.record(true);
        }
        polled
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        if let Some(end) = self.end.take() {
            end.record(false);
        }
    }
}

/// The caller's API key (`None` when no keys are configured), set for every request.
#[derive(Debug, Clone)]
pub struct Caller(pub Option<std::sync::Arc<promptops_access::ApiKey>>);

/// With keys configured, `/v1/*` and `/admin/*` need `Authorization: Bearer KEY` (401), and
/// `/admin/*` an admin key (403). Health, metrics and the OpenAPI document stay open. Sets the
/// [`Caller`] of an admitted request.
fn authenticate(state: &AppState, request: &mut Request) -> Result<(), GatewayError> {
    if !state.auth_enabled() {
        request.extensions_mut().insert(Caller(None));
        return Ok(());
    }
    let path = request.uri().path();
    let admin = path.starts_with("/admin/");
    if !(admin || path.starts_with("/v1/")) {
        request.extensions_mut().insert(Caller(None));
        return Ok(());
    }
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim)
        .unwrap_or_default();
    match state.keys().authenticate(presented) {
        Ok(key) => {
            if admin && !key.is_admin() {
                return Err(GatewayError::Forbidden {
                    code: "permission_denied",
                    param: None,
                    message: format!("key `{}` is not an admin key", key.name),
                });
            }
            request.extensions_mut().insert(Caller(Some(key)));
            Ok(())
        }
        Err(promptops_access::AccessError::MissingKey) => Err(GatewayError::Unauthorized(
            "missing API key: send `Authorization: Bearer KEY`".to_owned(),
        )),
        Err(_) => Err(GatewayError::Unauthorized("invalid API key".to_owned())),
    }
}

/// Refuses to serve unauthenticated on a non-loopback address unless explicitly allowed.
pub fn check_bind(
    addr: SocketAddr,
    keys_configured: bool,
    allow_unauthenticated: bool,
) -> Result<(), GatewayError> {
    if keys_configured || allow_unauthenticated || addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(GatewayError::UnauthenticatedBind { addr })
    }
}

/// Small responses and SSE events go out as soon as they are written: without TCP_NODELAY a
/// write that follows an unacknowledged one waits for the peer's delayed ACK (up to 40 ms).
fn no_delay(tcp: &mut tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
}

/// Serves `state` on `listener` until `shutdown` resolves, then drains in-flight requests and
/// streams and the tasks they spawned, and flushes the recorded prompt metrics. Runs on the caller's runtime; the server
/// binary uses [`serve_workers`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let app = router(state.clone());
    axum::serve(listener.tap_io(no_delay), app)
        .with_graceful_shutdown(shutdown)
        .await?;
    let tasks = state.tasks();
    tasks.close();
    let _ = tokio::time::timeout(workers::TASK_DRAIN, tasks.wait()).await;
    state.runtime().flush_metrics().await?;
    Ok(())
}

/// [`serve`] on `workers` threads, each with its own single-threaded runtime (see
/// [`workers`]). State (registry, caches, limits, metrics) is shared. On `shutdown` every
/// worker stops accepting, drains its connections and the tasks its requests spawned; then the
/// prompt metrics are flushed. A worker that fails stops the others and its error is returned.
pub async fn serve_workers(
    listener: std::net::TcpListener,
    workers: std::num::NonZeroUsize,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    workers::serve_on_workers(
        listener,
        workers,
        router(state.clone()),
        state.tasks().clone(),
        shutdown,
    )
    .await?;
    state.runtime().flush_metrics().await?;
    Ok(())
}
