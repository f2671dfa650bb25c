//! Model catalog: context window, output limit and list prices per model, the cost of a request,
//! and the per-model token and cost comparison of a text (`promptops tokens compare`).
//!
//! The built-in table is `data/models.toml`, embedded at compile time; config overrides it with
//! the same format through [`CatalogPatch`]. Lookups take `PROVIDER/MODEL` or a bare name, and a
//! dated or versioned id (`gpt-4o-2024-08-06`, `claude-3-5-sonnet-20241022`) resolves to the
//! longest known name it extends, so new snapshots are priced without a data release.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use toml::{Table, Value};

use crate::error::CoreError;
use crate::tokens::{Encoding, EstimateFamily, EstimateTokenizer, Exactness, Tokenizer};

/// The built-in catalog data file.
const BUILTIN_TOML: &str = include_str!("../data/models.toml");

/// Prices are quoted per this many tokens.
const TOKENS_PER_PRICE_UNIT: f64 = 1_000_000.0;

/// Suffix segments (after the known name) that mark a snapshot of the same model rather than a
/// different model; all-digit segments (dates, `001`) count too.
const VERSION_WORDS: [&str; 3] = ["latest", "preview", "exp"];

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Chat / text generation.
    Chat,
    /// Embeddings: input tokens only.
    Embedding,
}

impl ModelKind {
    /// The catalog spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Chat => "chat",
            ModelKind::Embedding => "embedding",
        }
    }
}

/// List prices in USD per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pricing {
    /// Uncached input tokens.
    pub input_per_mtok: f64,
    /// Output tokens.
    pub output_per_mtok: f64,
    /// Input tokens read from the prompt cache; `None` means no discount (input price).
    pub cached_input_per_mtok: Option<f64>,
    /// Input tokens written to the prompt cache (Anthropic charges a surcharge for the write);
    /// `None` means writes cost the input price.
    pub cache_write_input_per_mtok: Option<f64>,
}

impl Pricing {
    /// Cost of the given token split; infallible because the split is already consistent.
    fn cost_of(&self, split: InputSplit, output: usize) -> Cost {
        let cached_rate = self.cached_input_per_mtok.unwrap_or(self.input_per_mtok);
        let write_rate = self
            .cache_write_input_per_mtok
            .unwrap_or(self.input_per_mtok);
        let input_usd = usd(split.fresh, self.input_per_mtok);
        let cached_input_usd = usd(split.cache_read, cached_rate);
        let cache_write_usd = usd(split.cache_write, write_rate);
        let output_usd = usd(output, self.output_per_mtok);
        Cost {
            input_usd,
            cached_input_usd,
            cache_write_usd,
            output_usd,
            total_usd: input_usd + cached_input_usd + cache_write_usd + output_usd,
        }
    }
}

/// How a prompt's input tokens divide by price: fresh, read from the prompt cache, written to it.
#[derive(Debug, Clone, Copy)]
struct InputSplit {
    fresh: usize,
    cache_read: usize,
    cache_write: usize,
}

fn usd(tokens: usize, per_mtok: f64) -> f64 {
    tokens as f64 * per_mtok / TOKENS_PER_PRICE_UNIT
}

/// A higher price tier that applies to the whole request once its input exceeds `above` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LongContextPricing {
    /// Input size (tokens, cached included) above which this tier applies.
    pub above: usize,
    /// The tier's prices.
    pub pricing: Pricing,
}

/// One model of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// Bare model id as the provider's API spells it, e.g. `gpt-4o`.
    pub name: String,
    /// Vendor, e.g. `openai`; the model is addressable as `provider/name`.
    pub provider: String,
    /// Chat or embedding.
    pub kind: ModelKind,
    /// Tokens accepted, prompt and reply together.
    pub context_window: usize,
    /// Largest reply in tokens (0 for embedding models).
    pub max_output_tokens: usize,
    /// Standard prices.
    pub pricing: Pricing,
    /// Optional tier for large prompts.
    pub long_context: Option<LongContextPricing>,
    /// Tokenizer hint: `o200k_base`, `cl100k_base`, `estimate:FAMILY` or `estimate`
    /// (see [`TokenizerHint`]).
    pub tokenizer: String,
    /// Other exact names of this model.
    pub aliases: Vec<String>,
}

impl ModelInfo {
    /// `provider/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.provider, self.name)
    }

    /// The prices that apply to a request with `input_tokens` of input (cached included).
    pub fn pricing_for(&self, input_tokens: usize) -> &Pricing {
        match &self.long_context {
            Some(tier) if input_tokens > tier.above => &tier.pricing,
            _ => &self.pricing,
        }
    }

    /// Cost of a request. `input_tokens` is the whole prompt as OpenAI reports it
    /// (`prompt_tokens`), of which `cached_input_tokens` were read from the prompt cache; those
    /// are priced at the cached rate and not again at the input rate.
    pub fn cost(
        &self,
        input_tokens: usize,
        output_tokens: usize,
        cached_input_tokens: usize,
    ) -> Result<Cost, CoreError> {
        self.cost_with_cache_writes(input_tokens, output_tokens, cached_input_tokens, 0)
    }

    /// [`ModelInfo::cost`] for providers that also report prompt-cache writes (Anthropic's
    /// `cache_creation_input_tokens`): `cache_write_tokens` more of `input_tokens` are priced at
    /// the cache-write rate instead of the input rate.
    pub fn cost_with_cache_writes(
        &self,
        input_tokens: usize,
        output_tokens: usize,
        cached_input_tokens: usize,
        cache_write_tokens: usize,
    ) -> Result<Cost, CoreError> {
        let fresh = input_tokens
            .checked_sub(cached_input_tokens)
            .and_then(|rest| rest.checked_sub(cache_write_tokens))
            .ok_or_else(|| CoreError::InvalidParameter {
                field: "cached_input_tokens",
                reason: format!(
                    "{cached_input_tokens} cached and {cache_write_tokens} cache-write tokens \
                     exceed the {input_tokens} input tokens they are part of"
                ),
            })?;
        let split = InputSplit {
            fresh,
            cache_read: cached_input_tokens,
            cache_write: cache_write_tokens,
        };
        Ok(self.pricing_for(input_tokens).cost_of(split, output_tokens))
    }

    /// Cost of `input_tokens` uncached input and `output_tokens` output.
    fn cost_uncached(&self, input_tokens: usize, output_tokens: usize) -> Cost {
        let split = InputSplit {
            fresh: input_tokens,
            cache_read: 0,
            cache_write: 0,
        };
        self.pricing_for(input_tokens).cost_of(split, output_tokens)
    }
}

/// Gives the tokenizer that counts for a model, e.g. [`builtin_tokenizer`], or a closure that
/// knows the local model's own tokenizer.
pub type TokenizerLookup = dyn Fn(&ModelInfo) -> Result<Box<dyn Tokenizer>, CoreError>;

/// The cost of one request in USD.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cost {
    /// Uncached input.
    pub input_usd: f64,
    /// Input read from the prompt cache.
    pub cached_input_usd: f64,
    /// Input written to the prompt cache.
    pub cache_write_usd: f64,
    /// Output.
    pub output_usd: f64,
    /// Sum of the four.
    pub total_usd: f64,
}

/// The set of known models.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    as_of: Option<String>,
    /// Keyed by the model's name as written.
    models: BTreeMap<String, ModelInfo>,
    /// Lower-cased names and aliases to the model's name.
    index: BTreeMap<String, String>,
    /// Lower-cased provider names (a lookup per priced request).
    providers: BTreeSet<String>,
}

impl Catalog {
    /// The catalog shipped in `data/models.toml`.
    pub fn builtin() -> Result<Catalog, CoreError> {
        Catalog::from_toml_str(BUILTIN_TOML)
    }

    /// A catalog from a complete data file (every entry has every required key).
    pub fn from_toml_str(text: &str) -> Result<Catalog, CoreError> {
        let mut catalog = Catalog::default();
        catalog.merge(CatalogPatch::from_toml_str(text)?)?;
        Ok(catalog)
    }

    /// Applies overrides: keys given for a known model (named by its name or an alias) replace
    /// its values, an unknown model is added (and then needs every required key). On error the
    /// catalog is left unchanged.
    pub fn merge(&mut self, patch: CatalogPatch) -> Result<(), CoreError> {
        let mut models = self.models.clone();
        for (name, entry) in patch.entries {
            // Entries earlier in this patch count: two entries for one model both apply.
            let existing = self
                .index
                .get(&name.to_ascii_lowercase())
                .and_then(|key| models.get(key))
                .or_else(|| models.get(&name))
                .cloned();
            let merged = entry.apply(&name, existing)?;
            models.insert(merged.name.clone(), merged);
        }
        let index = build_index(&models)?;
        self.providers = models
            .values()
            .map(|info| info.provider.to_ascii_lowercase())
            .collect();
        self.models = models;
        self.index = index;
        if patch.as_of.is_some() {
            self.as_of = patch.as_of;
        }
        Ok(())
    }

