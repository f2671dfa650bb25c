//! Prometheus metrics of one gateway instance (a registry per [`crate::AppState`], no globals):
//! requests by route, served provider and model, and status, latency and time-to-first-token
//! histograms, tokens, cost, upstream errors and fallbacks by provider, circuit breaker states,
//! guard verdicts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Labels of a request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The matched route, e.g. `/v1/chat/completions`.
    pub route: String,
    /// The provider that served the answer, [`NOT_SERVED`] when no model call answered.
    pub provider: String,
    /// The model at that provider, [`NOT_SERVED`] when no model call answered.
    pub model: String,
    /// The HTTP status.
    pub status: String,
}

/// The `provider` and `model` of a request no model call answered (an error, a cache hit,
/// `/healthz`).
pub const NOT_SERVED: &str = "none";

/// Labels of a provider's circuit breaker.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// The configured provider name.
    pub provider: String,
}

/// Labels of a model call.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    /// `PROVIDER`.
    pub provider: String,
    /// The model at the provider.
    pub model: String,
}

/// Labels of token counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    /// `PROVIDER`.
    pub provider: String,
    /// The model at the provider.
    pub model: String,
    /// `input`, `output` or `cached`.
    pub kind: String,
}

/// Labels naming one thing, e.g. a provider or a guard verdict.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabels {
    /// The name.
    pub name: String,
}

/// Labels of one guard check's outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    /// The check (`injection`, `pii`, `secrets`, `canary`, `tool_denied`, `document_injection`...).
    pub check: String,
    /// What it did (`blocked_input`, `blocked_output`, `warned`).
    pub verdict: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// The gateway's metrics.
pub struct GatewayMetrics {
    registry: Mutex<Registry>,
    /// Requests by route, served provider and model, and status.
    pub requests: Family<RouteLabels, Counter>,
    /// Request latency in seconds (to the end of the body for streams), same labels.
    pub latency: HistogramFamily<RouteLabels>,
    /// Circuit breaker state by provider: 0 closed, 1 half-open, 2 open.
    pub circuit: Family<ProviderLabels, Gauge>,
    /// Time to first token of streams, seconds.
    pub ttft: HistogramFamily<ModelLabels>,
    /// Tokens by provider, model and kind.
    pub tokens: Family<TokenLabels, Counter>,
    /// Cost in USD by provider and model.
    pub cost: Family<ModelLabels, Counter<f64, AtomicU64>>,
    /// Failed upstream attempts by provider.
    pub upstream_errors: Family<NameLabels, Counter>,
    /// Requests served by a fallback or after retries, by route/model asked.
    pub fallbacks: Family<NameLabels, Counter>,
    /// Guard verdicts (`allowed`, `warned`, `blocked_input`, `blocked_output`).
    pub guard: Family<NameLabels, Counter>,
    /// Guard check outcomes by check and verdict.
    pub guard_checks: Family<CheckLabels, Counter>,
    /// Injection spike alerts raised.
    pub guard_alerts: Counter,
    /// Requests refused by a key's limits, by limit.
    pub rate_limited: Family<NameLabels, Counter>,
    /// Cache lookups by outcome (`hit`, `miss`); zero until a cache is configured.
    pub cache: Family<NameLabels, Counter>,
    /// Handles of the per-request series, found once per label set: a label lookup allocates
    /// its label strings and hashes them, which every request would otherwise pay several times.
    handles: Handles,
}

/// The counters of one route and status.
struct RouteSeries {
    requests: Counter,
    latency: Histogram,
}

/// The counters of one provider model.
struct TargetSeries {
    input: Counter,
    output: Counter,
    cached: Counter,
    cache_write: Counter,
    cost: Counter<f64, AtomicU64>,
}

/// Route -> (status, provider, model) -> series, and provider -> model -> series. Both label
/// sets are bounded by what was served (matched routes; configured providers and the models
/// they answered with).
#[derive(Default)]
struct Handles {
    routes: RwLock<HashMap<String, HashMap<Served, Arc<RouteSeries>>>>,
    targets: RwLock<HashMap<String, HashMap<String, Arc<TargetSeries>>>>,
}

/// The status, provider and model of a request series, owned.
#[derive(PartialEq, Eq)]
struct Served {
    status: u16,
    provider: String,
    model: String,
}

/// A borrowed view of [`Served`], so a lookup allocates nothing.
trait ServedKey {
    fn parts(&self) -> (u16, &str, &str);
}

impl ServedKey for Served {
    fn parts(&self) -> (u16, &str, &str) {
        (self.status, &self.provider, &self.model)
    }
}

impl ServedKey for (u16, &str, &str) {
    fn parts(&self) -> (u16, &str, &str) {
        *self
    }
}

