//! Resilient calls over a [`ProviderSet`]: fallback chains in priority order (targets sharing a
//! priority are deployments balanced by weight × health learned from real responses), a
//! per-attempt timeout and an overall deadline, retries with exponential backoff and full jitter
//! on retryable errors only (`Retry-After` honoured), and a circuit breaker per upstream.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
use crate::config::{LlmConfig, RouteConfig, RouteTarget, Target};
use crate::error::{AttemptRecord, LlmError};
use crate::health::{Health, weighted_order};
use crate::provider::{DeltaStream, Provider};
use crate::registry::ProviderSet;
use crate::types::{ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse};

/// How long to wait between retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The backoff cap of the first retry; doubled for each later one.
    pub base_delay: Duration,
    /// The largest backoff cap.
    pub max_delay: Duration,
    /// The longest `Retry-After` obeyed; an upstream asking for more is skipped for the next
    /// target instead.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based): uniformly random between zero and
    /// `min(max_delay, base_delay × 2^(retry-1))` ("full jitter", which spreads clients out).
    pub fn backoff(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(30);
        let cap = self
            .base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        let cap_micros = u64::try_from(cap.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(fastrand::u64(0..=cap_micros))
    }
}

/// Router-wide settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterOptions {
    /// Backoff between retries.
    pub retry: RetryPolicy,
    /// The breaker of each upstream.
    pub breaker: BreakerConfig,
    /// Per-attempt timeout for a bare `PROVIDER/MODEL` (not a route).
    pub direct_timeout: Duration,
    /// Retries for a bare `PROVIDER/MODEL`.
    pub direct_retries: u32,
}

impl Default for RouterOptions {
    fn default() -> Self {
        RouterOptions {
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            direct_timeout: Duration::from_millis(crate::config::DEFAULT_TIMEOUT_MS),
            direct_retries: crate::config::DEFAULT_RETRIES,
        }
    }
}

/// One target of a chain with its priority (lower goes first) and weight (targets sharing a
/// priority are a load-balanced group: each call tries them in a weighted random order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTarget {
    /// The model and its provider.
    pub target: Target,
    /// Priority; lower is tried first.
    pub priority: u32,
    /// Relative share of its priority group's traffic.
    pub weight: u32,
}

/// An ordered fallback list with its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackChain {
    /// The route name (or the target itself for a bare `PROVIDER/MODEL`).
    pub name: String,
    /// Targets, sorted by priority.
    pub targets: Vec<ChainTarget>,
    /// Per-attempt timeout.
    pub attempt_timeout: Duration,
    /// Retries per target on retryable errors.
    pub retries: u32,
    /// Overall deadline across every attempt and wait.
    pub deadline: Duration,
}

impl FallbackChain {
    /// A chain over `targets`, sorted by priority (stable).
    pub fn new(
        name: impl Into<String>,
        mut targets: Vec<ChainTarget>,
        attempt_timeout: Duration,
        retries: u32,
        deadline: Duration,
    ) -> FallbackChain {
        targets.sort_by_key(|target| target.priority);
        FallbackChain {
            name: name.into(),
            targets,
            attempt_timeout,
            retries,
            deadline,
        }
    }

    /// The chain of a configured route: priority is each target's `order`.
    pub fn from_route(route: &RouteConfig) -> FallbackChain {
        let targets = route
            .targets
            .iter()
            .map(|target| ChainTarget {
                target: target.target.clone(),
                priority: target.order,
                weight: target.weight,
            })
            .collect();
        FallbackChain::new(
            &route.name,
            targets,
            route.timeout,
            route.retries,
            route.deadline,
        )
    }
}

/// A routed result: the value, the target that produced it and every attempt made.
#[derive(Debug)]
pub struct Routed<T> {
    /// What the successful attempt returned.
    pub value: T,
    /// The target that answered.
    pub target: Target,
    /// Every attempt, failed ones first, the successful one last.
    pub attempts: Vec<AttemptRecord>,
}

impl<T> Routed<T> {
    /// Whether a target other than the first answered, or retries were needed.
    pub fn fallback_used(&self) -> bool {
        self.attempts.len() > 1
    }
}

/// Calls providers by route name or `PROVIDER/MODEL`, resiliently.
pub struct Router {
    providers: ProviderSet,
    routes: HashMap<String, FallbackChain>,
    breakers: std::sync::Mutex<HashMap<String, Arc<CircuitBreaker>>>,
    health: Health,
    options: RouterOptions,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("providers", &self.providers)
            .field("routes", &self.routes.keys().collect::<Vec<_>>())
            .field("options", &self.options)
            .finish()
    }
}

