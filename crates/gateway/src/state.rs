//! [`AppState`]: what every handler shares — the runtime, the metrics, the limits.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use promptops_access::{KeyStore, Limiter, MemoryLimiter, SystemClock};
use promptops_cache::{ExactCache, SemanticCache};
use promptops_llm::{ProviderSet, Router, RouterOptions};
use promptops_registry::Registry;
use promptops_runtime::{Runtime, RuntimeError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::metrics::GatewayMetrics;

/// Shared state of the HTTP layer; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    runtime: Runtime,
    metrics: GatewayMetrics,
    max_body_bytes: usize,
    max_messages: usize,
    refresh_interval: Duration,
    keys: KeyStore,
    limiter: Limiter,
    cache: Option<(ExactCache, Duration)>,
    semantic: Option<(Arc<SemanticCache>, String)>,
    /// Routes with `cache = true`, whose sampled answers are cached too.
    cached_routes: HashSet<String>,
    /// Tasks requests spawn (charging keys, filling caches, alert webhooks): shutdown waits
    /// for them, so a stopping server still charges what it served.
    tasks: TaskTracker,
}

impl AppState {
    /// State over a built runtime with a body limit.
    pub fn new(runtime: Runtime, max_body_bytes: usize) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                runtime,
                metrics: GatewayMetrics::new(),
                max_body_bytes,
                max_messages: promptops_access::DEFAULT_MAX_MESSAGES,
                refresh_interval: Duration::from_millis(crate::config::DEFAULT_REFRESH_MS),
                keys: KeyStore::default(),
                limiter: Limiter::Memory(Arc::new(MemoryLimiter::new(Arc::new(SystemClock)))),
                cache: None,
                semantic: None,
                cached_routes: HashSet::new(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// Builds everything a config describes: the llm router over `providers` (the caller builds
    /// them, e.g. `ProviderSet::from_config` with the local-model factory), the registry from
    /// `database_url` with its in-memory routing table, the guard.
    pub async fn from_config(
        config: &GatewayConfig,
        providers: ProviderSet,
    ) -> Result<AppState, GatewayError> {
        let options = RouterOptions {
            breaker: config.breaker,
            ..RouterOptions::default()
        };
        let router = Router::new(providers, &config.llm, options).map_err(|error| match error {
            promptops_llm::LlmError::Config { key, reason } => GatewayError::Config { key, reason },
            other => GatewayError::Config {
                key: "routes".to_owned(),
                reason: other.to_string(),
            },
        })?;
        // A semantic cache whose embedding model cannot be called would silently never hit:
        // refuse it at start, naming the key.
        if let Some(semantic) = config.cache.as_ref().and_then(|c| c.semantic.as_ref())
            && let Err(error) = router.chain(&semantic.embedding_model)
        {
            return Err(GatewayError::Config {
                key: "cache.semantic.embedding_model".to_owned(),
                reason: error.to_string(),
            });
        }
        let metrics = GatewayMetrics::new();
        let tasks = TaskTracker::new();
        let mut builder = Runtime::builder(Arc::new(router))
            .guard(config.guard.clone())
            .on_guard_alert(alert_sink(
                &metrics,
                config.guard.alerts.webhook_url.clone(),
                tasks.clone(),
            ));
        if let Some(url) = &config.database_url {
            let registry = Registry::open(url).await?;
            let routes = promptops_registry::live::load_router(registry.store().as_ref()).await?;
            builder = builder.registry(registry, Arc::new(routes));
        }
        let runtime = builder.build().map_err(|error| match error {
            RuntimeError::Config { key, reason } => GatewayError::Config { key, reason },
            other => GatewayError::Runtime(other),
        })?;
        let limiter = Limiter::from_config(&config.access.limits, Arc::new(SystemClock))
            .await
            .map_err(|error| GatewayError::Config {
                key: "limits".to_owned(),
                reason: error.to_string(),
            })?;
        let cache = match &config.cache {
            Some(cache) => Some((
                ExactCache::from_config(cache)
                    .await
                    .map_err(|error| GatewayError::Config {
                        key: "cache".to_owned(),
                        reason: error.to_string(),
                    })?,
                cache.ttl,
            )),
            None => None,
        };
        let semantic = config
            .cache
            .as_ref()
            .and_then(|cache| cache.semantic.as_ref())
            .map(|semantic| {
                (
                    Arc::new(SemanticCache::new(semantic)),
                    semantic.embedding_model.clone(),
                )
            });
        Ok(AppState {
            inner: Arc::new(Inner {
                runtime,
                metrics,
                max_body_bytes: config.max_body_bytes,
                max_messages: config.access.limits.max_messages,
                refresh_interval: config.refresh_interval,
                keys: config.access.keys.clone(),
                limiter,
                cache,
                semantic,
                cached_routes: config
                    .llm
                    .routes
                    .iter()
                    .filter(|route| route.cache)
                    .map(|route| route.name.clone())
                    .collect(),
                tasks,
            }),
        })
    }

    /// The request pipeline.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// The metrics.
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.inner.metrics
    }