    /// The date of the price list (`as_of` in the data file), if given.
    pub fn as_of(&self) -> Option<&str> {
        self.as_of.as_deref()
    }

    /// All models, sorted by name.
    pub fn models(&self) -> impl Iterator<Item = &ModelInfo> {
        self.models.values()
    }

    /// Number of models.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether the catalog has no model.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// The model for `model` (`PROVIDER/MODEL`, a bare name, an alias or a dated id), or
    /// `UnknownModel` listing the known names.
    pub fn get(&self, model: &str) -> Result<&ModelInfo, CoreError> {
        self.find(model).ok_or_else(|| CoreError::UnknownModel {
            model: model.to_owned(),
            known: self.known_names().join(", "),
        })
    }

    /// Like [`Catalog::get`] without the error.
    ///
    /// A leading path segment is taken as a provider: a catalog provider must match the model's
    /// (`anthropic/gpt-4o` is unknown), any other prefix (a config provider name such as
    /// `upstream/`, or `models/` of Google's API) is skipped.
    pub fn find(&self, model: &str) -> Option<&ModelInfo> {
        let lowered = model.trim().to_ascii_lowercase();
        let mut candidate = lowered.as_str();
        let mut prefix: Option<&str> = None;
        loop {
            if let Some(info) = self.resolve_bare(candidate) {
                return match prefix {
                    Some(p) if self.is_provider(p) && !info.provider.eq_ignore_ascii_case(p) => {
                        None
                    }
                    _ => Some(info),
                };
            }
            let (head, rest) = candidate.split_once('/')?;
            prefix = Some(head);
            candidate = rest;
        }
    }

    /// Distinct providers, sorted.
    pub fn providers(&self) -> BTreeSet<&str> {
        self.models().map(|info| info.provider.as_str()).collect()
    }

    /// Names of all models, sorted.
    pub fn known_names(&self) -> Vec<&str> {
        self.models.keys().map(String::as_str).collect()
    }

    /// Cost of a request to `model`; see [`ModelInfo::cost`] for how cached tokens count.
    pub fn cost(
        &self,
        model: &str,
        input_tokens: usize,
        output_tokens: usize,
        cached_input_tokens: usize,
    ) -> Result<Cost, CoreError> {
        self.get(model)?
            .cost(input_tokens, output_tokens, cached_input_tokens)
    }

    /// The model meeting `requirement` whose cost for `input_tokens` in and `output_tokens` out
    /// is lowest (ties broken by `provider/name`), with that cost.
    pub fn cheapest_model(
        &self,
        requirement: &ModelRequirement,
        input_tokens: usize,
        output_tokens: usize,
    ) -> Option<(&ModelInfo, Cost)> {
        self.models
            .values()
            .filter(|info| requirement.is_met_by(info))
            .map(|info| (info, info.cost_uncached(input_tokens, output_tokens)))
            .min_by(|(a, a_cost), (b, b_cost)| {
                a_cost
                    .total_usd
                    .total_cmp(&b_cost.total_usd)
                    .then_with(|| a.id().cmp(&b.id()))
            })
    }

    /// Token count, chars per token, input cost and context share of `text` for every model,
    /// cheapest first. `lookup` gives the tokenizer for a model.
    pub fn compare_all(
        &self,
        text: &str,
        lookup: &TokenizerLookup,
    ) -> Result<TextComparison, CoreError> {
        compare(text, self.models.values(), lookup)
    }

    /// As [`Catalog::compare_all`] for the named models only (each resolved as by
    /// [`Catalog::get`]; a model named twice appears once).
    pub fn compare_models(
        &self,
        text: &str,
        models: &[&str],
        lookup: &TokenizerLookup,
    ) -> Result<TextComparison, CoreError> {
        let mut chosen: BTreeMap<&str, &ModelInfo> = BTreeMap::new();
        for model in models {
            let info = self.get(model)?;
            chosen.insert(info.name.as_str(), info);
        }
        compare(text, chosen.into_values(), lookup)
    }

    /// Exact name or alias first, else the longest known name that `name` extends by a
    /// version suffix.
    fn resolve_bare(&self, name: &str) -> Option<&ModelInfo> {
        if let Some(key) = self.index.get(name) {
            return self.models.get(key);
        }
        // A known name that `name` extends sorts before it, and every key between the two
        // starts with that known name: walking back from `name` over keys sharing its first
        // byte meets the longest such prefix first (a per-request lookup, not a full scan).
        let first = name.bytes().next()?;
        self.index
            .range::<str, _>((std::ops::Bound::Unbounded, std::ops::Bound::Excluded(name)))
            .rev()
            .take_while(|(known, _)| known.bytes().next() == Some(first))
            .find(|(known, _)| {
                name.strip_prefix(known.as_str())
                    .is_some_and(is_version_suffix)
            })
            .and_then(|(_, key)| self.models.get(key))
    }

    fn is_provider(&self, name: &str) -> bool {
        self.providers.contains(name)
    }
}

/// Whether `suffix` (what follows a known name) marks a snapshot: `-2024-08-06`, `-20241022`,
/// `-0613`, `-001`, `-latest`, `-preview-05-06`, `@20240620`.
fn is_version_suffix(suffix: &str) -> bool {
    let Some(rest) = suffix
        .strip_prefix('-')
        .or_else(|| suffix.strip_prefix('@'))
    else {
        return false;
    };
    rest.split('-').all(|segment| {
        !segment.is_empty()
            && (segment.bytes().all(|b| b.is_ascii_digit()) || VERSION_WORDS.contains(&segment))
    })
}

fn build_index(
    models: &BTreeMap<String, ModelInfo>,
) -> Result<BTreeMap<String, String>, CoreError> {
    let mut index: BTreeMap<String, String> = BTreeMap::new();
    for info in models.values() {
        insert_unique(&mut index, &info.name, &info.name, "name")?;
    }
    for info in models.values() {
        for alias in &info.aliases {
            insert_unique(&mut index, alias, &info.name, "aliases")?;
        }
    }
    Ok(index)
}

fn insert_unique(
    index: &mut BTreeMap<String, String>,
    key: &str,
    model: &str,
    field: &str,
) -> Result<(), CoreError> {
    let lowered = key.to_ascii_lowercase();
    match index.get(&lowered) {
        Some(owner) if owner != model || field == "name" => Err(CoreError::InvalidCatalog {
            path: entry_path(model, field),
            reason: format!("`{key}` is already a name or alias of model `{owner}`"),
        }),
        _ => {
            index.insert(lowered, model.to_owned());
            Ok(())
        }
    }
}

/// What a caller needs from a model, for [`Catalog::cheapest_model`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRequirement {
    /// Smallest acceptable context window.
    pub min_context_window: usize,
    /// Smallest acceptable output limit (0: any).
    pub min_output_tokens: usize,
    /// Chat or embedding.
    pub kind: ModelKind,
    /// Allowed providers (empty: any).
    pub providers: Vec<String>,
}

impl ModelRequirement {
    /// A chat model with at least `min_context_window` tokens of context.
    pub fn chat(min_context_window: usize) -> Self {
        ModelRequirement {
            min_context_window,
            min_output_tokens: 0,
            kind: ModelKind::Chat,
            providers: Vec::new(),
        }
    }

    /// Also require an output limit of at least `tokens`.
    pub fn with_min_output(mut self, tokens: usize) -> Self {
        self.min_output_tokens = tokens;
        self
    }

    /// Only consider these providers.
    pub fn with_providers<S: Into<String>>(
        mut self,
        providers: impl IntoIterator<Item = S>,
    ) -> Self {
        self.providers = providers.into_iter().map(Into::into).collect();
        self
    }

    /// Whether `info` meets the requirement.
    pub fn is_met_by(&self, info: &ModelInfo) -> bool {
        info.kind == self.kind
            && info.context_window >= self.min_context_window
            && info.max_output_tokens >= self.min_output_tokens
            && (self.providers.is_empty()
                || self
                    .providers
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case(&info.provider)))
    }
}

/// How the catalog's `tokenizer` key is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerHint {
    /// An exact, public OpenAI encoding.
    Encoding(Encoding),
    /// No public tokenizer: estimate for this family (`estimate:FAMILY`), or for the family
    /// recognised in the model or provider name (`estimate`).
    Estimate(Option<EstimateFamily>),
}

