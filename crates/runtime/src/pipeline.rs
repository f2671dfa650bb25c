//! [`Runtime`]: the request pipeline. Resolve the model (route, `PROVIDER/MODEL` or
//! `prompt:NAME`), render the prompt, guard the input, call through the llm [`Router`] with
//! fallback, validate the output, guard the output, price it and record the prompt version's
//! outcome — the same path for the gateway, `promptops run` and evaluations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use promptops_core::catalog::{Catalog, ModelInfo};
use promptops_core::message::Extra;
use promptops_core::template::Variables;
use promptops_core::{CoreError, message::Message};
use promptops_llm::{
    AttemptRecord, ChatRequest, ChatResponse, DeltaStream, EmbeddingRequest, EmbeddingResponse,
    LlmError, Router, StreamAccumulator, StreamDelta, Target, Usage,
};
use promptops_registry::metrics::{MetricsRecorder, Outcome};
use promptops_registry::routing::{Arm, Router as RoutingRouter};
use promptops_registry::version::{PromptRef, PromptVersion, Selector};
use promptops_registry::{Registry, RegistryError, Version};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::GuardConfig;
use crate::error::RuntimeError;
use crate::guard_stage::{
    ANONYMOUS_ROLE, AlertSink, DocumentReport, GuardStage, InputGuarded, Policy, RetrievedDocument,
    insert_documents, random_key,
};
use promptops_guard::sanitize::{Document, Spotlight};
use promptops_registry::review::NewReview;

/// The prefix of a model string that references a registry prompt.
pub const PROMPT_PREFIX: &str = "prompt:";

/// How long `models()` waits for one provider's listing.
const LIST_MODELS_TIMEOUT: Duration = Duration::from_secs(3);

/// One chat call as a front end hands it to the runtime.
#[derive(Debug, Clone)]
pub struct ChatCall {
    /// The request id (routing of canaries, canary tokens, logs).
    pub request_id: String,
    /// What the client asked for: a route, `PROVIDER/MODEL` or `prompt:REF`.
    pub model: String,
    /// The request (its `model` field is ignored; `model` above decides).
    pub request: ChatRequest,
    /// Variables for a prompt reference.
    pub prompt_variables: Option<Variables>,
    /// The caller's RBAC role (`[guard.rbac]`); `None` means [`ANONYMOUS_ROLE`].
    pub caller_role: Option<String>,
    /// Documents retrieved by the caller to ground the answer: access-filtered, checked and
    /// placed in the prompt as spotlighted data.
    pub documents: Vec<RetrievedDocument>,
}

impl ChatCall {
    /// A call with no prompt variables, role or documents.
    pub fn new(
        request_id: impl Into<String>,
        model: impl Into<String>,
        request: ChatRequest,
    ) -> Self {
        ChatCall {
            request_id: request_id.into(),
            model: model.into(),
            request,
            prompt_variables: None,
            caller_role: None,
            documents: Vec::new(),
        }
    }
}

/// The prompt version that served a call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptUse {
    /// The prompt's name.
    pub name: String,
    /// The version served.
    pub version: Version,
    /// The deployment side it came from; `None` when the reference pinned a version or label.
    pub arm: Option<Arm>,
}

impl PromptUse {
    /// `NAME@VERSION`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// Whether the output satisfied the prompt's output schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum OutputCheck {
    /// No schema to check against.
    NotChecked,
    /// Valid JSON under the schema.
    Valid,
    /// No JSON could be read from the reply.
    ParseError(String),
    /// JSON that violates the schema.
    SchemaViolation(String),
}

/// The result of a non-streamed chat call.
#[derive(Debug, Clone)]
pub struct ChatOutcome {
    /// The response (guarded and de-redacted as the policy says).
    pub response: ChatResponse,
    /// The `PROVIDER/MODEL` that answered.
    pub target: Target,
    /// Every attempt made (more than one when retries or fallback happened).
    pub attempts: Vec<AttemptRecord>,
    /// The prompt version used, if the model was a prompt reference.
    pub prompt: Option<PromptUse>,
    /// Cost in USD from the catalog, when the model is priced there.
    pub cost_usd: Option<f64>,
    /// Wall time of the call.
    pub latency: Duration,
    /// The output schema check.
    pub output_check: OutputCheck,
    /// Guard checks that fired without blocking.
    pub guard_warnings: Vec<String>,
    /// What happened to the request's documents.
    pub documents: DocumentReport,
}

