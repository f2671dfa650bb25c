//! Token counting: exact OpenAI encodings, chat-format overhead, and flagged estimates for others.
//!
//! The two OpenAI encodings in use today, `o200k_base` and `cl100k_base`, use the vocabularies
//! and byte-pair encoder of the `bpe-openai` crate. Text is first cut into pieces as tiktoken's
//! regex cuts it (a hand-written scan for ASCII, the regex otherwise: see `split`), then each
//! piece is looked up as a whole token or, failing that, merged by bpe-openai. Ids are identical
//! to tiktoken's (`tests/tiktoken_parity.rs` checks them against tiktoken-rs and against a fixture
//! written by Python tiktoken) and counting is several times faster (`benches/tokens.rs`,
//! figures in BENCHMARKS.md).
//!
//! Providers that publish no tokenizer (Anthropic, Google, ...) get an [`EstimateTokenizer`]:
//! a scaled count of a public encoding, always reported as [`Exactness::Estimate`].

mod chat;
mod split;

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use rustc_hash::FxHashMap;

use crate::error::CoreError;
use split::Rules;

pub use chat::{ChatTokenCount, ImageDetail, count_chat, image_tokens};
pub use split::Pieces;

/// Whether a count is exact for the target model or an estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Exactness {
    /// Identical to what the provider bills.
    Exact,
    /// An approximation (no public tokenizer for that provider); never present it as exact.
    Estimate,
}

impl Exactness {
    /// `Exact` only when both are exact: combining anything with an estimate gives an estimate.
    pub fn and(self, other: Exactness) -> Exactness {
        match (self, other) {
            (Exactness::Exact, Exactness::Exact) => Exactness::Exact,
            _ => Exactness::Estimate,
        }
    }
}

/// Anything that can count the tokens of a text.
///
/// Object-safe so that the local model's GGUF tokenizer (crates/local) plugs in beside the
/// built-in OpenAI encodings.
pub trait Tokenizer: Send + Sync {
    /// A short name, e.g. `o200k_base`.
    fn name(&self) -> &str;
    /// Whether counts from this tokenizer are exact for its models.
    fn exactness(&self) -> Exactness;
    /// Number of tokens in `text` (no special tokens are recognised in it).
    fn count(&self, text: &str) -> usize;
    /// The OpenAI encoding this tokenizer is, if it is one: chat counting then applies that
    /// encoding's documented message and tool overheads exactly.
    fn encoding(&self) -> Option<Encoding> {
        None
    }
}

/// An OpenAI byte-pair encoding built into promptops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Encoding {
    /// `o200k_base`: GPT-4o, GPT-4.1, GPT-4.5, GPT-5, o1/o3/o4.
    #[serde(rename = "o200k_base")]
    O200kBase,
    /// `cl100k_base`: GPT-4, GPT-3.5-turbo, text-embedding-3 and ada-002.
    #[serde(rename = "cl100k_base")]
    Cl100kBase,
}

/// Special tokens of `o200k_base` (tiktoken's table); encoding never produces them, decoding
/// accepts them.
const O200K_SPECIAL: &[(&str, u32)] = &[("<|endoftext|>", 199_999), ("<|endofprompt|>", 200_018)];

/// Special tokens of `cl100k_base` (tiktoken's table).
const CL100K_SPECIAL: &[(&str, u32)] = &[
    ("<|endoftext|>", 100_257),
    ("<|fim_prefix|>", 100_258),
    ("<|fim_middle|>", 100_259),
    ("<|fim_suffix|>", 100_260),
    ("<|endofprompt|>", 100_276),
];

impl Encoding {
    /// Every built-in encoding.
    pub const ALL: [Encoding; 2] = [Encoding::O200kBase, Encoding::Cl100kBase];