impl TokenizerHint {
    /// Reads a hint; `None` when it is none of the known forms.
    pub fn parse(hint: &str) -> Option<TokenizerHint> {
        if let Ok(encoding) = hint.parse::<Encoding>() {
            return Some(TokenizerHint::Encoding(encoding));
        }
        match hint.trim().split_once(':') {
            None if hint.trim().eq_ignore_ascii_case("estimate") => {
                Some(TokenizerHint::Estimate(None))
            }
            Some((head, family)) if head.eq_ignore_ascii_case("estimate") => EstimateFamily::ALL
                .into_iter()
                .find(|f| f.name().eq_ignore_ascii_case(family))
                .map(|f| TokenizerHint::Estimate(Some(f))),
            _ => None,
        }
    }

    /// The accepted forms, for error messages.
    fn known_forms() -> String {
        let encodings = Encoding::ALL.map(Encoding::name);
        let families = EstimateFamily::ALL.map(|f| format!("estimate:{}", f.name()));
        format!(
            "{}, estimate, {}",
            encodings.join(", "),
            families.join(", ")
        )
    }
}

/// The built-in tokenizer for a catalog model, from its hint: the exact encoding, or the
/// flagged estimate of its family. Pass it to [`Catalog::compare_all`] when no other tokenizer
/// (such as the local model's own) is at hand.
pub fn builtin_tokenizer(info: &ModelInfo) -> Result<Box<dyn Tokenizer>, CoreError> {
    let unreadable = |reason: String| CoreError::InvalidCatalog {
        path: entry_path(&info.name, "tokenizer"),
        reason,
    };
    match TokenizerHint::parse(&info.tokenizer) {
        Some(TokenizerHint::Encoding(encoding)) => Ok(Box::new(encoding)),
        Some(TokenizerHint::Estimate(Some(family))) => Ok(Box::new(EstimateTokenizer::new(family))),
        Some(TokenizerHint::Estimate(None)) => EstimateFamily::for_model(&info.name)
            .or_else(|| EstimateFamily::for_model(&info.provider))
            .map(|family| Box::new(EstimateTokenizer::new(family)) as Box<dyn Tokenizer>)
            .ok_or_else(|| {
                unreadable(format!(
                    "`estimate` but no model family is recognised in `{}`; name one: {}",
                    info.id(),
                    TokenizerHint::known_forms()
                ))
            }),
        None => Err(unreadable(format!(
            "unknown tokenizer `{}`; known: {}",
            info.tokenizer,
            TokenizerHint::known_forms()
        ))),
    }
}

/// Token figures of a text under one tokenizer (the seed's TokenAnalyzer).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextAnalysis {
    /// Tokenizer name.
    pub tokenizer: String,
    /// Whether `tokens` is exact.
    pub exactness: Exactness,
    /// Tokens in the text.
    pub tokens: usize,
    /// Unicode scalar values in the text.
    pub chars: usize,
    /// `chars / tokens` (0 for an empty text).
    pub chars_per_token: f64,
}

/// Counts `text` with `tokenizer` and relates tokens to characters.
pub fn analyze_text(text: &str, tokenizer: &dyn Tokenizer) -> TextAnalysis {
    let tokens = tokenizer.count(text);
    let chars = text.chars().count();
    TextAnalysis {
        tokenizer: tokenizer.name().to_owned(),
        exactness: tokenizer.exactness(),
        tokens,
        chars,
        chars_per_token: ratio(chars, tokens),
    }
}

fn ratio(numerator: usize, denominator: usize) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

/// One model's row of a [`TextComparison`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComparisonRow {
    /// `provider/name`.
    pub model: String,
    /// Vendor.
    pub provider: String,
    /// Tokenizer that counted.
    pub tokenizer: String,
    /// Whether `tokens` is exact or an estimate.
    pub exactness: Exactness,
    /// Tokens of the text.
    pub tokens: usize,
    /// Characters per token.
    pub chars_per_token: f64,
    /// Cost of sending the text as input, in USD.
    pub input_cost_usd: f64,
    /// The model's context window.
    pub context_window: usize,
    /// The model's output limit.
    pub max_output_tokens: usize,
    /// `tokens / context_window`.
    pub context_share: f64,
}

impl ComparisonRow {
    /// Whether the text plus `reserved_output` reply tokens fit this model.
    pub fn fits(&self, reserved_output: usize) -> bool {
        reserved_output <= self.max_output_tokens
            && self.tokens.saturating_add(reserved_output) <= self.context_window
    }
}

/// A text compared across models, rows sorted by input cost (then by model id).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextComparison {
    /// Unicode scalar values in the text.
    pub chars: usize,
    /// One row per model, cheapest first.
    pub rows: Vec<ComparisonRow>,
}

impl TextComparison {
    /// The cheapest row whose model takes the text plus `reserved_output` reply tokens.
    pub fn cheapest_fitting(&self, reserved_output: usize) -> Option<&ComparisonRow> {
        self.rows.iter().find(|row| row.fits(reserved_output))
    }
}

/// Builds the comparison; texts are counted once per distinct tokenizer name, so tokenizers that
/// share a name must count alike.
fn compare<'a>(
    text: &str,
    models: impl Iterator<Item = &'a ModelInfo>,
    lookup: &TokenizerLookup,
) -> Result<TextComparison, CoreError> {
    let chars = text.chars().count();
    let mut counted: HashMap<String, (usize, Exactness)> = HashMap::new();
    let mut rows = Vec::new();
    for info in models {
        let tokenizer = lookup(info)?;
        let name = tokenizer.name().to_owned();
        let (tokens, exactness) = *counted
            .entry(name.clone())
            .or_insert_with(|| (tokenizer.count(text), tokenizer.exactness()));
        rows.push(ComparisonRow {
            model: info.id(),
            provider: info.provider.clone(),
            tokenizer: name,
            exactness,
            tokens,
            chars_per_token: ratio(chars, tokens),
            input_cost_usd: info.cost_uncached(tokens, 0).total_usd,
            context_window: info.context_window,
            max_output_tokens: info.max_output_tokens,
            context_share: ratio(tokens, info.context_window),
        });
    }
    rows.sort_by(|a, b| {
        a.input_cost_usd
            .total_cmp(&b.input_cost_usd)
            .then_with(|| a.model.cmp(&b.model))
    });
    Ok(TextComparison { chars, rows })
}

/// Catalog entries read from TOML in which every key is optional, to be merged into a
/// [`Catalog`]. The format is that of `data/models.toml`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogPatch {
    as_of: Option<String>,
    entries: Vec<(String, ModelPatch)>,
}

impl CatalogPatch {
    /// Reads a document with an optional `as_of` string and a `[models."NAME"]` table per model.
    pub fn from_toml_str(text: &str) -> Result<CatalogPatch, CoreError> {
        let document: Table =
            text.parse()
                .map_err(|error: toml::de::Error| CoreError::InvalidCatalog {
                    path: syntax_location(text, &error),
                    reason: error.message().to_owned(),
                })?;
        let mut patch = CatalogPatch::default();
        for (key, value) in &document {
            match key.as_str() {
                "as_of" => patch.as_of = Some(string_value(value, key)?),
                "models" => patch.entries = entries_of(table_value(value, key)?)?,
                other => {
                    return Err(CoreError::InvalidCatalog {
                        path: other.to_owned(),
                        reason: "unknown key; expected `as_of` or `models`".to_owned(),
                    });
                }
            }
        }
        Ok(patch)
    }

    /// Reads the entries of a `models` table already parsed from a config file
    /// (keys are model names, values their tables).
    pub fn from_models_table(models: &Table) -> Result<CatalogPatch, CoreError> {
        Ok(CatalogPatch {
            as_of: None,
            entries: entries_of(models)?,
        })
    }

