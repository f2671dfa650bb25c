//! The admin API under `/admin/v1/` over the registry service: prompts, versions, labels,
//! rendering, diffs, deployments, routing, metrics, canary checks, experiments, export, the audit
//! trail and the guard's document review queue. Each handler calls the same [`Registry`] method
//! as the matching CLI command. Every configuration change (versions, labels, deployments,
//! canary rollbacks, experiments, reviews) is audited by the registry with the actor from the
//! `x-promptops-actor` header (default `admin-api`); recorded outcomes are data, not changes, and
//! are not audited (an audit row also moves the routing revision). The OpenAPI 3.1 document is
//! [`AdminApi`], served at `/openapi.json`.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use promptops_registry::experiment::{AnalysisConfig, ExperimentArm};
use promptops_registry::files::{FileFormat, render_prompt_file};
use promptops_registry::metrics::Outcome;
use promptops_registry::review::ReviewStatus;
use promptops_registry::rollback::RollbackPolicy;
use promptops_registry::version::{Bump, PromptContent, parse_version};
use promptops_registry::{Registry, RegistryError};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::error::GatewayError;
use crate::openai::json_bytes;
use crate::state::AppState;

/// Header naming who performs an admin action (recorded in the audit trail).
pub const ACTOR_HEADER: &str = "x-promptops-actor";

/// The OpenAPI document of the admin API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "promptops admin API",
        description = "Prompt registry administration."
    ),
    paths(
        list_prompts,
        show_prompt,
        show_version,
        add_version,
        deploy,
        expand,
        promote,
        rollback,
        route,
        version_metrics,
        audit,
        list_reviews,
        decide_review,
        set_label,
        render,
        diff,
        record_metrics,
        check_canary,
        check_all_canaries,
        create_experiment,
        show_experiment,
        assign,
        record_outcome,
        analyze,
        export,
        verify_audit
    ),
    components(schemas(
        AddVersionBody,
        LabelBody,
        RenderBody,
        RecordMetricsBody,
        CanaryPolicyBody,
        CreateExperimentBody,
        ArmBody,
        OutcomeBody,
        DeployBody,
        ExpandBody,
        ReasonBody,
        RollbackBody,
        ReviewDecisionBody
    ))
)]
pub struct AdminApi;

/// Body of `POST /admin/v1/prompts/{name}/versions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddVersionBody {
    /// The prompt content: `messages` (role + template), `variables`, `model`, `generation`,
    /// `output_schema`, `tags`.
    #[schema(value_type = Object)]
    pub content: Value,
    /// `major`, `minor` or `patch` (default).
    #[serde(default)]
    pub bump: Option<String>,
    /// Why the version was added.
    #[serde(default)]
    pub message: Option<String>,
}

/// Body of `POST /admin/v1/prompts/{name}/deploy`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployBody {
    /// The version to roll out, e.g. `1.2.0`.
    pub version: String,
    /// Its share of traffic, 0 to 1.
    pub fraction: f64,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Body of `POST /admin/v1/prompts/{name}/expand`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpandBody {
    /// The candidate's new share of traffic, 0 to 1.
    pub fraction: f64,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Body of `POST /admin/v1/prompts/{name}/promote` (may be empty).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Body of `POST /admin/v1/prompts/{name}/rollback` (may be empty).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// The version to return to; absent drops the candidate.
    #[serde(default)]
    pub to: Option<String>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Query of `GET /admin/v1/prompts/{name}/route`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct RouteQuery {
    /// The request id to route.
    pub request_id: String,
}

/// Query of `GET /admin/v1/reviews`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ReviewQuery {
    /// `pending` (default), `approved`, `rejected` or `all`.
    #[serde(default)]
    pub status: Option<String>,
}

/// Body of `POST /admin/v1/reviews/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewDecisionBody {
    /// `approve` (a false positive: the content is used from now on) or `reject`.
    pub decision: String,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Query of `GET /admin/v1/audit`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Only this prompt's entries.
    #[serde(default)]
    pub prompt: Option<String>,
}

