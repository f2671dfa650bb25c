//! HTTP plumbing shared by the remote adapters: sending JSON, mapping failures to [`LlmError`]
//! (redacted), reading `Retry-After`, and turning an event-stream body into typed deltas.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use futures_util::StreamExt;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use promptops_core::message::{Message, Tool};
use serde_json::Value;

use crate::error::{LlmError, redact};
use crate::openai::RemoteSettings;
use crate::provider::DeltaStream;
use crate::sse::{SseEvent, SseParser};
use crate::types::{StreamAccumulator, StreamDelta};
use crate::usage::count_usage;

/// Longest `Retry-After` honoured; longer asks are treated as this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How long to wait for a TCP connection before calling the upstream unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest upstream body read whole (a completion, an embedding batch, an error): a bigger
/// one is refused instead of buffered without bound.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// How long an idle pooled connection is kept (reqwest's default).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An upstream's response, whichever transport carried it.
pub(crate) type UpstreamResponse = http::Response<UnsyncBoxBody<Bytes, BoxError>>;

type DirectClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// hyper clients with one connection pool per thread. A pooled connection is driven by a task
/// on the runtime that opened it; with one runtime per core (the gateway's workers) a request
/// then reuses its own worker's connections and never wakes another thread to reach the
/// upstream (a shared pool cost the reference proxy ~8 µs more per request, 27-28.6 against
/// 19.5-19.9).
struct DirectClients {
    connector: hyper_rustls::HttpsConnector<HttpConnector>,
    clients: thread_local::ThreadLocal<DirectClient>,
}

impl DirectClients {
    /// This thread's client.
    fn get(&self) -> &DirectClient {
        self.clients.get_or(|| {
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .pool_timer(TokioTimer::new())
                .build(self.connector.clone())
        })
    }
}

/// How requests reach an upstream.
#[derive(Clone)]
enum Transport {
    /// hyper's pooled HTTP/1.1 client, TLS by rustls with the webpki roots. The request path
    /// uses it directly: reqwest, a layer on top of the same client, costs about 10 µs more
    /// per request (measured with a standalone proxy: 29-31 against 20-21 µs of CPU).
    Direct(Arc<DirectClients>),
    /// reqwest, when the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`)
    /// sends the upstream's address through a proxy: it speaks to proxies, hyper does not.
    Proxied(reqwest::Client),
}

fn boxed<E: std::error::Error + Send + Sync + 'static>(error: E) -> BoxError {
    Box::new(error)
}

/// The rustls settings every direct client shares (building the root store costs
/// milliseconds).
fn tls_config(provider: &str) -> Result<rustls::ClientConfig, LlmError> {
    static CONFIG: OnceLock<rustls::ClientConfig> = OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return Ok(config.clone());
    }
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| LlmError::Config {
        key: format!("provider `{provider}`"),
        reason: format!("cannot set up TLS: {error}"),
    })?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(CONFIG.get_or_init(|| config).clone())
}

impl Transport {
    /// The transport for `base_url`: proxied when the proxy rules (`rules`, else the
    /// environment's) send it through a proxy, else direct.
    fn for_url(
        provider: &str,
        base_url: &str,
        rules: Option<Matcher>,
    ) -> Result<Transport, LlmError> {
        let config_error = |error: &dyn std::fmt::Display| LlmError::Config {
            key: format!("provider `{provider}`"),
            reason: format!("cannot build the HTTP client: {error}"),
        };
        let intercepted = |matcher: &Matcher| {
            base_url
                .parse::<Uri>()
                .is_ok_and(|uri| matcher.intercept(&uri).is_some())
        };
        let proxied = match &rules {
            Some(matcher) => intercepted(matcher),
            None => intercepted(&Matcher::from_env()),
        };
        if proxied {
            let mut builder = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
            // reqwest reads the same environment variables itself; given rules replace them.
            if let Some(matcher) = rules {
                builder = builder.no_proxy().proxy(reqwest::Proxy::custom(move |url| {
                    let target = url.as_str().parse::<Uri>().ok()?;
                    let proxy = matcher.intercept(&target)?.uri().to_string();
                    reqwest::Url::parse(&proxy).ok()
                }));
            }
            let client = builder.build().map_err(|error| config_error(&error))?;
            return Ok(Transport::Proxied(client));
        }
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(provider)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Ok(Transport::Direct(Arc::new(DirectClients {
            connector,
            clients: thread_local::ThreadLocal::new(),
        })))
    }