    /// The tiktoken name, e.g. `o200k_base`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::O200kBase => "o200k_base",
            Encoding::Cl100kBase => "cl100k_base",
        }
    }

    /// The encoding of an OpenAI model; see [`encoding_for_model`].
    pub fn for_model(model: &str) -> Result<Encoding, CoreError> {
        encoding_for_model(model)
    }

    /// Number of tokens in `text`; special-token text such as `<|endoftext|>` counts as plain text.
    pub fn count(self, text: &str) -> usize {
        let vocabulary = self.vocabulary();
        self.pieces(text)
            .map(|piece| vocabulary.count_piece(piece))
            .sum()
    }

    /// Token ids of `text`, as tiktoken's `encode_ordinary` gives them.
    pub fn encode(self, text: &str) -> Vec<u32> {
        let vocabulary = self.vocabulary();
        let mut ids = Vec::with_capacity(text.len() / 3);
        for piece in self.pieces(text) {
            vocabulary.encode_piece(piece, &mut ids);
        }
        ids
    }

    /// The pieces the encoding's pre-tokenizer regex cuts `text` into; no token spans two.
    ///
    /// They are bpe-openai's pieces, which equal tiktoken's except that for cl100k a whitespace
    /// run ending the text is cut after its last line break (tiktoken keeps it whole); no cl100k
    /// token ends in a line break plus whitespace, so the tokens are the same.
    pub fn pieces(self, text: &str) -> Pieces<'_> {
        let rules = match self {
            Encoding::O200kBase => Rules::O200k,
            Encoding::Cl100kBase => Rules::Cl100k,
        };
        Pieces::new(text, rules, self.bpe())
    }

    /// Text of `ids`; an error names the first id that is unknown or that cuts a UTF-8 character.
    pub fn decode(self, ids: &[u32]) -> Result<String, CoreError> {
        let bytes = self.decode_bytes(ids)?;
        String::from_utf8(bytes).map_err(|error| {
            let valid_up_to = error.utf8_error().valid_up_to();
            let index = self.index_of_byte(ids, valid_up_to);
            self.invalid_ids(format!(
                "the bytes of id {} at index {index} do not complete a UTF-8 character \
                 (use decode_lossy to replace such bytes with U+FFFD)",
                ids.get(index).copied().unwrap_or_default()
            ))
        })
    }

    /// Text of `ids` with bytes that are not valid UTF-8 replaced by U+FFFD, as tiktoken's
    /// `decode` does by default; only unknown ids are an error.
    pub fn decode_lossy(self, ids: &[u32]) -> Result<String, CoreError> {
        let bytes = self.decode_bytes(ids)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The bytes of `ids` (a token may hold part of a multi-byte character).
    pub fn decode_bytes(self, ids: &[u32]) -> Result<Vec<u8>, CoreError> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for (index, &id) in ids.iter().enumerate() {
            bytes.extend_from_slice(self.token_bytes(id).ok_or_else(|| {
                self.invalid_ids(format!(
                    "id {id} at index {index} is not a token (ordinary ids are 0..{}, special ids {})",
                    self.ordinary_token_count(),
                    self.special_ids_list()
                ))
            })?);
        }
        Ok(bytes)
    }

    /// Number of ordinary (mergeable) tokens: ids `0..n`.
    pub fn ordinary_token_count(self) -> usize {
        self.bpe().bpe.num_tokens()
    }

    /// The special tokens and their ids.
    pub fn special_tokens(self) -> &'static [(&'static str, u32)] {
        match self {
            Encoding::O200kBase => O200K_SPECIAL,
            Encoding::Cl100kBase => CL100K_SPECIAL,
        }
    }

    fn bpe(self) -> &'static bpe_openai::Tokenizer {
        match self {
            Encoding::O200kBase => bpe_openai::o200k_base(),
            Encoding::Cl100kBase => bpe_openai::cl100k_base(),
        }
    }

    fn vocabulary(self) -> &'static Vocabulary {
        static O200K: LazyLock<Vocabulary> =
            LazyLock::new(|| Vocabulary::new(Encoding::O200kBase.bpe()));
        static CL100K: LazyLock<Vocabulary> =
            LazyLock::new(|| Vocabulary::new(Encoding::Cl100kBase.bpe()));
        match self {
            Encoding::O200kBase => &O200K,
            Encoding::Cl100kBase => &CL100K,
        }
    }

    fn token_bytes(self, id: u32) -> Option<&'static [u8]> {
        if (id as usize) < self.ordinary_token_count() {
            return Some(self.bpe().bpe.token_bytes(id));
        }
        self.special_tokens()
            .iter()
            .find(|(_, special)| *special == id)
            .map(|(text, _)| text.as_bytes())
    }

    /// Index of the id whose bytes contain byte `offset` of the decoded text.
    fn index_of_byte(self, ids: &[u32], offset: usize) -> usize {
        let mut end = 0;
        for (index, &id) in ids.iter().enumerate() {
            end += self.token_bytes(id).map_or(0, <[u8]>::len);
            if end > offset {
                return index;
            }
        }
        ids.len().saturating_sub(1)
    }

    fn special_ids_list(self) -> String {
        let ids: Vec<String> = self
            .special_tokens()
            .iter()
            .map(|(_, id)| id.to_string())
            .collect();
        ids.join(", ")
    }

    fn invalid_ids(self, reason: String) -> CoreError {
        CoreError::InvalidTokenIds {
            encoding: self.name(),
            reason,
        }
    }
}