fn registry(state: &AppState) -> Result<&Registry, GatewayError> {
    state.runtime().registry().ok_or(GatewayError::NoRegistry)
}

fn actor(headers: &HeaderMap) -> String {
    headers
        .get(ACTOR_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty() && value.len() <= 200)
        .unwrap_or("admin-api")
        .to_owned()
}

/// Reads a JSON body (an empty body reads as `{}`), naming the field at fault.
fn body<T: DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<T, GatewayError> {
    let bytes = json_bytes(state, headers, raw)?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let param = (!path.is_empty() && path != ".").then_some(path);
        GatewayError::bad_request(param, format!("invalid body: {}", error.into_inner()))
    })
}

fn query_error(rejection: QueryRejection) -> GatewayError {
    GatewayError::bad_request(None, rejection.body_text())
}

fn json<T: serde::Serialize>(value: &T) -> Response {
    axum::Json(value).into_response()
}

fn version_of(text: &str) -> Result<promptops_registry::Version, GatewayError> {
    parse_version(text)
        .map_err(|error| GatewayError::bad_request(Some("version".into()), error.to_string()))
}

/// `NAME@VERSION` when `selector` looks like a version, else `NAME:LABEL`.
fn reference(name: &str, selector: &str) -> String {
    let versionish = selector
        .strip_prefix('v')
        .unwrap_or(selector)
        .starts_with(|c: char| c.is_ascii_digit());
    if versionish {
        format!("{name}@{selector}")
    } else {
        format!("{name}:{selector}")
    }
}

/// List every prompt with its latest version, labels and deployment.
#[utoipa::path(get, path = "/admin/v1/prompts", tag = "prompts",
    responses((status = 200, description = "Prompt summaries", body = Object)))]
pub async fn list_prompts(State(state): State<AppState>) -> Result<Response, GatewayError> {
    Ok(json(&registry(&state)?.list().await?))
}

/// A prompt's versions (oldest first) and its deployment.
#[utoipa::path(get, path = "/admin/v1/prompts/{name}", tag = "prompts",
    params(("name" = String, Path, description = "Prompt name")),
    responses((status = 200, description = "Versions and deployment", body = Object),
              (status = 404, description = "Unknown prompt", body = Object)))]
pub async fn show_prompt(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, GatewayError> {
    let registry = registry(&state)?;
    let versions = registry.versions(&name).await?;
    let deployment = registry.deployment(&name).await?;
    Ok(json(
        &json!({"name": name, "versions": versions, "deployment": deployment}),
    ))
}

/// One version, by number (`1.2.0`) or label (`production`).
#[utoipa::path(get, path = "/admin/v1/prompts/{name}/versions/{version}", tag = "prompts",
    params(("name" = String, Path, description = "Prompt name"),
           ("version" = String, Path, description = "Version or label")),
    responses((status = 200, description = "The version", body = Object),
              (status = 404, description = "Unknown prompt, version or label", body = Object)))]
pub async fn show_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, GatewayError> {
    Ok(json(
        &registry(&state)?.get(&reference(&name, &version)).await?,
    ))
}

/// Add a version (identical content returns the existing version with 200).
#[utoipa::path(post, path = "/admin/v1/prompts/{name}/versions", tag = "prompts",
    params(("name" = String, Path, description = "Prompt name")),
    request_body = AddVersionBody,
    responses((status = 201, description = "Created", body = Object),
              (status = 200, description = "Same content as an existing version", body = Object),
              (status = 400, description = "Invalid content", body = Object)))]
pub async fn add_version(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let request: AddVersionBody = body(&state, &headers, raw)?;
    let content: PromptContent =
        serde_path_to_error::deserialize(request.content).map_err(|error| {
            let path = error.path().to_string();
            GatewayError::bad_request(
                Some(format!("content.{path}")),
                format!("invalid `content.{path}`: {}", error.into_inner()),
            )
        })?;
    let bump = match request.bump.as_deref() {
        None | Some("patch") => Bump::Patch,
        Some("minor") => Bump::Minor,
        Some("major") => Bump::Major,
        Some(other) => {
            return Err(GatewayError::bad_request(
                Some("bump".into()),
                format!("`{other}` is not major, minor or patch"),
            ));
        }
    };
    let added = registry(&state)?
        .add_version(
            &name,
            content,
            bump,
            &actor(&headers),
            request.message.as_deref(),
        )
        .await?;
    state.runtime().refresh_routes().await?;
    let status = if added.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(added)).into_response())
}

