//! The admin API under `/admin/v1/` over the registry service: prompts, versions, deployments,
//! routing, metrics, the audit trail and the guard's document review queue. Every mutation is audited by the registry with the
//! actor from the `x-promptops-actor` header (default `admin-api`). The OpenAPI 3.1 document
//! is [`AdminApi`], served at `/openapi.json`.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use promptops_registry::Registry;
use promptops_registry::review::ReviewStatus;
use promptops_registry::version::{Bump, PromptContent, parse_version};
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
        decide_review
    ),
    components(schemas(
        AddVersionBody,
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

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    axum::Json(AdminApi::openapi()).into_response()
}
