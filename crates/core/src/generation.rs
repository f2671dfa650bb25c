//! Generation parameters (sampling, penalties, output control, response format), validated when
//! built, and the task presets of the seeds.
//!
//! Every field is optional: `None` means "leave it to the provider's default", so a preset only
//! says what it cares about and [`GenerationConfig::merge`] lets a request override a preset
//! field by field. Field names and JSON shapes are OpenAI's. Ranges are OpenAI's where OpenAI has
//! the parameter; provider adapters drop or clamp what their provider does not take (OpenAI has
//! no `top_k` or `repetition_penalty`; Anthropic caps temperature at 1).
//!
//! # Presets and where the seeds disagree
//!
//! | preset         | temperature | top_p | max_tokens      | other                              |
//! |----------------|-------------|-------|-----------------|------------------------------------|
//! | general        | 0.7         | 1.0   | 1024            | the seed's dataclass defaults      |
//! | coding         | 0.2         | 0.95  | 2048            | frequency_penalty 0.1              |
//! | creative       | 0.9         | 0.95  | 2048            | presence 0.6, frequency 0.3        |
//! | factual_qa     | 0.0         | 1.0   | 512             |                                    |
//! | summarization  | 0.3         | 0.9   | 512             |                                    |
//! | classification | 0.0         | 1.0   | 50              |                                    |
//! | extraction     | 0.0         | 1.0   | 512             | response_format json_object        |
//! | translation    | 0.3         | 0.9   | 2 x input (>=16)| 1024 when the input is not known   |
//! | math           | 0.0         | 1.0   | 1024            | (use with chain-of-thought)        |
//! | brainstorming  | 1.0         | 0.8   | unset           | top_k 40                           |
//!
//! - coding: the `for_task` sketch (0.2 / 0.95) and the quick-reference table (0.0-0.2 / 0.95)
//!   agree; the sampling notebook's 0.3 / 0.9 is the outlier and is not used.
//! - creative: `for_task` and the sampling notebook both say 0.9 / 0.95, inside the table's
//!   0.7-1.0 range; the table's top_p 0.9 loses two to one. The table's 2048 max tokens is kept
//!   because `for_task` gives none (it would fall back to the 1024 default).
//! - summarization: `for_task` says 256, the table 256-512; max_tokens is a cap, not a target,
//!   and a cap that is too tight cuts a summary mid-sentence, so the upper end (512) is used.
//! - extraction: 0.0 (both sources of the first seed) rather than the notebook's 0.1.
//! - translation: the table's "2x input" is [`GenerationConfig::for_task_with_input`], with a
//!   floor of 16 tokens so a one-word input still has room for its translation.
//! - brainstorming (from the sampling notebook only) sets no max_tokens: no source gives one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::error::CoreError;

/// Most stop sequences OpenAI accepts.
pub const MAX_STOP_SEQUENCES: usize = 4;
/// Most completions (`n`) OpenAI accepts per request.
pub const MAX_N: u32 = 128;
/// Most alternatives per position (`top_logprobs`) OpenAI returns.
pub const MAX_TOP_LOGPROBS: u32 = 20;
/// Longest `json_schema.name` OpenAI accepts.
pub const MAX_SCHEMA_NAME_LEN: usize = 64;
/// Translation output cap when the input size is known: this many tokens per input token.
pub const TRANSLATION_OUTPUT_FACTOR: u32 = 2;
/// Smallest translation output cap, for very short inputs.
pub const TRANSLATION_MIN_MAX_TOKENS: u32 = 16;

/// The shape the reply must take (OpenAI `response_format`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text (the default).
    Text,
    /// Any valid JSON object ("JSON mode").
    JsonObject,
    /// JSON that follows a schema ("structured outputs").
    JsonSchema {
        /// The schema and its name.
        json_schema: JsonSchemaFormat,
    },
}

/// The `json_schema` member of a `json_schema` response format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonSchemaFormat {
    /// Name of the schema: letters, digits, `_` and `-`, at most 64 characters.
    pub name: String,
    /// What the reply is for, shown to the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema (an object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Whether the provider must follow the schema exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

impl ResponseFormat {
    /// A strict `json_schema` format.
    pub fn json_schema(name: impl Into<String>, schema: Value) -> Self {
        ResponseFormat::JsonSchema {
            json_schema: JsonSchemaFormat {
                name: name.into(),
                description: None,
                schema: Some(schema),
                strict: Some(true),
            },
        }
    }
}

/// The parameters as read and written; checked by [`GenerationParams::validate`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct GenerationParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(
        default,
        alias = "max_completion_tokens",
        skip_serializing_if = "Option::is_none"
    )]
    max_tokens: Option<u32>,
    #[serde(
        default,
        deserialize_with = "string_or_list",
        skip_serializing_if = "Option::is_none"
    )]
    stop: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repetition_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    logprobs: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    top_logprobs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat>,
}