impl Router {
    /// A router over `providers` with the routes of `config`; every route target must name a
    /// provider of the set.
    pub fn new(
        providers: ProviderSet,
        config: &LlmConfig,
        options: RouterOptions,
    ) -> Result<Router, LlmError> {
        let mut routes = HashMap::new();
        for (index, route) in config.routes.iter().enumerate() {
            for (position, RouteTarget { target, .. }) in route.targets.iter().enumerate() {
                if providers.get(&target.provider).is_none() {
                    return Err(LlmError::Config {
                        key: format!("routes[{index}].targets[{position}]"),
                        reason: format!(
                            "provider `{}` was not built (known: {})",
                            target.provider,
                            providers.names().join(", ")
                        ),
                    });
                }
            }
            routes.insert(route.name.clone(), FallbackChain::from_route(route));
        }
        Ok(Router {
            providers,
            routes,
            breakers: std::sync::Mutex::new(HashMap::new()),
            health: Health::default(),
            options,
        })
    }

    /// The health score in `(0, 1]` of target `PROVIDER/MODEL`, from its recent outcomes.
    pub fn health(&self, target: &str) -> f64 {
        self.health.score(target)
    }

    /// The order this call tries the chain's targets in: priority groups in order, each group
    /// shuffled by weight × health (a lone target keeps its place).
    fn attempt_order<'c>(&self, chain: &'c FallbackChain) -> Vec<&'c ChainTarget> {
        let mut order = Vec::with_capacity(chain.targets.len());
        for group in chain.targets.chunk_by(|a, b| a.priority == b.priority) {
            if let [only] = group {
                order.push(only);
                continue;
            }
            let weights: Vec<f64> = group
                .iter()
                .map(|t| f64::from(t.weight) * self.health.score(&t.target.to_string()))
                .collect();
            order.extend(
                weighted_order(&weights, fastrand::f64)
                    .into_iter()
                    .map(|i| &group[i]),
            );
        }
        order
    }

    /// The providers.
    pub fn providers(&self) -> &ProviderSet {
        &self.providers
    }

    /// Route names, sorted.
    pub fn route_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.routes.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The chain for `model`: a route name, or a bare `PROVIDER/MODEL` with the direct limits.
    pub fn chain(&self, model: &str) -> Result<FallbackChain, LlmError> {
        if let Some(chain) = self.routes.get(model) {
            return Ok(chain.clone());
        }
        let Some(target) = Target::parse(model) else {
            return Err(LlmError::UnknownModel {
                model: model.to_owned(),
                reason: format!(
                    "not a route (routes: {}) and not PROVIDER/MODEL",
                    if self.routes.is_empty() {
                        "none".to_owned()
                    } else {
                        self.route_names().join(", ")
                    }
                ),
            });
        };
        if self.providers.get(&target.provider).is_none() {
            return Err(LlmError::UnknownModel {
                model: model.to_owned(),
                reason: format!(
                    "no provider `{}` (providers: {})",
                    target.provider,
                    self.providers.names().join(", ")
                ),
            });
        }
        let retries = self.options.direct_retries;
        let timeout = self.options.direct_timeout;
        Ok(FallbackChain::new(
            model,
            vec![ChainTarget {
                target,
                priority: 0,
                weight: 1,
            }],
            timeout,
            retries,
            timeout.saturating_mul(retries + 1),
        ))
    }

    /// The breaker state of provider `provider` (closed when it has not been used).
    pub fn breaker_state(&self, provider: &str) -> BreakerState {
        self.breaker(provider).state()
    }

    fn breaker(&self, provider: &str) -> Arc<CircuitBreaker> {
        let mut breakers = self
            .breakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Looked up before inserting: the key is only allocated for a provider's first call.
        if let Some(breaker) = breakers.get(provider) {
            return Arc::clone(breaker);
        }
        Arc::clone(
            breakers
                .entry(provider.to_owned())
                .or_insert_with(|| CircuitBreaker::new(self.options.breaker)),
        )
    }

    /// A chat completion from the first target of `model`'s chain that answers.
    pub async fn chat(
        &self,
        model: &str,
        request: &ChatRequest,
    ) -> Result<Routed<ChatResponse>, LlmError> {
        let chain = self.chain(model)?;
        self.chat_chain(&chain, request).await
    }

    /// [`Router::chat`] over an explicit chain.
    pub async fn chat_chain(
        &self,
        chain: &FallbackChain,
        request: &ChatRequest,
    ) -> Result<Routed<ChatResponse>, LlmError> {
        self.execute(chain, |provider, model| {
            let request = ChatRequest {
                model,
                ..request.clone()
            };
            async move { provider.chat(&request).await }
        })
        .await
        .map(|(routed, _)| routed)
    }

    /// A streamed chat completion. Falling back and retrying happen until a stream yields its
    /// first event (one that fails, ends or stalls before that is a failed attempt); after
    /// that, each gap between deltas is bounded by the per-attempt timeout and the whole stream
    /// by the deadline, and a failure ends the stream with an `Err` item.
    pub async fn stream(
        &self,
        model: &str,
        request: &ChatRequest,
    ) -> Result<Routed<DeltaStream>, LlmError> {
        let chain = self.chain(model)?;
        self.stream_chain(&chain, request).await
    }

    /// [`Router::stream`] over an explicit chain.
    pub async fn stream_chain(
        &self,
        chain: &FallbackChain,
        request: &ChatRequest,
    ) -> Result<Routed<DeltaStream>, LlmError> {
        let (routed, deadline_at) = self
            .execute(chain, |provider, model| {
                let request = ChatRequest {
                    model,
                    ..request.clone()
                };
                async move {
                    let name = provider.name().to_owned();
                    let stream = provider.stream(&request).await?;
                    first_event(stream, name).await
                }
            })
            .await?;
        let attempt = routed.attempts.last().map_or(1, |record| record.attempt);
        let guard = StreamGuard {
            inner: routed.value,
            idle: chain.attempt_timeout,
            deadline_at,
            provider: routed.target.provider.clone(),
            attempt,
            breaker: self.breaker(&routed.target.provider),
            done: false,
        };
        Ok(Routed {
            value: Box::pin(futures_util::stream::unfold(guard, StreamGuard::next)),
            target: routed.target,
            attempts: routed.attempts,
        })
    }

    /// Embeddings from the first target of `model`'s chain that answers.
    pub async fn embed(
        &self,
        model: &str,
        request: &EmbeddingRequest,
    ) -> Result<Routed<EmbeddingResponse>, LlmError> {
        let chain = self.chain(model)?;
        self.execute(&chain, |provider, model| {
            let request = EmbeddingRequest {
                model,
                ..request.clone()
            };
            async move { provider.embed(&request).await }
        })
        .await
        .map(|(routed, _)| routed)
    }

    /// Runs `call` over the chain's targets with retries, timeouts and breakers; returns the
    /// first success and the deadline instant.
    async fn execute<T, F, Fut>(
        &self,
        chain: &FallbackChain,
        call: F,
    ) -> Result<(Routed<T>, Instant), LlmError>
    where
        F: Fn(Arc<dyn Provider>, String) -> Fut,
        Fut: Future<Output = Result<T, LlmError>>,
    {
        let started = Instant::now();
        let deadline_at = started + chain.deadline;
        let mut attempts = Vec::new();
        'targets: for chain_target in self.attempt_order(chain) {
            let target = &chain_target.target;
            let target_name = target.to_string();
            let Some(provider) = self.providers.get(&target.provider) else {
                attempts.push(AttemptRecord {
                    target: target.to_string(),
                    attempt: 1,
                    cause: Some(format!("no provider `{}`", target.provider)),
                    retryable: false,
                    status: None,
                    duration: Duration::ZERO,
                });
                continue;
            };
            let breaker = self.breaker(&target.provider);
            for attempt in 1..=chain.retries.saturating_add(1) {
                let now = Instant::now();
                if now >= deadline_at {
                    attempts.push(AttemptRecord {
                        target: target.to_string(),
                        attempt,
                        cause: Some(format!(
                            "overall deadline of {} ms reached",
                            chain.deadline.as_millis()
                        )),
                        retryable: true,
                        status: None,
                        duration: Duration::ZERO,
                    });
                    break 'targets;
                }
                let permit = match breaker.try_acquire() {
                    Ok(permit) => permit,
                    Err(retry_in) => {
                        let error = LlmError::CircuitOpen {
                            provider: target.provider.clone(),
                            retry_in,
                        };
                        attempts.push(record(target, attempt, &error, Duration::ZERO));
                        continue 'targets;
                    }
                };
                let budget = chain.attempt_timeout.min(deadline_at - now);
                let attempt_started = Instant::now();
                let outcome =
                    tokio::time::timeout(budget, call(Arc::clone(provider), target.model.clone()))
                        .await
                        .unwrap_or_else(|_| {
                            Err(LlmError::Timeout {
                                provider: target.provider.clone(),
                                after: budget,
                                attempt,
                            })
                        });
                let duration = attempt_started.elapsed();
                let error = match outcome {
                    Ok(value) => {
                        permit.success();
                        self.health.record(&target_name, true);
                        attempts.push(AttemptRecord {
                            target: target_name,
                            attempt,
                            cause: None,
                            retryable: false,
                            status: None,
                            duration,
                        });
                        let routed = Routed {
                            value,
                            target: target.clone(),
                            attempts,
                        };
                        return Ok((routed, deadline_at));
                    }
                    Err(error) => error.with_attempt(attempt),
                };
                if error.is_upstream_failure() {
                    permit.failure();
                    self.health.record(&target_name, false);
                } else {
                    permit.success();
                }
                attempts.push(record(target, attempt, &error, duration));
                if !error.is_retryable() || attempt > chain.retries {
                    continue 'targets;
                }
                let wait = match error.retry_after() {
                    Some(asked) if asked > self.options.retry.max_retry_after => continue 'targets,
                    Some(asked) => asked,
                    None => self.options.retry.backoff(attempt),
                };
                if Instant::now() + wait >= deadline_at {
                    continue 'targets;
                }
                tokio::time::sleep(wait).await;
            }
        }
        Err(LlmError::AllModelsFailed { attempts })
    }
}

