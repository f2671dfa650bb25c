//! The guard steps of the pipeline, driven by [`GuardConfig`] (per route where it says so):
//! input scan (block, redact with a per-request vault) feeding the injection spike detector,
//! retrieved-document access filtering, trust and injection checks, canary injection, output
//! validation, RBAC on the reply's tool calls, and de-redaction for roles that may see PII.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Instant;

use promptops_core::message::{Content, ContentPart, KnownPart, Message, Role};
use promptops_guard::canary::Canary;
use promptops_guard::rag::{Provenance, trust_score};
use promptops_guard::rbac::{AccessLevel, Rbac};
use promptops_guard::sanitize::{Delimiter, Document, Spotlight, documents_block, security_rules};
use promptops_guard::spike::{SpikeAlert, SpikeDetector};
use promptops_guard::{Guard, InputPolicy, OutputPolicy, Vault, Verdict};
use promptops_llm::ChatResponse;
use serde::{Deserialize, Serialize};

use crate::config::{DocumentsConfig, GuardConfig, OutputGuardConfig, ToolCallAction};
use crate::error::RuntimeError;
use crate::pipeline::PROMPT_PREFIX;

/// Receives injection spike alerts (the gateway logs, counts and posts them).
pub type AlertSink = Arc<dyn Fn(&SpikeAlert) + Send + Sync>;

/// The RBAC role of callers that presented no key.
pub const ANONYMOUS_ROLE: &str = "anonymous";

/// A document retrieved by the caller and sent with the request to ground the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrievedDocument {
    /// The caller's id for it.
    #[serde(default)]
    pub id: Option<String>,
    /// Where it came from (shown to the model); defaults to the id.
    #[serde(default)]
    pub source: Option<String>,
    /// The text.
    pub content: String,
    /// How sensitive it is; callers whose role reads less never see it.
    #[serde(default)]
    pub access_level: AccessLevel,
    /// Facts that set its trust score.
    #[serde(default)]
    pub provenance: Provenance,
}

impl RetrievedDocument {
    /// The name shown to the model and in reports.
    pub fn name(&self, index: usize) -> String {
        self.source
            .clone()
            .or_else(|| self.id.clone())
            .unwrap_or_else(|| format!("document {}", index + 1))
    }
}

/// What happened to the documents of a request.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DocumentReport {
    /// Documents placed in the prompt.
    pub used: usize,
    /// Left out: the caller's role may not read them.
    pub denied: usize,
    /// Left out: provenance trust below the minimum.
    pub untrusted: usize,
    /// Left out: flagged as carrying an injection (review-queue ids where queued).
    pub quarantined: Vec<Option<i64>>,
}

/// A document the checks flagged, waiting for the review-queue decision.
#[derive(Debug, Clone)]
pub(crate) struct FlaggedDocument {
    pub index: usize,
    pub score: f32,
    pub reasons: Vec<String>,
}

/// The checks' view of a request's documents before the review queue is asked.
#[derive(Debug, Default)]
pub(crate) struct DocumentScreen {
    /// Readable, trusted, unflagged (or flagged under `warn`): index and trust.
    pub usable: Vec<(usize, f32)>,
    /// Flagged under `quarantine`, with their trust.
    pub flagged: Vec<(FlaggedDocument, f32)>,
    pub report: DocumentReport,
    pub reasons: Vec<String>,
}

/// Separates the scanned texts of several messages in one scan, so one vault numbers them all.
const SEPARATOR: &str = "\n\u{1e}\n";

/// The guard, its config and its keys, built once.
pub(crate) struct GuardStage {
    guard: Guard,
    config: GuardConfig,
    key: Vec<u8>,
    rbac: Option<Rbac>,
    spike: Option<SpikeDetector>,
    on_alert: Option<AlertSink>,
    started: Instant,
}

/// The sections that apply to one request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy<'a> {
    pub input: &'a InputPolicy,
    pub output: &'a OutputGuardConfig,
    pub documents: &'a DocumentsConfig,
}

impl std::fmt::Debug for GuardStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardStage")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What the input step decided for one request.
#[derive(Debug, Default)]
pub(crate) struct InputGuarded {
    /// The reversible redaction's vault, when one happened.
    pub vault: Option<Vault>,
    /// Output checks to run on the reply.
    pub output: Option<OutputPolicy>,
    /// Warnings (checks that fired without blocking).
    pub reasons: Vec<String>,
    /// The caller's RBAC role.
    pub role: String,
    /// What a denied tool call does (when RBAC is configured).
    pub tool_calls: Option<ToolCallAction>,
}

