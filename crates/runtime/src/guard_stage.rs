//! The guard steps of the pipeline: input scan (block, redact with a per-request vault), canary
//! injection, output validation and de-redaction, driven by [`GuardConfig`].

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use promptops_core::message::{Content, ContentPart, KnownPart, Message, Role};
use promptops_guard::canary::Canary;
use promptops_guard::{Guard, OutputPolicy, Vault, Verdict};
use promptops_llm::ChatResponse;

use crate::config::GuardConfig;
use crate::error::RuntimeError;

/// Separates the scanned texts of several messages in one scan, so one vault numbers them all.
const SEPARATOR: &str = "\n\u{1e}\n";

/// The guard, its config and its keys, built once.
pub(crate) struct GuardStage {
    guard: Guard,
    config: GuardConfig,
    key: Vec<u8>,
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
}

impl GuardStage {
    /// Builds the detectors; the canary key comes from `canary_key_env` or is random per process.
    pub(crate) fn new(
        config: GuardConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<GuardStage, RuntimeError> {
        config.validate()?;
        let guard = Guard::new().map_err(RuntimeError::Guard)?;
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
        Ok(GuardStage { guard, config, key })
    }

    /// Scans the user and tool messages; blocks, redacts in place, and adds the canary.
    pub(crate) fn check_input(
        &self,
        messages: &mut Vec<Message>,
        request_id: &str,
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
        let mut guarded = InputGuarded::default();
        if !texts.is_empty() {
            let joined = texts.join(SEPARATOR);
            let decision = self
                .guard
                .scan_input(&joined, &self.config.input, Some(&self.key))
                .map_err(RuntimeError::Guard)?;
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
        if self.config.output.enabled {
            guarded.output = Some(self.output_policy(messages, request_id)?);
        }
        Ok(guarded)
    }

    /// The output policy for this request, placing the canary in the system prompt.
    fn output_policy(
        &self,
        messages: &mut Vec<Message>,
        request_id: &str,
    ) -> Result<OutputPolicy, RuntimeError> {
        let output = &self.config.output;
        let system_prompt: Option<String> = messages
            .iter()
            .filter(|m| matches!(m.role, Role::System | Role::Developer))
            .map(Message::text)
            .reduce(|a, b| a + "\n" + &b);
        let canary = if output.canary {
            let canary = Canary::new(&self.key, request_id).map_err(RuntimeError::Guard)?;
            let instruction = canary.instruction();
            match messages.first_mut() {
                Some(first) if first.role == Role::System => {
                    let text = format!("{}\n\n{instruction}", first.text());
                    first.content = Some(Content::Text(text));
                }
                _ => messages.insert(0, Message::system(instruction)),
            }
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
        if self.config.deredact_output
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

    /// Whether streamed replies must be buffered to be checked or de-redacted.
    pub(crate) fn buffers_streams(&self, guarded: &InputGuarded) -> bool {
        guarded.output.is_some() || (self.config.deredact_output && guarded.vault.is_some())
    }
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
fn random_key() -> Vec<u8> {
    let state = RandomState::new();
    let mut key = Vec::with_capacity(32);
    for round in 0u64..4 {
        let mut hasher = state.build_hasher();
        hasher.write_u64(round);
        key.extend_from_slice(&hasher.finish().to_le_bytes());
    }
    key
}