/// What is known about a stream when it opens (before the first delta is read).
#[derive(Debug, Clone)]
pub struct StreamMeta {
    /// The `PROVIDER/MODEL` serving the stream.
    pub target: Target,
    /// Attempts made to open it.
    pub attempts: Vec<AttemptRecord>,
    /// The prompt version used, if any.
    pub prompt: Option<PromptUse>,
    /// When the call started (for time to first token).
    pub started: Instant,
    /// Guard checks that fired without blocking (the input side; output checks end the stream).
    pub guard_warnings: Vec<String>,
    /// What happened to the request's documents.
    pub documents: DocumentReport,
}

/// An embeddings call.
#[derive(Debug, Clone, Default)]
pub struct EmbedCall {
    /// A route or `PROVIDER/MODEL`.
    pub model: String,
    /// The texts.
    pub input: Vec<String>,
    /// Requested vector size.
    pub dimensions: Option<u32>,
    /// Provider-specific fields passed through.
    pub extra: Extra,
}

/// The result of an embeddings call.
#[derive(Debug, Clone)]
pub struct EmbedOutcome {
    /// The vectors and usage.
    pub response: EmbeddingResponse,
    /// The `PROVIDER/MODEL` that answered.
    pub target: Target,
    /// Cost in USD, when priced.
    pub cost_usd: Option<f64>,
}

/// What kind of name a model listing entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSource {
    /// `PROVIDER/MODEL` from a provider's listing.
    Provider,
    /// A configured route.
    Route,
    /// A registry prompt (`prompt:NAME`).
    Prompt,
}

/// One model name a client can send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelEntry {
    /// The name to send as `model`.
    pub id: String,
    /// The provider, `promptops` for routes and prompts.
    pub owned_by: String,
    /// Where the name comes from.
    pub source: ModelSource,
}

/// The registry side of the runtime.
#[derive(Debug)]
struct Prompts {
    registry: Registry,
    routes: Arc<RoutingRouter>,
}

/// Shared state of a [`Runtime`].
struct Inner {
    router: Arc<Router>,
    prompts: Option<Prompts>,
    guard: Option<GuardStage>,
    catalog: Catalog,
    /// The catalog's entry for each target priced so far: a catalog lookup normalises and
    /// searches the name, and costs more than a map read on every request.
    prices: RwLock<HashMap<Target, Option<ModelInfo>>>,
    recorder: MetricsRecorder,
    validators: Mutex<HashMap<(String, Version), Arc<jsonschema::Validator>>>,
    /// Per-process secret mixed with request ids into document delimiters.
    delimiter_key: Vec<u8>,
}

/// The request pipeline; cheap to clone and shared by every request.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("router", &self.inner.router)
            .field("prompts", &self.inner.prompts)
            .field("guard", &self.inner.guard)
            .finish_non_exhaustive()
    }
}

/// Most targets whose catalog entry [`Runtime::cost`] remembers; later ones are looked up
/// each time.
const MAX_PRICED_TARGETS: usize = 4096;

/// Builds a [`Runtime`].
pub struct RuntimeBuilder {
    router: Arc<Router>,
    prompts: Option<Prompts>,
    guard: Option<GuardConfig>,
    catalog: Option<Catalog>,
    on_alert: Option<AlertSink>,
}

impl RuntimeBuilder {
    /// Serves `prompt:` references from `registry`, routing bare names through `routes` (keep it
    /// fresh with `promptops_registry::live::spawn_router_refresh` or [`Runtime::spawn_background`]).
    pub fn registry(mut self, registry: Registry, routes: Arc<RoutingRouter>) -> Self {
        self.prompts = Some(Prompts { registry, routes });
        self
    }

    /// Applies a `[guard]` section (ignored unless `enabled`).
    pub fn guard(mut self, config: GuardConfig) -> Self {
        self.guard = Some(config);
        self
    }

    /// Receives the guard's injection spike alerts.
    pub fn on_guard_alert(
        mut self,
        sink: impl Fn(&crate::SpikeAlert) + Send + Sync + 'static,
    ) -> Self {
        self.on_alert = Some(Arc::new(sink));
        self
    }