impl GuardStage {
    /// Builds the detectors; the canary key comes from `canary_key_env` or is random per process.
    pub(crate) fn new(
        config: GuardConfig,
        env: &dyn Fn(&str) -> Option<String>,
        on_alert: Option<AlertSink>,
    ) -> Result<GuardStage, RuntimeError> {
        config.validate()?;
        let guard = Guard::new().map_err(RuntimeError::Guard)?;
        let rbac = match &config.rbac {
            Some(rbac) => Some(
                Rbac::new(rbac.clone()).map_err(|error| RuntimeError::Config {
                    key: "guard.rbac".to_owned(),
                    reason: error.to_string(),
                })?,
            ),
            None => None,
        };
        let spike = match config.alerts.enabled {
            true => Some(
                SpikeDetector::new(config.alerts.spike(), 0).map_err(|error| {
                    RuntimeError::Config {
                        key: "guard.alerts".to_owned(),
                        reason: error.to_string(),
                    }
                })?,
            ),
            false => None,
        };
        let key = match &config.output.canary_key_env {
            Some(name) => match env(name) {
                Some(value) if !value.is_empty() => value.into_bytes(),
                _ => {
                    return Err(RuntimeError::Config {
                        key: "guard.output.canary_key_env".to_owned(),
                        reason: format!("environment variable `{name}` is unset or empty"),
                    });
                }
            },
            None => random_key(),
        };
        Ok(GuardStage {
            guard,
            config,
            key,
            rbac,
            spike,
            on_alert,
            started: Instant::now(),
        })
    }

    /// The per-end-user requests per minute of `role`, when RBAC gives it one.
    pub(crate) fn user_rate_limit(&self, role: &str) -> Option<u32> {
        self.rbac.as_ref()?.rate_limit(role)
    }