/// Start a canary of a version (the first deployment makes it stable).
#[utoipa::path(post, path = "/admin/v1/prompts/{name}/deploy", tag = "deployments",
    params(("name" = String, Path, description = "Prompt name")),
    request_body = DeployBody,
    responses((status = 200, description = "The transition", body = Object),
              (status = 409, description = "Not allowed in the current state", body = Object)))]
pub async fn deploy(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let request: DeployBody = body(&state, &headers, raw)?;
    let version = version_of(&request.version)?;
    let transition = registry(&state)?
        .deploy(
            &name,
            &version,
            request.fraction,
            &actor(&headers),
            request.reason.as_deref(),
        )
        .await?;
    state.runtime().refresh_routes().await?;
    Ok(json(&transition))
}

/// Change the candidate's share of traffic.
#[utoipa::path(post, path = "/admin/v1/prompts/{name}/expand", tag = "deployments",
    params(("name" = String, Path, description = "Prompt name")),
    request_body = ExpandBody,
    responses((status = 200, description = "The transition", body = Object)))]
pub async fn expand(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let request: ExpandBody = body(&state, &headers, raw)?;
    let transition = registry(&state)?
        .expand(
            &name,
            request.fraction,
            &actor(&headers),
            request.reason.as_deref(),
        )
        .await?;
    state.runtime().refresh_routes().await?;
    Ok(json(&transition))
}

/// Make the candidate stable at 100%.
#[utoipa::path(post, path = "/admin/v1/prompts/{name}/promote", tag = "deployments",
    params(("name" = String, Path, description = "Prompt name")),
    request_body = ReasonBody,
    responses((status = 200, description = "The transition", body = Object)))]
pub async fn promote(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let request: ReasonBody = body(&state, &headers, raw)?;
    let transition = registry(&state)?
        .promote(&name, &actor(&headers), request.reason.as_deref())
        .await?;
    state.runtime().refresh_routes().await?;
    Ok(json(&transition))
}

/// Drop the candidate, or return to a given version.
#[utoipa::path(post, path = "/admin/v1/prompts/{name}/rollback", tag = "deployments",
    params(("name" = String, Path, description = "Prompt name")),
    request_body = RollbackBody,
    responses((status = 200, description = "The transition", body = Object)))]
pub async fn rollback(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let request: RollbackBody = body(&state, &headers, raw)?;
    let to = match request.to.as_deref() {
        Some(text) => Some(version_of(text)?),
        None => None,
    };
    let transition = registry(&state)?
        .rollback(
            &name,
            to.as_ref(),
            &actor(&headers),
            request.reason.as_deref(),
        )
        .await?;
    state.runtime().refresh_routes().await?;
    Ok(json(&transition))
}

/// Which version serves a request id.
#[utoipa::path(get, path = "/admin/v1/prompts/{name}/route", tag = "deployments",
    params(("name" = String, Path, description = "Prompt name"), RouteQuery),
    responses((status = 200, description = "Version and arm", body = Object)))]
pub async fn route(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<RouteQuery>, QueryRejection>,
) -> Result<Response, GatewayError> {
    let Query(query) = query.map_err(query_error)?;
    let route = registry(&state)?.route(&name, &query.request_id).await?;
    Ok(json(&json!({
        "prompt": name,
        "request_id": query.request_id,
        "version": route.version.version,
        "arm": route.arm,
    })))
}