/// Pieces longer than this are not looked up as a whole token: hardly any is one, and hashing
/// long CJK runs costs more than it saves. (Either way the count is the same.)
const WHOLE_TOKEN_LOOKUP_MAX_BYTES: usize = 32;

/// An encoding's byte-pair encoder plus a table from token bytes to id.
///
/// Most pieces of ordinary text (words, numbers, punctuation runs) are a single token; like
/// tiktoken, look the piece up first and run byte-pair merging only when it is not one.
struct Vocabulary {
    bpe: &'static bpe_openai::Tokenizer,
    ids: FxHashMap<&'static [u8], u32>,
}

impl Vocabulary {
    fn new(bpe: &'static bpe_openai::Tokenizer) -> Self {
        let tokens = bpe.bpe.num_tokens();
        let mut ids = FxHashMap::with_capacity_and_hasher(tokens, Default::default());
        for id in (0..tokens).filter_map(|id| u32::try_from(id).ok()) {
            let bytes = bpe.bpe.token_bytes(id);
            if bytes.len() <= WHOLE_TOKEN_LOOKUP_MAX_BYTES {
                ids.insert(bytes, id);
            }
        }
        Vocabulary { bpe, ids }
    }

    fn whole_token(&self, piece: &str) -> Option<u32> {
        if piece.len() > WHOLE_TOKEN_LOOKUP_MAX_BYTES {
            return None;
        }
        self.ids.get(piece.as_bytes()).copied()
    }

    fn count_piece(&self, piece: &str) -> usize {
        match self.whole_token(piece) {
            Some(_) => 1,
            None => self.bpe.bpe.count(piece.as_bytes()),
        }
    }