    /// The sections for a requested model: `[guard.routes.MODEL]` where present (for
    /// `prompt:NAME@1.2.0` also `prompt:NAME`), else the defaults, section by section.
    pub(crate) fn policy(&self, model: &str) -> Policy<'_> {
        let route = self.config.routes.get(model).or_else(|| {
            let name = model.strip_prefix(PROMPT_PREFIX)?;
            let bare = name.split(['@', ':']).next().unwrap_or(name);
            // `prompt:NAME` is a prefix of the model string: no allocation per request.
            self.config
                .routes
                .get(&model[..PROMPT_PREFIX.len() + bare.len()])
        });
        Policy {
            input: route
                .and_then(|r| r.input.as_ref())
                .unwrap_or(&self.config.input),
            output: route
                .and_then(|r| r.output.as_ref())
                .unwrap_or(&self.config.output),
            documents: route
                .and_then(|r| r.documents.as_ref())
                .unwrap_or(&self.config.documents),
        }
    }

    /// Access, trust and injection checks of a request's documents (the review-queue lookups
    /// for flagged ones happen in the pipeline, which owns the registry).
    pub(crate) fn screen_documents(
        &self,
        documents: &[RetrievedDocument],
        role: &str,
        policy: &Policy<'_>,
    ) -> DocumentScreen {
        let mut screen = DocumentScreen::default();
        let detector = self.guard.injection();
        for (index, document) in documents.iter().enumerate() {
            if let Some(rbac) = &self.rbac
                && !rbac.may_read(role, document.access_level)
            {
                screen.report.denied += 1;
                continue;
            }
            let trust = trust_score(&document.provenance);
            if trust < policy.documents.min_trust {
                screen.report.untrusted += 1;
                screen.reasons.push("document_untrusted".to_owned());
                continue;
            }
            if !policy.documents.check {
                screen.usable.push((index, trust));
                continue;
            }
            let injection = detector.scan(&document.content);
            if injection.flagged {
                match policy.documents.on_injection {
                    crate::config::DocumentAction::Quarantine => {
                        screen.flagged.push((
                            FlaggedDocument {
                                index,
                                score: injection.score,
                                reasons: injection.reasons,
                            },
                            trust,
                        ));
                        continue;
                    }
                    crate::config::DocumentAction::Warn => screen
                        .reasons
                        .push(format!("document_injection:{:.2}", injection.score)),
                }
            }
            screen.usable.push((index, trust));
        }
        screen
    }

    /// Scans the user and tool messages; blocks, redacts in place, and adds the canary.
    pub(crate) fn check_input(
        &self,
        messages: &mut Vec<Message>,
        request_id: &str,
        policy: &Policy<'_>,
        role: &str,
    ) -> Result<InputGuarded, RuntimeError> {
        let mut texts: Vec<String> = Vec::new();
        for message in messages.iter() {
            if !matches!(message.role, Role::User | Role::Tool) {
                continue;
            }
            match &message.content {
                Some(Content::Text(text)) => texts.push(text.clone()),
                Some(Content::Parts(parts)) => {
                    texts.extend(parts.iter().filter_map(|p| p.as_text().map(str::to_owned)));
                }
                None => {}
            }
        }
        let mut guarded = InputGuarded {
            role: role.to_owned(),
            tool_calls: self.rbac.as_ref().map(|_| policy.output.tool_calls),
            ..InputGuarded::default()
        };
        if !texts.is_empty() {
            let joined = texts.join(SEPARATOR);
            let decision = self
                .guard
                .scan_input(&joined, policy.input, Some(&self.key))
                .map_err(RuntimeError::Guard)?;
            self.watch_for_spikes(decision.scan.injection.flagged);
            if decision.verdict == Verdict::Blocked {
                return Err(RuntimeError::InputBlocked {
                    reasons: decision.reasons,
                });
            }
            guarded.reasons = decision.reasons;
            if let Some(redaction) = decision.redaction {
                let pieces: Vec<&str> = redaction.text.split(SEPARATOR).collect();
                if pieces.len() != texts.len() {
                    return Err(RuntimeError::InputBlocked {
                        reasons: vec!["redaction crossed a message boundary".to_owned()],
                    });
                }
                write_back(messages, &pieces);
                guarded.vault = redaction.vault;
            }
        }
        if policy.output.enabled {
            guarded.output = Some(self.output_policy(messages, request_id, policy.output)?);
        }
        Ok(guarded)
    }

    /// Counts one scanned request in the spike detector and raises its alert, if any.
    fn watch_for_spikes(&self, flagged: bool) {
        let Some(spike) = &self.spike else {
            return;
        };
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if let Some(alert) = spike.record(flagged, now_ms)
            && let Some(sink) = &self.on_alert
        {
            sink(&alert);
        }
    }

    /// The output policy for this request, placing the canary in the system prompt.
    fn output_policy(
        &self,
        messages: &mut Vec<Message>,
        request_id: &str,
        output: &OutputGuardConfig,
    ) -> Result<OutputPolicy, RuntimeError> {
        let system_prompt: Option<String> = messages
            .iter()
            .filter(|m| matches!(m.role, Role::System | Role::Developer))
            .map(Message::text)
            .reduce(|a, b| a + "\n" + &b);
        let canary = if output.canary {
            let canary = Canary::new(&self.key, request_id).map_err(RuntimeError::Guard)?;
            add_system_instruction(messages, canary.instruction());
            Some(canary)
        } else {
            None
        };
        let mut policy = OutputPolicy::default();
        policy.canary = canary;
        policy.system_prompt = system_prompt.filter(|_| output.system_prompt_echo);
        policy.echo_block = output.echo_block;
        policy.echo_warn = output.echo_warn;
        policy.block_secrets = output.block_secrets;
        Ok(policy)
    }

    /// Checks every choice of a reply, then de-redacts it when the policy allows.
    pub(crate) fn check_output(
        &self,
        response: &mut ChatResponse,
        guarded: &InputGuarded,
        reasons: &mut Vec<String>,
    ) -> Result<(), RuntimeError> {
        if let Some(policy) = &guarded.output {
            for choice in &response.choices {
                let mut text = choice.message.text();
                for call in &choice.message.tool_calls {
                    text.push('\n');
                    text.push_str(&call.function.arguments);
                }
                let report = self.guard.scan_output(&text, policy);
                match report.verdict {
                    Verdict::Blocked => {
                        return Err(RuntimeError::OutputBlocked {
                            reasons: report.reasons,
                        });
                    }
                    Verdict::AllowedWithWarning => reasons.extend(report.reasons),
                    Verdict::Allowed => {}
                }
            }
        }
        self.check_tool_calls(response, guarded, reasons)?;
        if self.may_deredact(guarded)
            && let Some(vault) = &guarded.vault
        {
            for choice in &mut response.choices {
                if let Some(Content::Text(text)) = &choice.message.content {
                    choice.message.content = Some(Content::Text(vault.restore(text)));
                }
                for call in &mut choice.message.tool_calls {
                    call.function.arguments = vault.restore(&call.function.arguments);
                }
            }
        }
        Ok(())
    }

    /// Authorises every tool call of the reply for the caller's role (allow-list, permission,
    /// argument schema); each decision is written to the audit log target.
    fn check_tool_calls(
        &self,
        response: &ChatResponse,
        guarded: &InputGuarded,
        reasons: &mut Vec<String>,
    ) -> Result<(), RuntimeError> {
        let (Some(rbac), Some(action)) = (&self.rbac, guarded.tool_calls) else {
            return Ok(());
        };
        let mut denied = Vec::new();
        for call in response.choices.iter().flat_map(|c| &c.message.tool_calls) {
            let arguments = serde_json::from_str(&call.function.arguments)
                .unwrap_or(serde_json::Value::String(call.function.arguments.clone()));
            let decision = rbac.authorize_tool(&guarded.role, &call.function.name, &arguments);
            tracing::info!(
                target: "promptops::audit",
                action = "tool_call",
                role = %decision.role,
                tool = %decision.tool,
                allowed = decision.allowed,
                reasons = ?decision.reasons,
                "tool call authorisation"
            );
            if !decision.allowed {
                denied.extend(
                    decision
                        .reasons
                        .into_iter()
                        .map(|reason| format!("tool_denied:{}: {reason}", call.function.name)),
                );
            }
        }
        if denied.is_empty() {
            return Ok(());
        }
        match action {
            ToolCallAction::Block => Err(RuntimeError::OutputBlocked { reasons: denied }),
            ToolCallAction::Warn => {
                reasons.extend(denied);
                Ok(())
            }
        }
    }

    /// De-redaction is on and, under RBAC, the caller's role may see PII.
    fn may_deredact(&self, guarded: &InputGuarded) -> bool {
        self.config.deredact_output
            && self
                .rbac
                .as_ref()
                .is_none_or(|rbac| rbac.may_view_pii(&guarded.role))
    }

    /// Whether streamed replies must be buffered to be checked or de-redacted.
    pub(crate) fn buffers_streams(&self, guarded: &InputGuarded) -> bool {
        guarded.output.is_some()
            || guarded.tool_calls.is_some()
            || (self.may_deredact(guarded) && guarded.vault.is_some())
    }
}