/// Accumulated metrics of a version.
#[utoipa::path(get, path = "/admin/v1/prompts/{name}/versions/{version}/metrics", tag = "metrics",
    params(("name" = String, Path, description = "Prompt name"),
           ("version" = String, Path, description = "Version, e.g. 1.0.0")),
    responses((status = 200, description = "Metrics and their summary", body = Object)))]
pub async fn version_metrics(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, GatewayError> {
    let version = version_of(&version)?;
    state.runtime().flush_metrics().await?;
    let metrics = registry(&state)?.metrics(&name, &version).await?;
    let summary = metrics.summary();
    Ok(json(&json!({
        "prompt": name,
        "version": version,
        "metrics": metrics,
        "summary": summary,
    })))
}

/// The audit trail (of one prompt, or all).
#[utoipa::path(get, path = "/admin/v1/audit", tag = "audit",
    params(AuditQuery),
    responses((status = 200, description = "Audit entries, oldest first", body = Object)))]
pub async fn audit(
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, GatewayError> {
    let Query(query) = query.map_err(query_error)?;
    Ok(json(
        &registry(&state)?.audit(query.prompt.as_deref()).await?,
    ))
}

/// Retrieved documents the guard quarantined.
#[utoipa::path(get, path = "/admin/v1/reviews", tag = "reviews",
    params(ReviewQuery),
    responses((status = 200, description = "Queued documents, oldest first", body = Object)))]
pub async fn list_reviews(
    State(state): State<AppState>,
    query: Result<Query<ReviewQuery>, QueryRejection>,
) -> Result<Response, GatewayError> {
    let Query(query) = query.map_err(query_error)?;
    let status = match query.status.as_deref().unwrap_or("pending") {
        "all" => None,
        other => Some(other.parse::<ReviewStatus>().map_err(|error| {
            GatewayError::bad_request(Some("status".to_owned()), error.to_string())
        })?),
    };
    Ok(json(&registry(&state)?.reviews(status).await?))
}

/// Approve or reject a quarantined document (audited).
#[utoipa::path(post, path = "/admin/v1/reviews/{id}", tag = "reviews",
    params(("id" = i64, Path, description = "Queue id")),
    request_body = ReviewDecisionBody,
    responses((status = 200, description = "The decided item", body = Object)))]
pub async fn decide_review(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let request: ReviewDecisionBody = body(&state, &headers, raw)?;
    let decision = match request.decision.as_str() {
        "approve" | "approved" => ReviewStatus::Approved,
        "reject" | "rejected" => ReviewStatus::Rejected,
        other => {
            return Err(GatewayError::bad_request(
                Some("decision".to_owned()),
                format!("`{other}` is not `approve` or `reject`"),
            ));
        }
    };
    let item = registry(&state)?
        .resolve_review(id, decision, &actor(&headers), request.reason.as_deref())
        .await?;
    Ok(json(&item))
}

/// Body of `PUT /admin/v1/prompts/{name}/labels/{label}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelBody {
    /// The version the label should point at, by number (`1.2.0`) or by another label.
    pub version: String,
}

/// Body of `POST /admin/v1/prompts/{name}/versions/{version}/render` (may be empty).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenderBody {
    /// The template variables, typed as the version declares them.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: serde_json::Map<String, Value>,
}

/// Query of `GET /admin/v1/prompts/{name}/diff`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DiffQuery {
    /// The first side: a version (`1.0.0`), a label, `@VERSION` or `:LABEL`.
    pub a: String,
    /// The second side, in the same forms.
    pub b: String,
}

/// Body of `POST /admin/v1/prompts/{name}/versions/{version}/metrics`: one outcome recorded
/// `count` times, like `metrics record`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordMetricsBody {
    /// How many identical outcomes to record, 1 to 10000 (default 1).
    #[serde(default)]
    pub count: Option<u32>,
    /// The requests failed.
    #[serde(default)]
    pub failure: bool,
    /// The answers failed to parse (implies `failure`).
    #[serde(default)]
    pub parse_error: bool,
    /// The answers failed validation (implies `failure`).
    #[serde(default)]
    pub validation_error: bool,
    /// Latency in milliseconds.
    pub latency_ms: f64,
    /// Prompt tokens per request.
    #[serde(default)]
    pub input_tokens: u64,
    /// Completion tokens per request.
    #[serde(default)]
    pub output_tokens: u64,
    /// Cost per request in USD.
    #[serde(default)]
    pub cost: f64,
}