    fn encode_piece(&self, piece: &str, ids: &mut Vec<u32>) {
        match self.whole_token(piece) {
            Some(id) => ids.push(id),
            None => ids.extend(self.bpe.bpe.encode_via_backtracking(piece.as_bytes())),
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Encoding {
    type Err = CoreError;

    /// Parses a tiktoken encoding name (ASCII case ignored).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let wanted = name.trim();
        Encoding::ALL
            .into_iter()
            .find(|encoding| encoding.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| CoreError::UnknownEncoding {
                encoding: name.to_owned(),
                known: Encoding::ALL.map(Encoding::name).join(", "),
            })
    }
}

impl Tokenizer for Encoding {
    fn name(&self) -> &str {
        Encoding::name(*self)
    }

    fn exactness(&self) -> Exactness {
        Exactness::Exact
    }

    fn count(&self, text: &str) -> usize {
        Encoding::count(*self, text)
    }

    fn encoding(&self) -> Option<Encoding> {
        Some(*self)
    }
}

/// OpenAI model names mapped to their encoding, as tiktoken's `MODEL_TO_ENCODING` has them
/// (restricted to the encodings built in here).
const OPENAI_MODELS: &[(&str, Encoding)] = &[
    ("o1", Encoding::O200kBase),
    ("o3", Encoding::O200kBase),
    ("o4", Encoding::O200kBase),
    ("gpt-4", Encoding::Cl100kBase),
    ("gpt-3.5", Encoding::Cl100kBase),
    ("text-embedding-ada-002", Encoding::Cl100kBase),
    ("davinci-002", Encoding::Cl100kBase),
    ("babbage-002", Encoding::Cl100kBase),
];

/// Name prefixes mapped to their encoding, tried in order, as tiktoken's
/// `MODEL_PREFIX_TO_ENCODING` has them. `gpt-oss` uses `o200k_harmony`, whose ordinary text
/// encoding is `o200k_base` (it only adds special tokens).
const OPENAI_PREFIXES: &[(&str, Encoding)] = &[
    ("gpt-5", Encoding::O200kBase),
    ("gpt-4.5", Encoding::O200kBase),
    ("gpt-4.1", Encoding::O200kBase),
    ("gpt-4o", Encoding::O200kBase),
    ("chatgpt-4o", Encoding::O200kBase),
    ("o1-", Encoding::O200kBase),
    ("o3-", Encoding::O200kBase),
    ("o4-", Encoding::O200kBase),
    ("gpt-oss", Encoding::O200kBase),
    ("gpt-4-", Encoding::Cl100kBase),
    ("gpt-3.5-turbo", Encoding::Cl100kBase),
    ("gpt-35-turbo", Encoding::Cl100kBase),
    ("text-embedding-3-", Encoding::Cl100kBase),
];

/// The model part of `model`, lower-cased: `openai/gpt-4o` and `GPT-4o` both give `gpt-4o`.
fn bare_model_name(model: &str) -> String {
    let bare = model.trim().rsplit('/').next().unwrap_or_default();
    bare.to_ascii_lowercase()
}

/// The encoding of an OpenAI model name (`gpt-4o`, `openai/gpt-4.1-mini`, `ft:gpt-4o-mini:org::id`).
///
/// Exact names first, then prefixes, as tiktoken's `encoding_name_for_model` does; a fine-tuned
/// `ft:BASE:...` model takes the encoding of `BASE`.
pub fn encoding_for_model(model: &str) -> Result<Encoding, CoreError> {
    openai_encoding(&bare_model_name(model)).ok_or_else(|| CoreError::UnknownModel {
        model: model.to_owned(),
        known: known_openai_models(),
    })
}

fn openai_encoding(bare: &str) -> Option<Encoding> {
    if let Some(fine_tuned) = bare.strip_prefix("ft:") {
        let base = fine_tuned.split(':').next().unwrap_or_default();
        return openai_encoding(base);
    }
    let exact = OPENAI_MODELS.iter().find(|(name, _)| *name == bare);
    let prefixed = || {
        OPENAI_PREFIXES
            .iter()
            .find(|(prefix, _)| bare.starts_with(prefix))
    };
    exact.or_else(prefixed).map(|(_, encoding)| *encoding)
}

fn known_openai_models() -> String {
    let exact = OPENAI_MODELS.iter().map(|(name, _)| (*name).to_owned());
    let prefixes = OPENAI_PREFIXES
        .iter()
        .map(|(prefix, _)| format!("{prefix}*"));
    let mut known: Vec<String> = exact.chain(prefixes).collect();
    known.push("ft:<one of these>:*".to_owned());
    known.join(", ")
}

/// Model families without a public tokenizer that promptops counts by estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EstimateFamily {
    /// Anthropic Claude.
    Anthropic,
    /// Google Gemini and Gemma.
    Gemini,
    /// Cohere Command.
    Cohere,
    /// Meta Llama served by an API.
    Llama,
    /// Mistral AI models.
    Mistral,
    /// DeepSeek models.
    DeepSeek,
    /// Alibaba Qwen models.
    Qwen,
}

/// How a family is recognised and estimated.
struct FamilySpec {
    /// Lower-case family name.
    name: &'static str,
    /// What [`Tokenizer::name`] reports, so that no report mistakes it for a real tokenizer.
    tokenizer_name: &'static str,
    /// Words that identify the family anywhere in a (lower-cased) model name.
    words: &'static [&'static str],
    /// The public encoding counted.
    base: Encoding,
    /// Factor applied to the base count, in thousandths.
    per_mille: u32,
}

impl EstimateFamily {
    /// Every family.
    pub const ALL: [EstimateFamily; 7] = [
        EstimateFamily::Anthropic,
        EstimateFamily::Gemini,
        EstimateFamily::Cohere,
        EstimateFamily::Llama,
        EstimateFamily::Mistral,
        EstimateFamily::DeepSeek,
        EstimateFamily::Qwen,
    ];

    /// The family a model name belongs to (`claude-sonnet-4`, `anthropic/claude-3-5-haiku`,
    /// `us.anthropic.claude-3-7-sonnet-v1:0`, `gemini-2.5-pro`, ...), if any.
    pub fn for_model(model: &str) -> Option<EstimateFamily> {
        let bare = bare_model_name(model);
        EstimateFamily::ALL
            .into_iter()
            .find(|family| family.spec().words.iter().any(|word| bare.contains(word)))
    }

