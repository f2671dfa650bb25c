//! Persistence: one async [`Store`] trait with a SQLite and a PostgreSQL implementation
//! (sqlx, bound parameters only, embedded migrations per backend).
//!
//! Every change runs in one transaction together with its audit row. Writers that collide
//! (same next version number, same next audit sequence number, SQLite busy) roll back and retry
//! the whole transaction, so concurrent processes each get a distinct, consistent result and a
//! process killed mid-write leaves nothing half-done.

mod postgres;
mod sql;
mod sqlite;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use semver::Version;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::AuditEntry;
use crate::error::{RegistryError, Result};
use crate::experiment::{ArmTotals, Experiment};
use crate::metrics::VersionMetrics;
use crate::review::{NewReview, ReviewItem, ReviewStatus};
use crate::routing::{Deployment, DeploymentRequest, RoutingTable, Transition};
use crate::version::{Bump, PromptContent, PromptVersion};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Who makes a change, when, and why; recorded in the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeContext {
    /// Who.
    pub actor: String,
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// Why, if given.
    pub reason: Option<String>,
}

/// A version to add.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVersion {
    /// The prompt (created on its first version).
    pub name: String,
    /// Validated content (see [`PromptContent::validated`]).
    pub content: PromptContent,
    /// Which part of the version number to increment.
    pub bump: Bump,
    /// Why it is added.
    pub message: Option<String>,
}

/// The result of adding a version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AddedVersion {
    /// The version holding the content.
    pub version: PromptVersion,
    /// `false` when identical content already existed and nothing was written.
    pub created: bool,
}

/// One line of `prompt list`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptSummary {
    /// The prompt.
    pub name: String,
    /// Its highest version.
    pub latest: Version,
    /// How many versions it has.
    pub versions: u64,
    /// Its labels.
    pub labels: BTreeMap<String, Version>,
    /// Its rollout state.
    pub deployment: Option<Deployment>,
}

/// One outcome of an experiment unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentOutcome {
    /// The experiment.
    pub experiment: String,
    /// Index of the arm that served the unit.
    pub arm: usize,
    /// The unit (user, session, request).
    pub unit_id: String,
    /// Binary result, if recorded.
    pub success: Option<bool>,
    /// Numeric score, if recorded.
    pub score: Option<f64>,
    /// When, Unix milliseconds.
    pub at_ms: i64,
}