    /// The request body limit in bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }

    /// Most messages a chat request may carry.
    pub fn max_messages(&self) -> usize {
        self.inner.max_messages
    }

    /// The configured API keys (empty: unauthenticated).
    pub fn keys(&self) -> &KeyStore {
        &self.inner.keys
    }

    /// Whether API keys are configured.
    pub fn auth_enabled(&self) -> bool {
        !self.inner.keys.is_empty()
    }

    /// The rate limiter.
    pub fn limiter(&self) -> &Limiter {
        &self.inner.limiter
    }

    /// The semantic cache, when `[cache.semantic] enabled = true`, and the embedding model it compares with.
    pub fn semantic_cache(&self) -> Option<(&Arc<SemanticCache>, &String)> {
        self.inner
            .semantic
            .as_ref()
            .map(|(cache, model)| (cache, model))
    }

    /// Tasks spawned by requests, which shutdown waits for.
    pub fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    /// The exact response cache and its TTL, when configured.
    pub fn cache(&self) -> Option<&(ExactCache, Duration)> {
        self.inner.cache.as_ref()
    }

    /// Whether route `model` opted into caching non-deterministic answers (`cache = true`).
    pub fn caches_sampled(&self, model: &str) -> bool {
        self.inner.cached_routes.contains(model)
    }

    /// Spawns the routing refresh and metrics flush (until `stop` turns true; a last flush
    /// happens then). Errors go to `on_error`.
    pub fn spawn_background(
        &self,
        stop: watch::Receiver<bool>,
        on_error: impl Fn(&RuntimeError) + Send + Sync + 'static,
    ) -> JoinHandle<()> {
        self.inner
            .runtime
            .spawn_background(self.inner.refresh_interval, stop, on_error)
    }
}

/// How long one alert webhook POST may take.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Where injection spike alerts go: a warning in the log (figures only, no request content),
/// the `promptops_guard_alerts_total` counter, and a JSON POST to the webhook when configured
/// (in the background: the request that tipped the window never waits for it).
fn alert_sink(
    metrics: &GatewayMetrics,
    webhook: Option<String>,
    tasks: TaskTracker,
) -> impl Fn(&promptops_runtime::SpikeAlert) + Send + Sync + 'static {
    let counter = metrics.guard_alerts.clone();
    let client = webhook.as_ref().and_then(|_| {
        reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .build()
            .ok()
    });
    move |alert| {
        counter.inc();
        tracing::warn!(
            requests = alert.requests,
            flagged = alert.flagged,
            rate = alert.rate,
            baseline = alert.baseline,
            window_secs = alert.window_secs,
            "injection spike: flagged share far above its baseline"
        );
        if let (Some(url), Some(client), Ok(handle)) = (
            webhook.clone(),
            client.clone(),
            tokio::runtime::Handle::try_current(),
        ) {
            let body = serde_json::json!({
                "alert": "injection_spike",
                "requests": alert.requests,
                "flagged": alert.flagged,
                "rate": alert.rate,
                "baseline": alert.baseline,
                "window_secs": alert.window_secs,
            });
            tasks.spawn_on(
                async move {
                    match client.post(&url).json(&body).send().await {
                        Ok(response) if response.status().is_success() => {}
                        Ok(response) => tracing::warn!(
                            status = response.status().as_u16(),
                            "alert webhook refused the alert"
                        ),
                        Err(error) => tracing::warn!(%error, "alert webhook unreachable"),
                    }
                },
                &handle,
            );
        }
    }
}