impl<'a> std::borrow::Borrow<dyn ServedKey + 'a> for Served {
    fn borrow(&self) -> &(dyn ServedKey + 'a) {
        self
    }
}

// The owned and the borrowed key hash alike: both hash their `parts`.
impl std::hash::Hash for Served {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl std::hash::Hash for dyn ServedKey + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for dyn ServedKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn ServedKey + '_ {}

/// The value under `outer` -> `inner`, made by `make` the first time.
fn cached<K: Eq + std::hash::Hash + ?Sized, I, V>(
    map: &RwLock<HashMap<String, HashMap<I, Arc<V>>>>,
    outer: &str,
    inner: &K,
    own: impl FnOnce() -> I,
    make: impl FnOnce() -> V,
) -> Arc<V>
where
    I: Eq + std::hash::Hash + std::borrow::Borrow<K>,
{
    {
        let read = map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = read.get(outer).and_then(|by| by.get(inner)) {
            return found.clone();
        }
    }
    let mut write = map
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    write
        .entry(outer.to_owned())
        .or_default()
        .entry(own())
        .or_insert_with(|| Arc::new(make()))
        .clone()
}

impl std::fmt::Debug for GatewayMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayMetrics").finish_non_exhaustive()
    }
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        GatewayMetrics::new()
    }
}