/// Body of the canary checks (may be empty): thresholds, each defaulting to the CLI's.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CanaryPolicyBody {
    /// Lowest acceptable success rate (default 0.95).
    #[serde(default)]
    pub min_success_rate: Option<f64>,
    /// Highest acceptable parse error rate (default 0.05).
    #[serde(default)]
    pub max_parse_error_rate: Option<f64>,
    /// Highest acceptable candidate/stable p95 latency ratio (default 1.2).
    #[serde(default)]
    pub max_latency_ratio: Option<f64>,
    /// Highest acceptable candidate/stable cost ratio (default 1.15).
    #[serde(default)]
    pub max_cost_ratio: Option<f64>,
    /// Requests each version needs before it is judged (default 100).
    #[serde(default)]
    pub min_requests: Option<u64>,
}

impl CanaryPolicyBody {
    fn policy(&self) -> RollbackPolicy {
        let default = RollbackPolicy::default();
        RollbackPolicy {
            min_success_rate: self.min_success_rate.unwrap_or(default.min_success_rate),
            max_parse_error_rate: self
                .max_parse_error_rate
                .unwrap_or(default.max_parse_error_rate),
            max_latency_p95_ratio: self
                .max_latency_ratio
                .unwrap_or(default.max_latency_p95_ratio),
            max_cost_ratio: self.max_cost_ratio.unwrap_or(default.max_cost_ratio),
            min_requests: self.min_requests.unwrap_or(default.min_requests),
        }
    }
}

/// One arm of `POST /admin/v1/experiments`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArmBody {
    /// The version this arm serves, e.g. `1.0.0`.
    pub version: String,
    /// Its relative weight (default 1).
    #[serde(default)]
    pub weight: Option<f64>,
}

/// Body of `POST /admin/v1/experiments`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateExperimentBody {
    /// The experiment's name (never reused: it salts the assignment).
    pub name: String,
    /// The prompt whose versions are compared.
    pub prompt: String,
    /// At least two arms; the first is the control.
    pub arms: Vec<ArmBody>,
}

/// Query of `GET /admin/v1/experiments/{name}/assignment`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AssignQuery {
    /// The unit (user, session, request).
    pub unit: String,
}

/// Body of `POST /admin/v1/experiments/{name}/outcomes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeBody {
    /// The unit.
    pub unit: String,
    /// The version (arm) that served it; default: the unit's assignment.
    #[serde(default)]
    pub version: Option<String>,
    /// Binary result.
    #[serde(default)]
    pub success: Option<bool>,
    /// Numeric score.
    #[serde(default)]
    pub score: Option<f64>,
}

/// Query of `GET /admin/v1/experiments/{name}/analysis`; defaults are the CLI's.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AnalysisQuery {
    /// Significance level (default 0.05).
    #[serde(default)]
    pub alpha: Option<f64>,
    /// Power used for the minimum sample size (default 0.8).
    #[serde(default)]
    pub power: Option<f64>,
    /// Smallest absolute change in success rate worth detecting (default 0.05).
    #[serde(default)]
    pub min_effect: Option<f64>,
    /// Smallest change in mean score worth detecting, in standard deviations (default 0.2).
    #[serde(default)]
    pub min_effect_sd: Option<f64>,
}

/// Query of `GET /admin/v1/export`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ExportQuery {
    /// `toml` (default) or `yaml`.
    #[serde(default)]
    pub format: Option<String>,
}

/// A registry 400 about one input, reported as a 400 naming `param` (the registry's errors
/// name the value, not the request field it came from).
fn about(param: &str) -> impl Fn(RegistryError) -> GatewayError + '_ {
    move |error| match error {
        RegistryError::InvalidVersion { .. }
        | RegistryError::InvalidReference { .. }
        | RegistryError::Template { .. }
        | RegistryError::InvalidOutcome(_) => {
            GatewayError::bad_request(Some(param.to_owned()), promptops_core::error_chain(&error))
        }
        other => GatewayError::Registry(other),
    }
}