    async fn send(&self, request: http::Request<Bytes>) -> Result<UpstreamResponse, BoxError> {
        match self {
            Transport::Direct(clients) => {
                let response = clients.get().request(request.map(Full::new)).await?;
                Ok(response.map(|body| body.map_err(boxed).boxed_unsync()))
            }
            Transport::Proxied(client) => {
                let response = client.execute(reqwest::Request::try_from(request)?).await?;
                let response: http::Response<reqwest::Body> = response.into();
                Ok(response.map(|body| body.map_err(boxed).boxed_unsync()))
            }
        }
    }
}

/// One upstream endpoint: a pooled client, the provider name and the key to redact.
#[derive(Clone)]
pub(crate) struct Upstream {
    pub(crate) provider: String,
    transport: Transport,
    pub(crate) api_key: Option<String>,
    /// The env variable the key comes from, named in 401/403 errors when it is unset.
    pub(crate) api_key_env: Option<String>,
}

impl Upstream {
    /// A client for the provider of `settings`, through a proxy when the environment
    /// (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`) names one for its base URL.
    pub(crate) fn new(settings: &RemoteSettings) -> Result<Upstream, LlmError> {
        Upstream::build(settings, None)
    }

    /// [`Upstream::new`] with proxy rules given instead of read from the environment.
    #[cfg(test)]
    fn with_proxy_rules(settings: &RemoteSettings, rules: Matcher) -> Result<Upstream, LlmError> {
        Upstream::build(settings, Some(rules))
    }

    fn build(settings: &RemoteSettings, rules: Option<Matcher>) -> Result<Upstream, LlmError> {
        Ok(Upstream {
            provider: settings.name.clone(),
            transport: Transport::for_url(&settings.name, &settings.base_url, rules)?,
            api_key: settings.api_key.clone(),
            api_key_env: settings.api_key_env.clone(),
        })
    }

    /// Whether requests go through a proxy.
    #[cfg(test)]
    fn is_proxied(&self) -> bool {
        matches!(self.transport, Transport::Proxied(_))
    }

