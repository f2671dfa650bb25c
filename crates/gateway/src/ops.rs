//! Operational endpoints: `/healthz` (the process answers), `/readyz` (the registry store, a
//! Redis backend and at least one provider are usable), `/metrics` (Prometheus text).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use promptops_llm::BreakerState;
use serde_json::json;

use crate::state::AppState;

/// `GET /healthz`.
pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: 200 when the store and any Redis backend answer and some provider's breaker
/// is not open, else 503 with the reasons (a balancer then stops sending requests that could
/// only fail).
pub async fn readyz(State(state): State<AppState>) -> Response {
    let mut problems = Vec::new();
    let runtime = state.runtime();
    let router = runtime.router();
    let providers = router.providers().names();
    if providers.is_empty() {
        problems.push("no providers configured".to_owned());
    } else if providers
        .iter()
        .all(|name| router.breaker_state(name) == BreakerState::Open)
    {
        problems.push(format!(
            "every provider's circuit breaker is open ({})",
            providers.join(", ")
        ));
    }
    // Memory backends answer at once; Redis gets a PING (bounded by its response timeout).
    let cache_ping = async {
        match state.cache() {
            Some((cache, _)) => cache.ping().await.map_err(|error| error.to_string()),
            None => Ok(()),
        }
    };
    let (limits, cache) = tokio::join!(state.limiter().ping(), cache_ping);
    if let Err(error) = limits {
        problems.push(format!("limits backend: {error}"));
    }
    if let Err(error) = cache {
        problems.push(format!("cache backend: {error}"));
    }
    if let Some(registry) = runtime.registry()
        && let Err(error) = registry.store().revision().await
    {
        problems.push(format!("registry store: {error}"));
    }
    if problems.is_empty() {
        axum::Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "unavailable", "problems": problems})),
        )
            .into_response()
    }
}

/// `GET /metrics`. The circuit gauges are read from the router here, at scrape time: an open
/// breaker turns half-open by the clock alone, with no event to update a gauge on.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let router = state.runtime().router();
    for provider in router.providers().names() {
        state
            .metrics()
            .circuit_state(provider, router.breaker_state(provider));
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().encode(),
    )
        .into_response()
}