/// Point a label at a version (audited; `production` is what `prompt:NAME` serves without
/// a deployment).
#[utoipa::path(put, path = "/admin/v1/prompts/{name}/labels/{label}", tag = "prompts",
    params(("name" = String, Path, description = "Prompt name"),
           ("label" = String, Path, description = "The label to set or move")),
    request_body = LabelBody,
    responses((status = 200, description = "The label, its version and the version before", body = Object),
              (status = 400, description = "Invalid label or version", body = Object),
              (status = 404, description = "Unknown prompt, version or label", body = Object)))]
pub async fn set_label(
    State(state): State<AppState>,
    Path((name, label)): Path<(String, String)>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let request: LabelBody = body(&state, &headers, raw)?;
    let (version, before) = registry(&state)?
        .set_label(
            &reference(&name, &request.version),
            &label,
            &actor(&headers),
        )
        .await
        .map_err(|error| match error {
            RegistryError::InvalidName { name: ref bad, .. } if *bad == label => {
                GatewayError::bad_request(Some("label".to_owned()), error.to_string())
            }
            other => about("version")(other),
        })?;
    state.runtime().refresh_routes().await?;
    Ok(json(&json!({
        "name": version.name,
        "label": label,
        "version": version.version,
        "before": before,
    })))
}

/// Render a version (by number or label) with variables, as `prompt render` does.
#[utoipa::path(post, path = "/admin/v1/prompts/{name}/versions/{version}/render", tag = "prompts",
    params(("name" = String, Path, description = "Prompt name"),
           ("version" = String, Path, description = "Version or label")),
    request_body = RenderBody,
    responses((status = 200, description = "The rendered messages", body = Object),
              (status = 400, description = "Missing or mistyped variables", body = Object),
              (status = 404, description = "Unknown prompt, version or label", body = Object)))]
pub async fn render(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let request: RenderBody = body(&state, &headers, raw)?;
    let (found, messages) = registry(&state)?
        .render(&reference(&name, &version), &request.variables)
        .await
        .map_err(|error| match error {
            RegistryError::Template { .. } => about("variables")(error),
            other => about("version")(other),
        })?;
    Ok(json(&json!({
        "name": found.name,
        "version": found.version,
        "messages": messages,
    })))
}

/// What changed between two versions or labels of a prompt.
#[utoipa::path(get, path = "/admin/v1/prompts/{name}/diff", tag = "prompts",
    params(("name" = String, Path, description = "Prompt name"), DiffQuery),
    responses((status = 200, description = "Template diff and changed fields", body = Object),
              (status = 404, description = "Unknown prompt, version or label", body = Object)))]
pub async fn diff(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<DiffQuery>, QueryRejection>,
) -> Result<Response, GatewayError> {
    let Query(query) = query.map_err(query_error)?;
    Ok(json(
        &registry(&state)?.diff(&name, &query.a, &query.b).await?,
    ))
}

/// Record outcomes of a version (not audited: data, like the gateway's own recordings).
#[utoipa::path(post, path = "/admin/v1/prompts/{name}/versions/{version}/metrics", tag = "metrics",
    params(("name" = String, Path, description = "Prompt name"),
           ("version" = String, Path, description = "Version, e.g. 1.0.0")),
    request_body = RecordMetricsBody,
    responses((status = 200, description = "How many were recorded and the totals", body = Object),
              (status = 400, description = "Invalid outcome", body = Object),
              (status = 404, description = "Unknown prompt or version", body = Object)))]