/// OpenAI's `stop` is a string or a list of strings (or null).
fn string_or_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(
        Option::<OneOrMany>::deserialize(deserializer)?.map(|value| match value {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }),
    )
}

fn invalid(field: &'static str, reason: impl Into<String>) -> CoreError {
    CoreError::InvalidParameter {
        field,
        reason: reason.into(),
    }
}

/// Checks that `value`, if set, is finite and inside `[low, high]`.
fn check_closed(
    field: &'static str,
    value: Option<f64>,
    low: f64,
    high: f64,
) -> Result<(), CoreError> {
    match value {
        Some(v) if !(v.is_finite() && (low..=high).contains(&v)) => Err(invalid(
            field,
            format!("{v} is outside the allowed range {low} to {high}"),
        )),
        _ => Ok(()),
    }
}

impl GenerationParams {
    fn validate(&self) -> Result<(), CoreError> {
        check_closed("temperature", self.temperature, 0.0, 2.0)?;
        if let Some(p) = self.top_p
            && !(p.is_finite() && p > 0.0 && p <= 1.0)
        {
            return Err(invalid(
                "top_p",
                format!("{p} is outside the allowed range (0, 1] (above 0, at most 1)"),
            ));
        }
        if self.top_k == Some(0) {
            return Err(invalid("top_k", "must be at least 1"));
        }
        if self.max_tokens == Some(0) {
            return Err(invalid("max_tokens", "must be at least 1"));
        }
        self.validate_stop()?;
        check_closed("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        check_closed("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        if let Some(r) = self.repetition_penalty
            && !(r.is_finite() && r > 0.0)
        {
            return Err(invalid(
                "repetition_penalty",
                format!("{r} must be a finite number above 0 (1.0 means no penalty)"),
            ));
        }
        if let Some(n) = self.n
            && !(1..=MAX_N).contains(&n)
        {
            return Err(invalid(
                "n",
                format!("{n} is outside the allowed range 1 to {MAX_N}"),
            ));
        }
        self.validate_logprobs()?;
        self.validate_response_format()
    }

    fn validate_stop(&self) -> Result<(), CoreError> {
        let Some(stop) = &self.stop else {
            return Ok(());
        };
        if stop.len() > MAX_STOP_SEQUENCES {
            return Err(invalid(
                "stop",
                format!(
                    "{} sequences given, at most {MAX_STOP_SEQUENCES} allowed",
                    stop.len()
                ),
            ));
        }
        match stop.iter().position(String::is_empty) {
            Some(i) => Err(invalid("stop", format!("sequence {i} is empty"))),
            None => Ok(()),
        }
    }

    fn validate_logprobs(&self) -> Result<(), CoreError> {
        let Some(top) = self.top_logprobs else {
            return Ok(());
        };
        if top > MAX_TOP_LOGPROBS {
            return Err(invalid(
                "top_logprobs",
                format!("{top} is outside the allowed range 0 to {MAX_TOP_LOGPROBS}"),
            ));
        }
        if self.logprobs != Some(true) {
            return Err(invalid("top_logprobs", "requires `logprobs` to be true"));
        }
        Ok(())
    }

    fn validate_response_format(&self) -> Result<(), CoreError> {
        let Some(ResponseFormat::JsonSchema { json_schema }) = &self.response_format else {
            return Ok(());
        };
        let name = &json_schema.name;
        let name_ok = !name.is_empty()
            && name.chars().count() <= MAX_SCHEMA_NAME_LEN
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            return Err(invalid(
                "response_format",
                format!(
                    "json_schema.name `{name}` must be 1 to {MAX_SCHEMA_NAME_LEN} letters, digits, \
                     `_` or `-`"
                ),
            ));
        }
        match &json_schema.schema {
            Some(schema) if !schema.is_object() => Err(invalid(
                "response_format",
                "json_schema.schema must be a JSON object",
            )),
            _ => Ok(()),
        }
    }

    /// Each field of `overrides` that is set replaces this one's.
    fn overlay(&self, overrides: &GenerationParams) -> GenerationParams {
        GenerationParams {
            temperature: overrides.temperature.or(self.temperature),
            top_p: overrides.top_p.or(self.top_p),
            top_k: overrides.top_k.or(self.top_k),
            max_tokens: overrides.max_tokens.or(self.max_tokens),
            stop: overrides.stop.clone().or_else(|| self.stop.clone()),
            presence_penalty: overrides.presence_penalty.or(self.presence_penalty),
            frequency_penalty: overrides.frequency_penalty.or(self.frequency_penalty),
            repetition_penalty: overrides.repetition_penalty.or(self.repetition_penalty),
            seed: overrides.seed.or(self.seed),
            n: overrides.n.or(self.n),
            logprobs: overrides.logprobs.or(self.logprobs),
            top_logprobs: overrides.top_logprobs.or(self.top_logprobs),
            response_format: overrides
                .response_format
                .clone()
                .or_else(|| self.response_format.clone()),
        }
    }
}

