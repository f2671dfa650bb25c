//! [`Registry`]: the operations front ends call (CLI, gateway, runtime). It validates input,
//! stamps changes with the actor and the time, and delegates persistence to a [`Store`].

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use promptops_core::message::Message;
use promptops_core::template::Variables;
use semver::Version;
use serde::Serialize;
use serde_json::{Value, json};

use crate::audit::{AuditEntry, ChainVerification, verify_chain};
use crate::diff::{VersionDiff, diff_versions};
use crate::error::{RegistryError, Result};
use crate::experiment::{AnalysisConfig, Experiment, ExperimentArm, ExperimentReport, analyze};
use crate::files::{FileFormat, read_prompt_dir, write_prompt_file};
use crate::metrics::{Outcome, VersionMetrics};
use crate::review::{NewReview, ReviewItem, ReviewStatus, content_sha256};
use crate::rollback::{CanaryVerdict, RollbackPolicy};
use crate::routing::{
    Deployment, DeploymentRequest, PRODUCTION_LABEL, Route, RoutingTable, Transition,
    check_fraction,
};
use crate::store::{
    AddedVersion, ChangeContext, ExperimentOutcome, NewVersion, PromptSummary, Store,
};
use crate::version::{Bump, PromptContent, PromptRef, PromptVersion, Selector, validate_name};

/// Milliseconds since the Unix epoch by the system clock.
pub fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A Unix-millisecond time as RFC 3339 UTC (`2026-01-02T03:04:05.678Z`), for display.
pub fn format_timestamp_ms(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms}ms"))
}

/// The result of judging one canary.
#[derive(Debug, Clone, Serialize)]
pub struct CanaryCheck {
    /// The deployment judged.
    pub deployment: Deployment,
    /// The policy's verdict.
    pub verdict: CanaryVerdict,
    /// The rollback done because of a breach.
    pub rolled_back: Option<Transition>,
}

/// What `sync` did per prompt.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// Prompts that got a new version.
    pub created: Vec<(String, Version)>,
    /// Prompts whose file matched an existing version.
    pub unchanged: Vec<(String, Version)>,
}

/// The registry's API over a store.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("store", &self.store)
            .finish()
    }
}

impl Registry {
    /// A registry over `store`, stamping changes with the system clock.
    pub fn new(store: Arc<dyn Store>) -> Registry {
        Registry::with_clock(store, Arc::new(system_now_ms))
    }

    /// A registry whose change times come from `clock` (Unix milliseconds).
    pub fn with_clock(
        store: Arc<dyn Store>,
        clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    ) -> Registry {
        Registry { store, clock }
    }