/// Everything the registry persists. Both implementations behave identically; the conformance
/// tests run every check against both.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Adds a version, or returns the existing one with identical content.
    async fn add_version(&self, new: &NewVersion, ctx: &ChangeContext) -> Result<AddedVersion>;
    /// Every prompt with its latest version, labels and deployment, by name.
    async fn prompt_summaries(&self) -> Result<Vec<PromptSummary>>;
    /// A prompt's versions, oldest first (empty for an unknown prompt).
    async fn versions(&self, name: &str) -> Result<Vec<PromptVersion>>;
    /// One version.
    async fn version(&self, name: &str, version: &Version) -> Result<Option<PromptVersion>>;
    /// The highest version.
    async fn latest_version(&self, name: &str) -> Result<Option<PromptVersion>>;
    /// The prompt's labels.
    async fn labels(&self, name: &str) -> Result<BTreeMap<String, Version>>;
    /// Points `label` at `version`, returning where it pointed before.
    async fn set_label(
        &self,
        name: &str,
        label: &str,
        version: &Version,
        ctx: &ChangeContext,
    ) -> Result<Option<Version>>;
    /// The prompt's rollout state.
    async fn deployment(&self, name: &str) -> Result<Option<Deployment>>;
    /// Applies a rollout change (with its status and label moves) atomically; `details` are
    /// added to the audit row (e.g. the figures behind an auto-rollback).
    async fn change_deployment(
        &self,
        name: &str,
        request: &DeploymentRequest,
        ctx: &ChangeContext,
        details: Value,
    ) -> Result<Transition>;
    /// Adds metric deltas (additive, safe under concurrent flushes).
    async fn add_metrics(&self, batch: &[(String, Version, VersionMetrics)]) -> Result<()>;
    /// A version's accumulated metrics (zero when none were recorded).
    async fn metrics(&self, name: &str, version: &Version) -> Result<VersionMetrics>;
    /// Creates an experiment.
    async fn create_experiment(&self, experiment: &Experiment, ctx: &ChangeContext) -> Result<()>;
    /// One experiment.
    async fn experiment(&self, name: &str) -> Result<Option<Experiment>>;
    /// Records one outcome.
    async fn record_outcome(&self, outcome: &ExperimentOutcome) -> Result<()>;
    /// Outcome totals per arm, in arm order.
    async fn experiment_totals(&self, experiment: &Experiment) -> Result<Vec<ArmTotals>>;
    /// The audit trail (all of it, or the rows about one prompt), oldest first.
    async fn audit_entries(&self, prompt: Option<&str>) -> Result<Vec<AuditEntry>>;
    /// A number that grows with every audited change: routers reload when it moves.
    async fn revision(&self) -> Result<i64>;
    /// A routing snapshot of every prompt.
    async fn routing_table(&self) -> Result<RoutingTable>;
    /// Pushed notice of committed changes where the backend has it (PostgreSQL LISTEN/NOTIFY),
    /// so routers reload at once instead of at their next poll; `None` means poll only.
    async fn change_feed(&self) -> Result<Option<ChangeFeed>>;
    /// Queues a flagged document, or counts one more hit on the queued item with the same
    /// content (whatever its status); returns the item as stored.
    async fn queue_review(&self, new: &NewReview) -> Result<ReviewItem>;
    /// Queued documents (all, or those with one status), oldest first.
    async fn reviews(&self, status: Option<ReviewStatus>) -> Result<Vec<ReviewItem>>;
    /// The status of the queued document with this content hash, if queued.
    async fn review_status(&self, content_sha256: &str) -> Result<Option<ReviewStatus>>;
    /// Approves or rejects a pending document, with its audit row.
    async fn resolve_review(
        &self,
        id: i64,
        decision: ReviewStatus,
        ctx: &ChangeContext,
    ) -> Result<ReviewItem>;
}

/// Pushed notices of registry changes: a dedicated PostgreSQL connection listening on the
/// channel the `audit_log` trigger notifies.
pub struct ChangeFeed {
    listener: sqlx::postgres::PgListener,
    schema: String,
}

impl fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeFeed")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// The channel the `audit_log` trigger notifies (payload `SCHEMA:SEQ`).
pub(crate) const CHANGE_CHANNEL: &str = "promptops_registry";

impl ChangeFeed {
    pub(crate) fn new(listener: sqlx::postgres::PgListener, schema: String) -> ChangeFeed {
        ChangeFeed { listener, schema }
    }

    /// Waits for the next change to this registry's schema. Also returns when the connection
    /// dropped and will be re-established, since a notice may have been missed then: either way
    /// the caller should re-read the revision. Errors when the database cannot be reached.
    pub async fn changed(&mut self) -> Result<()> {
        loop {
            let notice =
                self.listener
                    .try_recv()
                    .await
                    .map_err(|source| RegistryError::Database {
                        operation: "wait for change notifications",
                        source,
                    })?;
            let Some(notice) = notice else {
                return Ok(());
            };
            if notice
                .payload()
                .rsplit_once(':')
                .is_some_and(|(schema, _)| schema == self.schema)
            {
                return Ok(());
            }
        }
    }
}

/// Opens (and migrates) the store a URL names: `sqlite:PATH` / `sqlite://PATH` or
/// `postgres://...` / `postgresql://...`.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::open(url).await?))
    } else {
        Err(RegistryError::InvalidDatabaseUrl {
            url: redact_url(url),
            reason: "expected sqlite:PATH or postgres://...".to_owned(),
        })
    }
}

/// The URL without a password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite:/tmp/x.db"), "sqlite:/tmp/x.db");
    }
}