/// Validated generation parameters; see the module docs for ranges and presets.
///
/// Deserialising validates too, so a config file or request body with `temperature = 3` is an
/// error naming the field. Fields it does not know are ignored, so it can be
/// `#[serde(flatten)]`ed into a whole request body; config files that must reject typos check
/// their keys themselves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "GenerationParams", into = "GenerationParams")]
pub struct GenerationConfig {
    params: GenerationParams,
}

impl TryFrom<GenerationParams> for GenerationConfig {
    type Error = CoreError;

    fn try_from(params: GenerationParams) -> Result<Self, CoreError> {
        params.validate()?;
        Ok(GenerationConfig { params })
    }
}

impl From<GenerationConfig> for GenerationParams {
    fn from(config: GenerationConfig) -> Self {
        config.params
    }
}

impl GenerationConfig {
    /// A builder with nothing set.
    pub fn builder() -> GenerationConfigBuilder {
        GenerationConfigBuilder::default()
    }

    /// A builder starting from this configuration.
    pub fn to_builder(&self) -> GenerationConfigBuilder {
        GenerationConfigBuilder {
            params: self.params.clone(),
        }
    }

    /// The preset for `task` (see the module docs for the table).
    pub fn for_task(task: TaskPreset) -> GenerationConfig {
        GenerationConfig {
            params: preset_params(task),
        }
    }

    /// The preset for `task`, sized for an input of `input_tokens` where the preset depends on
    /// it (translation: twice the input, at least 16); other presets ignore the input.
    pub fn for_task_with_input(task: TaskPreset, input_tokens: usize) -> GenerationConfig {
        let mut config = GenerationConfig::for_task(task);
        if task == TaskPreset::Translation {
            let input = u32::try_from(input_tokens).unwrap_or(u32::MAX);
            let cap = input
                .saturating_mul(TRANSLATION_OUTPUT_FACTOR)
                .max(TRANSLATION_MIN_MAX_TOKENS);
            config.params.max_tokens = Some(cap);
        }
        config
    }

    /// This configuration with every field that `overrides` sets taken from `overrides`
    /// (a request overriding its preset). Fails when the combination is invalid, e.g. the
    /// preset asks for `top_logprobs` and the request turns `logprobs` off.
    pub fn merge(&self, overrides: &GenerationConfig) -> Result<GenerationConfig, CoreError> {
        GenerationConfig::try_from(self.params.overlay(&overrides.params))
    }

    /// Sampling temperature, 0 to 2.
    pub fn temperature(&self) -> Option<f64> {
        self.params.temperature
    }
    /// Nucleus sampling mass, above 0 and at most 1.
    pub fn top_p(&self) -> Option<f64> {
        self.params.top_p
    }
    /// Sample among the `top_k` likeliest tokens (not an OpenAI parameter).
    pub fn top_k(&self) -> Option<u32> {
        self.params.top_k
    }
    /// Cap on generated tokens (`max_completion_tokens` is read as an alias).
    pub fn max_tokens(&self) -> Option<u32> {
        self.params.max_tokens
    }
    /// Sequences that end generation (at most 4).
    pub fn stop(&self) -> Option<&[String]> {
        self.params.stop.as_deref()
    }
    /// Penalty for tokens that appeared at all, -2 to 2.
    pub fn presence_penalty(&self) -> Option<f64> {
        self.params.presence_penalty
    }
    /// Penalty scaled by how often tokens appeared, -2 to 2.
    pub fn frequency_penalty(&self) -> Option<f64> {
        self.params.frequency_penalty
    }
    /// Multiplicative repetition penalty (above 0; 1 is none), for local and vLLM-style models.
    pub fn repetition_penalty(&self) -> Option<f64> {
        self.params.repetition_penalty
    }
    /// Seed for best-effort reproducible sampling.
    pub fn seed(&self) -> Option<i64> {
        self.params.seed
    }
    /// Number of completions, 1 to 128.
    pub fn n(&self) -> Option<u32> {
        self.params.n
    }
    /// Whether to return log probabilities of the output tokens.
    pub fn logprobs(&self) -> Option<bool> {
        self.params.logprobs
    }
    /// Alternatives per position, 0 to 20; needs `logprobs`.
    pub fn top_logprobs(&self) -> Option<u32> {
        self.params.top_logprobs
    }
    /// Required shape of the reply.
    pub fn response_format(&self) -> Option<&ResponseFormat> {
        self.params.response_format.as_ref()
    }
}

