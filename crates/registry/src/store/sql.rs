//! The SQL both backends share. The statements are written once (numbered `$N` parameters work
//! on both) and instantiated per backend by [`impl_sql_store`], so each store is a concrete type
//! with the driver's own row and type mappings.

use std::time::Duration;

use semver::Version;

use crate::error::{RegistryError, Result};
use crate::version::parse_version;

/// How many times a conflicting transaction is retried.
pub(crate) const MAX_ATTEMPTS: u32 = 30;

/// Columns of a version row, in the order [`impl_sql_store`] reads them.
pub(crate) const VERSION_COLUMNS: &str =
    "prompt, version, content_hash, content, status, author, message, created_at_ms";

/// Columns of a review-queue row, as [`impl_sql_store`] reads them.
pub(crate) const REVIEW_COLUMNS: &str = "id, content_sha256, source, content, score, reasons, \
     status, request_id, created_at_ms, hits, resolved_by, resolved_at_ms, note";

/// Maps a driver error to [`RegistryError::Database`] for `operation`.
pub(crate) fn db_err(operation: &'static str) -> impl FnOnce(sqlx::Error) -> RegistryError {
    move |source| RegistryError::Database { operation, source }
}

/// Whether `err` is a collision with a concurrent writer, worth retrying the transaction for.
pub(crate) fn is_conflict(err: &RegistryError) -> bool {
    let RegistryError::Database {
        source: sqlx::Error::Database(db),
        ..
    } = err
    else {
        return false;
    };
    if db.is_unique_violation() {
        return true;
    }
    // PostgreSQL serialization failure / deadlock; SQLite BUSY, LOCKED, BUSY_SNAPSHOT.
    matches!(
        db.code().as_deref(),
        Some("40001" | "40P01" | "5" | "6" | "517" | "261" | "262")
    )
}

/// Waits a little before retrying, longer each attempt, with jitter so retries spread out.
pub(crate) async fn backoff(attempt: u32) {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos() % 7))
        .unwrap_or(3);
    let millis = u64::from(attempt.min(10)) * 2 + jitter;
    tokio::time::sleep(Duration::from_millis(millis)).await;
}

/// A count as the signed integer SQL stores.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| RegistryError::InvalidOutcome(format!("{what} {value} is too large")))
}

/// A stored count back as unsigned (negative values only come from hand edits).
pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64> {
    u64::try_from(value)
        .map_err(|_| RegistryError::CorruptRow(format!("{what} is negative: {value}")))
}

/// Parses a stored version string.
pub(crate) fn stored_version(text: &str) -> Result<Version> {
    parse_version(text).map_err(|err| RegistryError::CorruptRow(err.to_string()))
}

/// The version's number parts as stored integers.
pub(crate) fn version_parts(version: &Version) -> Result<(i64, i64, i64)> {
    let part = |n: u64| {
        i64::try_from(n).map_err(|_| RegistryError::InvalidVersion {
            input: version.to_string(),
            reason: "number too large".to_owned(),
        })
    };
    Ok((
        part(version.major)?,
        part(version.minor)?,
        part(version.patch)?,
    ))
}

