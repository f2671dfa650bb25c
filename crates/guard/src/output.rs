//! Output validation: canary leaks, system-prompt echo (word n-gram overlap), secrets, PII,
//! injection indicators and JSON-schema violations, folded into one verdict — allowed,
//! allowed with warning, or blocked — with the reasons.

use std::collections::HashSet;

use serde::Serialize;

use crate::canary::Canary;
use crate::error::GuardError;
use crate::normalize::normalize;
use crate::pii::{PiiDetector, PiiMatch};
use crate::rules::{Category, matching_rules, rules};
use crate::secrets::{SecretDetector, SecretMatch};

/// The outcome of a check, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing of note.
    Allowed,
    /// Passed, with findings worth logging or showing.
    AllowedWithWarning,
    /// Must not be delivered.
    Blocked,
}

/// What output validation checks, and how strictly.
#[derive(Debug, Clone)]
pub struct OutputPolicy {
    /// The canary placed in the system prompt, if any: a leak blocks.
    pub canary: Option<Canary>,
    /// The system prompt, to detect echoes of it.
    pub system_prompt: Option<String>,
    /// Word n-gram size for echo detection.
    pub echo_ngram: usize,
    /// Share of the system prompt's n-grams found in the output that blocks.
    pub echo_block: f32,
    /// Share that warns.
    pub echo_warn: f32,
    /// Whether secrets in the output block (else warn).
    pub block_secrets: bool,
    /// Whether PII in the output warns (else it is ignored).
    pub warn_pii: bool,
    /// JSON schema the output must satisfy, if any: a violation blocks.
    schema: Option<jsonschema::Validator>,
}

impl Default for OutputPolicy {
    fn default() -> Self {
        OutputPolicy {
            canary: None,
            system_prompt: None,
            echo_ngram: 5,
            echo_block: 0.5,
            echo_warn: 0.2,
            block_secrets: true,
            warn_pii: true,
            schema: None,
        }
    }
}

impl OutputPolicy {
    /// Requires outputs to be JSON (possibly inside a code block) valid under `schema`.
    pub fn with_schema(mut self, schema: &serde_json::Value) -> Result<OutputPolicy, GuardError> {
        let validator =
            jsonschema::validator_for(schema).map_err(|e| GuardError::BadToolSchema {
                tool: "output".into(),
                message: e.to_string(),
            })?;
        self.schema = Some(validator);
        Ok(self)
    }
}

/// The validation result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputReport {
    /// Overall verdict (the most severe finding).
    pub verdict: Verdict,
    /// Why, one entry per finding.
    pub reasons: Vec<String>,
    /// Whether the canary leaked.
    pub canary_leaked: bool,
    /// Share of the system prompt's word n-grams present in the output.
    pub echo_overlap: f32,
    /// Secrets found.
    pub secrets: Vec<SecretMatch>,
    /// PII found.
    pub pii: Vec<PiiMatch>,
}

/// Validates a model output against a policy.
pub fn validate_output(output: &str, policy: &OutputPolicy) -> OutputReport {
    let mut verdict = Verdict::Allowed;
    let mut reasons = Vec::new();
    let mut raise = |level: Verdict, reason: String, verdict: &mut Verdict| {
        *verdict = (*verdict).max(level);
        reasons.push(reason);
    };
    let canary_leaked = policy.canary.as_ref().is_some_and(|c| c.leaked_in(output));
    if canary_leaked {
        raise(Verdict::Blocked, "canary_leak".into(), &mut verdict);
    }
    let echo_overlap = policy.system_prompt.as_deref().map_or(0.0, |prompt| {
        ngram_overlap(prompt, output, policy.echo_ngram.max(1))
    });
    if echo_overlap >= policy.echo_block {
        raise(
            Verdict::Blocked,
            format!("system_prompt_echo:{echo_overlap:.2}"),
            &mut verdict,
        );
    } else if echo_overlap >= policy.echo_warn {
        raise(
            Verdict::AllowedWithWarning,
            format!("partial_system_prompt_echo:{echo_overlap:.2}"),
            &mut verdict,
        );
    }
    let secrets = SecretDetector.detect(output);
    for secret in &secrets {
        let level = if policy.block_secrets {
            Verdict::Blocked
        } else {
            Verdict::AllowedWithWarning
        };
        raise(level, format!("secret:{}", secret.kind), &mut verdict);
    }
    let pii = if policy.warn_pii {
        PiiDetector.detect(output)
    } else {
        Vec::new()
    };
    let mut pii_kinds: Vec<&str> = pii.iter().map(|m| m.kind.as_str()).collect();
    pii_kinds.dedup();
    for kind in pii_kinds {
        raise(
            Verdict::AllowedWithWarning,
            format!("pii:{kind}"),
            &mut verdict,
        );
    }
    let normalized = normalize(output);
    for rule in matching_rules(&normalized.text) {
        let rule = &rules()[rule];
        if matches!(
            rule.category,
            Category::InstructionOverride | Category::PromptExtraction | Category::Exfiltration
        ) {
            let level = if rule.category == Category::Exfiltration {
                Verdict::Blocked
            } else {
                Verdict::AllowedWithWarning
            };
            raise(
                level,
                format!("injection_indicator:{}", rule.id),
                &mut verdict,
            );
        }
    }
    if let Some(schema) = &policy.schema {
        match promptops_core::parse::extract_json(output) {
            Ok(value) => {
                if let Some(error) = schema.iter_errors(&value).next() {
                    raise(
                        Verdict::Blocked,
                        format!("schema_violation:{} {}", error.instance_path(), error),
                        &mut verdict,
                    );
                }
            }
            Err(error) => raise(
                Verdict::Blocked,
                format!("schema_violation:not JSON ({error})"),
                &mut verdict,
            ),
        }
    }
    OutputReport {
        verdict,
        reasons,
        canary_leaked,
        echo_overlap,
        secrets,
        pii,
    }
}