    /// Opens the store at `url` (see [`crate::store::open`]).
    pub async fn open(url: &str) -> Result<Registry> {
        Ok(Registry::new(crate::store::open(url).await?))
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn ctx(&self, actor: &str, reason: Option<&str>) -> ChangeContext {
        ChangeContext {
            actor: actor.to_owned(),
            at_ms: (self.clock)(),
            reason: reason.map(str::to_owned),
        }
    }

    /// Adds a version (validating the name and content); identical content returns the
    /// existing version with `created == false`.
    pub async fn add_version(
        &self,
        name: &str,
        content: PromptContent,
        bump: Bump,
        actor: &str,
        message: Option<&str>,
    ) -> Result<AddedVersion> {
        validate_name(name)?;
        let content = content.validated(name)?;
        let new = NewVersion {
            name: name.to_owned(),
            content,
            bump,
            message: message.map(str::to_owned),
        };
        self.store.add_version(&new, &self.ctx(actor, None)).await
    }

    /// Every prompt, by name.
    pub async fn list(&self) -> Result<Vec<PromptSummary>> {
        self.store.prompt_summaries().await
    }

    /// A prompt's versions, oldest first; an unknown prompt is an error.
    pub async fn versions(&self, name: &str) -> Result<Vec<PromptVersion>> {
        validate_name(name)?;
        let versions = self.store.versions(name).await?;
        if versions.is_empty() {
            return Err(RegistryError::UnknownPrompt(name.to_owned()));
        }
        Ok(versions)
    }

    /// The version a `NAME`, `NAME@VERSION` or `NAME:LABEL` reference selects.
    pub async fn get(&self, reference: &str) -> Result<PromptVersion> {
        self.resolve(&reference.parse()?).await
    }

    /// The version a parsed reference selects.
    pub async fn resolve(&self, reference: &PromptRef) -> Result<PromptVersion> {
        let name = &reference.name;
        let unknown_prompt = || RegistryError::UnknownPrompt(name.clone());
        match &reference.selector {
            Selector::Latest => self
                .store
                .latest_version(name)
                .await?
                .ok_or_else(unknown_prompt),
            Selector::Exact(version) => match self.store.version(name, version).await? {
                Some(found) => Ok(found),
                None => {
                    self.require_prompt(name).await?;
                    Err(RegistryError::UnknownVersion {
                        name: name.clone(),
                        version: version.to_string(),
                    })
                }
            },
            Selector::Label(label) => {
                self.require_prompt(name).await?;
                let labels = self.store.labels(name).await?;
                let version = labels
                    .get(label)
                    .ok_or_else(|| RegistryError::UnknownLabel {
                        name: name.clone(),
                        label: label.clone(),
                    })?;
                self.store.version(name, version).await?.ok_or_else(|| {
                    RegistryError::UnknownVersion {
                        name: name.clone(),
                        version: version.to_string(),
                    }
                })
            }
        }
    }

    async fn require_prompt(&self, name: &str) -> Result<()> {
        match self.store.latest_version(name).await? {
            Some(_) => Ok(()),
            None => Err(RegistryError::UnknownPrompt(name.to_owned())),
        }
    }

    /// Renders the referenced version with `vars`.
    pub async fn render(
        &self,
        reference: &str,
        vars: &Variables,
    ) -> Result<(PromptVersion, Vec<Message>)> {
        let version = self.get(reference).await?;
        let messages = version.content.render(&version.name, vars)?;
        Ok((version, messages))
    }

    /// Differences between two versions of `name`. Each side is `@VERSION`, `:LABEL`, or bare:
    /// a bare side is a version when it parses as one (`1.2.0`, `v1.2.0`) and a label otherwise,
    /// so a label named `v1` or `2024` still works.
    pub async fn diff(&self, name: &str, a: &str, b: &str) -> Result<VersionDiff> {
        let side = |s: &str| {
            if let Some(version) = s.strip_prefix('@') {
                format!("{name}@{version}")
            } else if let Some(label) = s.strip_prefix(':') {
                format!("{name}:{label}")
            } else if crate::version::parse_version(s).is_ok() {
                format!("{name}@{s}")
            } else {
                format!("{name}:{s}")
            }
        };
        let left = self.get(&side(a)).await?;
        let right = self.get(&side(b)).await?;
        Ok(diff_versions(&left, &right))
    }

    /// Points `label` at the version `reference` selects.
    pub async fn set_label(
        &self,
        reference: &str,
        label: &str,
        actor: &str,
    ) -> Result<(PromptVersion, Option<Version>)> {
        validate_name(label)?;
        let version = self.get(reference).await?;
        let before = self
            .store
            .set_label(
                &version.name,
                label,
                &version.version,
                &self.ctx(actor, None),
            )
            .await?;
        Ok((version, before))
    }

    /// Queues a document the guard flagged (see [`crate::review`]).
    pub async fn queue_review(&self, new: &NewReview) -> Result<ReviewItem> {
        self.store.queue_review(new).await
    }

    /// The review queue, or the part of it with one status.
    pub async fn reviews(&self, status: Option<ReviewStatus>) -> Result<Vec<ReviewItem>> {
        self.store.reviews(status).await
    }

    /// Where a document's content stands in the review queue, if it was ever queued.
    pub async fn review_status(&self, content: &str) -> Result<Option<ReviewStatus>> {
        self.store.review_status(&content_sha256(content)).await
    }

    /// Approves or rejects a queued document (audited).
    pub async fn resolve_review(
        &self,
        id: i64,
        decision: ReviewStatus,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<ReviewItem> {
        self.store
            .resolve_review(id, decision, &self.ctx(actor, reason))
            .await
    }

    /// The prompt's rollout state.
    pub async fn deployment(&self, name: &str) -> Result<Option<Deployment>> {
        validate_name(name)?;
        self.require_prompt(name).await?;
        self.store.deployment(name).await
    }

    async fn change(
        &self,
        name: &str,
        request: DeploymentRequest,
        actor: &str,
        reason: Option<&str>,
        details: Value,
    ) -> Result<Transition> {
        validate_name(name)?;
        self.store
            .change_deployment(name, &request, &self.ctx(actor, reason), details)
            .await
    }

    /// Starts a canary of `version` at `fraction` (the first deployment makes it stable).
    pub async fn deploy(
        &self,
        name: &str,
        version: &Version,
        fraction: f64,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<Transition> {
        check_fraction("canary fraction", fraction)?;
        let request = DeploymentRequest::Deploy {
            version: version.clone(),
            fraction,
        };
        self.change(name, request, actor, reason, Value::Null).await
    }

    /// Sets the candidate's share of traffic.
    pub async fn expand(
        &self,
        name: &str,
        fraction: f64,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<Transition> {
        check_fraction("traffic fraction", fraction)?;
        self.change(
            name,
            DeploymentRequest::Expand { fraction },
            actor,
            reason,
            Value::Null,
        )
        .await
    }

    /// Makes the candidate stable at 100%.
    pub async fn promote(
        &self,
        name: &str,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<Transition> {
        self.change(name, DeploymentRequest::Promote, actor, reason, Value::Null)
            .await
    }

    /// Drops the candidate, or returns to `to`.
    pub async fn rollback(
        &self,
        name: &str,
        to: Option<&Version>,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<Transition> {
        let request = DeploymentRequest::Rollback {
            to: to.cloned(),
            expect_candidate: None,
        };
        self.change(name, request, actor, reason, Value::Null).await
    }

    /// A routing snapshot read from the store now (a live router keeps one refreshed instead).
    pub async fn routing_table(&self) -> Result<RoutingTable> {
        self.store.routing_table().await
    }

    /// The version serving `request_id` according to a fresh snapshot.
    pub async fn route(&self, name: &str, request_id: &str) -> Result<Route> {
        validate_name(name)?;
        self.routing_table()
            .await?
            .resolve(name, request_id)
            .ok_or_else(|| RegistryError::UnknownPrompt(name.to_owned()))
    }

    /// Records outcomes of `name@version`.
    pub async fn record_outcomes(
        &self,
        name: &str,
        version: &Version,
        outcomes: &[Outcome],
    ) -> Result<VersionMetrics> {
        validate_name(name)?;
        self.get(&format!("{name}@{version}")).await?;
        let mut delta = VersionMetrics::default();
        for outcome in outcomes {
            outcome.validate()?;
            delta.record(outcome);
        }
        self.store
            .add_metrics(&[(name.to_owned(), version.clone(), delta.clone())])
            .await?;
        Ok(delta)
    }

    /// Accumulated metrics of `name@version`.
    pub async fn metrics(&self, name: &str, version: &Version) -> Result<VersionMetrics> {
        self.get(&format!("{name}@{version}")).await?;
        self.store.metrics(name, version).await
    }

    /// Judges the prompt's canary and rolls it back on a breach (recording the figures).
    pub async fn check_canary(
        &self,
        name: &str,
        policy: &RollbackPolicy,
        actor: &str,
    ) -> Result<CanaryCheck> {
        let deployment =
            self.deployment(name)
                .await?
                .ok_or_else(|| RegistryError::InvalidTransition {
                    name: name.to_owned(),
                    action: "check",
                    reason: "it has no deployment".to_owned(),
                })?;
        let Some(candidate) = deployment.candidate.clone() else {
            return Err(RegistryError::InvalidTransition {
                name: name.to_owned(),
                action: "check",
                reason: "it has no candidate version rolling out".to_owned(),
            });
        };
        let candidate_metrics = self.store.metrics(name, &candidate).await?;
        let stable_metrics = self.store.metrics(name, &deployment.stable).await?;
        let verdict = policy.evaluate(&candidate_metrics, &stable_metrics);
        let rolled_back = match &verdict {
            CanaryVerdict::Breach {
                breaches,
                candidate: cand,
                stable,
            } => {
                let summary: Vec<String> = breaches
                    .iter()
                    .map(|b| format!("{} {:.4} (limit {})", b.check, b.observed, b.limit))
                    .collect();
                let reason = format!("auto-rollback of {candidate}: {}", summary.join("; "));
                let request = DeploymentRequest::Rollback {
                    to: None,
                    expect_candidate: Some(candidate.clone()),
                };
                let details = json!({
                    "policy": policy,
                    "breaches": breaches,
                    "candidate_metrics": cand,
                    "stable_metrics": stable,
                });
                Some(
                    self.change(name, request, actor, Some(&reason), details)
                        .await?,
                )
            }
            _ => None,
        };
        Ok(CanaryCheck {
            deployment,
            verdict,
            rolled_back,
        })
    }

    /// Judges every running canary (see [`Registry::check_canary`]).
    pub async fn check_all_canaries(
        &self,
        policy: &RollbackPolicy,
        actor: &str,
    ) -> Result<Vec<CanaryCheck>> {
        let mut checks = Vec::new();
        for summary in self.list().await? {
            if summary
                .deployment
                .as_ref()
                .is_some_and(|d| d.candidate.is_some())
            {
                match self.check_canary(&summary.name, policy, actor).await {
                    Ok(check) => checks.push(check),
                    // Promoted or rolled back between listing and checking: nothing to judge.
                    Err(RegistryError::InvalidTransition { .. }) => {}
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(checks)
    }

    /// Creates an experiment over versions of `prompt`; the first arm is the control.
    pub async fn create_experiment(
        &self,
        name: &str,
        prompt: &str,
        arms: Vec<ExperimentArm>,
        actor: &str,
    ) -> Result<Experiment> {
        let experiment = Experiment {
            name: name.to_owned(),
            prompt: prompt.to_owned(),
            arms,
            created_at_ms: (self.clock)(),
        };
        experiment.validate()?;
        self.require_prompt(prompt).await?;
        self.store
            .create_experiment(&experiment, &self.ctx(actor, None))
            .await?;
        Ok(experiment)
    }

    /// An experiment by name.
    pub async fn experiment(&self, name: &str) -> Result<Experiment> {
        validate_name(name)?;
        self.store
            .experiment(name)
            .await?
            .ok_or_else(|| RegistryError::UnknownExperiment(name.to_owned()))
    }

    /// The arm a unit is assigned to.
    pub async fn assign(&self, experiment: &str, unit_id: &str) -> Result<(Experiment, usize)> {
        let experiment = self.experiment(experiment).await?;
        let arm = experiment.assign(unit_id);
        Ok((experiment, arm))
    }

    /// Records an outcome for a unit (its arm from the assignment unless `version` says which).
    pub async fn record_experiment_outcome(
        &self,
        experiment: &str,
        unit_id: &str,
        version: Option<&Version>,
        success: Option<bool>,
        score: Option<f64>,
    ) -> Result<usize> {
        let experiment = self.experiment(experiment).await?;
        if success.is_none() && score.is_none() {
            return Err(RegistryError::InvalidExperiment {
                name: experiment.name,
                reason: "an outcome needs a success flag, a score, or both".to_owned(),
            });
        }
        if let Some(score) = score
            && !score.is_finite()
        {
            return Err(RegistryError::InvalidExperiment {
                name: experiment.name,
                reason: format!("score {score} is not a finite number"),
            });
        }
        let arm = match version {
            Some(version) => experiment.arm_of(version)?,
            None => experiment.assign(unit_id),
        };
        self.store
            .record_outcome(&ExperimentOutcome {
                experiment: experiment.name.clone(),
                arm,
                unit_id: unit_id.to_owned(),
                success,
                score,
                at_ms: (self.clock)(),
            })
            .await?;
        Ok(arm)
    }

    /// Analyses an experiment's outcomes so far.
    pub async fn analyze_experiment(
        &self,
        name: &str,
        config: &AnalysisConfig,
    ) -> Result<ExperimentReport> {
        let experiment = self.experiment(name).await?;
        let totals = self.store.experiment_totals(&experiment).await?;
        analyze(&experiment, &totals, config)
    }

    /// The audit trail (of one prompt, or all).
    pub async fn audit(&self, prompt: Option<&str>) -> Result<Vec<AuditEntry>> {
        if let Some(name) = prompt {
            validate_name(name)?;
        }
        self.store.audit_entries(prompt).await
    }

    /// Checks the whole audit chain.
    pub async fn verify_audit(&self) -> Result<ChainVerification> {
        Ok(verify_chain(&self.store.audit_entries(None).await?))
    }

    /// Adds a version for every prompt file in `dir` whose content is new. All files are read
    /// and validated first: one bad file changes nothing.
    pub async fn sync_dir(&self, dir: &Path, actor: &str) -> Result<SyncReport> {
        let files = read_prompt_dir(dir)?;
        let mut report = SyncReport {
            created: Vec::new(),
            unchanged: Vec::new(),
        };
        for file in files {
            let message = format!("sync from {}", file.path.display());
            let added = self
                .add_version(&file.name, file.content, Bump::Patch, actor, Some(&message))
                .await?;
            let entry = (file.name, added.version.version);
            if added.created {
                report.created.push(entry);
            } else {
                report.unchanged.push(entry);
            }
        }
        Ok(report)
    }

    /// Writes each prompt's production version (its latest when it has none) to `DIR/NAME.toml`
    /// (or `.yaml`).
    pub async fn export_dir(
        &self,
        dir: &Path,
        format: FileFormat,
    ) -> Result<Vec<(String, Version, std::path::PathBuf)>> {
        std::fs::create_dir_all(dir).map_err(|source| RegistryError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let mut written = Vec::new();
        for found in self.export_versions().await? {
            let path = write_prompt_file(dir, &found.name, &found.content, format)?;
            written.push((found.name, found.version, path));
        }
        Ok(written)
    }

    /// The version of each prompt an export writes: its production version, else its latest.
    pub async fn export_versions(&self) -> Result<Vec<PromptVersion>> {
        let mut versions = Vec::new();
        for summary in self.list().await? {
            let version = summary
                .labels
                .get(PRODUCTION_LABEL)
                .cloned()
                .unwrap_or(summary.latest);
            versions.push(self.get(&format!("{}@{version}", summary.name)).await?);
        }
        Ok(versions)
    }
}