    /// Lower-case family name, e.g. `anthropic`.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The public encoding whose count the estimate scales.
    pub fn base_encoding(self) -> Encoding {
        self.spec().base
    }

    /// What an [`EstimateTokenizer`] for this family reports as its name.
    fn tokenizer_name(self) -> &'static str {
        self.spec().tokenizer_name
    }

    /// The factor applied to the base count, in thousandths (1250 = ×1.25).
    pub fn factor_per_mille(self) -> u32 {
        self.spec().per_mille
    }

    /// How each family is estimated.
    ///
    /// - Anthropic: Claude's tokenizer is not public. Published side-by-side measurements of
    ///   Claude 3.5 Sonnet against GPT-4o report 20–30% more tokens for the same input (more on
    ///   code), so the estimate is o200k × 1.25.
    /// - Gemini and Cohere: 256k-entry vocabularies; Google documents about 4 characters per
    ///   token, the rule of thumb OpenAI gives for its own tokenizers, so the o200k count is taken
    ///   unscaled.
    /// - Llama 3+, Mistral (Tekken), DeepSeek and Qwen: byte-level BPEs of 128k–152k entries,
    ///   close to cl100k (Llama 3's and Qwen's extend it), so the cl100k count is taken unscaled.
    ///   Their tokenizers are public: load the real one (crates/local) when exactness matters.
    fn spec(self) -> FamilySpec {
        let (name, tokenizer_name, words, base, per_mille): (_, _, &'static [&'static str], _, _) =
            match self {
                EstimateFamily::Anthropic => (
                    "anthropic",
                    "estimate:anthropic",
                    &["claude"],
                    Encoding::O200kBase,
                    1250,
                ),
                EstimateFamily::Gemini => (
                    "gemini",
                    "estimate:gemini",
                    &["gemini", "gemma"],
                    Encoding::O200kBase,
                    1000,
                ),
                EstimateFamily::Cohere => (
                    "cohere",
                    "estimate:cohere",
                    &["command", "c4ai"],
                    Encoding::O200kBase,
                    1000,
                ),
                EstimateFamily::Llama => (
                    "llama",
                    "estimate:llama",
                    &["llama"],
                    Encoding::Cl100kBase,
                    1000,
                ),
                EstimateFamily::Mistral => (
                    "mistral",
                    "estimate:mistral",
                    &[
                        "mistral",
                        "mixtral",
                        "codestral",
                        "ministral",
                        "magistral",
                        "pixtral",
                        "devstral",
                    ],
                    Encoding::Cl100kBase,
                    1000,
                ),
                EstimateFamily::DeepSeek => (
                    "deepseek",
                    "estimate:deepseek",
                    &["deepseek"],
                    Encoding::Cl100kBase,
                    1000,
                ),
                EstimateFamily::Qwen => (
                    "qwen",
                    "estimate:qwen",
                    &["qwen", "qwq"],
                    Encoding::Cl100kBase,
                    1000,
                ),
            };
        FamilySpec {
            name,
            tokenizer_name,
            words,
            base,
            per_mille,
        }
    }
}

/// A token count estimate for a model family without a public tokenizer: the base encoding's
/// count times the family factor, rounded up. Always [`Exactness::Estimate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EstimateTokenizer {
    family: EstimateFamily,
}

impl EstimateTokenizer {
    /// The estimate for `family`.
    pub fn new(family: EstimateFamily) -> Self {
        EstimateTokenizer { family }
    }

    /// The family estimated.
    pub fn family(&self) -> EstimateFamily {
        self.family
    }
}

impl Tokenizer for EstimateTokenizer {
    /// `estimate:<family>`, e.g. `estimate:anthropic`.
    fn name(&self) -> &str {
        self.family.tokenizer_name()
    }

    fn exactness(&self) -> Exactness {
        Exactness::Estimate
    }

    fn count(&self, text: &str) -> usize {
        let base = self.family.base_encoding().count(text);
        let per_mille = self.family.factor_per_mille() as usize;
        (base * per_mille).div_ceil(1000)
    }
}