    /// Prices calls with `catalog` instead of the built-in one.
    pub fn catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Builds the runtime; `env` reads environment variables (the guard's canary key).
    pub fn build_with_env(
        self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Runtime, RuntimeError> {
        let guard = match self.guard {
            Some(config) if config.enabled => Some(GuardStage::new(config, env, self.on_alert)?),
            _ => None,
        };
        let catalog = match self.catalog {
            Some(catalog) => catalog,
            None => Catalog::builtin().map_err(|error| RuntimeError::Config {
                key: "catalog".to_owned(),
                reason: error.to_string(),
            })?,
        };
        Ok(Runtime {
            inner: Arc::new(Inner {
                router: self.router,
                prompts: self.prompts,
                guard,
                catalog,
                prices: RwLock::new(HashMap::new()),
                recorder: MetricsRecorder::new(),
                validators: Mutex::new(HashMap::new()),
                delimiter_key: random_key(),
            }),
        })
    }

    /// Builds the runtime reading the process environment.
    pub fn build(self) -> Result<Runtime, RuntimeError> {
        self.build_with_env(&|name| std::env::var(name).ok())
    }
}

impl Runtime {
    /// A builder over the llm router.
    pub fn builder(router: Arc<Router>) -> RuntimeBuilder {
        RuntimeBuilder {
            router,
            prompts: None,
            guard: None,
            catalog: None,
            on_alert: None,
        }
    }

    /// The llm router.
    pub fn router(&self) -> &Arc<Router> {
        &self.inner.router
    }

    /// The registry, when configured.
    pub fn registry(&self) -> Option<&Registry> {
        self.inner.prompts.as_ref().map(|p| &p.registry)
    }

    /// The in-memory prompt routing table, when a registry is configured.
    pub fn routes(&self) -> Option<&Arc<RoutingRouter>> {
        self.inner.prompts.as_ref().map(|p| &p.routes)
    }

    /// The per-end-user requests per minute of an RBAC role (`[guard.rbac]`), if it has one.
    pub fn guard_user_rate_limit(&self, role: &str) -> Option<u32> {
        self.inner.guard.as_ref()?.user_rate_limit(role)
    }

    /// Whether the guard is on.
    pub fn guard_enabled(&self) -> bool {
        self.inner.guard.is_some()
    }

    /// Reloads the prompt routing table now if the store changed (e.g. after an admin action).
    pub async fn refresh_routes(&self) -> Result<(), RuntimeError> {
        if let Some(prompts) = &self.inner.prompts {
            promptops_registry::live::refresh_router(
                prompts.registry.store().as_ref(),
                &prompts.routes,
            )
            .await
            .map_err(|error| RuntimeError::Registry(Box::new(error)))?;
        }
        Ok(())
    }

    /// Writes the per-version outcomes recorded since the last flush; returns how many
    /// prompt versions were written.
    pub async fn flush_metrics(&self) -> Result<usize, RuntimeError> {
        let Some(prompts) = &self.inner.prompts else {
            return Ok(0);
        };
        let batch = self.inner.recorder.take();
        if batch.is_empty() {
            return Ok(0);
        }
        prompts
            .registry
            .store()
            .add_metrics(&batch)
            .await
            .map_err(|error| RuntimeError::Registry(Box::new(error)))?;
        Ok(batch.len())
    }

    /// Spawns the background tasks until `stop` turns true: the routing-table refresh (at once on
    /// the store's change notices where it pushes them, PostgreSQL, and every `interval` in any
    /// case) and the metrics flush every `interval` (a last flush happens at stop). Errors go to
    /// `on_error`.
    pub fn spawn_background(
        &self,
        interval: Duration,
        mut stop: watch::Receiver<bool>,
        on_error: impl Fn(&RuntimeError) + Send + Sync + 'static,
    ) -> JoinHandle<()> {
        let runtime = self.clone();
        let on_error = Arc::new(on_error);
        let refresh = self.inner.prompts.as_ref().map(|prompts| {
            let on_error = Arc::clone(&on_error);
            promptops_registry::live::spawn_router_refresh(
                Arc::clone(prompts.registry.store()),
                Arc::clone(&prompts.routes),
                interval,
                stop.clone(),
                move |error| on_error(&RuntimeError::Registry(Box::new(error))),
            )
        });
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {
                        if let Err(error) = runtime.flush_metrics().await {
                            on_error(&error);
                        }
                    }
                    changed = stop.changed() => {
                        if changed.is_err() || *stop.borrow() {
                            if let Err(error) = runtime.flush_metrics().await {
                                on_error(&error);
                            }
                            break;
                        }
                    }
                }
            }
            if let Some(refresh) = refresh {
                let _ = refresh.await;
            }
        })
    }

    /// Cost in USD of `usage` at `target`, when the catalog prices the model.
    pub fn cost(&self, target: &Target, usage: &Usage) -> Option<f64> {
        let price = |info: &ModelInfo| {
            let to = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
            let cached = usage.cached_tokens.min(usage.input_tokens);
            let written = usage.cache_write_tokens.min(usage.input_tokens - cached);
            info.cost_with_cache_writes(
                to(usage.input_tokens),
                to(usage.output_tokens),
                to(cached),
                to(written),
            )
            .ok()
            .map(|cost| cost.total_usd)
        };
        if let Some(known) = self
            .inner
            .prices
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(target)
        {
            return known.as_ref().and_then(price);
        }
        let info = self.inner.catalog.find(&target.to_string()).cloned();
        let cost = info.as_ref().and_then(price);
        let mut prices = self
            .inner
            .prices
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Clients name targets (`PROVIDER/anything`): the memo stays bounded.
        if prices.len() < MAX_PRICED_TARGETS {
            prices.insert(target.clone(), info);
        }
        cost
    }

    /// A whole chat completion through the pipeline.
    pub async fn chat(&self, call: ChatCall) -> Result<ChatOutcome, RuntimeError> {
        let started = Instant::now();
        let prepared = self.prepare(call).await?;
        let result = self
            .inner
            .router
            .chat(&prepared.model, &prepared.request)
            .await;
        let routed = match result {
            Ok(routed) => routed,
            Err(error) => {
                self.record_failure(&prepared, started);
                return Err(error.into());
            }
        };
        let mut response = routed.value;
        let mut warnings = prepared.guarded.reasons.clone();
        if let Some(stage) = &self.inner.guard
            && let Err(error) = stage.check_output(&mut response, &prepared.guarded, &mut warnings)
        {
            self.record(
                &prepared,
                started,
                &response.usage,
                None,
                false,
                &OutputCheck::NotChecked,
            );
            return Err(error);
        }
        let output_check = self.check_schema(&prepared, &response);
        let cost_usd = self.cost(&routed.target, &response.usage);
        let latency = started.elapsed();
        self.record(
            &prepared,
            started,
            &response.usage,
            cost_usd,
            true,
            &output_check,
        );
        Ok(ChatOutcome {
            response,
            target: routed.target,
            attempts: routed.attempts,
            prompt: prepared.prompt.as_ref().map(|p| p.used.clone()),
            cost_usd,
            latency,
            output_check,
            guard_warnings: warnings,
            documents: prepared.documents,
        })
    }

    /// A streamed chat completion through the pipeline. Fallback happens until the stream
    /// opens; later failures end the stream with an `Err`. When output checks or de-redaction
    /// apply, the reply is buffered, checked, and replayed as deltas.
    pub async fn chat_stream(
        &self,
        call: ChatCall,
    ) -> Result<(StreamMeta, DeltaStream), RuntimeError> {
        let started = Instant::now();
        let prepared = self.prepare(call).await?;
        let routed = match self
            .inner
            .router
            .stream(&prepared.model, &prepared.request)
            .await
        {
            Ok(routed) => routed,
            Err(error) => {
                self.record_failure(&prepared, started);
                return Err(error.into());
            }
        };
        let meta = StreamMeta {
            target: routed.target.clone(),
            attempts: routed.attempts,
            prompt: prepared.prompt.as_ref().map(|p| p.used.clone()),
            started,
            guard_warnings: prepared.guarded.reasons.clone(),
            documents: prepared.documents.clone(),
        };
        let buffered = self
            .inner
            .guard
            .as_ref()
            .is_some_and(|stage| stage.buffers_streams(&prepared.guarded));
        if buffered {
            let response = self
                .buffer_stream(routed.value, &routed.target, &prepared, started)
                .await?;
            let deltas: Vec<Result<StreamDelta, LlmError>> =
                response.to_deltas().into_iter().map(Ok).collect();
            return Ok((meta, Box::pin(futures_util::stream::iter(deltas))));
        }
        if prepared.prompt.is_none() {
            return Ok((meta, routed.value));
        }
        let state = Watch {
            inner: routed.value,
            accumulator: StreamAccumulator::new(),
            runtime: self.clone(),
            prepared,
            target: routed.target,
            started,
            done: false,
        };
        Ok((
            meta,
            Box::pin(futures_util::stream::unfold(state, Watch::next)),
        ))
    }

    /// Embeddings through the router.
    pub async fn embed(&self, call: EmbedCall) -> Result<EmbedOutcome, RuntimeError> {
        if call.input.is_empty() {
            return Err(RuntimeError::invalid("input", "must not be empty"));
        }
        if call.model.starts_with(PROMPT_PREFIX) {
            return Err(RuntimeError::invalid(
                "model",
                "prompt references are for chat completions, not embeddings",
            ));
        }
        let request = EmbeddingRequest {
            model: String::new(),
            input: call.input,
            dimensions: call.dimensions,
            extra: call.extra,
        };
        let routed = self.inner.router.embed(&call.model, &request).await?;
        let cost_usd = self.cost(&routed.target, &routed.value.usage);
        Ok(EmbedOutcome {
            response: routed.value,
            target: routed.target,
            cost_usd,
        })
    }

    /// Every model name a client can send: providers' listed models, routes and prompts.
    /// A provider whose listing fails or is slow is left out.
    pub async fn models(&self) -> Vec<ModelEntry> {
        let mut entries = Vec::new();
        let providers = self.inner.router.providers();
        let listings =
            futures_util::future::join_all(providers.names().into_iter().map(|name| async move {
                let listed = match providers.get(name) {
                    Some(provider) => {
                        tokio::time::timeout(LIST_MODELS_TIMEOUT, provider.list_models()).await
                    }
                    None => return (name, Vec::new()),
                };
                (name, listed.ok().and_then(Result::ok).unwrap_or_default())
            }))
            .await;
        for (provider, models) in listings {
            for model in models {
                entries.push(ModelEntry {
                    id: format!("{provider}/{}", model.id),
                    owned_by: provider.to_owned(),
                    source: ModelSource::Provider,
                });
            }
        }
        for route in self.inner.router.route_names() {
            entries.push(ModelEntry {
                id: route.to_owned(),
                owned_by: "promptops".to_owned(),
                source: ModelSource::Route,
            });
        }
        if let Some(prompts) = &self.inner.prompts {
            let mut names: Vec<String> = match prompts.registry.list().await {
                Ok(list) => list.into_iter().map(|summary| summary.name).collect(),
                Err(_) => prompts.routes.snapshot().prompts.keys().cloned().collect(),
            };
            names.sort();
            for name in names {
                entries.push(ModelEntry {
                    id: format!("{PROMPT_PREFIX}{name}"),
                    owned_by: "promptops".to_owned(),
                    source: ModelSource::Prompt,
                });
            }
        }
        entries
    }

    /// Resolves the model, renders the prompt and guards the input.
    async fn prepare(&self, call: ChatCall) -> Result<Prepared, RuntimeError> {
        let ChatCall {
            request_id,
            model,
            mut request,
            prompt_variables,
            caller_role,
            documents,
        } = call;
        let requested = model.clone();
        let mut prompt = None;
        let model =
            if let Some(reference) = model.strip_prefix(PROMPT_PREFIX) {
                let (version, arm) = self.resolve_prompt(&model, reference, &request_id).await?;
                let label = format!("{}@{}", version.name, version.version);
                let vars = prompt_variables.unwrap_or_default();
                let rendered = version
                    .content
                    .render(&version.name, &vars)
                    .map_err(|error| variables_error(&label, error))?;
                let mut messages = rendered;
                messages.append(&mut request.messages);
                request.messages = messages;
                request.generation = version
                    .content
                    .generation
                    .merge(&request.generation)
                    .map_err(|error| match error {
                        CoreError::InvalidParameter { field, reason } => {
                            RuntimeError::invalid(field, reason)
                        }
                        other => RuntimeError::invalid("generation", other.to_string()),
                    })?;
                let target = version.content.model.clone().ok_or_else(|| {
                    RuntimeError::PromptWithoutModel {
                        prompt: label.clone(),
                    }
                })?;
                let validator = match &version.content.output_schema {
                    Some(schema) => Some(self.validator(&version, schema)?),
                    None => None,
                };
                prompt = Some(PreparedPrompt {
                    used: PromptUse {
                        name: version.name.clone(),
                        version: version.version.clone(),
                        arm,
                    },
                    validator,
                });
                target
            } else {
                if prompt_variables.is_some() {
                    return Err(RuntimeError::invalid(
                        "prompt_variables",
                        "only allowed with a `prompt:NAME` model",
                    ));
                }
                model
            };
        if request.messages.is_empty() {
            return Err(RuntimeError::invalid("messages", "must not be empty"));
        }
        let role = caller_role.as_deref().unwrap_or(ANONYMOUS_ROLE);
        let guard = self
            .inner
            .guard
            .as_ref()
            .map(|stage| (stage, stage.policy(&requested)));
        let mut guarded = match &guard {
            Some((stage, policy)) => {
                stage.check_input(&mut request.messages, &request_id, policy, role)?
            }
            None => InputGuarded::default(),
        };
        let (documents, document_reasons) = self
            .place_documents(&mut request.messages, documents, guard, role, &request_id)
            .await;
        guarded.reasons.extend(document_reasons);
        Ok(Prepared {
            model,
            request,
            prompt,
            guarded,
            documents,
        })
    }

    /// Access filter, trust and injection checks (flagged documents go to the review queue
    /// unless a reviewer approved that content), then secure assembly into the messages.
    /// Without the guard, documents are still placed as delimited, spotlighted data.
    async fn place_documents(
        &self,
        messages: &mut Vec<Message>,
        documents: Vec<RetrievedDocument>,
        guard: Option<(&GuardStage, Policy<'_>)>,
        role: &str,
        request_id: &str,
    ) -> (DocumentReport, Vec<String>) {
        let mut reasons = Vec::new();
        if documents.is_empty() {
            return (DocumentReport::default(), reasons);
        }
        let (usable, mut report, mode) = match guard {
            None => {
                let usable: Vec<(usize, f32)> = (0..documents.len())
                    .map(|i| {
                        let trust = promptops_guard::rag::trust_score(&documents[i].provenance);
                        (i, trust)
                    })
                    .collect();
                (usable, DocumentReport::default(), Spotlight::Datamark('^'))
            }
            Some((stage, policy)) => {
                let screen = stage.screen_documents(&documents, role, &policy);
                reasons.extend(screen.reasons);
                let mut usable = screen.usable;
                let mut report = screen.report;
                for (flagged, trust) in screen.flagged {
                    let document = &documents[flagged.index];
                    match self
                        .review(document, flagged.index, &flagged, request_id)
                        .await
                    {
                        Ok(Review::Queued(id)) => {
                            report.quarantined.push(id);
                            reasons.push(format!("document_injection:{:.2}", flagged.score));
                        }
                        Ok(Review::Approved) => usable.push((flagged.index, trust)),
                        Err(error) => {
                            // Fail closed: the document stays out; the operator hears why.
                            tracing::warn!(
                                %error,
                                request_id,
                                "review queue unavailable: a flagged document was left out unqueued"
                            );
                            report.quarantined.push(None);
                            reasons.push(format!("document_injection:{:.2}", flagged.score));
                            reasons.push("document_review_unavailable".to_owned());
                        }
                    }
                }
                usable.sort_by_key(|(index, _)| *index);
                (usable, report, policy.documents.spotlight.spotlight())
            }
        };
        let placed: Vec<Document> = usable
            .iter()
            .map(|&(index, trust)| Document {
                source: documents[index].name(index),
                trust,
                content: documents[index].content.clone(),
            })
            .collect();
        report.used = placed.len();
        let mut seed = self.inner.delimiter_key.clone();
        seed.extend_from_slice(request_id.as_bytes());
        insert_documents(messages, &placed, &seed, mode);
        (report, reasons)
    }

    /// The review-queue decision for a flagged document.
    async fn review(
        &self,
        document: &RetrievedDocument,
        index: usize,
        flagged: &crate::guard_stage::FlaggedDocument,
        request_id: &str,
    ) -> Result<Review, RegistryError> {
        let Some(prompts) = &self.inner.prompts else {
            return Ok(Review::Queued(None));
        };
        let registry = &prompts.registry;
        if registry.review_status(&document.content).await?
            == Some(promptops_registry::review::ReviewStatus::Approved)
        {
            return Ok(Review::Approved);
        }
        let item = registry
            .queue_review(&NewReview {
                source: document.name(index),
                content: document.content.clone(),
                score: f64::from(flagged.score),
                reasons: flagged.reasons.clone(),
                request_id: request_id.to_owned(),
                at_ms: promptops_registry::service::system_now_ms(),
            })
            .await?;
        Ok(Review::Queued(Some(item.id)))
    }

    /// The version a reference selects for this request.
    async fn resolve_prompt(
        &self,
        model: &str,
        reference: &str,
        request_id: &str,
    ) -> Result<(Arc<PromptVersion>, Option<Arm>), RuntimeError> {
        let Some(prompts) = &self.inner.prompts else {
            return Err(RuntimeError::NoRegistry {
                model: model.to_owned(),
            });
        };
        let not_found = |source: RegistryError| RuntimeError::PromptNotFound {
            reference: reference.to_owned(),
            source: Box::new(source),
        };
        let parsed: PromptRef = reference.parse().map_err(not_found)?;
        if parsed.selector == Selector::Latest
            && let Some(route) = prompts.routes.resolve(&parsed.name, request_id)
        {
            return Ok((route.version, Some(route.arm)));
        }
        let pinned = parsed.selector != Selector::Latest;
        match prompts.registry.resolve(&parsed).await {
            Ok(version) => Ok((Arc::new(version), (!pinned).then_some(Arm::Latest))),
            Err(
                error @ (RegistryError::UnknownPrompt(_)
                | RegistryError::UnknownVersion { .. }
                | RegistryError::UnknownLabel { .. }),
            ) => Err(not_found(error)),
            Err(error) => Err(RuntimeError::Registry(Box::new(error))),
        }
    }

    /// The compiled output schema of a version (compiled once per version).
    fn validator(
        &self,
        version: &PromptVersion,
        schema: &Value,
    ) -> Result<Arc<jsonschema::Validator>, RuntimeError> {
        let key = (version.name.clone(), version.version.clone());
        let mut cache = self
            .inner
            .validators
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = cache.get(&key) {
            return Ok(Arc::clone(found));
        }
        let compiled = jsonschema::validator_for(schema).map_err(|error| RuntimeError::Config {
            key: format!("prompt {}@{} output_schema", version.name, version.version),
            reason: error.to_string(),
        })?;
        let compiled = Arc::new(compiled);
        cache.insert(key, Arc::clone(&compiled));
        Ok(compiled)
    }

    /// Checks the reply text against the prompt's output schema.
    fn check_schema(&self, prepared: &Prepared, response: &ChatResponse) -> OutputCheck {
        let Some(validator) = prepared.prompt.as_ref().and_then(|p| p.validator.as_ref()) else {
            return OutputCheck::NotChecked;
        };
        let value = match promptops_core::parse::extract_json(&response.text()) {
            Ok(value) => value,
            Err(error) => return OutputCheck::ParseError(error.to_string()),
        };
        match validator.iter_errors(&value).next() {
            None => OutputCheck::Valid,
            Some(error) => {
                OutputCheck::SchemaViolation(format!("{} at `{}`", error, error.instance_path()))
            }
        }
    }

    /// Records the outcome of a call of a prompt version (no I/O: a short lock).
    fn record(
        &self,
        prepared: &Prepared,
        started: Instant,
        usage: &Usage,
        cost: Option<f64>,
        answered: bool,
        check: &OutputCheck,
    ) {
        let Some(prompt) = &prepared.prompt else {
            return;
        };
        let parse_error = matches!(check, OutputCheck::ParseError(_));
        let validation_error = matches!(check, OutputCheck::SchemaViolation(_));
        let outcome = Outcome {
            success: answered && !parse_error && !validation_error,
            parse_error,
            validation_error: validation_error || !answered,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cost: cost.unwrap_or(0.0),
        };
        // A non-finite figure is the only way this fails; the outcome is dropped then.
        let _ = self
            .inner
            .recorder
            .record(&prompt.used.name, &prompt.used.version, &outcome);
    }

    /// Records a call that got no answer.
    fn record_failure(&self, prepared: &Prepared, started: Instant) {
        let Some(prompt) = &prepared.prompt else {
            return;
        };
        let outcome = Outcome {
            success: false,
            parse_error: false,
            validation_error: false,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            input_tokens: 0,
            output_tokens: 0,
            cost: 0.0,
        };
        let _ = self
            .inner
            .recorder
            .record(&prompt.used.name, &prompt.used.version, &outcome);
    }

    /// Reads a whole stream, checks it like a non-streamed reply, records it.
    async fn buffer_stream(
        &self,
        mut stream: DeltaStream,
        target: &Target,
        prepared: &Prepared,
        started: Instant,
    ) -> Result<ChatResponse, RuntimeError> {
        let mut accumulator = StreamAccumulator::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(delta) => accumulator.push(&delta),
                Err(error) => {
                    self.record_failure(prepared, started);
                    return Err(error.into());
                }
            }
        }
        let mut response = accumulator.finish("", &target.provider, &target.model, Value::Null);
        let mut warnings = Vec::new();
        if let Some(stage) = &self.inner.guard
            && let Err(error) = stage.check_output(&mut response, &prepared.guarded, &mut warnings)
        {
            self.record(
                prepared,
                started,
                &response.usage,
                None,
                false,
                &OutputCheck::NotChecked,
            );
            return Err(error);
        }
        let check = self.check_schema(prepared, &response);
        let cost = self.cost(target, &response.usage);
        self.record(prepared, started, &response.usage, cost, true, &check);
        Ok(response)
    }
}

