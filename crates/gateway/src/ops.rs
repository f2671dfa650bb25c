//! Operational endpoints: `/healthz` (the process answers), `/readyz` (the registry store and
//! at least one provider are usable), `/metrics` (Prometheus text).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

/// `GET /healthz`.
pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: 200 when the store answers and providers exist, else 503 with the reasons.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let mut problems = Vec::new();
    let runtime = state.runtime();
    if runtime.router().providers().names().is_empty() {
        problems.push("no providers configured".to_owned());
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