/// The tokenizer for a model: exact for OpenAI models, a flagged estimate for the families of
/// [`EstimateFamily`]; an unknown model is an error listing what is known.
pub fn tokenizer_for_model(model: &str) -> Result<Box<dyn Tokenizer>, CoreError> {
    if let Some(encoding) = openai_encoding(&bare_model_name(model)) {
        return Ok(Box::new(encoding));
    }
    if let Some(family) = EstimateFamily::for_model(model) {
        return Ok(Box::new(EstimateTokenizer::new(family)));
    }
    let estimated: Vec<String> = EstimateFamily::ALL
        .iter()
        .flat_map(|family| family.spec().words.iter().map(|word| format!("*{word}*")))
        .collect();
    Err(CoreError::UnknownModel {
        model: model.to_owned(),
        known: format!(
            "{} (exact); {} (estimated)",
            known_openai_models(),
            estimated.join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `model` maps to `expected` (an encoding name, `estimate:<family>`, or `error`).
    fn check(model: &str, expected: &str) {
        let got = match tokenizer_for_model(model) {
            Ok(tokenizer) => tokenizer.name().to_owned(),
            Err(_) => "error".to_owned(),
        };
        assert_eq!(got, expected, "model {model}");
    }

    #[test]
    fn maps_openai_models_like_tiktoken() {
        for model in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4o-2024-08-06",
            "chatgpt-4o-latest",
            "gpt-4.1",
            "gpt-4.1-nano",
            "gpt-4.5-preview",
            "gpt-5",
            "gpt-5-mini",
            "gpt-5.1",
            "o1",
            "o1-mini",
            "o3",
            "o3-mini",
            "o4-mini",
            "o4-mini-2025-04-16",
            "gpt-oss-120b",
            "openai/gpt-4o",
            "azure/GPT-4o-mini",
            "ft:gpt-4o-mini-2024-07-18:acme::abc123",
            "ft:gpt-4.1-mini:acme::abc123",
        ] {
            check(model, "o200k_base");
        }
        for model in [
            "gpt-4",
            "gpt-4-0613",
            "gpt-4-32k",
            "gpt-4-turbo",
            "gpt-3.5",
            "gpt-3.5-turbo",
            "gpt-3.5-turbo-0125",
            "gpt-35-turbo-16k",
            "text-embedding-3-small",
            "text-embedding-3-large",
            "text-embedding-ada-002",
            "davinci-002",
            "openai/gpt-4-turbo",
            "ft:gpt-3.5-turbo-0613:acme::x",
        ] {
            check(model, "cl100k_base");
        }
    }

    #[test]
    fn maps_other_families_to_flagged_estimates() {
        check("claude-sonnet-4-5", "estimate:anthropic");
        check("anthropic/claude-3-5-haiku-latest", "estimate:anthropic");
        check(
            "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
            "estimate:anthropic",
        );
        check("gemini-2.5-pro", "estimate:gemini");
        check("google/gemma-3-27b-it", "estimate:gemini");
        check("command-r-plus", "estimate:cohere");
        check("meta-llama/Llama-3.3-70B-Instruct", "estimate:llama");
        check("mistral-large-latest", "estimate:mistral");
        check("open-mixtral-8x22b", "estimate:mistral");
        check("deepseek-chat", "estimate:deepseek");
        check("qwen2.5-72b-instruct", "estimate:qwen");
        for family in EstimateFamily::ALL {
            assert_eq!(
                EstimateTokenizer::new(family).exactness(),
                Exactness::Estimate
            );
        }
    }

    #[test]
    fn unknown_models_are_errors_that_list_the_known_ones() {
        check("gpt-4o", "o200k_base");
        check("davinci", "error");
        check("o2", "error");
        check("text-embedding-4", "error");
        check("", "error");
        let error = tokenizer_for_model("acme-9000")
            .err()
            .map(|e| e.to_string());
        let error = error.unwrap_or_default();
        assert!(
            error.starts_with("unknown model `acme-9000`; known models: o1, o3"),
            "{error}"
        );
        assert!(
            error.contains("gpt-4o*") && error.contains("*claude*, "),
            "{error}"
        );
        let error = encoding_for_model("claude-3-opus").unwrap_err().to_string();
        assert!(
            error.contains("gpt-5*") && !error.contains("claude*"),
            "{error}"
        );
    }

    #[test]
    fn parses_encoding_names() {
        assert_eq!(
            "o200k_base".parse::<Encoding>().unwrap(),
            Encoding::O200kBase
        );
        assert_eq!(
            " CL100K_BASE ".parse::<Encoding>().unwrap(),
            Encoding::Cl100kBase
        );
        let error = "p50k_base".parse::<Encoding>().unwrap_err().to_string();
        assert_eq!(
            error,
            "unknown encoding `p50k_base`; known encodings: o200k_base, cl100k_base"
        );
        for encoding in Encoding::ALL {
            assert_eq!(encoding.to_string().parse::<Encoding>().unwrap(), encoding);
            let json = serde_json::to_string(&encoding).unwrap();
            assert_eq!(json, format!("\"{}\"", encoding.name()));
        }
    }

    #[test]
    fn encodes_and_decodes_known_ids() {
        // Ids of tiktoken's own README example, "hello world" in cl100k_base.
        assert_eq!(
            Encoding::Cl100kBase.encode("hello world"),
            vec![15339, 1917]
        );
        assert_eq!(Encoding::O200kBase.encode("hello world"), vec![24912, 2375]);
        for encoding in Encoding::ALL {
            let text = "Grüße, 世界! 👩‍👩‍👧 <|endoftext|>";
            let ids = encoding.encode(text);
            assert_eq!(encoding.count(text), ids.len());
            assert_eq!(encoding.decode(&ids).unwrap(), text);
        }
    }

    #[test]
    fn decodes_special_tokens_and_rejects_unknown_ids() {
        let o200k = Encoding::O200kBase;
        assert_eq!(o200k.decode(&[199_999]).unwrap(), "<|endoftext|>");
        assert_eq!(
            Encoding::Cl100kBase.decode(&[100_276]).unwrap(),
            "<|endofprompt|>"
        );
        let error = o200k.decode(&[24912, 199_998]).unwrap_err().to_string();
        assert_eq!(
            error,
            "cannot decode token ids with `o200k_base`: id 199998 at index 1 is not a token \
             (ordinary ids are 0..199998, special ids 199999, 200018)"
        );
        let error = Encoding::Cl100kBase
            .decode(&[u32::MAX])
            .unwrap_err()
            .to_string();
        assert!(error.contains("id 4294967295 at index 0"), "{error}");
    }

    #[test]
    fn decode_reports_a_cut_character_and_lossy_decode_replaces_it() {
        let encoding = Encoding::Cl100kBase;
        // "誕" is split over two tokens in cl100k_base (tiktoken cookbook example).
        let ids = encoding.encode("お誕生日");
        let cut = &ids[..2];
        let error = encoding.decode(cut).unwrap_err().to_string();
        assert!(
            error.contains(&format!("id {} at index 1", cut[1])),
            "{error}"
        );
        assert_eq!(encoding.decode_lossy(cut).unwrap(), "お\u{FFFD}");
    }

    #[test]
    fn estimates_scale_the_base_count_and_round_up() {
        let text = "The quick brown fox jumps over the lazy dog.";
        let base = Encoding::O200kBase.count(text);
        let claude = EstimateTokenizer::new(EstimateFamily::Anthropic);
        assert_eq!(claude.count(text), (base * 5).div_ceil(4));
        assert_eq!(claude.count(""), 0);
        assert_eq!(claude.count("a"), 2);
        let gemini = EstimateTokenizer::new(EstimateFamily::Gemini);
        assert_eq!(gemini.count(text), base);
        let llama = EstimateTokenizer::new(EstimateFamily::Llama);
        assert_eq!(llama.count(text), Encoding::Cl100kBase.count(text));
        assert_eq!(claude.encoding(), None);
    }

    #[test]
    fn exactness_combines_to_estimate() {
        assert_eq!(Exactness::Exact.and(Exactness::Exact), Exactness::Exact);
        assert_eq!(
            Exactness::Exact.and(Exactness::Estimate),
            Exactness::Estimate
        );
        assert_eq!(
            Exactness::Estimate.and(Exactness::Exact),
            Exactness::Estimate
        );
        assert_eq!(
            serde_json::to_string(&Exactness::Estimate).unwrap(),
            "\"estimate\""
        );
    }
}