    /// Number of model entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Line and column of a TOML syntax error.
fn syntax_location(text: &str, error: &toml::de::Error) -> String {
    let Some(span) = error.span() else {
        return "document".to_owned();
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}")
}

fn entries_of(models: &Table) -> Result<Vec<(String, ModelPatch)>, CoreError> {
    models
        .iter()
        .map(|(name, value)| {
            if name.trim().is_empty() {
                return Err(CoreError::InvalidCatalog {
                    path: "models".to_owned(),
                    reason: "a model name is empty".to_owned(),
                });
            }
            let table = value.as_table().ok_or_else(|| CoreError::InvalidCatalog {
                path: entry_path(name, ""),
                reason: format!("expected a table of model keys, found {}", value.type_str()),
            })?;
            Ok((name.clone(), ModelPatch::from_table(name, table)?))
        })
        .collect()
}

/// `models."gpt-4.1".key`, quoting names that are not bare TOML keys.
fn entry_path(model: &str, key: &str) -> String {
    let bare = !model.is_empty()
        && model
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let name = if bare {
        model.to_owned()
    } else {
        format!("\"{model}\"")
    };
    if key.is_empty() {
        format!("models.{name}")
    } else {
        format!("models.{name}.{key}")
    }
}

/// One entry with every key optional.
#[derive(Debug, Clone, Default, PartialEq)]
struct ModelPatch {
    provider: Option<String>,
    kind: Option<ModelKind>,
    context_window: Option<usize>,
    max_output_tokens: Option<usize>,
    input_per_mtok: Option<f64>,
    output_per_mtok: Option<f64>,
    cached_input_per_mtok: Option<f64>,
    cache_write_input_per_mtok: Option<f64>,
    long_context: Option<LongContextPricing>,
    tokenizer: Option<String>,
    aliases: Option<Vec<String>>,
}

const MODEL_KEYS: &str = "provider, kind, context_window, max_output_tokens, input_per_mtok, \
                          output_per_mtok, cached_input_per_mtok, cache_write_input_per_mtok, \
                          long_context, tokenizer, aliases";

impl ModelPatch {
    fn from_table(model: &str, table: &Table) -> Result<ModelPatch, CoreError> {
        let mut patch = ModelPatch::default();
        for (key, value) in table {
            let path = entry_path(model, key);
            match key.as_str() {
                "provider" => patch.provider = Some(string_value(value, &path)?),
                "kind" => patch.kind = Some(kind_value(value, &path)?),
                "context_window" => patch.context_window = Some(count_value(value, &path, 1)?),
                "max_output_tokens" => {
                    patch.max_output_tokens = Some(count_value(value, &path, 0)?);
                }
                "input_per_mtok" => patch.input_per_mtok = Some(price_value(value, &path)?),
                "output_per_mtok" => patch.output_per_mtok = Some(price_value(value, &path)?),
                "cached_input_per_mtok" => {
                    patch.cached_input_per_mtok = Some(price_value(value, &path)?);
                }
                "cache_write_input_per_mtok" => {
                    patch.cache_write_input_per_mtok = Some(price_value(value, &path)?);
                }
                "long_context" => patch.long_context = Some(long_context_value(value, &path)?),
                "tokenizer" => patch.tokenizer = Some(tokenizer_value(value, &path)?),
                "aliases" => patch.aliases = Some(aliases_value(value, &path)?),
                _ => {
                    return Err(CoreError::InvalidCatalog {
                        path,
                        reason: format!("unknown key; known keys: {MODEL_KEYS}"),
                    });
                }
            }
        }
        Ok(patch)
    }

    /// Applies this patch over `base` (the current entry, if any) and checks the result.
    fn apply(self, model: &str, base: Option<ModelInfo>) -> Result<ModelInfo, CoreError> {
        let missing = |key: &str| CoreError::InvalidCatalog {
            path: entry_path(model, key),
            reason: "required key is missing (the model is not in the catalog yet)".to_owned(),
        };
        let info = match base {
            Some(mut info) => {
                self.overlay(&mut info);
                info
            }
            None => ModelInfo {
                name: model.to_owned(),
                provider: self.provider.ok_or_else(|| missing("provider"))?,
                kind: self.kind.unwrap_or(ModelKind::Chat),
                context_window: self
                    .context_window
                    .ok_or_else(|| missing("context_window"))?,
                max_output_tokens: self
                    .max_output_tokens
                    .ok_or_else(|| missing("max_output_tokens"))?,
                pricing: Pricing {
                    input_per_mtok: self
                        .input_per_mtok
                        .ok_or_else(|| missing("input_per_mtok"))?,
                    output_per_mtok: self
                        .output_per_mtok
                        .ok_or_else(|| missing("output_per_mtok"))?,
                    cached_input_per_mtok: self.cached_input_per_mtok,
                    cache_write_input_per_mtok: self.cache_write_input_per_mtok,
                },
                long_context: self.long_context,
                tokenizer: self.tokenizer.ok_or_else(|| missing("tokenizer"))?,
                aliases: self.aliases.unwrap_or_default(),
            },
        };
        check_limits(&info)?;
        Ok(info)
    }

    fn overlay(self, info: &mut ModelInfo) {
        if let Some(v) = self.provider {
            info.provider = v;
        }
        if let Some(v) = self.kind {
            info.kind = v;
        }
        if let Some(v) = self.context_window {
            info.context_window = v;
        }
        if let Some(v) = self.max_output_tokens {
            info.max_output_tokens = v;
        }
        if let Some(v) = self.input_per_mtok {
            info.pricing.input_per_mtok = v;
        }
        if let Some(v) = self.output_per_mtok {
            info.pricing.output_per_mtok = v;
        }
        if let Some(v) = self.cached_input_per_mtok {
            info.pricing.cached_input_per_mtok = Some(v);
        }
        if let Some(v) = self.cache_write_input_per_mtok {
            info.pricing.cache_write_input_per_mtok = Some(v);
        }
        if let Some(v) = self.long_context {
            info.long_context = Some(v);
        }
        if let Some(v) = self.tokenizer {
            info.tokenizer = v;
        }
        if let Some(v) = self.aliases {
            info.aliases = v;
        }
    }
}

fn check_limits(info: &ModelInfo) -> Result<(), CoreError> {
    if info.max_output_tokens > info.context_window {
        return Err(CoreError::InvalidCatalog {
            path: entry_path(&info.name, "max_output_tokens"),
            reason: format!(
                "{} exceeds the context window of {}",
                info.max_output_tokens, info.context_window
            ),
        });
    }
    if info.kind == ModelKind::Chat && info.max_output_tokens == 0 {
        return Err(CoreError::InvalidCatalog {
            path: entry_path(&info.name, "max_output_tokens"),
            reason: "a chat model needs a positive output limit".to_owned(),
        });
    }
    Ok(())
}

fn type_error(path: &str, expected: &str, value: &Value) -> CoreError {
    CoreError::InvalidCatalog {
        path: path.to_owned(),
        reason: format!("expected {expected}, found {}", value.type_str()),
    }
}

fn string_value(value: &Value, path: &str) -> Result<String, CoreError> {
    match value.as_str() {
        Some(s) if !s.trim().is_empty() => Ok(s.to_owned()),
        Some(_) => Err(CoreError::InvalidCatalog {
            path: path.to_owned(),
            reason: "must not be empty".to_owned(),
        }),
        None => Err(type_error(path, "a string", value)),
    }
}

fn tokenizer_value(value: &Value, path: &str) -> Result<String, CoreError> {
    let hint = string_value(value, path)?;
    match TokenizerHint::parse(&hint) {
        Some(_) => Ok(hint),
        None => Err(CoreError::InvalidCatalog {
            path: path.to_owned(),
            reason: format!(
                "unknown tokenizer `{hint}`; known: {}",
                TokenizerHint::known_forms()
            ),
        }),
    }
}

fn kind_value(value: &Value, path: &str) -> Result<ModelKind, CoreError> {
    match string_value(value, path)?.as_str() {
        "chat" => Ok(ModelKind::Chat),
        "embedding" => Ok(ModelKind::Embedding),
        other => Err(CoreError::InvalidCatalog {
            path: path.to_owned(),
            reason: format!("unknown kind `{other}`; expected `chat` or `embedding`"),
        }),
    }
}

fn count_value(value: &Value, path: &str, minimum: usize) -> Result<usize, CoreError> {
    let integer = value
        .as_integer()
        .ok_or_else(|| type_error(path, "an integer", value))?;
    match usize::try_from(integer) {
        Ok(count) if count >= minimum => Ok(count),
        _ => Err(CoreError::InvalidCatalog {
            path: path.to_owned(),
            reason: format!("{integer} is out of range; expected an integer >= {minimum}"),
        }),
    }
}

fn price_value(value: &Value, path: &str) -> Result<f64, CoreError> {
    let price = match value {
        Value::Float(f) => *f,
        Value::Integer(i) => *i as f64,
        other => return Err(type_error(path, "a number (USD per 1M tokens)", other)),
    };
    if price.is_finite() && price >= 0.0 {
        Ok(price)
    } else {
        Err(CoreError::InvalidCatalog {
            path: path.to_owned(),
            reason: format!("{price} is not a price; expected a finite number >= 0"),
        })
    }
}

fn aliases_value(value: &Value, path: &str) -> Result<Vec<String>, CoreError> {
    let items = value
        .as_array()
        .ok_or_else(|| type_error(path, "an array of strings", value))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| string_value(item, &format!("{path}[{i}]")))
        .collect()
}

fn table_value<'v>(value: &'v Value, path: &str) -> Result<&'v Table, CoreError> {
    value
        .as_table()
        .ok_or_else(|| type_error(path, "a table", value))
}