/// Retries `$body` (a future-producing expression, re-evaluated per attempt) while it fails with
/// a conflict.
macro_rules! with_retry {
    ($operation:expr, $body:expr) => {{
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            match $body.await {
                Err(err) if $crate::store::sql::is_conflict(&err) => {
                    if attempt >= $crate::store::sql::MAX_ATTEMPTS {
                        break Err($crate::error::RegistryError::Contention {
                            operation: $operation,
                            attempts: attempt,
                        });
                    }
                    $crate::store::sql::backoff(attempt).await;
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use with_retry;

/// Implements [`Store`](crate::store::Store) for a backend type that has `pool` and
/// `begin_write()`.
macro_rules! impl_sql_store {
    ($store:ty, $db:ty) => {
        use std::collections::{BTreeMap, HashMap, HashSet};
        use std::sync::Arc;

        use async_trait::async_trait;
        use semver::Version;
        use serde_json::{Value, json};
        use sqlx::Row as _;

        use crate::audit::{AuditDraft, AuditEntry, next_entry};
        use crate::experiment::{ArmTotals, Experiment, ExperimentArm};
        use crate::metrics::VersionMetrics;
        use crate::review::{NewReview, ReviewItem, ReviewStatus};
        use crate::routing::{Deployment, DeploymentRequest, PromptRoutes, RoutingTable, Transition, transition};
        use crate::store::sql::{
            REVIEW_COLUMNS, VERSION_COLUMNS, db_err, stored_version, to_i64, to_u64, version_parts, with_retry,
        };
        use crate::store::{
            AddedVersion, ChangeContext, ExperimentOutcome, NewVersion, PromptSummary, Store,
        };
        use crate::version::{PromptContent, PromptVersion, VersionStatus, next_version};

        type DbRow = <$db as sqlx::Database>::Row;
        type Tx = sqlx::Transaction<'static, $db>;

        impl $store {
            fn version_from_row(row: &DbRow) -> Result<PromptVersion> {
                let read = db_err("read a version row");
                let name: String = row.try_get("prompt").map_err(read)?;
                let version: String = row.try_get("version").map_err(db_err("read a version row"))?;
                let content_hash: String =
                    row.try_get("content_hash").map_err(db_err("read a version row"))?;
                let content: String = row.try_get("content").map_err(db_err("read a version row"))?;
                let status: String = row.try_get("status").map_err(db_err("read a version row"))?;
                let author: String = row.try_get("author").map_err(db_err("read a version row"))?;
                let message: Option<String> =
                    row.try_get("message").map_err(db_err("read a version row"))?;
                let created_at_ms: i64 =
                    row.try_get("created_at_ms").map_err(db_err("read a version row"))?;
                let content: PromptContent = serde_json::from_str(&content).map_err(|err| {
                    RegistryError::CorruptRow(format!("content of {name}@{version}: {err}"))
                })?;
                Ok(PromptVersion {
                    version: stored_version(&version)?,
                    name,
                    content,
                    content_hash,
                    status: status.parse::<VersionStatus>()?,
                    author,
                    message,
                    created_at_ms,
                })
            }

            async fn append_audit(tx: &mut Tx, draft: AuditDraft) -> Result<AuditEntry> {
                let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db_err("read the audit log"))?;
                let previous = match last {
                    Some(row) => Some((
                        row.try_get::<i64, _>("seq").map_err(db_err("read the audit log"))?,
                        row.try_get::<String, _>("hash").map_err(db_err("read the audit log"))?,
                    )),
                    None => None,
                };
                let entry = next_entry(previous.as_ref().map(|(s, h)| (*s, h.as_str())), draft);
                sqlx::query(
                    "INSERT INTO audit_log (seq, at_ms, actor, action, prompt, details, prev_hash, hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(entry.seq)
                .bind(entry.draft.at_ms)
                .bind(&entry.draft.actor)
                .bind(&entry.draft.action)
                .bind(&entry.draft.prompt)
                .bind(crate::canonical::canonical_json(&entry.draft.details))
                .bind(&entry.prev_hash)
                .bind(&entry.hash)
                .execute(&mut **tx)
                .await
                .map_err(db_err("append to the audit log"))?;
                Ok(entry)
            }

            async fn prompt_exists(tx: &mut Tx, name: &str) -> Result<bool> {
                Ok(sqlx::query("SELECT name FROM prompts WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db_err("look up a prompt"))?
                    .is_some())
            }

            async fn version_exists(tx: &mut Tx, name: &str, version: &Version) -> Result<bool> {
                Ok(sqlx::query("SELECT version FROM prompt_versions WHERE prompt = $1 AND version = $2")
                    .bind(name)
                    .bind(version.to_string())
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db_err("look up a version"))?
                    .is_some())
            }

            async fn require_version(tx: &mut Tx, name: &str, version: &Version) -> Result<()> {
                if !Self::prompt_exists(tx, name).await? {
                    return Err(RegistryError::UnknownPrompt(name.to_owned()));
                }
                if !Self::version_exists(tx, name, version).await? {
                    return Err(RegistryError::UnknownVersion {
                        name: name.to_owned(),
                        version: version.to_string(),
                    });
                }
                Ok(())
            }

            fn review_from_row(row: &DbRow) -> Result<ReviewItem> {
                let read = || db_err("read a review-queue row");
                let id: i64 = row.try_get("id").map_err(read())?;
                let reasons: String = row.try_get("reasons").map_err(read())?;
                let status: String = row.try_get("status").map_err(read())?;
                Ok(ReviewItem {
                    id,
                    content_sha256: row.try_get("content_sha256").map_err(read())?,
                    source: row.try_get("source").map_err(read())?,
                    content: row.try_get("content").map_err(read())?,
                    score: row.try_get("score").map_err(read())?,
                    reasons: serde_json::from_str(&reasons).map_err(|err| {
                        RegistryError::CorruptRow(format!("reasons of queued document {id}: {err}"))
                    })?,
                    status: status.parse().map_err(|_| {
                        RegistryError::CorruptRow(format!("status of queued document {id}: `{status}`"))
                    })?,
                    request_id: row.try_get("request_id").map_err(read())?,
                    created_at_ms: row.try_get("created_at_ms").map_err(read())?,
                    hits: row.try_get("hits").map_err(read())?,
                    resolved_by: row.try_get("resolved_by").map_err(read())?,
                    resolved_at_ms: row.try_get("resolved_at_ms").map_err(read())?,
                    note: row.try_get("note").map_err(read())?,
                })
            }

            async fn resolve_review_once(
                &self,
                id: i64,
                decision: ReviewStatus,
                ctx: &ChangeContext,
            ) -> Result<ReviewItem> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(&format!("SELECT {REVIEW_COLUMNS} FROM review_queue WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err("read a queued document"))?
                    .ok_or(RegistryError::UnknownReview(id))?;
                let item = Self::review_from_row(&row)?;
                if item.status != ReviewStatus::Pending {
                    return Err(RegistryError::ReviewAlreadyResolved {
                        id,
                        status: item.status.to_string(),
                    });
                }
                sqlx::query(
                    "UPDATE review_queue SET status = $1, resolved_by = $2, resolved_at_ms = $3, \
                     note = $4 WHERE id = $5",
                )
                .bind(decision.as_str())
                .bind(&ctx.actor)
                .bind(ctx.at_ms)
                .bind(&ctx.reason)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err("decide a queued document"))?;
                Self::append_audit(
                    &mut tx,
                    AuditDraft {
                        at_ms: ctx.at_ms,
                        actor: ctx.actor.clone(),
                        action: format!("review_{decision}"),
                        prompt: None,
                        details: json!({
                            "review_id": id,
                            "content_sha256": item.content_sha256,
                            "source": item.source,
                            "score": item.score,
                            "reason": ctx.reason,
                        }),
                    },
                )
                .await?;
                tx.commit().await.map_err(db_err("commit a review decision"))?;
                Ok(ReviewItem {
                    status: decision,
                    resolved_by: Some(ctx.actor.clone()),
                    resolved_at_ms: Some(ctx.at_ms),
                    note: ctx.reason.clone(),
                    ..item
                })
            }

            fn deployment_from_row(name: &str, row: &DbRow) -> Result<Deployment> {
                let stable: String = row.try_get("stable").map_err(db_err("read a deployment"))?;
                let candidate: Option<String> =
                    row.try_get("candidate").map_err(db_err("read a deployment"))?;
                let fraction: f64 =
                    row.try_get("candidate_fraction").map_err(db_err("read a deployment"))?;
                Ok(Deployment {
                    prompt: name.to_owned(),
                    stable: stored_version(&stable)?,
                    candidate: candidate.as_deref().map(stored_version).transpose()?,
                    candidate_fraction: fraction,
                })
            }

            async fn add_version_once(
                &self,
                new: &NewVersion,
                ctx: &ChangeContext,
            ) -> Result<AddedVersion> {
                let hash = new.content.content_hash()?;
                let content = new.content.canonical_json()?;
                let mut tx = self.begin_write().await?;
                let existing = sqlx::query(&format!(
                    "SELECT {VERSION_COLUMNS} FROM prompt_versions WHERE prompt = $1 AND content_hash = $2"
                ))
                .bind(&new.name)
                .bind(&hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("look up a version by content"))?;
                if let Some(row) = existing {
                    return Ok(AddedVersion {
                        version: Self::version_from_row(&row)?,
                        created: false,
                    });
                }
                sqlx::query("INSERT INTO prompts (name, created_at_ms) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                    .bind(&new.name)
                    .bind(ctx.at_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("create a prompt"))?;
                let latest: Option<String> = sqlx::query_scalar(
                    "SELECT version FROM prompt_versions WHERE prompt = $1 \
                     ORDER BY major DESC, minor DESC, patch DESC LIMIT 1",
                )
                .bind(&new.name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("find the latest version"))?;
                let latest = latest.as_deref().map(stored_version).transpose()?;
                let version = next_version(latest.as_ref(), new.bump);
                let (major, minor, patch) = version_parts(&version)?;
                sqlx::query(&format!(
                    "INSERT INTO prompt_versions ({VERSION_COLUMNS}, major, minor, patch) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                ))
                .bind(&new.name)
                .bind(version.to_string())
                .bind(&hash)
                .bind(&content)
                .bind(VersionStatus::Draft.as_str())
                .bind(&ctx.actor)
                .bind(&new.message)
                .bind(ctx.at_ms)
                .bind(major)
                .bind(minor)
                .bind(patch)
                .execute(&mut *tx)
                .await
                .map_err(db_err("insert a version"))?;
                Self::append_audit(
                    &mut tx,
                    AuditDraft {
                        at_ms: ctx.at_ms,
                        actor: ctx.actor.clone(),
                        action: "add_version".to_owned(),
                        prompt: Some(new.name.clone()),
                        details: json!({
                            "version": version.to_string(),
                            "previous": latest.as_ref().map(ToString::to_string),
                            "content_hash": hash,
                            "message": new.message,
                            "reason": ctx.reason,
                        }),
                    },
                )
                .await?;
                tx.commit().await.map_err(db_err("commit a new version"))?;
                Ok(AddedVersion {
                    version: PromptVersion {
                        name: new.name.clone(),
                        version,
                        content: new.content.clone(),
                        content_hash: hash,
                        status: VersionStatus::Draft,
                        author: ctx.actor.clone(),
                        message: new.message.clone(),
                        created_at_ms: ctx.at_ms,
                    },
                    created: true,
                })
            }

            async fn set_label_once(
                &self,
                name: &str,
                label: &str,
                version: &Version,
                ctx: &ChangeContext,
            ) -> Result<Option<Version>> {
                let mut tx = self.begin_write().await?;
                Self::require_version(&mut tx, name, version).await?;
                let before: Option<String> =
                    sqlx::query_scalar("SELECT version FROM labels WHERE prompt = $1 AND label = $2")
                        .bind(name)
                        .bind(label)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err("read a label"))?;
                Self::upsert_label(&mut tx, name, label, version, ctx.at_ms).await?;
                Self::append_audit(
                    &mut tx,
                    AuditDraft {
                        at_ms: ctx.at_ms,
                        actor: ctx.actor.clone(),
                        action: "set_label".to_owned(),
                        prompt: Some(name.to_owned()),
                        details: json!({
                            "label": label,
                            "before": before,
                            "after": version.to_string(),
                            "reason": ctx.reason,
                        }),
                    },
                )
                .await?;
                tx.commit().await.map_err(db_err("commit a label move"))?;
                before.as_deref().map(stored_version).transpose()
            }

            async fn upsert_label(
                tx: &mut Tx,
                name: &str,
                label: &str,
                version: &Version,
                at_ms: i64,
            ) -> Result<()> {
                sqlx::query(
                    "INSERT INTO labels (prompt, label, version, updated_at_ms) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (prompt, label) DO UPDATE SET version = excluded.version, \
                     updated_at_ms = excluded.updated_at_ms",
                )
                .bind(name)
                .bind(label)
                .bind(version.to_string())
                .bind(at_ms)
                .execute(&mut **tx)
                .await
                .map_err(db_err("move a label"))?;
                Ok(())
            }

            async fn change_deployment_once(
                &self,
                name: &str,
                request: &DeploymentRequest,
                ctx: &ChangeContext,
                details: &Value,
            ) -> Result<Transition> {
                let mut tx = self.begin_write().await?;
                if !Self::prompt_exists(&mut tx, name).await? {
                    return Err(RegistryError::UnknownPrompt(name.to_owned()));
                }
                let current = sqlx::query(
                    "SELECT stable, candidate, candidate_fraction FROM deployments WHERE prompt = $1",
                )
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("read a deployment"))?
                .map(|row| Self::deployment_from_row(name, &row))
                .transpose()?;
                let known: Vec<String> =
                    sqlx::query_scalar("SELECT version FROM prompt_versions WHERE prompt = $1")
                        .bind(name)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db_err("list versions"))?;
                let known: HashSet<Version> = known
                    .iter()
                    .map(|v| stored_version(v))
                    .collect::<Result<_>>()?;
                let change = transition(name, current.as_ref(), request, &|v| known.contains(v))?;
                let after = &change.after;
                sqlx::query(
                    "INSERT INTO deployments (prompt, stable, candidate, candidate_fraction, updated_at_ms) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (prompt) DO UPDATE SET \
                     stable = excluded.stable, candidate = excluded.candidate, \
                     candidate_fraction = excluded.candidate_fraction, updated_at_ms = excluded.updated_at_ms",
                )
                .bind(name)
                .bind(after.stable.to_string())
                .bind(after.candidate.as_ref().map(ToString::to_string))
                .bind(after.candidate_fraction)
                .bind(ctx.at_ms)
                .execute(&mut *tx)
                .await
                .map_err(db_err("write a deployment"))?;
                for (version, status) in &change.statuses {
                    sqlx::query("UPDATE prompt_versions SET status = $1 WHERE prompt = $2 AND version = $3")
                        .bind(status.as_str())
                        .bind(name)
                        .bind(version.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err("update a version status"))?;
                }
                for label in &change.removed_labels {
                    sqlx::query("DELETE FROM labels WHERE prompt = $1 AND label = $2")
                        .bind(name)
                        .bind(label)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err("remove a label"))?;
                }
                for (label, version) in &change.labels {
                    Self::upsert_label(&mut tx, name, label, version, ctx.at_ms).await?;
                }
                Self::append_audit(
                    &mut tx,
                    AuditDraft {
                        at_ms: ctx.at_ms,
                        actor: ctx.actor.clone(),
                        action: request.action().to_owned(),
                        prompt: Some(name.to_owned()),
                        details: json!({
                            "request": request,
                            "before": change.before,
                            "after": change.after,
                            "reason": ctx.reason,
                            "details": details,
                        }),
                    },
                )
                .await?;
                tx.commit().await.map_err(db_err("commit a deployment change"))?;
                Ok(change)
            }

            async fn add_metrics_once(
                &self,
                batch: &[(String, Version, VersionMetrics)],
            ) -> Result<()> {
                let mut tx = self.begin_write().await?;
                for (name, version, m) in batch {
                    let version = version.to_string();
                    sqlx::query(
                        "INSERT INTO version_metrics (prompt, version, requests, successes, parse_errors, \
                         validation_errors, input_tokens, output_tokens, cost_total, latency_sum_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                         ON CONFLICT (prompt, version) DO UPDATE SET \
                         requests = version_metrics.requests + excluded.requests, \
                         successes = version_metrics.successes + excluded.successes, \
                         parse_errors = version_metrics.parse_errors + excluded.parse_errors, \
                         validation_errors = version_metrics.validation_errors + excluded.validation_errors, \
                         input_tokens = version_metrics.input_tokens + excluded.input_tokens, \
                         output_tokens = version_metrics.output_tokens + excluded.output_tokens, \
                         cost_total = version_metrics.cost_total + excluded.cost_total, \
                         latency_sum_ms = version_metrics.latency_sum_ms + excluded.latency_sum_ms",
                    )
                    .bind(name)
                    .bind(&version)
                    .bind(to_i64(m.requests, "requests")?)
                    .bind(to_i64(m.successes, "successes")?)
                    .bind(to_i64(m.parse_errors, "parse errors")?)
                    .bind(to_i64(m.validation_errors, "validation errors")?)
                    .bind(to_i64(m.input_tokens, "input tokens")?)
                    .bind(to_i64(m.output_tokens, "output tokens")?)
                    .bind(m.cost_total)
                    .bind(m.latency_sum_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("add metrics"))?;
                    for (bucket, count) in &m.latency_buckets {
                        sqlx::query(
                            "INSERT INTO latency_buckets (prompt, version, bucket, count) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (prompt, version, bucket) DO UPDATE SET \
                             count = latency_buckets.count + excluded.count",
                        )
                        .bind(name)
                        .bind(&version)
                        .bind(i64::from(*bucket))
                        .bind(to_i64(*count, "latency bucket count")?)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err("add latency counts"))?;
                    }
                }
                tx.commit().await.map_err(db_err("commit metrics"))?;
                Ok(())
            }

            async fn create_experiment_once(
                &self,
                experiment: &Experiment,
                ctx: &ChangeContext,
            ) -> Result<()> {
                let mut tx = self.begin_write().await?;
                for arm in &experiment.arms {
                    Self::require_version(&mut tx, &experiment.prompt, &arm.version).await?;
                }
                let exists = sqlx::query("SELECT name FROM experiments WHERE name = $1")
                    .bind(&experiment.name)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err("look up an experiment"))?;
                if exists.is_some() {
                    return Err(RegistryError::ExperimentExists(experiment.name.clone()));
                }
                let arms = serde_json::to_string(&experiment.arms)
                    .map_err(|err| RegistryError::CorruptRow(err.to_string()))?;
                sqlx::query("INSERT INTO experiments (name, prompt, arms, created_at_ms) VALUES ($1, $2, $3, $4)")
                    .bind(&experiment.name)
                    .bind(&experiment.prompt)
                    .bind(&arms)
                    .bind(experiment.created_at_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("create an experiment"))?;
                Self::append_audit(
                    &mut tx,
                    AuditDraft {
                        at_ms: ctx.at_ms,
                        actor: ctx.actor.clone(),
                        action: "create_experiment".to_owned(),
                        prompt: Some(experiment.prompt.clone()),
                        details: json!({
                            "experiment": experiment.name,
                            "arms": experiment.arms,
                            "reason": ctx.reason,
                        }),
                    },
                )
                .await?;
                tx.commit().await.map_err(db_err("commit an experiment"))?;
                Ok(())
            }

            async fn version_query(&self, sql: &str, name: &str) -> Result<Vec<PromptVersion>> {
                let rows = sqlx::query(sql)
                    .bind(name)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err("read versions"))?;
                rows.iter().map(Self::version_from_row).collect()
            }
        }

        #[async_trait]
        impl Store for $store {
            async fn add_version(&self, new: &NewVersion, ctx: &ChangeContext) -> Result<AddedVersion> {
                with_retry!("add a prompt version", self.add_version_once(new, ctx))
            }

            async fn prompt_summaries(&self) -> Result<Vec<PromptSummary>> {
                let names: Vec<String> = sqlx::query_scalar("SELECT name FROM prompts ORDER BY name")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err("list prompts"))?;
                let mut out = Vec::with_capacity(names.len());
                for name in names {
                    let Some(latest) = self.latest_version(&name).await? else {
                        continue;
                    };
                    let count: i64 =
                        sqlx::query_scalar("SELECT COUNT(*) FROM prompt_versions WHERE prompt = $1")
                            .bind(&name)
                            .fetch_one(&self.pool)
                            .await
                            .map_err(db_err("count versions"))?;
                    out.push(PromptSummary {
                        labels: self.labels(&name).await?,
                        deployment: self.deployment(&name).await?,
                        latest: latest.version,
                        versions: to_u64(count, "version count")?,
                        name,
                    });
                }
                Ok(out)
            }

            async fn versions(&self, name: &str) -> Result<Vec<PromptVersion>> {
                self.version_query(
                    &format!(
                        "SELECT {VERSION_COLUMNS} FROM prompt_versions WHERE prompt = $1 \
                         ORDER BY major, minor, patch"
                    ),
                    name,
                )
                .await
            }

            async fn version(&self, name: &str, version: &Version) -> Result<Option<PromptVersion>> {
                let row = sqlx::query(&format!(
                    "SELECT {VERSION_COLUMNS} FROM prompt_versions WHERE prompt = $1 AND version = $2"
                ))
                .bind(name)
                .bind(version.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("read a version"))?;
                row.as_ref().map(Self::version_from_row).transpose()
            }

            async fn latest_version(&self, name: &str) -> Result<Option<PromptVersion>> {
                Ok(self
                    .version_query(
                        &format!(
                            "SELECT {VERSION_COLUMNS} FROM prompt_versions WHERE prompt = $1 \
                             ORDER BY major DESC, minor DESC, patch DESC LIMIT 1"
                        ),
                        name,
                    )
                    .await?
                    .into_iter()
                    .next())
            }

            async fn labels(&self, name: &str) -> Result<BTreeMap<String, Version>> {
                let rows = sqlx::query("SELECT label, version FROM labels WHERE prompt = $1")
                    .bind(name)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err("read labels"))?;
                rows.iter()
                    .map(|row| {
                        let label: String = row.try_get("label").map_err(db_err("read labels"))?;
                        let version: String =
                            row.try_get("version").map_err(db_err("read labels"))?;
                        Ok((label, stored_version(&version)?))
                    })
                    .collect()
            }

            async fn set_label(
                &self,
                name: &str,
                label: &str,
                version: &Version,
                ctx: &ChangeContext,
            ) -> Result<Option<Version>> {
                with_retry!("move a label", self.set_label_once(name, label, version, ctx))
            }

            async fn deployment(&self, name: &str) -> Result<Option<Deployment>> {
                sqlx::query(
                    "SELECT stable, candidate, candidate_fraction FROM deployments WHERE prompt = $1",
                )
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("read a deployment"))?
                .map(|row| Self::deployment_from_row(name, &row))
                .transpose()
            }

            async fn change_deployment(
                &self,
                name: &str,
                request: &DeploymentRequest,
                ctx: &ChangeContext,
                details: Value,
            ) -> Result<Transition> {
                with_retry!(
                    "change a deployment",
                    self.change_deployment_once(name, request, ctx, &details)
                )
            }

            async fn add_metrics(&self, batch: &[(String, Version, VersionMetrics)]) -> Result<()> {
                if batch.is_empty() {
                    return Ok(());
                }
                with_retry!("record metrics", self.add_metrics_once(batch))
            }

            async fn metrics(&self, name: &str, version: &Version) -> Result<VersionMetrics> {
                let version_text = version.to_string();
                let row = sqlx::query(
                    "SELECT requests, successes, parse_errors, validation_errors, input_tokens, \
                     output_tokens, cost_total, latency_sum_ms FROM version_metrics \
                     WHERE prompt = $1 AND version = $2",
                )
                .bind(name)
                .bind(&version_text)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("read metrics"))?;
                let Some(row) = row else {
                    return Ok(VersionMetrics::default());
                };
                let count = |column: &str| -> Result<u64> {
                    let value: i64 = row.try_get(column).map_err(db_err("read metrics"))?;
                    to_u64(value, column)
                };
                let mut metrics = VersionMetrics {
                    requests: count("requests")?,
                    successes: count("successes")?,
                    parse_errors: count("parse_errors")?,
                    validation_errors: count("validation_errors")?,
                    input_tokens: count("input_tokens")?,
                    output_tokens: count("output_tokens")?,
                    cost_total: row.try_get("cost_total").map_err(db_err("read metrics"))?,
                    latency_sum_ms: row.try_get("latency_sum_ms").map_err(db_err("read metrics"))?,
                    latency_buckets: BTreeMap::new(),
                };
                let buckets = sqlx::query(
                    "SELECT bucket, count FROM latency_buckets WHERE prompt = $1 AND version = $2",
                )
                .bind(name)
                .bind(&version_text)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("read latency counts"))?;
                for row in buckets {
                    let bucket: i64 = row.try_get("bucket").map_err(db_err("read latency counts"))?;
                    let count: i64 = row.try_get("count").map_err(db_err("read latency counts"))?;
                    let bucket = u16::try_from(bucket).map_err(|_| {
                        RegistryError::CorruptRow(format!("latency bucket {bucket} out of range"))
                    })?;
                    metrics.latency_buckets.insert(bucket, to_u64(count, "latency count")?);
                }
                Ok(metrics)
            }

            async fn create_experiment(
                &self,
                experiment: &Experiment,
                ctx: &ChangeContext,
            ) -> Result<()> {
                with_retry!("create an experiment", self.create_experiment_once(experiment, ctx))
            }

            async fn experiment(&self, name: &str) -> Result<Option<Experiment>> {
                let row = sqlx::query("SELECT name, prompt, arms, created_at_ms FROM experiments WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err("read an experiment"))?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let arms: String = row.try_get("arms").map_err(db_err("read an experiment"))?;
                let arms: Vec<ExperimentArm> = serde_json::from_str(&arms).map_err(|err| {
                    RegistryError::CorruptRow(format!("arms of experiment {name}: {err}"))
                })?;
                Ok(Some(Experiment {
                    name: row.try_get("name").map_err(db_err("read an experiment"))?,
                    prompt: row.try_get("prompt").map_err(db_err("read an experiment"))?,
                    arms,
                    created_at_ms: row
                        .try_get("created_at_ms")
                        .map_err(db_err("read an experiment"))?,
                }))
            }

            async fn record_outcome(&self, outcome: &ExperimentOutcome) -> Result<()> {
                sqlx::query(
                    "INSERT INTO experiment_outcomes (experiment, arm, unit_id, success, score, at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&outcome.experiment)
                .bind(to_i64(outcome.arm as u64, "arm")?)
                .bind(&outcome.unit_id)
                .bind(outcome.success.map(i64::from))
                .bind(outcome.score)
                .bind(outcome.at_ms)
                .execute(&self.pool)
                .await
                .map_err(db_err("record an experiment outcome"))?;
                Ok(())
            }

            async fn experiment_totals(&self, experiment: &Experiment) -> Result<Vec<ArmTotals>> {
                let rows = sqlx::query(
                    "SELECT arm, COUNT(*) AS units, COUNT(success) AS binary_n, \
                     CAST(COALESCE(SUM(success), 0) AS BIGINT) AS successes, \
                     COUNT(score) AS score_n, COALESCE(SUM(score), 0.0) AS score_sum, \
                     COALESCE(SUM(score * score), 0.0) AS score_sum_squares \
                     FROM experiment_outcomes WHERE experiment = $1 GROUP BY arm",
                )
                .bind(&experiment.name)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("total experiment outcomes"))?;
                let mut totals = vec![ArmTotals::default(); experiment.arms.len()];
                let read = || db_err("total experiment outcomes");
                for row in rows {
                    let arm: i64 = row.try_get("arm").map_err(read())?;
                    let slot = usize::try_from(arm)
                        .ok()
                        .and_then(|index| totals.get_mut(index))
                        .ok_or_else(|| {
                            RegistryError::CorruptRow(format!(
                                "outcome for arm {arm} of experiment {}",
                                experiment.name
                            ))
                        })?;
                    *slot = ArmTotals {
                        units: to_u64(row.try_get("units").map_err(read())?, "units")?,
                        binary_n: to_u64(row.try_get("binary_n").map_err(read())?, "binary_n")?,
                        successes: to_u64(row.try_get("successes").map_err(read())?, "successes")?,
                        score_n: to_u64(row.try_get("score_n").map_err(read())?, "score_n")?,
                        score_sum: row.try_get("score_sum").map_err(read())?,
                        score_sum_squares: row.try_get("score_sum_squares").map_err(read())?,
                    };
                }
                Ok(totals)
            }

            async fn audit_entries(&self, prompt: Option<&str>) -> Result<Vec<AuditEntry>> {
                let columns = "seq, at_ms, actor, action, prompt, details, prev_hash, hash";
                let rows = match prompt {
                    Some(name) => sqlx::query(&format!(
                        "SELECT {columns} FROM audit_log WHERE prompt = $1 ORDER BY seq"
                    ))
                    .bind(name)
                    .fetch_all(&self.pool)
                    .await,
                    None => sqlx::query(&format!("SELECT {columns} FROM audit_log ORDER BY seq"))
                        .fetch_all(&self.pool)
                        .await,
                }
                .map_err(db_err("read the audit log"))?;
                let read = || db_err("read the audit log");
                rows.iter()
                    .map(|row| {
                        let details: String = row.try_get("details").map_err(read())?;
                        let seq: i64 = row.try_get("seq").map_err(read())?;
                        Ok(AuditEntry {
                            seq,
                            draft: AuditDraft {
                                at_ms: row.try_get("at_ms").map_err(read())?,
                                actor: row.try_get("actor").map_err(read())?,
                                action: row.try_get("action").map_err(read())?,
                                prompt: row.try_get("prompt").map_err(read())?,
                                details: serde_json::from_str(&details).map_err(|err| {
                                    RegistryError::CorruptRow(format!("audit row {seq}: {err}"))
                                })?,
                            },
                            prev_hash: row.try_get("prev_hash").map_err(read())?,
                            hash: row.try_get("hash").map_err(read())?,
                        })
                    })
                    .collect()
            }

            async fn queue_review(&self, new: &NewReview) -> Result<ReviewItem> {
                let hash = new.content_sha256();
                let reasons = serde_json::to_string(&new.reasons)
                    .map_err(|err| RegistryError::InvalidReview(err.to_string()))?;
                if !new.score.is_finite() {
                    return Err(RegistryError::InvalidReview(format!(
                        "score {} is not a number",
                        new.score
                    )));
                }
                sqlx::query(
                    "INSERT INTO review_queue (content_sha256, source, content, score, reasons, status, \
                     request_id, created_at_ms, hits) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, 1) \
                     ON CONFLICT (content_sha256) DO UPDATE SET hits = review_queue.hits + 1",
                )
                .bind(&hash)
                .bind(&new.source)
                .bind(new.stored_content())
                .bind(new.score)
                .bind(&reasons)
                .bind(&new.request_id)
                .bind(new.at_ms)
                .execute(&self.pool)
                .await
                .map_err(db_err("queue a document for review"))?;
                let row = sqlx::query(&format!(
                    "SELECT {REVIEW_COLUMNS} FROM review_queue WHERE content_sha256 = $1"
                ))
                .bind(&hash)
                .fetch_one(&self.pool)
                .await
                .map_err(db_err("read a queued document"))?;
                Self::review_from_row(&row)
            }

            async fn reviews(&self, status: Option<ReviewStatus>) -> Result<Vec<ReviewItem>> {
                let rows = match status {
                    Some(status) => sqlx::query(&format!(
                        "SELECT {REVIEW_COLUMNS} FROM review_queue WHERE status = $1 ORDER BY id"
                    ))
                    .bind(status.as_str())
                    .fetch_all(&self.pool)
                    .await,
                    None => sqlx::query(&format!("SELECT {REVIEW_COLUMNS} FROM review_queue ORDER BY id"))
                        .fetch_all(&self.pool)
                        .await,
                }
                .map_err(db_err("list the review queue"))?;
                rows.iter().map(Self::review_from_row).collect()
            }

            async fn review_status(&self, content_sha256: &str) -> Result<Option<ReviewStatus>> {
                let status: Option<String> =
                    sqlx::query_scalar("SELECT status FROM review_queue WHERE content_sha256 = $1")
                        .bind(content_sha256)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db_err("look up a queued document"))?;
                status.map(|s| s.parse()).transpose().map_err(|_| {
                    RegistryError::CorruptRow(format!("review status of {content_sha256}"))
                })
            }

            async fn resolve_review(
                &self,
                id: i64,
                decision: ReviewStatus,
                ctx: &ChangeContext,
            ) -> Result<ReviewItem> {
                if decision == ReviewStatus::Pending {
                    return Err(RegistryError::InvalidReview(
                        "a decision is `approved` or `rejected`".to_owned(),
                    ));
                }
                with_retry!("decide a queued document", self.resolve_review_once(id, decision, ctx))
            }

            async fn change_feed(&self) -> Result<Option<crate::store::ChangeFeed>> {
                self.open_change_feed().await
            }

            async fn revision(&self) -> Result<i64> {
                sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_log")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db_err("read the change revision"))
            }

            async fn routing_table(&self) -> Result<RoutingTable> {
                let revision = self.revision().await?;
                let names: Vec<String> = sqlx::query_scalar("SELECT name FROM prompts")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err("list prompts"))?;
                let mut prompts = HashMap::with_capacity(names.len());
                for name in names {
                    let Some(latest) = self.latest_version(&name).await? else {
                        continue;
                    };
                    let deployment = self.deployment(&name).await?;
                    let mut versions = HashMap::new();
                    if let Some(d) = &deployment {
                        for v in std::iter::once(&d.stable).chain(d.candidate.as_ref()) {
                            let found = self.version(&name, v).await?.ok_or_else(|| {
                                RegistryError::CorruptRow(format!(
                                    "deployment of {name} names missing version {v}"
                                ))
                            })?;
                            versions.insert(v.clone(), Arc::new(found));
                        }
                    }
                    prompts.insert(
                        name,
                        PromptRoutes {
                            deployment,
                            latest: Arc::new(latest),
                            versions,
                        },
                    );
                }
                Ok(RoutingTable { revision, prompts })
            }
        }
    };
}
pub(crate) use impl_sql_store;