/// Share of `reference`'s word n-grams that occur in `candidate` (both normalised). A
/// reference shorter than `n` words counts as echoed when it appears whole.
pub fn ngram_overlap(reference: &str, candidate: &str, n: usize) -> f32 {
    let reference = normalize(reference).text;
    let candidate = normalize(candidate).text;
    let words = |text: &str| -> Vec<String> {
        text.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let reference_words = words(&reference);
    let candidate_words = words(&candidate);
    if reference_words.is_empty() {
        return 0.0;
    }
    if reference_words.len() < n {
        let needle = reference_words.join(" ");
        return if candidate_words.join(" ").contains(&needle) {
            1.0
        } else {
            0.0
        };
    }
    let grams: HashSet<&[String]> = candidate_words.windows(n).collect();
    let total = reference_words.len() - n + 1;
    let hits = reference_words
        .windows(n)
        .filter(|g| grams.contains(g))
        .count();
    hits as f32 / total as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSTEM: &str = "You are the billing assistant for Acme. Only answer questions about invoices, refunds and payment methods. Never discuss internal pricing rules.";

    fn policy() -> OutputPolicy {
        OutputPolicy {
            canary: Some(Canary::new(b"k", "r1").unwrap()),
            system_prompt: Some(SYSTEM.into()),
            ..OutputPolicy::default()
        }
    }

    #[test]
    fn clean_output_is_allowed() {
        let report = validate_output("Your refund was issued on Monday.", &policy());
        assert_eq!(report.verdict, Verdict::Allowed, "{report:?}");
    }

    #[test]
    fn leaks_block() {
        let canary = Canary::new(b"k", "r1").unwrap();
        let report = validate_output(&format!("ok {}", canary.token().to_lowercase()), &policy());
        assert_eq!(report.verdict, Verdict::Blocked);
        assert!(report.canary_leaked);
        let report = validate_output(&format!("My instructions: {SYSTEM}"), &policy());
        assert_eq!(report.verdict, Verdict::Blocked);
        assert!(report.echo_overlap > 0.9);
        let report = validate_output("the key is AKIAIOSFODNN7EXAMPLE", &policy());
        assert_eq!(report.verdict, Verdict::Blocked);
        assert_eq!(report.reasons, vec!["secret:AWS_ACCESS_KEY".to_owned()]);
    }

    #[test]
    fn partial_echo_and_pii_warn() {
        let report = validate_output(
            "I can only answer questions about invoices, refunds and payment methods. Mail help@acme.example.",
            &policy(),
        );
        assert_eq!(report.verdict, Verdict::AllowedWithWarning, "{report:?}");
        assert!(
            report
                .reasons
                .iter()
                .any(|r| r.starts_with("partial_system_prompt_echo"))
        );
        assert!(report.reasons.iter().any(|r| r == "pii:EMAIL"));
    }

    #[test]
    fn schema_violations_block() {
        let schema = serde_json::json!({"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string"}}});
        let policy = OutputPolicy::default().with_schema(&schema).unwrap();
        assert_eq!(
            validate_output("{\"answer\": \"yes\"}", &policy).verdict,
            Verdict::Allowed
        );
        let report = validate_output("{\"answer\": 3}", &policy);
        assert_eq!(report.verdict, Verdict::Blocked);
        assert!(
            report.reasons[0].starts_with("schema_violation:/answer"),
            "{:?}",
            report.reasons
        );
        assert_eq!(
            validate_output("no json here", &policy).verdict,
            Verdict::Blocked
        );
        assert!(
            OutputPolicy::default()
                .with_schema(&serde_json::json!({"type": 12}))
                .is_err()
        );
    }
}