fn long_context_value(value: &Value, path: &str) -> Result<LongContextPricing, CoreError> {
    let table = table_value(value, path)?;
    let mut above = None;
    let mut input = None;
    let mut output = None;
    let mut cached = None;
    let mut write = None;
    for (key, item) in table {
        let item_path = format!("{path}.{key}");
        match key.as_str() {
            "above" => above = Some(count_value(item, &item_path, 1)?),
            "input_per_mtok" => input = Some(price_value(item, &item_path)?),
            "output_per_mtok" => output = Some(price_value(item, &item_path)?),
            "cached_input_per_mtok" => cached = Some(price_value(item, &item_path)?),
            "cache_write_input_per_mtok" => write = Some(price_value(item, &item_path)?),
            _ => {
                return Err(CoreError::InvalidCatalog {
                    path: item_path,
                    reason: "unknown key; known keys: above, input_per_mtok, output_per_mtok, \
                             cached_input_per_mtok, cache_write_input_per_mtok"
                        .to_owned(),
                });
            }
        }
    }
    let missing = |key: &str| CoreError::InvalidCatalog {
        path: format!("{path}.{key}"),
        reason: "required key is missing".to_owned(),
    };
    Ok(LongContextPricing {
        above: above.ok_or_else(|| missing("above"))?,
        pricing: Pricing {
            input_per_mtok: input.ok_or_else(|| missing("input_per_mtok"))?,
            output_per_mtok: output.ok_or_else(|| missing("output_per_mtok"))?,
            cached_input_per_mtok: cached,
            cache_write_input_per_mtok: write,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts whitespace-separated words; stands in for a real tokenizer.
    struct Words {
        name: String,
        exactness: Exactness,
        calls: Arc<AtomicUsize>,
    }

    impl Tokenizer for Words {
        fn name(&self) -> &str {
            &self.name
        }
        fn exactness(&self) -> Exactness {
            self.exactness
        }
        fn count(&self, text: &str) -> usize {
            self.calls.fetch_add(1, Ordering::SeqCst);
            text.split_whitespace().count()
        }
    }

    /// A lookup that gives every model a word counter named after its tokenizer hint; exact for
    /// OpenAI encodings, estimate otherwise. Returns the call counter.
    fn word_lookup() -> (Box<TokenizerLookup>, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let shared = Arc::clone(&calls);
        let lookup = move |info: &ModelInfo| -> Result<Box<dyn Tokenizer>, CoreError> {
            let exactness = if info.tokenizer.ends_with("_base") {
                Exactness::Exact
            } else {
                Exactness::Estimate
            };
            Ok(Box::new(Words {
                name: info.tokenizer.clone(),
                exactness,
                calls: Arc::clone(&shared),
            }))
        };
        (Box::new(lookup), calls)
    }

    fn builtin() -> Catalog {
        Catalog::builtin().unwrap()
    }

    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= 1e-12 * expected.abs().max(1.0)
    }

    const SMALL: &str = r#"
        as_of = "2025-01-01"
        [models.cheap]
        provider = "acme"
        context_window = 1000
        max_output_tokens = 100
        input_per_mtok = 1
        output_per_mtok = 2
        tokenizer = "estimate"
        [models.big]
        provider = "acme"
        context_window = 100000
        max_output_tokens = 4000
        input_per_mtok = 3.0
        output_per_mtok = 6.0
        cached_input_per_mtok = 0.5
        tokenizer = "o200k_base"
        aliases = ["big-alias"]
        [models.embed]
        provider = "other"
        kind = "embedding"
        context_window = 512
        max_output_tokens = 0
        input_per_mtok = 0.1
        output_per_mtok = 0
        tokenizer = "estimate"
    "#;

    fn small() -> Catalog {
        Catalog::from_toml_str(SMALL).unwrap()
    }

    #[test]
    fn builtin_has_the_required_models() {
        let catalog = builtin();
        assert_eq!(catalog.as_of(), Some("2025-11-30"));
        for name in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4.1-nano",
            "o3",
            "o4-mini",
            "gpt-3.5-turbo",
            "gpt-4-turbo",
            "gpt-4",
            "text-embedding-3-small",
            "text-embedding-3-large",
            "claude-3-5-sonnet",
            "claude-3-7-sonnet",
            "claude-sonnet-4",
            "claude-3-5-haiku",
            "claude-opus-4",
            "gemini-1.5-flash",
            "gemini-1.5-pro",
            "gemini-2.0-flash",
            "gemini-2.5-pro",
            "mistral-large",
            "local/smollm2-135m",
            "local/all-minilm-l6-v2",
        ] {
            assert!(catalog.find(name).is_some(), "{name} missing");
        }
        let providers: Vec<&str> = catalog.providers().into_iter().collect();
        assert_eq!(
            providers,
            ["anthropic", "google", "local", "mistral", "openai"]
        );
    }

    #[test]
    fn builtin_figures_match_the_seed_and_the_brief() {
        let catalog = builtin();
        let check = |model: &str, context: usize, output: usize, input: f64, out: f64| {
            let info = catalog.get(model).unwrap();
            assert_eq!(
                (info.context_window, info.max_output_tokens),
                (context, output),
                "{model}"
            );
            assert!(close(info.pricing.input_per_mtok, input), "{model}");
            assert!(close(info.pricing.output_per_mtok, out), "{model}");
        };
        // The seed's GPT-4 price ($0.03 / $0.06 per 1K) and its MODEL_LIMITS table.
        check("gpt-4", 8192, 8192, 30.0, 60.0);
        check("gpt-4-turbo", 128_000, 4096, 10.0, 30.0);
        check("gpt-4o", 128_000, 16_384, 2.5, 10.0);
        check("claude-3-opus", 200_000, 4096, 15.0, 75.0);
        check("local/smollm2-135m", 8192, 8192, 0.0, 0.0);
        check("local/all-minilm-l6-v2", 256, 0, 0.0, 0.0);
    }

    #[test]
    fn builtin_openai_models_name_an_exact_encoding() {
        for info in builtin().models() {
            let expected_exact = info.provider == "openai";
            let exact = matches!(info.tokenizer.as_str(), "o200k_base" | "cl100k_base");
            assert_eq!(exact, expected_exact, "{}", info.id());
        }
    }

    /// The lookup as a full scan of the index: the longest known name `name` extends with a
    /// version suffix.
    fn resolve_by_scan<'a>(catalog: &'a Catalog, name: &str) -> Option<&'a ModelInfo> {
        if let Some(key) = catalog.index.get(name) {
            return catalog.models.get(key);
        }
        catalog
            .index
            .iter()
            .filter(|(known, _)| {
                name.strip_prefix(known.as_str())
                    .is_some_and(is_version_suffix)
            })
            .max_by_key(|(known, _)| known.len())
            .and_then(|(_, key)| catalog.models.get(key))
    }

    proptest::proptest! {
        #[test]
        fn the_bounded_walk_finds_what_a_full_scan_finds(
            pick in 0usize..1000,
            suffix in proptest::sample::select(vec![
                "", "-2024-08-06", "-0613", "@20240620", "-latest", "-preview-05-06", "-mini",
                "-", "x", "-001-exp", ".5", "-2024-", "/x",
            ]),
            cut in 0usize..4,
            noise in "[a-z0-9.-]{0,6}",
        ) {
            let catalog = builtin();
            let names = catalog.known_names();
            let known = names[pick % names.len()].to_ascii_lowercase();
            let stem = &known[..known.len().saturating_sub(cut)];
            for name in [format!("{known}{suffix}"), format!("{stem}{suffix}"), format!("{noise}{suffix}")] {
                let walked = catalog.resolve_bare(&name).map(|info| &info.name);
                let scanned = resolve_by_scan(&catalog, &name).map(|info| &info.name);
                proptest::prop_assert_eq!(walked, scanned, "{}", name);
            }
        }
    }

    fn check_resolve(catalog: &Catalog, query: &str, expected: Option<&str>) {
        let found = catalog.find(query).map(|info| info.name.as_str());
        assert_eq!(found, expected, "lookup of {query:?}");
    }

    #[test]
    fn lookups_accept_provider_prefixes_aliases_and_dated_ids() {
        let catalog = builtin();
        let cases: &[(&str, Option<&str>)] = &[
            ("gpt-4o", Some("gpt-4o")),
            ("openai/gpt-4o", Some("gpt-4o")),
            ("OpenAI/GPT-4o", Some("gpt-4o")),
            (" gpt-4o ", Some("gpt-4o")),
            ("gpt-4o-2024-08-06", Some("gpt-4o")),
            ("gpt-4o-2024-05-13", Some("gpt-4o-2024-05-13")),
            ("gpt-4o-mini-2024-07-18", Some("gpt-4o-mini")),
            ("gpt-4.1-nano-2025-04-14", Some("gpt-4.1-nano")),
            ("gpt-4-0613", Some("gpt-4")),
            ("gpt-4-0125-preview", Some("gpt-4-turbo")),
            ("gpt-4-turbo-2024-04-09", Some("gpt-4-turbo")),
            ("gpt-3.5-turbo-0125", Some("gpt-3.5-turbo")),
            ("o3-2025-04-16", Some("o3")),
            ("o3-mini-2025-01-31", Some("o3-mini")),
            ("claude-3-5-sonnet-20241022", Some("claude-3-5-sonnet")),
            ("claude-3-5-sonnet-latest", Some("claude-3-5-sonnet")),
            ("claude-3-5-sonnet@20240620", Some("claude-3-5-sonnet")),
            (
                "anthropic/claude-sonnet-4-20250514",
                Some("claude-sonnet-4"),
            ),
            ("claude-sonnet-4-5-20250929", Some("claude-sonnet-4-5")),
            ("claude-4-sonnet", Some("claude-sonnet-4")),
            ("claude-3.5-haiku", Some("claude-3-5-haiku")),
            ("gemini-2.0-flash-001", Some("gemini-2.0-flash")),
            ("gemini-2.0-flash-lite-001", Some("gemini-2.0-flash-lite")),
            ("gemini-2.5-flash-preview-05-20", Some("gemini-2.5-flash")),
            (
                "gemini-2.5-flash-lite-preview-06-17",
                Some("gemini-2.5-flash-lite"),
            ),
            ("models/gemini-2.5-pro", Some("gemini-2.5-pro")),
            ("google/gemini-1.5-pro-002", Some("gemini-1.5-pro")),
            ("mistral-large-2411", Some("mistral-large")),
            ("mistral/mistral-small-latest", Some("mistral-small")),
            ("upstream/gpt-4o-mini", Some("gpt-4o-mini")),
            ("openrouter/openai/gpt-4o", Some("gpt-4o")),
            ("local/smollm2-135m", Some("smollm2-135m")),
            ("smollm2-135m", Some("smollm2-135m")),
            // A known provider that is not the model's.
            ("anthropic/gpt-4o", None),
            ("openai/smollm2-135m", None),
            // Different models that merely share a prefix.
            ("gpt-4-32k", None),
            ("gpt-4o-audio-preview", None),
            ("o3-pro", None),
            ("gpt-5.1", None),
            ("gpt-4o-", None),
            ("gpt-4o-2024--06", None),
            ("gpt", None),
            ("", None),
            ("openai/", None),
        ];
        for (query, expected) in cases {
            check_resolve(&catalog, query, *expected);
        }
    }

    #[test]
    fn unknown_model_lists_the_known_names() {
        let err = small().get("gpt-9").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown model `gpt-9`; known models: big, cheap, embed"
        );
    }

    #[test]
    fn cost_prices_cached_tokens_once_at_the_cached_rate() {
        let catalog = builtin();
        let cases: &[(&str, usize, usize, usize, f64)] = &[
            ("gpt-4o", 1_000_000, 1_000_000, 0, 12.5),
            ("gpt-4o", 1_000, 0, 400, (600.0 * 2.5 + 400.0 * 1.25) / 1e6),
            ("gpt-4o", 1_000, 0, 1_000, 1_000.0 * 1.25 / 1e6),
            ("gpt-4", 1_000, 500, 0, 0.03 + 0.03),
            // No cache price: cached input costs the input rate.
            ("gpt-4", 1_000, 0, 600, 0.03),
            ("text-embedding-3-small", 1_000_000, 0, 0, 0.02),
            ("local/smollm2-135m", 5_000, 5_000, 0, 0.0),
            // Long-context tier: the whole request at the higher price once input exceeds 200k.
            ("gemini-2.5-pro", 200_000, 1_000, 0, 0.25 + 0.01),
            (
                "gemini-2.5-pro",
                200_001,
                1_000,
                0,
                200_001.0 * 2.5 / 1e6 + 0.015,
            ),
            (
                "gemini-2.5-pro",
                300_000,
                0,
                100_000,
                200_000.0 * 2.5 / 1e6 + 100_000.0 * 0.25 / 1e6,
            ),
        ];
        for &(model, input, output, cached, expected) in cases {
            let cost = catalog.cost(model, input, output, cached).unwrap();
            assert!(
                close(cost.total_usd, expected),
                "{model} {input}/{output}/{cached}: {} != {expected}",
                cost.total_usd
            );
            let parts = cost.input_usd + cost.cached_input_usd + cost.output_usd;
            assert!(close(parts, cost.total_usd));
        }
    }

    #[test]
    fn cache_writes_cost_the_write_rate_and_reads_the_read_rate() {
        let sonnet = builtin().get("claude-sonnet-4-5").unwrap().clone();
        // 10k prompt tokens: 2k fresh, 3k read from the cache, 5k written to it.
        let cost = sonnet
            .cost_with_cache_writes(10_000, 1_000, 3_000, 5_000)
            .unwrap();
        let expected = (2_000.0 * 3.0 + 3_000.0 * 0.30 + 5_000.0 * 3.75 + 1_000.0 * 15.0) / 1e6;
        assert!(close(cost.total_usd, expected), "{cost:?}");
        assert!(close(cost.cache_write_usd, 5_000.0 * 3.75 / 1e6));
        // Without a write price, writes cost the input rate.
        let gpt = builtin().get("gpt-4o").unwrap().clone();
        let plain = gpt.cost_with_cache_writes(1_000, 0, 0, 400).unwrap();
        assert!(close(
            plain.total_usd,
            gpt.cost(1_000, 0, 0).unwrap().total_usd
        ));
        assert!(sonnet.cost_with_cache_writes(10, 0, 6, 5).is_err());
        // An override may set the write price alone.
        let mut catalog = builtin();
        catalog
            .merge(
                CatalogPatch::from_toml_str(
                    "[models.\"claude-sonnet-4-5\"]\ncache_write_input_per_mtok = 6.0\n",
                )
                .unwrap(),
            )
            .unwrap();
        let custom = catalog.get("claude-sonnet-4-5").unwrap();
        assert_eq!(custom.pricing.cache_write_input_per_mtok, Some(6.0));
        assert_eq!(custom.pricing.input_per_mtok, 3.0);
    }

    #[test]
    fn cost_rejects_more_cached_than_input_tokens() {
        let err = builtin().cost("gpt-4o", 10, 0, 11).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid generation parameter `cached_input_tokens`: 11 cached and 0 cache-write \
             tokens exceed the 10 input tokens they are part of"
        );
        assert!(matches!(
            builtin().cost("nope", 1, 1, 0),
            Err(CoreError::UnknownModel { .. })
        ));
    }

    fn check_invalid(toml_text: &str, expected_path: &str, expected_reason: &str) {
        let err = Catalog::from_toml_str(toml_text).unwrap_err();
        match &err {
            CoreError::InvalidCatalog { path, reason } => {
                assert_eq!(path, expected_path, "{toml_text}");
                assert!(
                    reason.contains(expected_reason),
                    "{reason:?} lacks {expected_reason:?}"
                );
            }
            other => panic!("unexpected error {other:?}"),
        }
    }

    const ENTRY: &str = "provider = \"p\"\ncontext_window = 100\nmax_output_tokens = 10\n\
                         input_per_mtok = 1\noutput_per_mtok = 1\ntokenizer = \"estimate\"\n";

    #[test]
    fn parse_errors_name_the_entry_and_key() {
        let cases: Vec<(String, &str, &str)> = vec![
            ("as_of = \n".into(), "line 1, column 9", ""),
            ("colour = 1\n".into(), "colour", "unknown key"),
            (
                "models = 3\n".into(),
                "models",
                "expected a table, found integer",
            ),
            (
                "[models]\nm = 1\n".into(),
                "models.m",
                "expected a table of model keys",
            ),
            (
                format!("[models.m]\n{ENTRY}contxt = 5\n"),
                "models.m.contxt",
                "unknown key; known keys: provider",
            ),
            (
                "[models.\"gpt-4.1\"]\ncontext_window = \"big\"\n".into(),
                "models.\"gpt-4.1\".context_window",
                "expected an integer, found string",
            ),
            (
                "[models.m]\ncontext_window = 0\n".into(),
                "models.m.context_window",
                "expected an integer >= 1",
            ),
            (
                "[models.m]\nmax_output_tokens = -1\n".into(),
                "models.m.max_output_tokens",
                "-1 is out of range",
            ),
            (
                "[models.m]\ninput_per_mtok = -0.5\n".into(),
                "models.m.input_per_mtok",
                "expected a finite number >= 0",
            ),
            (
                "[models.m]\noutput_per_mtok = nan\n".into(),
                "models.m.output_per_mtok",
                "expected a finite number >= 0",
            ),
            (
                "[models.m]\ninput_per_mtok = \"1\"\n".into(),
                "models.m.input_per_mtok",
                "expected a number",
            ),
            (
                "[models.m]\nprovider = \"\"\n".into(),
                "models.m.provider",
                "must not be empty",
            ),
            (
                "[models.m]\ntokenizer = \"o200k\"\n".into(),
                "models.m.tokenizer",
                "unknown tokenizer `o200k`; known: o200k_base, cl100k_base, estimate, estimate:anthropic",
            ),
            (
                "[models.m]\ntokenizer = \"estimate:klingon\"\n".into(),
                "models.m.tokenizer",
                "unknown tokenizer `estimate:klingon`",
            ),
            (
                "[models.m]\nkind = \"vision\"\n".into(),
                "models.m.kind",
                "unknown kind `vision`",
            ),
            (
                "[models.m]\naliases = \"x\"\n".into(),
                "models.m.aliases",
                "expected an array of strings",
            ),
            (
                "[models.m]\naliases = [\"x\", 2]\n".into(),
                "models.m.aliases[1]",
                "expected a string, found integer",
            ),
            (
                ENTRY
                    .replace("tokenizer = \"estimate\"\n", "")
                    .replace("provider", "[models.m]\nprovider"),
                "models.m.tokenizer",
                "required key is missing",
            ),
            (
                format!(
                    "[models.m]\n{ENTRY}long_context = {{ input_per_mtok = 1, output_per_mtok = 2 }}\n"
                ),
                "models.m.long_context.above",
                "required key is missing",
            ),
            (
                format!("[models.m]\n{ENTRY}long_context = {{ above = 5, input = 1 }}\n"),
                "models.m.long_context.input",
                "unknown key",
            ),
            (
                format!(
                    "[models.m]\n{}",
                    ENTRY.replace("max_output_tokens = 10", "max_output_tokens = 101")
                ),
                "models.m.max_output_tokens",
                "101 exceeds the context window of 100",
            ),
            (
                format!(
                    "[models.m]\n{}",
                    ENTRY.replace("max_output_tokens = 10", "max_output_tokens = 0")
                ),
                "models.m.max_output_tokens",
                "a chat model needs a positive output limit",
            ),
            (
                format!("[models.a]\n{ENTRY}aliases = [\"B\"]\n[models.b]\n{ENTRY}"),
                "models.a.aliases",
                "`B` is already a name or alias of model `b`",
            ),
            (
                format!("[models.M]\n{ENTRY}[models.m]\n{ENTRY}"),
                "models.m.name",
                "`m` is already a name or alias of model `M`",
            ),
        ];
        for (text, path, reason) in &cases {
            check_invalid(text, path, reason);
        }
    }

    #[test]
    fn syntax_errors_point_at_line_and_column() {
        let err =
            Catalog::from_toml_str("as_of = \"x\"\n[models.m]\nprovider = = 1\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid model catalog at `line 3, column 12`"),
            "{err}"
        );
    }

    #[test]
    fn merge_overrides_given_keys_and_adds_models() {
        let mut catalog = builtin();
        let before = catalog.len();
        let patch = CatalogPatch::from_toml_str(&format!(
            "as_of = \"2026-01-01\"\n[models.\"gpt-4o\"]\ninput_per_mtok = 2\n\
             [models.\"my-llama\"]\n{}",
            ENTRY.replace("\"p\"", "\"ollama\"")
        ))
        .unwrap();
        assert_eq!(patch.len(), 2);
        catalog.merge(patch).unwrap();
        let gpt = catalog.get("gpt-4o").unwrap();
        assert!(close(gpt.pricing.input_per_mtok, 2.0));
        assert!(close(gpt.pricing.output_per_mtok, 10.0));
        assert_eq!(gpt.context_window, 128_000);
        assert_eq!(catalog.get("ollama/my-llama").unwrap().context_window, 100);
        assert_eq!(catalog.len(), before + 1);
        assert_eq!(catalog.as_of(), Some("2026-01-01"));
    }

    #[test]
    fn merge_through_an_alias_patches_that_model() {
        let mut catalog = small();
        let patch =
            CatalogPatch::from_toml_str("[models.big-alias]\naliases = [\"b2\"]\n").unwrap();
        catalog.merge(patch).unwrap();
        check_resolve(&catalog, "b2", Some("big"));
        check_resolve(&catalog, "big-alias", None);
    }

    #[test]
    fn entries_for_one_model_in_one_patch_all_apply() {
        let mut catalog = small();
        let patch = CatalogPatch::from_toml_str(
            "[models.big]\ninput_per_mtok = 4\n[models.big-alias]\noutput_per_mtok = 8\n",
        )
        .unwrap();
        catalog.merge(patch).unwrap();
        let pricing = catalog.get("big").unwrap().pricing;
        assert_eq!(
            (pricing.input_per_mtok, pricing.output_per_mtok),
            (4.0, 8.0)
        );
    }

    #[test]
    fn failed_merge_leaves_the_catalog_unchanged() {
        let mut catalog = small();
        let original = catalog.clone();
        let patch = CatalogPatch::from_toml_str(
            "[models.cheap]\ninput_per_mtok = 9\n[models.newbie]\nprovider = \"x\"\n",
        )
        .unwrap();
        let err = catalog.merge(patch).unwrap_err();
        assert!(
            err.to_string().contains("models.newbie.context_window"),
            "{err}"
        );
        assert_eq!(catalog, original);
    }

    #[test]
    fn patch_from_a_config_models_table() {
        let config: Table = "[models.cheap]\noutput_per_mtok = 4\n".parse().unwrap();
        let models = config.get("models").and_then(Value::as_table).unwrap();
        let mut catalog = small();
        catalog
            .merge(CatalogPatch::from_models_table(models).unwrap())
            .unwrap();
        assert!(close(
            catalog.get("cheap").unwrap().pricing.output_per_mtok,
            4.0
        ));
        assert!(
            CatalogPatch::from_models_table(&Table::new())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn version_suffixes() {
        let cases = [
            ("-2024-08-06", true),
            ("-20241022", true),
            ("-0613", true),
            ("-001", true),
            ("-latest", true),
            ("-preview", true),
            ("-preview-05-06", true),
            ("-exp-1206", true),
            ("@20240620", true),
            ("", false),
            ("-", false),
            ("-mini", false),
            ("-32k", false),
            ("-2024--06", false),
            (".1", false),
            ("2024", false),
        ];
        for (suffix, expected) in cases {
            assert_eq!(is_version_suffix(suffix), expected, "{suffix:?}");
        }
    }

    #[test]
    fn analyze_counts_unicode_scalars_per_token() {
        let (lookup, _) = word_lookup();
        let tokenizer = lookup(small().get("big").unwrap()).unwrap();
        let cases: &[(&str, usize, usize, f64)] = &[
            ("héllo wörld", 2, 11, 5.5),
            ("敏捷的 棕色", 2, 6, 3.0),
            ("", 0, 0, 0.0),
            ("   ", 0, 3, 0.0),
        ];
        for &(text, tokens, chars, per_token) in cases {
            let analysis = analyze_text(text, tokenizer.as_ref());
            assert_eq!(
                (analysis.tokens, analysis.chars),
                (tokens, chars),
                "{text:?}"
            );
            assert!(close(analysis.chars_per_token, per_token), "{text:?}");
            assert_eq!(analysis.tokenizer, "o200k_base");
            assert_eq!(analysis.exactness, Exactness::Exact);
        }
    }

    #[test]
    fn comparison_rows_are_sorted_by_cost_and_flag_estimates() {
        let (lookup, calls) = word_lookup();
        let text = "one two three four five six seven eight nine ten";
        let comparison = small().compare_all(text, &lookup).unwrap();
        assert_eq!(comparison.chars, text.chars().count());
        let summary: Vec<(&str, &str, Exactness, usize)> = comparison
            .rows
            .iter()
            .map(|r| {
                (
                    r.model.as_str(),
                    r.tokenizer.as_str(),
                    r.exactness,
                    r.tokens,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("other/embed", "estimate", Exactness::Estimate, 10),
                ("acme/cheap", "estimate", Exactness::Estimate, 10),
                ("acme/big", "o200k_base", Exactness::Exact, 10),
            ]
        );
        // Counted once per distinct tokenizer, not once per model.
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let big = &comparison.rows[2];
        assert!(close(big.input_cost_usd, 10.0 * 3.0 / 1e6));
        assert!(close(big.context_share, 10.0 / 100_000.0));
        assert!(close(big.chars_per_token, text.len() as f64 / 10.0));
        assert!(close(comparison.rows[0].context_share, 10.0 / 512.0));
    }

    #[test]
    fn cheapest_fitting_row_respects_context_and_output() {
        let (lookup, _) = word_lookup();
        let text = "w ".repeat(600);
        let comparison = small().compare_all(&text, &lookup).unwrap();
        let check = |reserved: usize, expected: Option<&str>| {
            let row = comparison.cheapest_fitting(reserved);
            assert_eq!(
                row.map(|r| r.model.as_str()),
                expected,
                "reserved {reserved}"
            );
        };
        check(0, Some("acme/cheap")); // embed's 512-token window is too small for 600
        check(100, Some("acme/cheap"));
        check(101, Some("acme/big")); // cheap's output limit is 100
        check(400, Some("acme/big")); // and 600 + 401 would exceed its window anyway
        check(4001, None);
    }

    #[test]
    fn compare_selected_models_dedupes_and_reports_unknown_ones() {
        let (lookup, _) = word_lookup();
        let catalog = small();
        let comparison = catalog
            .compare_models("a b", &["big", "acme/big", "big-alias", "cheap"], &lookup)
            .unwrap();
        let models: Vec<&str> = comparison.rows.iter().map(|r| r.model.as_str()).collect();
        assert_eq!(models, ["acme/cheap", "acme/big"]);
        let err = catalog
            .compare_models("a b", &["cheap", "ghost"], &lookup)
            .unwrap_err();
        assert!(matches!(err, CoreError::UnknownModel { model, .. } if model == "ghost"));
    }

    #[test]
    fn compare_propagates_lookup_errors() {
        let failing = |info: &ModelInfo| -> Result<Box<dyn Tokenizer>, CoreError> {
            Err(CoreError::UnknownEncoding {
                encoding: info.tokenizer.clone(),
                known: "o200k_base".to_owned(),
            })
        };
        let err = small().compare_all("x", &failing).unwrap_err();
        assert!(matches!(err, CoreError::UnknownEncoding { .. }));
    }

    #[test]
    fn cheapest_model_meets_the_requirement() {
        let catalog = small();
        let check = |requirement: ModelRequirement, expected: Option<&str>| {
            let found = catalog.cheapest_model(&requirement, 1000, 100);
            assert_eq!(
                found.map(|(info, _)| info.name.as_str()),
                expected,
                "{requirement:?}"
            );
        };
        check(ModelRequirement::chat(0), Some("cheap"));
        check(ModelRequirement::chat(1000), Some("cheap"));
        check(ModelRequirement::chat(1001), Some("big"));
        check(ModelRequirement::chat(0).with_min_output(101), Some("big"));
        check(ModelRequirement::chat(0).with_min_output(4001), None);
        check(ModelRequirement::chat(100_001), None);
        check(ModelRequirement::chat(0).with_providers(["other"]), None);
        check(
            ModelRequirement {
                kind: ModelKind::Embedding,
                ..ModelRequirement::chat(0)
            },
            Some("embed"),
        );
        let (_, cost) = catalog
            .cheapest_model(&ModelRequirement::chat(1001), 1000, 100)
            .unwrap();
        assert!(close(cost.total_usd, (3000.0 + 600.0) / 1e6));
    }

    #[test]
    fn cheapest_builtin_models() {
        let catalog = builtin();
        let (info, cost) = catalog
            .cheapest_model(&ModelRequirement::chat(0), 1000, 1000)
            .unwrap();
        assert_eq!(
            (info.id().as_str(), cost.total_usd),
            ("local/smollm2-135m", 0.0)
        );
        let openai_million = ModelRequirement::chat(1_000_000).with_providers(["OpenAI"]);
        let (info, _) = catalog.cheapest_model(&openai_million, 1000, 1000).unwrap();
        assert_eq!(info.name, "gpt-4.1-nano");
    }

    #[test]
    fn model_info_serializes_for_listing() {
        let info = small().get("big").unwrap().clone();
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["kind"], "chat");
        assert_eq!(json["pricing"]["cached_input_per_mtok"], 0.5);
        assert_eq!(json["aliases"][0], "big-alias");
    }

    #[test]
    fn tokenizer_hints() {
        use crate::tokens::EstimateFamily as F;
        let cases = [
            (
                "o200k_base",
                Some(TokenizerHint::Encoding(Encoding::O200kBase)),
            ),
            (
                "CL100K_BASE",
                Some(TokenizerHint::Encoding(Encoding::Cl100kBase)),
            ),
            ("estimate", Some(TokenizerHint::Estimate(None))),
            (
                "estimate:anthropic",
                Some(TokenizerHint::Estimate(Some(F::Anthropic))),
            ),
            (
                "Estimate:Gemini",
                Some(TokenizerHint::Estimate(Some(F::Gemini))),
            ),
            ("estimate:", None),
            ("estimate:gpt", None),
            ("p50k_base", None),
            ("", None),
        ];
        for (hint, expected) in cases {
            assert_eq!(TokenizerHint::parse(hint), expected, "{hint:?}");
        }
    }

    #[test]
    fn builtin_tokenizers_for_every_builtin_model() {
        for info in builtin().models() {
            let tokenizer = builtin_tokenizer(info).unwrap();
            let expected = match info.provider.as_str() {
                "openai" => Exactness::Exact,
                _ => Exactness::Estimate,
            };
            assert_eq!(tokenizer.exactness(), expected, "{}", info.id());
            // The data file's family agrees with the one the tokens module infers from the name.
            if let Some(family) = EstimateFamily::for_model(&info.name) {
                assert_eq!(
                    tokenizer.name(),
                    format!("estimate:{}", family.name()),
                    "{}",
                    info.id()
                );
            }
        }
    }

    #[test]
    fn builtin_tokenizer_infers_or_rejects_a_bare_estimate() {
        let catalog = Catalog::from_toml_str(&format!(
            "[models.claude-next]\n{ENTRY}[models.mystery]\n{ENTRY}[models.m-next]\n{}",
            ENTRY.replace("\"p\"", "\"mistral\""),
        ))
        .unwrap();
        let name_of = |model: &str| {
            builtin_tokenizer(catalog.get(model).unwrap()).map(|t| t.name().to_owned())
        };
        assert_eq!(name_of("claude-next").unwrap(), "estimate:anthropic");
        assert_eq!(name_of("m-next").unwrap(), "estimate:mistral");
        let err = name_of("mystery").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "invalid model catalog at `models.mystery.tokenizer`: `estimate` but no model \
                 family is recognised in `p/mystery`"
            ),
            "{err}"
        );
    }

    #[test]
    fn analysis_with_a_real_encoding() {
        let text = "The quick brown fox jumps over the lazy dog";
        let analysis = analyze_text(text, &Encoding::Cl100kBase);
        assert_eq!((analysis.tokens, analysis.chars), (9, 43));
        assert!(close(analysis.chars_per_token, 43.0 / 9.0));
        assert_eq!(analysis.exactness, Exactness::Exact);
        let chinese = analyze_text("敏捷的棕色狐狸跳过懒狗", &Encoding::Cl100kBase);
        assert_eq!(chinese.chars, 11);
        assert!(chinese.chars_per_token < analysis.chars_per_token);
    }

    #[test]
    fn builtin_comparison_with_builtin_tokenizers() {
        let catalog = builtin();
        let text = "def fibonacci(n): return n if n <= 1 else fib(n-1) + fib(n-2)";
        let comparison = catalog.compare_all(text, &builtin_tokenizer).unwrap();
        assert_eq!(comparison.rows.len(), catalog.len());
        let row = |model: &str| comparison.rows.iter().find(|r| r.model == model).unwrap();
        let gpt4o = row("openai/gpt-4o");
        assert_eq!(gpt4o.tokens, Encoding::O200kBase.count(text));
        assert_eq!(
            (gpt4o.tokenizer.as_str(), gpt4o.exactness),
            ("o200k_base", Exactness::Exact)
        );
        assert!(close(gpt4o.input_cost_usd, gpt4o.tokens as f64 * 2.5 / 1e6));
        let claude = row("anthropic/claude-sonnet-4");
        assert_eq!(claude.exactness, Exactness::Estimate);
        assert_eq!(claude.tokenizer, "estimate:anthropic");
        assert!(claude.tokens >= gpt4o.tokens);
        assert_eq!(row("openai/gpt-4").tokens, Encoding::Cl100kBase.count(text));
        let costs: Vec<f64> = comparison.rows.iter().map(|r| r.input_cost_usd).collect();
        assert!(costs.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(comparison.rows[0].input_cost_usd, 0.0);
        let local: Vec<&str> = comparison.rows[..2]
            .iter()
            .map(|r| r.model.as_str())
            .collect();
        assert_eq!(local, ["local/all-minilm-l6-v2", "local/smollm2-135m"]);
    }
}