impl GatewayMetrics {
    /// Registers every metric.
    pub fn new() -> GatewayMetrics {
        let mut registry = Registry::with_prefix("promptops");
        let requests = Family::<RouteLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, served provider and model, and status",
            requests.clone(),
        );
        let latency: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route, served provider and model, and status (streams: to the end of the body)",
            latency.clone(),
        );
        let circuit = Family::<ProviderLabels, Gauge>::default();
        registry.register(
            "circuit_state",
            "Circuit breaker state by provider: 0 closed, 1 half-open, 2 open",
            circuit.clone(),
        );
        let ttft: HistogramFamily<ModelLabels> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "time_to_first_token_seconds",
            "Time to the first streamed token",
            ttft.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "tokens",
            "Tokens by provider, model and kind (input, output, cached: read from the prompt cache, cache_write: written to it)",
            tokens.clone(),
        );
        let cost = Family::<ModelLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "cost_usd",
            "Cost in USD by provider and model",
            cost.clone(),
        );
        let upstream_errors = Family::<NameLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Failed upstream attempts by provider",
            upstream_errors.clone(),
        );
        let fallbacks = Family::<NameLabels, Counter>::default();
        registry.register(
            "fallbacks",
            "Requests that needed a retry or a fallback target",
            fallbacks.clone(),
        );
        let guard = Family::<NameLabels, Counter>::default();
        registry.register("guard_verdicts", "Guard verdicts", guard.clone());
        let guard_checks = Family::<CheckLabels, Counter>::default();
        registry.register(
            "guard_checks",
            "Guard checks that fired, by check and verdict",
            guard_checks.clone(),
        );
        let guard_alerts = Counter::default();
        registry.register(
            "guard_alerts",
            "Injection spike alerts (share of flagged requests far above its baseline)",
            guard_alerts.clone(),
        );
        let rate_limited = Family::<NameLabels, Counter>::default();
        registry.register(
            "rate_limit_rejections",
            "Requests refused by a key's limits",
            rate_limited.clone(),
        );
        let cache = Family::<NameLabels, Counter>::default();
        registry.register(
            "cache_lookups",
            "Response cache lookups by outcome",
            cache.clone(),
        );
        GatewayMetrics {
            registry: Mutex::new(registry),
            requests,
            latency,
            circuit,
            ttft,
            tokens,
            cost,
            upstream_errors,
            fallbacks,
            guard,
            guard_checks,
            guard_alerts,
            rate_limited,
            cache,
            handles: Handles::default(),
        }
    }

    /// Counts one HTTP request of `route` answered by `provider`/`model` (or [`NOT_SERVED`])
    /// with `status` after `seconds`.
    pub fn request(&self, route: &str, provider: &str, model: &str, status: u16, seconds: f64) {
        let key: &dyn ServedKey = &(status, provider, model);
        let series = cached(
            &self.handles.routes,
            route,
            key,
            || Served {
                status,
                provider: provider.to_owned(),
                model: model.to_owned(),
            },
            || {
                let labels = RouteLabels {
                    route: route.to_owned(),
                    provider: provider.to_owned(),
                    model: model.to_owned(),
                    status: status.to_string(),
                };
                RouteSeries {
                    requests: self.requests.get_or_create(&labels).clone(),
                    latency: self.latency.get_or_create(&labels).clone(),
                }
            },
        );
        series.requests.inc();
        series.latency.observe(seconds);
    }

    /// Sets the circuit gauge of `provider`.
    pub fn circuit_state(&self, provider: &str, state: promptops_llm::BreakerState) {
        let value = match state {
            promptops_llm::BreakerState::Closed => 0,
            promptops_llm::BreakerState::HalfOpen => 1,
            promptops_llm::BreakerState::Open => 2,
        };
        self.circuit
            .get_or_create(&ProviderLabels {
                provider: provider.to_owned(),
            })
            .set(value);
    }

    /// Counts a model call's tokens and cost.
    pub fn usage(
        &self,
        provider: &str,
        model: &str,
        usage: &promptops_llm::Usage,
        cost: Option<f64>,
    ) {
        let series = cached(
            &self.handles.targets,
            provider,
            model,
            || model.to_owned(),
            || {
                let token = |kind: &str| {
                    self.tokens
                        .get_or_create(&TokenLabels {
                            provider: provider.to_owned(),
                            model: model.to_owned(),
                            kind: kind.to_owned(),
                        })
                        .clone()
                };
                TargetSeries {
                    input: token("input"),
                    output: token("output"),
                    cached: token("cached"),
                    cache_write: token("cache_write"),
                    cost: self
                        .cost
                        .get_or_create(&ModelLabels {
                            provider: provider.to_owned(),
                            model: model.to_owned(),
                        })
                        .clone(),
                }
            },
        );
        series.input.inc_by(usage.input_tokens);
        series.output.inc_by(usage.output_tokens);
        series.cached.inc_by(usage.cached_tokens);
        series.cache_write.inc_by(usage.cache_write_tokens);
        if let Some(cost) = cost {
            series.cost.inc_by(cost);
        }
    }

    /// Counts the failed attempts of a routed call.
    pub fn attempts(&self, asked: &str, attempts: &[promptops_llm::AttemptRecord]) {
        let mut failed = false;
        for attempt in attempts.iter().filter(|a| a.cause.is_some()) {
            failed = true;
            let provider = attempt.target.split('/').next().unwrap_or_default();
            self.upstream_errors
                .get_or_create(&NameLabels {
                    name: provider.to_owned(),
                })
                .inc();
        }
        if failed {
            self.fallbacks
                .get_or_create(&NameLabels {
                    name: asked.to_owned(),
                })
                .inc();
        }
    }

    /// Counts one guard verdict.
    pub fn guard_verdict(&self, verdict: &str) {
        self.guard
            .get_or_create(&NameLabels {
                name: verdict.to_owned(),
            })
            .inc();
    }

    /// Counts the verdict on a request the guard let through: `allowed`, or `warned` with the
    /// checks that fired. Nothing when the guard is off.
    pub fn guard_passed(&self, guard_enabled: bool, warnings: &[String]) {
        if !guard_enabled {
            return;
        }
        if warnings.is_empty() {
            self.guard_verdict("allowed");
        } else {
            self.guard_checks("warned", warnings);
        }
    }

    /// Counts a guard verdict and, per check named in `reasons` (`CHECK:detail`), the check.
    pub fn guard_checks(&self, verdict: &str, reasons: &[String]) {
        self.guard_verdict(verdict);
        let mut seen: Vec<&str> = Vec::new();
        for reason in reasons {
            let check = check_name(reason);
            if seen.contains(&check) {
                continue;
            }
            seen.push(check);
            self.guard_checks
                .get_or_create(&CheckLabels {
                    check: check.to_owned(),
                    verdict: verdict.to_owned(),
                })
                .inc();
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

/// The check a guard reason names: the text before the first `:` or space, reduced to a
/// bounded label (letters, digits, `_`), so reasons never blow up the label set.
fn check_name(reason: &str) -> &str {
    let end = reason
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(reason.len());
    match &reason[..end] {
        "" => "other",
        name if name.len() > 32 => "other",
        name => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_are_named_by_the_reason_prefix() {
        assert_eq!(check_name("injection:0.97"), "injection");
        assert_eq!(check_name("tool_denied:search: role"), "tool_denied");
        assert_eq!(check_name("canary leaked"), "canary");
        assert_eq!(check_name(":x"), "other");
        let metrics = GatewayMetrics::new();
        metrics.guard_checks(
            "warned",
            &[
                "pii:2".to_owned(),
                "pii:3".to_owned(),
                "secrets:1".to_owned(),
            ],
        );
        let text = metrics.encode();
        assert!(
            text.contains("promptops_guard_checks_total{check=\"pii\",verdict=\"warned\"} 1"),
            "{text}"
        );
    }
}