/// Places documents in the conversation as data: the security rules (hierarchy, delimiters,
/// spotlighting) join the system prompt, and one user message holding the spotlighted,
/// delimited documents goes right before the last user message.
pub(crate) fn insert_documents(
    messages: &mut Vec<Message>,
    documents: &[Document],
    seed: &[u8],
    mode: Spotlight,
) {
    if documents.is_empty() {
        return;
    }
    let delimiter = Delimiter::from_seed(seed);
    add_system_instruction(messages, security_rules(&delimiter, mode));
    let block = documents_block(documents, &delimiter, mode);
    let at = messages
        .iter()
        .rposition(|m| m.role == Role::User)
        .unwrap_or(messages.len());
    messages.insert(at, Message::user(block.trim_end().to_owned()));
}

/// Adds a per-request system instruction (canary, delimiter rules) as its own system message
/// right after the leading system and developer messages. The application's system prompt
/// stays byte-identical across requests, so providers' prefix caches keep hitting on it (the
/// Anthropic adapter marks it as a cache breakpoint when it is long enough).
fn add_system_instruction(messages: &mut Vec<Message>, instruction: String) {
    let at = messages
        .iter()
        .position(|m| !matches!(m.role, Role::System | Role::Developer))
        .unwrap_or(messages.len());
    messages.insert(at, Message::system(instruction));
}

/// Writes scanned (possibly redacted) texts back into the messages they came from.
fn write_back(messages: &mut [Message], pieces: &[&str]) {
    let mut next = pieces.iter();
    for message in messages.iter_mut() {
        if !matches!(message.role, Role::User | Role::Tool) {
            continue;
        }
        match &mut message.content {
            Some(Content::Text(text)) => {
                if let Some(piece) = next.next() {
                    *text = (*piece).to_owned();
                }
            }
            Some(Content::Parts(parts)) => {
                for part in parts.iter_mut() {
                    if let ContentPart::Known(KnownPart::Text { text, .. }) = part
                        && let Some(piece) = next.next()
                    {
                        *text = (*piece).to_owned();
                    }
                }
            }
            None => {}
        }
    }
}

/// 32 bytes from the process's random hasher seeds (no extra RNG dependency needed).
pub(crate) fn random_key() -> Vec<u8> {
    let state = RandomState::new();
    let mut key = Vec::with_capacity(32);
    for round in 0u64..4 {
        let mut hasher = state.build_hasher();
        hasher.write_u64(round);
        key.extend_from_slice(&hasher.finish().to_le_bytes());
    }
    key
}