/// Builds a [`GenerationConfig`]; `build` checks every range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationConfigBuilder {
    params: GenerationParams,
}

impl GenerationConfigBuilder {
    /// Sets `temperature`.
    pub fn temperature(mut self, value: f64) -> Self {
        self.params.temperature = Some(value);
        self
    }
    /// Sets `top_p`.
    pub fn top_p(mut self, value: f64) -> Self {
        self.params.top_p = Some(value);
        self
    }
    /// Sets `top_k`.
    pub fn top_k(mut self, value: u32) -> Self {
        self.params.top_k = Some(value);
        self
    }
    /// Sets `max_tokens`.
    pub fn max_tokens(mut self, value: u32) -> Self {
        self.params.max_tokens = Some(value);
        self
    }
    /// Sets the stop sequences.
    pub fn stop<S: Into<String>>(mut self, sequences: impl IntoIterator<Item = S>) -> Self {
        self.params.stop = Some(sequences.into_iter().map(Into::into).collect());
        self
    }
    /// Sets `presence_penalty`.
    pub fn presence_penalty(mut self, value: f64) -> Self {
        self.params.presence_penalty = Some(value);
        self
    }
    /// Sets `frequency_penalty`.
    pub fn frequency_penalty(mut self, value: f64) -> Self {
        self.params.frequency_penalty = Some(value);
        self
    }
    /// Sets `repetition_penalty`.
    pub fn repetition_penalty(mut self, value: f64) -> Self {
        self.params.repetition_penalty = Some(value);
        self
    }
    /// Sets `seed`.
    pub fn seed(mut self, value: i64) -> Self {
        self.params.seed = Some(value);
        self
    }
    /// Sets `n`.
    pub fn n(mut self, value: u32) -> Self {
        self.params.n = Some(value);
        self
    }
    /// Sets `logprobs`.
    pub fn logprobs(mut self, value: bool) -> Self {
        self.params.logprobs = Some(value);
        self
    }
    /// Sets `top_logprobs`.
    pub fn top_logprobs(mut self, value: u32) -> Self {
        self.params.top_logprobs = Some(value);
        self
    }
    /// Sets `response_format`.
    pub fn response_format(mut self, value: ResponseFormat) -> Self {
        self.params.response_format = Some(value);
        self
    }
    /// Checks every range and combination; the first problem is the error.
    pub fn build(self) -> Result<GenerationConfig, CoreError> {
        GenerationConfig::try_from(self.params)
    }
}

/// A kind of task with tuned generation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskPreset {
    /// The seed's defaults for anything else.
    General,
    /// Code generation.
    Coding,
    /// Creative writing.
    Creative,
    /// Factual question answering.
    FactualQa,
    /// Summaries.
    Summarization,
    /// Labelling into fixed classes.
    Classification,
    /// Structured data out of text (JSON mode).
    Extraction,
    /// Translation.
    Translation,
    /// Math and step-by-step reasoning.
    Math,
    /// Many diverse ideas.
    Brainstorming,
}

impl TaskPreset {
    /// Every preset, in table order.
    pub const ALL: [TaskPreset; 10] = [
        TaskPreset::General,
        TaskPreset::Coding,
        TaskPreset::Creative,
        TaskPreset::FactualQa,
        TaskPreset::Summarization,
        TaskPreset::Classification,
        TaskPreset::Extraction,
        TaskPreset::Translation,
        TaskPreset::Math,
        TaskPreset::Brainstorming,
    ];

    /// The canonical (snake_case) name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskPreset::General => "general",
            TaskPreset::Coding => "coding",
            TaskPreset::Creative => "creative",
            TaskPreset::FactualQa => "factual_qa",
            TaskPreset::Summarization => "summarization",
            TaskPreset::Classification => "classification",
            TaskPreset::Extraction => "extraction",
            TaskPreset::Translation => "translation",
            TaskPreset::Math => "math",
            TaskPreset::Brainstorming => "brainstorming",
        }
    }

    /// Other names the seeds use for the same tasks.
    fn from_alias(name: &str) -> Option<TaskPreset> {
        Some(match name {
            "code" | "code_generation" => TaskPreset::Coding,
            "creative_writing" => TaskPreset::Creative,
            "qa" | "q&a" | "factual" => TaskPreset::FactualQa,
            "summary" | "summarize" => TaskPreset::Summarization,
            "json_extraction" => TaskPreset::Extraction,
            "reasoning" | "math_reasoning" => TaskPreset::Math,
            _ => return None,
        })
    }
}

impl fmt::Display for TaskPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskPreset {
    type Err = CoreError;