pub async fn record_metrics(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let request: RecordMetricsBody = body(&state, &headers, raw)?;
    let version = version_of(&version)?;
    let count = request.count.unwrap_or(1);
    if !(1..=10_000).contains(&count) {
        return Err(GatewayError::bad_request(
            Some("count".to_owned()),
            format!("count {count} is not from 1 to 10000"),
        ));
    }
    let failed = request.failure || request.parse_error || request.validation_error;
    let outcome = Outcome {
        success: !failed,
        parse_error: request.parse_error,
        validation_error: request.validation_error,
        latency_ms: request.latency_ms,
        input_tokens: request.input_tokens,
        output_tokens: request.output_tokens,
        cost: request.cost,
    };
    let registry = registry(&state)?;
    let outcomes = vec![outcome; count as usize];
    registry.record_outcomes(&name, &version, &outcomes).await?;
    state.runtime().flush_metrics().await?;
    let metrics = registry.metrics(&name, &version).await?;
    let summary = metrics.summary();
    Ok(json(&json!({
        "prompt": name,
        "version": version,
        "recorded": count,
        "metrics": metrics,
        "summary": summary,
    })))
}

/// Judge a prompt's canary against its stable version; a breach rolls it back (audited).
#[utoipa::path(post, path = "/admin/v1/prompts/{name}/canary/check", tag = "deployments",
    params(("name" = String, Path, description = "Prompt name")),
    request_body = CanaryPolicyBody,
    responses((status = 200, description = "Verdict and the rollback done, if any", body = Object),
              (status = 409, description = "No canary is running", body = Object)))]
pub async fn check_canary(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let request: CanaryPolicyBody = body(&state, &headers, raw)?;
    state.runtime().flush_metrics().await?;
    let check = registry(&state)?
        .check_canary(&name, &request.policy(), &actor(&headers))
        .await?;
    state.runtime().refresh_routes().await?;
    Ok(json(&check))
}

/// Judge every running canary, rolling back those in breach (audited).
#[utoipa::path(post, path = "/admin/v1/canary/check", tag = "deployments",
    request_body = CanaryPolicyBody,
    responses((status = 200, description = "One verdict per running canary", body = Object)))]
pub async fn check_all_canaries(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let request: CanaryPolicyBody = body(&state, &headers, raw)?;
    state.runtime().flush_metrics().await?;
    let checks = registry(&state)?
        .check_all_canaries(&request.policy(), &actor(&headers))
        .await?;
    state.runtime().refresh_routes().await?;
    Ok(json(&checks))
}

/// Create an experiment over versions of a prompt (audited).
#[utoipa::path(post, path = "/admin/v1/experiments", tag = "experiments",
    request_body = CreateExperimentBody,
    responses((status = 201, description = "The experiment", body = Object),
              (status = 400, description = "Invalid arms or name", body = Object),
              (status = 404, description = "Unknown prompt or version", body = Object),
              (status = 409, description = "The name is taken", body = Object)))]
pub async fn create_experiment(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let request: CreateExperimentBody = body(&state, &headers, raw)?;
    let arms = request
        .arms
        .iter()
        .enumerate()
        .map(|(i, arm)| {
            let version = parse_version(&arm.version).map_err(|error| {
                GatewayError::bad_request(Some(format!("arms[{i}].version")), error.to_string())
            })?;
            Ok(ExperimentArm {
                version,
                weight: arm.weight.unwrap_or(1.0),
            })
        })
        .collect::<Result<Vec<_>, GatewayError>>()?;
    let created = registry(&state)?
        .create_experiment(&request.name, &request.prompt, arms, &actor(&headers))
        .await?;
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

/// An experiment's definition.
#[utoipa::path(get, path = "/admin/v1/experiments/{name}", tag = "experiments",
    params(("name" = String, Path, description = "Experiment name")),
    responses((status = 200, description = "The experiment", body = Object),
              (status = 404, description = "Unknown experiment", body = Object)))]
pub async fn show_experiment(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, GatewayError> {
    Ok(json(&registry(&state)?.experiment(&name).await?))
}

/// The arm a unit is assigned to.
#[utoipa::path(get, path = "/admin/v1/experiments/{name}/assignment", tag = "experiments",
    params(("name" = String, Path, description = "Experiment name"), AssignQuery),
    responses((status = 200, description = "Arm index and version", body = Object),
              (status = 404, description = "Unknown experiment", body = Object)))]