fn record(target: &Target, attempt: u32, error: &LlmError, duration: Duration) -> AttemptRecord {
    AttemptRecord {
        target: target.to_string(),
        attempt,
        cause: Some(error.to_string()),
        retryable: error.is_retryable(),
        status: error.status(),
        duration,
    }
}

/// Waits for the stream's first item inside the attempt, so a stream that errors, ends or
/// stalls before any event counts as a failed attempt and falls back; the item is put back in
/// front. Once an event has been forwarded the client has bytes and switching is no longer safe.
async fn first_event(mut stream: DeltaStream, provider: String) -> Result<DeltaStream, LlmError> {
    match stream.next().await {
        Some(Ok(first)) => Ok(Box::pin(
            futures_util::stream::once(std::future::ready(Ok(first))).chain(stream),
        )),
        Some(Err(error)) => Err(error),
        None => Err(LlmError::Stream {
            provider,
            reason: "the stream ended before its first event".to_owned(),
            transient: true,
            attempt: 1,
        }),
    }
}

/// Bounds an opened stream: idle gaps, the overall deadline, and breaker accounting.
struct StreamGuard {
    inner: DeltaStream,
    idle: Duration,
    deadline_at: Instant,
    provider: String,
    attempt: u32,
    breaker: Arc<CircuitBreaker>,
    done: bool,
}