    /// Canonical names and the seeds' aliases, case-insensitive, `-` or ` ` read as `_`.
    fn from_str(name: &str) -> Result<Self, CoreError> {
        let normalized = name
            .trim()
            .to_ascii_lowercase()
            .replace(['-', ' ', '/'], "_");
        TaskPreset::ALL
            .into_iter()
            .find(|preset| preset.as_str() == normalized)
            .or_else(|| TaskPreset::from_alias(&normalized))
            .ok_or_else(|| CoreError::UnknownPreset {
                preset: name.to_owned(),
                known: TaskPreset::ALL.map(TaskPreset::as_str).join(", "),
            })
    }
}

/// The preset table; literal values, all inside the validated ranges (a test checks each).
fn preset_params(task: TaskPreset) -> GenerationParams {
    let base = |temperature: f64, top_p: f64, max_tokens: Option<u32>| GenerationParams {
        temperature: Some(temperature),
        top_p: Some(top_p),
        max_tokens,
        ..GenerationParams::default()
    };
    match task {
        TaskPreset::General => base(0.7, 1.0, Some(1024)),
        TaskPreset::Coding => GenerationParams {
            frequency_penalty: Some(0.1),
            ..base(0.2, 0.95, Some(2048))
        },
        TaskPreset::Creative => GenerationParams {
            presence_penalty: Some(0.6),
            frequency_penalty: Some(0.3),
            ..base(0.9, 0.95, Some(2048))
        },
        TaskPreset::FactualQa => base(0.0, 1.0, Some(512)),
        TaskPreset::Summarization => base(0.3, 0.9, Some(512)),
        TaskPreset::Classification => base(0.0, 1.0, Some(50)),
        TaskPreset::Extraction => GenerationParams {
            response_format: Some(ResponseFormat::JsonObject),
            ..base(0.0, 1.0, Some(512))
        },
        TaskPreset::Translation => base(0.3, 0.9, Some(1024)),
        TaskPreset::Math => base(0.0, 1.0, Some(1024)),
        TaskPreset::Brainstorming => GenerationParams {
            top_k: Some(40),
            ..base(1.0, 0.8, None)
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Builds and compares with the expected outcome: `Ok(())` or the field and part of the reason.
    /// `Ok(())`, or the field at fault and part of the reason.
    type Expected = Result<(), (&'static str, &'static str)>;

    fn check(builder: GenerationConfigBuilder, expected: Expected) {
        let outcome = builder.clone().build();
        match (outcome, expected) {
            (Ok(_), Ok(())) => {}
            (
                Err(CoreError::InvalidParameter { field, reason }),
                Err((want_field, want_reason)),
            ) => {
                assert_eq!(field, want_field, "{builder:?}");
                assert!(
                    reason.contains(want_reason),
                    "{reason:?} lacks {want_reason:?}"
                );
            }
            (outcome, expected) => panic!("{builder:?}: got {outcome:?}, expected {expected:?}"),
        }
    }

    fn b() -> GenerationConfigBuilder {
        GenerationConfig::builder()
    }

    #[test]
    fn validation_table() {
        let cases: Vec<(GenerationConfigBuilder, Expected)> = vec![
            (b(), Ok(())),
            (b().temperature(0.0), Ok(())),
            (b().temperature(2.0), Ok(())),
            (
                b().temperature(2.01),
                Err(("temperature", "2.01 is outside the allowed range 0 to 2")),
            ),
            (b().temperature(-0.1), Err(("temperature", "outside"))),
            (b().temperature(f64::NAN), Err(("temperature", "NaN"))),
            (b().top_p(1.0), Ok(())),
            (b().top_p(1e-9), Ok(())),
            (b().top_p(0.0), Err(("top_p", "(0, 1]"))),
            (b().top_p(1.5), Err(("top_p", "(0, 1]"))),
            (b().top_k(1), Ok(())),
            (b().top_k(0), Err(("top_k", "at least 1"))),
            (b().max_tokens(1), Ok(())),
            (b().max_tokens(0), Err(("max_tokens", "at least 1"))),
            (b().stop(["###", "\n\n", "a", "b"]), Ok(())),
            (b().stop(Vec::<String>::new()), Ok(())),
            (
                b().stop(["1", "2", "3", "4", "5"]),
                Err(("stop", "5 sequences given, at most 4")),
            ),
            (b().stop(["x", ""]), Err(("stop", "sequence 1 is empty"))),
            (b().presence_penalty(-2.0).frequency_penalty(2.0), Ok(())),
            (
                b().presence_penalty(2.5),
                Err(("presence_penalty", "-2 to 2")),
            ),
            (
                b().frequency_penalty(-2.5),
                Err(("frequency_penalty", "-2 to 2")),
            ),
            (b().repetition_penalty(1.0), Ok(())),
            (
                b().repetition_penalty(0.0),
                Err(("repetition_penalty", "above 0")),
            ),
            (
                b().repetition_penalty(f64::INFINITY),
                Err(("repetition_penalty", "finite")),
            ),
            (b().seed(-7), Ok(())),
            (b().n(1), Ok(())),
            (b().n(128), Ok(())),
            (b().n(0), Err(("n", "1 to 128"))),
            (b().n(129), Err(("n", "1 to 128"))),
            (b().logprobs(false), Ok(())),
            (b().logprobs(true).top_logprobs(0), Ok(())),
            (b().logprobs(true).top_logprobs(20), Ok(())),
            (
                b().logprobs(true).top_logprobs(21),
                Err(("top_logprobs", "0 to 20")),
            ),
            (
                b().top_logprobs(3),
                Err(("top_logprobs", "requires `logprobs` to be true")),
            ),
            (
                b().logprobs(false).top_logprobs(3),
                Err(("top_logprobs", "requires")),
            ),
            (b().response_format(ResponseFormat::JsonObject), Ok(())),
            (b().response_format(ResponseFormat::Text), Ok(())),
            (
                b().response_format(ResponseFormat::json_schema(
                    "Person_v-2",
                    json!({"type": "object"}),
                )),
                Ok(()),
            ),
            (
                b().response_format(ResponseFormat::json_schema("has space", json!({}))),
                Err(("response_format", "json_schema.name `has space`")),
            ),
            (
                b().response_format(ResponseFormat::json_schema("", json!({}))),
                Err(("response_format", "must be 1 to 64")),
            ),
            (
                b().response_format(ResponseFormat::json_schema("x".repeat(65), json!({}))),
                Err(("response_format", "must be 1 to 64")),
            ),
            (
                b().response_format(ResponseFormat::json_schema("ok", json!([1]))),
                Err(("response_format", "must be a JSON object")),
            ),
        ];
        for (builder, expected) in cases {
            check(builder, expected);
        }
    }

    #[test]
    fn getters_return_what_was_built() {
        let config = b()
            .temperature(0.5)
            .top_p(0.9)
            .top_k(20)
            .max_tokens(100)
            .stop(["END"])
            .presence_penalty(0.1)
            .frequency_penalty(0.2)
            .repetition_penalty(1.1)
            .seed(42)
            .n(3)
            .logprobs(true)
            .top_logprobs(5)
            .response_format(ResponseFormat::JsonObject)
            .build()
            .unwrap();
        assert_eq!(config.temperature(), Some(0.5));
        assert_eq!(config.top_p(), Some(0.9));
        assert_eq!(config.top_k(), Some(20));
        assert_eq!(config.max_tokens(), Some(100));
        assert_eq!(config.stop(), Some(&["END".to_owned()][..]));
        assert_eq!(config.presence_penalty(), Some(0.1));
        assert_eq!(config.frequency_penalty(), Some(0.2));
        assert_eq!(config.repetition_penalty(), Some(1.1));
        assert_eq!(config.seed(), Some(42));
        assert_eq!(config.n(), Some(3));
        assert_eq!(config.logprobs(), Some(true));
        assert_eq!(config.top_logprobs(), Some(5));
        assert_eq!(config.response_format(), Some(&ResponseFormat::JsonObject));
        assert_eq!(config.to_builder().build().unwrap(), config);
    }

    #[test]
    fn serde_uses_openai_names_and_shapes() {
        let config = b()
            .temperature(0.2)
            .max_tokens(64)
            .stop(["\n"])
            .seed(1)
            .response_format(ResponseFormat::json_schema(
                "answer",
                json!({"type": "object"}),
            ))
            .build()
            .unwrap();
        let value = serde_json::to_value(&config).unwrap();
        assert_eq!(
            value,
            json!({
                "temperature": 0.2,
                "max_tokens": 64,
                "stop": ["\n"],
                "seed": 1,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": true}
                }
            })
        );
        let back: GenerationConfig = serde_json::from_value(value).unwrap();
        assert_eq!(back, config);
        assert_eq!(
            serde_json::to_value(GenerationConfig::default()).unwrap(),
            json!({})
        );
    }

    #[test]
    fn deserializing_accepts_openai_variants_and_validates() {
        let read = |value: serde_json::Value| serde_json::from_value::<GenerationConfig>(value);
        let config =
            read(json!({"stop": "###", "max_completion_tokens": 10, "stop_extra": 1})).unwrap();
        assert_eq!(config.stop(), Some(&["###".to_owned()][..]));
        assert_eq!(config.max_tokens(), Some(10));
        assert_eq!(read(json!({"stop": null})).unwrap().stop(), None);
        assert_eq!(
            read(json!({"response_format": {"type": "json_object"}}))
                .unwrap()
                .response_format(),
            Some(&ResponseFormat::JsonObject)
        );
        let err = read(json!({"temperature": 3})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid generation parameter `temperature`: 3 is outside the allowed range 0 to 2"
        );
        assert!(read(json!({"n": -1})).is_err());
        assert!(read(json!({"response_format": {"type": "yaml"}})).is_err());
        let from_toml: GenerationConfig = toml::from_str("temperature = 0.1\ntop_k = 5\n").unwrap();
        assert_eq!(
            (from_toml.temperature(), from_toml.top_k()),
            (Some(0.1), Some(5))
        );
    }

    #[test]
    fn flattens_into_a_request_body() {
        #[derive(Debug, Deserialize)]
        struct Request {
            model: String,
            #[serde(flatten)]
            generation: GenerationConfig,
        }
        let request: Request =
            serde_json::from_value(json!({"model": "gpt-4o", "temperature": 0.4, "n": 2})).unwrap();
        assert_eq!(request.model, "gpt-4o");
        assert_eq!(request.generation.temperature(), Some(0.4));
        assert_eq!(request.generation.n(), Some(2));
        let bad = serde_json::from_value::<Request>(json!({"model": "m", "top_p": 0}));
        assert!(bad.unwrap_err().to_string().contains("`top_p`"));
    }

    /// (preset, temperature, top_p, top_k, max_tokens, presence, frequency, json mode)
    type PresetRow = (
        TaskPreset,
        f64,
        f64,
        Option<u32>,
        Option<u32>,
        Option<f64>,
        Option<f64>,
        bool,
    );

    #[test]
    fn preset_table_matches_the_documented_choices() {
        use TaskPreset::*;
        let rows: [PresetRow; 10] = [
            (General, 0.7, 1.0, None, Some(1024), None, None, false),
            (Coding, 0.2, 0.95, None, Some(2048), None, Some(0.1), false),
            (
                Creative,
                0.9,
                0.95,
                None,
                Some(2048),
                Some(0.6),
                Some(0.3),
                false,
            ),
            (FactualQa, 0.0, 1.0, None, Some(512), None, None, false),
            (Summarization, 0.3, 0.9, None, Some(512), None, None, false),
            (Classification, 0.0, 1.0, None, Some(50), None, None, false),
            (Extraction, 0.0, 1.0, None, Some(512), None, None, true),
            (Translation, 0.3, 0.9, None, Some(1024), None, None, false),
            (Math, 0.0, 1.0, None, Some(1024), None, None, false),
            (Brainstorming, 1.0, 0.8, Some(40), None, None, None, false),
        ];
        assert_eq!(rows.map(|r| r.0), TaskPreset::ALL);
        for (task, temperature, top_p, top_k, max_tokens, presence, frequency, json_mode) in rows {
            let config = GenerationConfig::for_task(task);
            assert_eq!(config.temperature(), Some(temperature), "{task}");
            assert_eq!(config.top_p(), Some(top_p), "{task}");
            assert_eq!(config.top_k(), top_k, "{task}");
            assert_eq!(config.max_tokens(), max_tokens, "{task}");
            assert_eq!(config.presence_penalty(), presence, "{task}");
            assert_eq!(config.frequency_penalty(), frequency, "{task}");
            let expected_format = json_mode.then_some(&ResponseFormat::JsonObject);
            assert_eq!(config.response_format(), expected_format, "{task}");
            // Every preset passes the same validation as user input.
            assert_eq!(config.to_builder().build().unwrap(), config, "{task}");
        }
    }

    #[test]
    fn translation_caps_output_at_twice_the_input() {
        let cases = [
            (TaskPreset::Translation, 0, Some(16)),
            (TaskPreset::Translation, 8, Some(16)),
            (TaskPreset::Translation, 9, Some(18)),
            (TaskPreset::Translation, 1000, Some(2000)),
            (TaskPreset::Translation, usize::MAX, Some(u32::MAX)),
            (TaskPreset::Coding, 10, Some(2048)),
            (TaskPreset::Brainstorming, 10, None),
        ];
        for (task, input, expected) in cases {
            let config = GenerationConfig::for_task_with_input(task, input);
            assert_eq!(config.max_tokens(), expected, "{task} with {input}");
            assert_eq!(
                config.temperature(),
                GenerationConfig::for_task(task).temperature()
            );
        }
    }

    #[test]
    fn preset_names_parse_case_insensitively_with_aliases() {
        let cases = [
            ("coding", Some(TaskPreset::Coding)),
            ("Code-Generation", Some(TaskPreset::Coding)),
            ("creative_writing", Some(TaskPreset::Creative)),
            ("creative writing", Some(TaskPreset::Creative)),
            ("factual_qa", Some(TaskPreset::FactualQa)),
            ("Q&A", Some(TaskPreset::FactualQa)),
            ("math/reasoning", Some(TaskPreset::Math)),
            ("json_extraction", Some(TaskPreset::Extraction)),
            (" translation ", Some(TaskPreset::Translation)),
            ("poetry", None),
            ("", None),
        ];
        for (name, expected) in cases {
            assert_eq!(name.parse::<TaskPreset>().ok(), expected, "{name:?}");
        }
        for preset in TaskPreset::ALL {
            assert_eq!(preset.to_string().parse::<TaskPreset>().unwrap(), preset);
            let json = serde_json::to_value(preset).unwrap();
            assert_eq!(json, json!(preset.as_str()));
        }
    }

    #[test]
    fn unknown_preset_lists_the_known_ones() {
        let err = "poetry".parse::<TaskPreset>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown task preset `poetry`; known presets: general, coding, creative, factual_qa, \
             summarization, classification, extraction, translation, math, brainstorming"
        );
    }

    #[test]
    fn merge_lets_the_request_override_the_preset() {
        let preset = GenerationConfig::for_task(TaskPreset::Creative);
        let request = b()
            .temperature(0.5)
            .stop(["THE END"])
            .seed(9)
            .build()
            .unwrap();
        let merged = preset.merge(&request).unwrap();
        assert_eq!(merged.temperature(), Some(0.5));
        assert_eq!(merged.top_p(), Some(0.95));
        assert_eq!(merged.presence_penalty(), Some(0.6));
        assert_eq!(merged.stop(), Some(&["THE END".to_owned()][..]));
        assert_eq!(merged.seed(), Some(9));
        assert_eq!(preset.merge(&GenerationConfig::default()).unwrap(), preset);
        assert_eq!(GenerationConfig::default().merge(&preset).unwrap(), preset);
    }

    #[test]
    fn merge_rejects_an_invalid_combination() {
        let preset = b().logprobs(true).top_logprobs(5).build().unwrap();
        let request = b().logprobs(false).build().unwrap();
        let err = preset.merge(&request).unwrap_err();
        assert!(matches!(
            err,
            CoreError::InvalidParameter {
                field: "top_logprobs",
                ..
            }
        ));
    }

    fn accepted(builder: GenerationConfigBuilder) -> bool {
        builder.build().is_ok()
    }

    proptest! {
        #[test]
        fn temperature_accepted_exactly_in_0_to_2(t in -3.0f64..5.0) {
            prop_assert_eq!(accepted(b().temperature(t)), (0.0..=2.0).contains(&t));
        }

        #[test]
        fn top_p_accepted_exactly_in_open_0_to_1(p in -1.0f64..2.0) {
            prop_assert_eq!(accepted(b().top_p(p)), p > 0.0 && p <= 1.0);
        }

        #[test]
        fn penalties_accepted_exactly_in_minus_2_to_2(x in -4.0f64..4.0) {
            let inside = (-2.0..=2.0).contains(&x);
            prop_assert_eq!(accepted(b().presence_penalty(x)), inside);
            prop_assert_eq!(accepted(b().frequency_penalty(x)), inside);
        }

        #[test]
        fn repetition_penalty_accepted_exactly_above_0(x in -2.0f64..4.0) {
            prop_assert_eq!(accepted(b().repetition_penalty(x)), x > 0.0);
        }

        #[test]
        fn n_accepted_exactly_in_1_to_128(n in 0u32..300) {
            prop_assert_eq!(accepted(b().n(n)), (1..=128).contains(&n));
        }

        #[test]
        fn top_logprobs_accepted_exactly_up_to_20_with_logprobs(
            top in 0u32..40,
            logprobs in proptest::option::of(any::<bool>()),
        ) {
            let mut builder = b().top_logprobs(top);
            if let Some(flag) = logprobs {
                builder = builder.logprobs(flag);
            }
            prop_assert_eq!(accepted(builder), top <= 20 && logprobs == Some(true));
        }

        #[test]
        fn stop_accepted_exactly_up_to_4_non_empty(stops in proptest::collection::vec("[a-c]{0,2}", 0..7)) {
            let expected = stops.len() <= 4 && stops.iter().all(|s| !s.is_empty());
            prop_assert_eq!(accepted(b().stop(stops)), expected);
        }

        #[test]
        fn valid_configs_round_trip_through_json(
            // Two-decimal temperatures: serde_json's default float parser is exact for these.
            t in proptest::option::of((0u32..=200).prop_map(|k| f64::from(k) / 100.0)),
            max in proptest::option::of(1u32..10_000),
            seed in proptest::option::of(any::<i64>()),
        ) {
            let mut builder = b();
            if let Some(t) = t { builder = builder.temperature(t); }
            if let Some(max) = max { builder = builder.max_tokens(max); }
            if let Some(seed) = seed { builder = builder.seed(seed); }
            let config = builder.build().unwrap();
            let text = serde_json::to_string(&config).unwrap();
            prop_assert_eq!(serde_json::from_str::<GenerationConfig>(&text).unwrap(), config);
        }
    }
}