pub async fn assign(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<AssignQuery>, QueryRejection>,
) -> Result<Response, GatewayError> {
    let Query(query) = query.map_err(query_error)?;
    let (experiment, arm) = registry(&state)?.assign(&name, &query.unit).await?;
    let version = experiment.arms.get(arm).map(|a| &a.version);
    Ok(json(&json!({
        "experiment": experiment.name,
        "prompt": experiment.prompt,
        "unit": query.unit,
        "arm": arm,
        "version": version,
    })))
}

/// Record an outcome for a unit (not audited: data, not a change).
#[utoipa::path(post, path = "/admin/v1/experiments/{name}/outcomes", tag = "experiments",
    params(("name" = String, Path, description = "Experiment name")),
    request_body = OutcomeBody,
    responses((status = 200, description = "The arm it was recorded for", body = Object),
              (status = 400, description = "No success or score, or a version not in the experiment", body = Object),
              (status = 404, description = "Unknown experiment", body = Object)))]
pub async fn record_outcome(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let request: OutcomeBody = body(&state, &headers, raw)?;
    let version = request.version.as_deref().map(version_of).transpose()?;
    let arm = registry(&state)?
        .record_experiment_outcome(
            &name,
            &request.unit,
            version.as_ref(),
            request.success,
            request.score,
        )
        .await?;
    Ok(json(
        &json!({"experiment": name, "unit": request.unit, "arm": arm}),
    ))
}

/// Analyse an experiment's outcomes so far.
#[utoipa::path(get, path = "/admin/v1/experiments/{name}/analysis", tag = "experiments",
    params(("name" = String, Path, description = "Experiment name"), AnalysisQuery),
    responses((status = 200, description = "Per-arm totals, comparisons with the control and the sample ratio check", body = Object),
              (status = 404, description = "Unknown experiment", body = Object)))]
pub async fn analyze(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<AnalysisQuery>, QueryRejection>,
) -> Result<Response, GatewayError> {
    let Query(query) = query.map_err(query_error)?;
    let default = AnalysisConfig::default();
    let config = AnalysisConfig {
        alpha: query.alpha.unwrap_or(default.alpha),
        power: query.power.unwrap_or(default.power),
        min_rate_effect: query.min_effect.unwrap_or(default.min_rate_effect),
        min_score_effect_sd: query.min_effect_sd.unwrap_or(default.min_score_effect_sd),
    };
    Ok(json(
        &registry(&state)?.analyze_experiment(&name, &config).await?,
    ))
}

/// Each prompt's production (else latest) version as the prompt file `prompt export` writes.
#[utoipa::path(get, path = "/admin/v1/export", tag = "prompts",
    params(ExportQuery),
    responses((status = 200, description = "File name and text per prompt", body = Object),
              (status = 400, description = "Unknown format", body = Object)))]
pub async fn export(
    State(state): State<AppState>,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, GatewayError> {
    let Query(query) = query.map_err(query_error)?;
    let format: FileFormat = query
        .format
        .as_deref()
        .unwrap_or("toml")
        .parse()
        .map_err(|error: String| GatewayError::bad_request(Some("format".to_owned()), error))?;
    let mut files = Vec::new();
    for found in registry(&state)?.export_versions().await? {
        let text = render_prompt_file(&found.name, &found.content, format)?;
        files.push(json!({
            "name": found.name,
            "version": found.version,
            "file": format!("{}.{}", found.name, format.extension()),
            "text": text,
        }));
    }
    Ok(json(&files))
}

/// Check the audit trail's hash chain.
#[utoipa::path(get, path = "/admin/v1/audit/verify", tag = "audit",
    responses((status = 200, description = "Whether the chain is intact, and where it breaks", body = Object)))]
pub async fn verify_audit(State(state): State<AppState>) -> Result<Response, GatewayError> {
    Ok(json(&registry(&state)?.verify_audit().await?))
}

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    axum::Json(AdminApi::openapi()).into_response()
}