impl StreamGuard {
    async fn next(mut self) -> Option<(Result<crate::types::StreamDelta, LlmError>, StreamGuard)> {
        if self.done {
            return None;
        }
        let wait = self
            .idle
            .min(self.deadline_at.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(wait, self.inner.next()).await {
            Ok(Some(Ok(delta))) => Some((Ok(delta), self)),
            Ok(Some(Err(error))) => {
                self.done = true;
                if error.is_upstream_failure() {
                    self.breaker.note_failure();
                }
                let error = error.with_attempt(self.attempt);
                Some((Err(error), self))
            }
            Ok(None) => None,
            Err(_) => {
                self.done = true;
                self.breaker.note_failure();
                let error = LlmError::Timeout {
                    provider: self.provider.clone(),
                    after: wait,
                    attempt: self.attempt,
                };
                Some((Err(error), self))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const SAMPLES: usize = 2000;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(60),
        }
    }

    /// Many waits before retry `retry`, from a seeded generator (the same draws every run).
    fn samples(retry: u32) -> Vec<Duration> {
        fastrand::seed(u64::from(retry) + 7);
        (0..SAMPLES).map(|_| policy().backoff(retry)).collect()
    }

    #[test]
    fn backoff_stays_within_its_doubling_cap() {
        for (retry, cap_ms) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (6, 1000)] {
            let cap = Duration::from_millis(cap_ms);
            let waits = samples(retry);
            assert!(
                waits.iter().all(|wait| *wait <= cap),
                "retry {retry}: a wait above {cap:?}"
            );
            // Full jitter: spread over the whole range, not pinned to zero or to the cap.
            assert!(waits.iter().any(|wait| *wait < cap / 4), "retry {retry}");
            assert!(
                waits.iter().any(|wait| *wait > cap * 3 / 4),
                "retry {retry}"
            );
            let mean = waits.iter().sum::<Duration>() / u32::try_from(SAMPLES).unwrap();
            assert!(
                mean > cap * 2 / 5 && mean < cap * 3 / 5,
                "retry {retry}: mean {mean:?} is not about half of {cap:?}"
            );
        }
    }

    #[test]
    fn backoff_grows_per_retry_until_the_cap() {
        let largest = |retry| samples(retry).into_iter().max().unwrap();
        // Each retry's waits reach beyond everything the previous one could wait.
        for retry in 1..4 {
            assert!(
                largest(retry + 1) > policy().base_delay * (1 << (retry - 1)),
                "retry {} does not wait longer than retry {retry}",
                retry + 1
            );
        }
        // Far retries (and the exponent clamp) stay at max_delay without overflowing.
        for retry in [10, 31, 64, u32::MAX] {
            let waits = samples(retry);
            assert!(waits.iter().all(|wait| *wait <= policy().max_delay));
            assert!(waits.iter().any(|wait| *wait > policy().max_delay * 9 / 10));
        }
    }
}