    /// Redacts this upstream's key and key-like words from `text`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let known: Vec<&str> = self.api_key.iter().map(String::as_str).collect();
        redact(text, &known)
    }

    /// `url` parsed, or the [`LlmError::Connect`] naming it.
    pub(crate) fn parse_url(&self, url: &str) -> Result<Uri, LlmError> {
        url.parse::<Uri>().map_err(|error| LlmError::Connect {
            provider: self.provider.clone(),
            url: url.to_owned(),
            reason: format!("`{url}` is not a valid URL: {error}"),
            attempt: 1,
        })
    }

    /// POSTs `body` as JSON to `url`; a non-2xx status becomes [`LlmError::Upstream`].
    pub(crate) async fn post_json(
        &self,
        url: &str,
        headers: HeaderMap,
        body: &Value,
    ) -> Result<UpstreamResponse, LlmError> {
        let uri = self.parse_url(url)?;
        let body = serde_json::to_vec(body).map_err(|error| LlmError::InvalidRequest {
            provider: self.provider.clone(),
            reason: format!("cannot serialise the request body: {error}"),
        })?;
        self.post_bytes_uri(&uri, url, headers, body).await
    }

    /// POSTs a JSON body already serialised to a URI parsed once (`url` is its text, for
    /// errors): parsing a URL is a visible part of the request path's CPU.
    pub(crate) async fn post_bytes_uri(
        &self,
        uri: &Uri,
        url: &str,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<UpstreamResponse, LlmError> {
        self.send(Method::POST, uri.clone(), url, headers, Some(body.into()))
            .await
    }

    /// GETs `url`; a non-2xx status becomes [`LlmError::Upstream`].
    pub(crate) async fn get(
        &self,
        url: &str,
        headers: HeaderMap,
    ) -> Result<UpstreamResponse, LlmError> {
        let uri = self.parse_url(url)?;
        self.send(Method::GET, uri, url, headers, None).await
    }

    async fn send(
        &self,
        method: Method,
        uri: Uri,
        url: &str,
        mut headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<UpstreamResponse, LlmError> {
        if body.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        headers
            .entry(ACCEPT)
            .or_insert(HeaderValue::from_static("*/*"));
        let mut request = http::Request::new(body.unwrap_or_default());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        let response = self
            .transport
            .send(request)
            .await
            .map_err(|error| LlmError::Connect {
                provider: self.provider.clone(),
                url: url.to_owned(),
                reason: self.redact(&error_chain(&*error)),
                attempt: 1,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers());
        let body = match read_limited(response.into_body(), MAX_RESPONSE_BYTES).await {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(ReadError::TooLarge) => format!("(body over {MAX_RESPONSE_BYTES} bytes)"),
            Err(ReadError::Broken(error)) => {
                format!("(body unreadable: {})", error_chain(&*error))
            }
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
        response: UpstreamResponse,
    ) -> Result<Value, LlmError> {
        let bytes = self.read_body(url, response).await?;
        self.parse_json(&bytes)
    }

    /// Reads a whole 2xx body, up to [`MAX_RESPONSE_BYTES`].
    pub(crate) async fn read_body(
        &self,
        url: &str,
        response: UpstreamResponse,
    ) -> Result<Bytes, LlmError> {
        match read_limited(response.into_body(), MAX_RESPONSE_BYTES).await {
            Ok(bytes) => Ok(bytes),
            Err(ReadError::TooLarge) => Err(self.invalid(format!(
                "the response body exceeds {MAX_RESPONSE_BYTES} bytes"
            ))),
            Err(ReadError::Broken(error)) => Err(LlmError::Connect {
                provider: self.provider.clone(),
                url: url.to_owned(),
                reason: format!(
                    "connection broke while reading the body: {}",
                    self.redact(&error_chain(&*error))
                ),
                attempt: 1,
            }),
        }
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

/// Why a body could not be read whole.
#[derive(Debug)]
enum ReadError {
    /// It is longer than the limit.
    TooLarge,
    /// The connection broke.
    Broken(BoxError),
}

/// The whole of `body`, up to `limit` bytes. A body that arrives in one piece (the usual
/// case for a small JSON answer) is returned without copying.
async fn read_limited(
    mut body: UnsyncBoxBody<Bytes, BoxError>,
    limit: usize,
) -> Result<Bytes, ReadError> {
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(ReadError::Broken)?.into_data() else {
            continue;
        };
        let total = first.as_ref().map_or(0, Bytes::len) + joined.len() + data.len();
        if total > limit {
            return Err(ReadError::TooLarge);
        }
        match &first {
            None if joined.is_empty() => first = Some(data),
            _ => {
                if let Some(head) = first.take() {
                    joined.extend_from_slice(&head);
                }
                joined.extend_from_slice(&data);
            }
        }
    }
    Ok(match first {
        Some(head) => head,
        None => Bytes::from(joined),
    })
}

/// The error and its sources on one line (hyper hides the useful part in the sources).
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

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;

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
    response: UpstreamResponse,
    decoder: D,
    fallback: UsageFallback,
) -> DeltaStream {
    let state = StreamState {
        body: Box::pin(response.into_body().into_data_stream()),
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
                format!("connection broke mid-stream: {}", error_chain(&*error)),
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

#[cfg(test)]
mod tests {
    use super::*;

    use axum::extract::Request;

    fn settings(base_url: &str) -> RemoteSettings {
        RemoteSettings {
            name: "up".to_owned(),
            base_url: base_url.to_owned(),
            api_key: None,
            api_key_env: None,
        }
    }

    /// A loopback HTTP server answering every request with the request target it was sent
    /// (absolute-form when the client took it for a proxy) and the Host header.
    async fn echo_server() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(|request: Request| async move {
            let host = request
                .headers()
                .get("host")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            axum::Json(serde_json::json!({
                "target": request.uri().to_string(),
                "host": host,
            }))
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn direct_requests_go_straight_to_the_upstream() {
        let addr = echo_server().await;
        let base = format!("http://{addr}/v1");
        let upstream = Upstream::with_proxy_rules(&settings(&base), Matcher::builder().build())
            .expect("client");
        assert!(!upstream.is_proxied());
        let url = format!("{base}/models");
        let response = upstream.get(&url, HeaderMap::new()).await.expect("answer");
        let echoed = upstream.read_json(&url, response).await.expect("json");
        assert_eq!(echoed["target"], "/v1/models");
        assert_eq!(echoed["host"], addr.to_string());
    }

    #[tokio::test]
    async fn a_proxy_from_the_rules_carries_the_request() {
        // The "proxy" is the echo server: it sees the absolute-form target a client sends to
        // an HTTP proxy, for a host that does not resolve (so only the proxy can answer).
        let proxy = echo_server().await;
        let rules = Matcher::builder().http(format!("http://{proxy}")).build();
        let base = "http://upstream.invalid/v1";
        let upstream = Upstream::with_proxy_rules(&settings(base), rules).expect("client");
        assert!(upstream.is_proxied());
        let url = format!("{base}/models");
        let response = upstream.get(&url, HeaderMap::new()).await.expect("answer");
        let echoed = upstream.read_json(&url, response).await.expect("json");
        assert_eq!(echoed["target"], "http://upstream.invalid/v1/models");
    }

    #[tokio::test]
    async fn no_proxy_exempts_an_upstream() {
        let rules = Matcher::builder()
            .http("http://127.0.0.1:9")
            .no("127.0.0.1")
            .build();
        let upstream = Upstream::with_proxy_rules(&settings("http://127.0.0.1:8000/v1"), rules)
            .expect("client");
        assert!(!upstream.is_proxied());
    }

    #[tokio::test]
    async fn https_upstreams_speak_tls() {
        // A plain-text server behind an https URL: the TLS handshake fails, which shows the
        // client tried TLS, and the error says what broke.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                use tokio::io::AsyncWriteExt;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                    .await;
            }
        });
        let base = format!("https://localhost:{}/v1", addr.port());
        let upstream = Upstream::with_proxy_rules(&settings(&base), Matcher::builder().build())
            .expect("client");
        let error = upstream
            .get(&format!("{base}/models"), HeaderMap::new())
            .await
            .expect_err("no TLS server");
        let LlmError::Connect { reason, .. } = &error else {
            panic!("expected a connect error, got {error:?}");
        };
        assert!(
            reason.to_lowercase().contains("tls") || reason.contains("InvalidContentType"),
            "{reason}"
        );
    }

    fn body_of(chunks: Vec<&'static [u8]>) -> UnsyncBoxBody<Bytes, BoxError> {
        let frames = chunks
            .into_iter()
            .map(|chunk| Ok::<_, BoxError>(hyper::body::Frame::data(Bytes::from_static(chunk))));
        http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn bodies_are_read_whole_up_to_the_limit() {
        let read = read_limited(body_of(vec![b"{\"a\":", b"", b"1}"]), 100).await;
        assert_eq!(read.expect("body").as_ref(), b"{\"a\":1}");
        let read = read_limited(body_of(vec![b"0123456789"]), 10).await;
        assert_eq!(read.expect("at the limit").as_ref(), b"0123456789");
        let read = read_limited(body_of(vec![b"012345", b"6789x"]), 10).await;
        assert!(matches!(read, Err(ReadError::TooLarge)));
        let read = read_limited(body_of(vec![]), 10).await;
        assert!(read.expect("empty").is_empty());
    }
}