/// What the review queue says about a flagged document.
enum Review {
    /// A reviewer approved this exact content: use it.
    Approved,
    /// Left out; its queue id (`None` without a registry to queue in).
    Queued(Option<i64>),
}

/// A call ready to send.
struct Prepared {
    model: String,
    request: ChatRequest,
    prompt: Option<PreparedPrompt>,
    guarded: InputGuarded,
    documents: DocumentReport,
}

/// The prompt part of a prepared call.
struct PreparedPrompt {
    used: PromptUse,
    validator: Option<Arc<jsonschema::Validator>>,
}

/// A stream passed through while its deltas are accumulated for the outcome record.
struct Watch {
    inner: DeltaStream,
    accumulator: StreamAccumulator,
    runtime: Runtime,
    prepared: Prepared,
    target: Target,
    started: Instant,
    done: bool,
}

impl Watch {
    async fn next(mut self) -> Option<(Result<StreamDelta, LlmError>, Watch)> {
        if self.done {
            return None;
        }
        match self.inner.next().await {
            Some(Ok(delta)) => {
                self.accumulator.push(&delta);
                Some((Ok(delta), self))
            }
            Some(Err(error)) => {
                self.done = true;
                self.runtime.record_failure(&self.prepared, self.started);
                Some((Err(error), self))
            }
            None => {
                let accumulator = std::mem::take(&mut self.accumulator);
                let response = accumulator.finish("", "", "", Value::Null);
                let check = self.runtime.check_schema(&self.prepared, &response);
                let cost = self.runtime.cost(&self.target, &response.usage);
                self.runtime.record(
                    &self.prepared,
                    self.started,
                    &response.usage,
                    cost,
                    true,
                    &check,
                );
                None
            }
        }
    }
}

/// Maps a render error to the variable it names.
fn variables_error(label: &str, error: RegistryError) -> RuntimeError {
    let (variable, reason) = match &error {
        RegistryError::Template { source, .. } => {
            let variable = match source {
                CoreError::MissingVariables { names, .. }
                | CoreError::UnknownVariables { names, .. } => names.first().cloned(),
                CoreError::VariableType { name, .. } => Some(name.clone()),
                _ => None,
            };
            (variable, source.to_string())
        }
        other => (None, other.to_string()),
    };
    RuntimeError::PromptVariables {
        prompt: label.to_owned(),
        variable,
        reason,
    }
}

/// The messages of a response's first choice (for callers that continue a conversation).
pub fn reply_messages(response: &ChatResponse) -> Vec<Message> {
    response
        .choices
        .iter()
        .map(|choice| choice.message.clone())
        .collect()
}
