//! Token budgets: room left in a context window, truncation of a conversation to fit it,
//! selection of retrieved chunks under a token budget (greedy MMR), and the usage ratio with the
//! seed's 80% alert threshold.
//!
//! Prompt sizes are counted with [`count_chat`], so per-message overhead, tool definitions and
//! reply priming are included exactly as they will be billed.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::message::{Message, Role, Tool};
use crate::tokens::{ChatTokenCount, Exactness, Tokenizer, count_chat};

/// Usage above this share of the limit raises an alert ("alert when context usage > 80% of
/// limit", from the seed).
pub const ALERT_RATIO: f64 = 0.8;

/// Words per shingle of the built-in de-duplication similarity.
pub const DEFAULT_SHINGLE_WORDS: usize = 3;

/// Tokens left for extra context once the prompt and the reserved reply are accounted for.
///
/// `None` when the prompt and the reserved output together exceed the window: the request does
/// not fit, which callers must handle (truncate, pick a bigger model) rather than see as 0.
pub fn available_tokens(
    context_window: usize,
    prompt_tokens: usize,
    reserved_output: usize,
) -> Option<usize> {
    context_window
        .checked_sub(prompt_tokens)?
        .checked_sub(reserved_output)
}

/// [`available_tokens`] for a chat request, counted with [`count_chat`].
pub fn available_for_messages(
    tokenizer: &dyn Tokenizer,
    messages: &[Message],
    tools: &[Tool],
    context_window: usize,
    reserved_output: usize,
) -> Option<usize> {
    let prompt = count_chat(tokenizer, messages, tools).total;
    available_tokens(context_window, prompt, reserved_output)
}

/// The outcome of [`truncate_messages`].
#[derive(Debug, Clone, PartialEq)]
pub struct Truncation {
    /// The kept messages, in their original order.
    pub messages: Vec<Message>,
    /// Messages dropped.
    pub dropped_messages: usize,
    /// Turns dropped (a turn is a user message and what follows it up to the next one).
    pub dropped_turns: usize,
    /// Prompt tokens saved by dropping them.
    pub dropped_tokens: usize,
    /// Prompt tokens of the kept messages (with tools and overhead).
    pub prompt_tokens: usize,
    /// Whether `prompt_tokens` is exact.
    pub exactness: Exactness,
}

/// Fits a conversation into `context_window - reserved_output` tokens by dropping its oldest
/// turns.
///
/// - System and developer messages are always kept, wherever they stand.
/// - The rest is cut into turns, each starting at a user message (messages before the first
///   user message form a turn of their own). Turns are dropped whole, oldest first, so an
///   assistant message with `tool_calls` never loses its tool results, and the kept history
///   starts at a user message (which Anthropic requires).
/// - The last turn is always kept; if the kept system messages and the last turn alone do not
///   fit, the error is [`CoreError::ContextOverflow`] with the numbers.
/// - `reserved_output` larger than the window is [`CoreError::InvalidParameter`].
///
/// Fewest turns are dropped: the count is searched by bisection (dropping more never adds
/// tokens), so a long history costs O(log turns) counts.
pub fn truncate_messages(
    messages: &[Message],
    tools: &[Tool],
    tokenizer: &dyn Tokenizer,
    context_window: usize,
    reserved_output: usize,
) -> Result<Truncation, CoreError> {
    let budget = context_window.checked_sub(reserved_output).ok_or_else(|| {
        CoreError::InvalidParameter {
            field: "reserved_output",
            reason: format!(
                "{reserved_output} reserved tokens exceed the {context_window}-token context window"
            ),
        }
    })?;
    let turns = turn_starts(messages);
    let count = |dropped_turns: usize| {
        let kept = kept_messages(messages, &turns, dropped_turns);
        count_chat(tokenizer, &kept, tools)
    };
    let droppable = turns.len().saturating_sub(1);
    let smallest = count(droppable);
    if smallest.total > budget {
        return Err(CoreError::ContextOverflow {
            what: "system messages and the last turn",
            required: smallest.total,
            available: budget,
            context_window,
            reserved_output,
        });
    }
    let full = count(0);
    let (dropped_turns, kept_count) = if full.total <= budget {
        (0, full)
    } else {
        fewest_turns_to_drop(droppable, smallest, budget, count)
    };
    let kept = kept_messages(messages, &turns, dropped_turns);
    Ok(Truncation {
        dropped_messages: messages.len() - kept.len(),
        dropped_turns,
        dropped_tokens: full.total.saturating_sub(kept_count.total),
        prompt_tokens: kept_count.total,
        exactness: kept_count.exactness,
        messages: kept,
    })
}

/// Bisection for the fewest dropped turns whose count fits, given that dropping none does not
/// fit and dropping `droppable` does.
fn fewest_turns_to_drop(
    droppable: usize,
    at_most: ChatTokenCount,
    budget: usize,
    count: impl Fn(usize) -> ChatTokenCount,
) -> (usize, ChatTokenCount) {
    let (mut too_few, mut enough, mut enough_count) = (0, droppable, at_most);
    while enough - too_few > 1 {
        let middle = too_few + (enough - too_few) / 2;
        let middle_count = count(middle);
        if middle_count.total <= budget {
            (enough, enough_count) = (middle, middle_count);
        } else {
            too_few = middle;
        }
    }
    (enough, enough_count)
}

fn is_pinned(message: &Message) -> bool {
    matches!(message.role, Role::System | Role::Developer)
}

/// Index of the first message of each turn (pinned messages belong to no turn).
fn turn_starts(messages: &[Message]) -> Vec<usize> {
    let mut starts = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        if is_pinned(message) {
            continue;
        }
        if starts.is_empty() || message.role == Role::User {
            starts.push(index);
        }
    }
    starts
}

/// Pinned messages plus every message from the start of turn `dropped_turns` on.
fn kept_messages(
    messages: &[Message],
    turn_starts: &[usize],
    dropped_turns: usize,
) -> Vec<Message> {
    let first_kept = turn_starts
        .get(dropped_turns)
        .copied()
        .unwrap_or(messages.len());
    messages
        .iter()
        .enumerate()
        .filter(|(index, message)| *index >= first_kept || is_pinned(message))
        .map(|(_, message)| message.clone())
        .collect()
}

/// A retrieved passage competing for room in the prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// The passage.
    pub text: String,
    /// Relevance to the query (higher is better), e.g. a reranker score.
    pub score: f64,
    /// Its size in tokens, if already known; counted with the tokenizer otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<usize>,
}

impl Chunk {
    /// A chunk whose size will be counted.
    pub fn new(text: impl Into<String>, score: f64) -> Self {
        Chunk {
            text: text.into(),
            score,
            tokens: None,
        }
    }

    /// The same chunk with a known size.
    pub fn with_tokens(mut self, tokens: usize) -> Self {
        self.tokens = Some(tokens);
        self
    }
}

/// How alike two chunks are, for the redundancy term of MMR.
#[derive(Clone, Copy)]
pub enum Similarity<'a> {
    /// Jaccard overlap of lower-cased word n-grams of this many words (text de-duplication
    /// without embeddings). Words are runs of letters and digits.
    WordShingles(usize),
    /// A caller's measure over chunk indices, e.g. cosine of their embeddings.
    Custom(&'a dyn Fn(usize, usize) -> f64),
}

impl Default for Similarity<'_> {
    fn default() -> Self {
        Similarity::WordShingles(DEFAULT_SHINGLE_WORDS)
    }
}

impl fmt::Debug for Similarity<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Similarity::WordShingles(words) => write!(f, "WordShingles({words})"),
            Similarity::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// One chunk chosen by [`select_chunks`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SelectedChunk {
    /// Index into the input slice.
    pub index: usize,
    /// Its size in tokens.
    pub tokens: usize,
    /// `lambda * score - (1 - lambda) * max_similarity` when it was chosen.
    pub mmr_score: f64,
    /// Its highest similarity to a chunk chosen before it (0 for the first).
    pub max_similarity: f64,
}

/// The outcome of [`select_chunks`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkSelection {
    /// Chosen chunks in the order they were chosen.
    pub selected: Vec<SelectedChunk>,
    /// Sum of their tokens (never above the budget).
    pub tokens_used: usize,
}

impl ChunkSelection {
    /// Indices of the chosen chunks, in the order chosen.
    pub fn indices(&self) -> Vec<usize> {
        self.selected.iter().map(|chunk| chunk.index).collect()
    }
}

/// Greedy maximal marginal relevance under a token budget.
///
/// Each step picks, among the chunks not chosen yet that still fit the remaining budget, the one
/// maximising `lambda * score - (1 - lambda) * (highest similarity to a chosen chunk)`; ties go to
/// the lower index, so the result is deterministic. Chunks that do not fit are skipped (a smaller
/// one may still fit). `lambda = 1` is pure relevance, `lambda = 0` pure diversity.
///
/// Errors ([`CoreError::InvalidParameter`]): `lambda` outside 0 to 1, a non-finite score (naming
/// the chunk), a shingle size of 0, or a custom similarity that returns a non-finite value.
pub fn select_chunks(
    chunks: &[Chunk],
    tokenizer: &dyn Tokenizer,
    budget_tokens: usize,
    lambda: f64,
    similarity: Similarity<'_>,
) -> Result<ChunkSelection, CoreError> {
    validate_selection_input(chunks, lambda, similarity)?;
    let sizes: Vec<usize> = chunks
        .iter()
        .map(|chunk| chunk.tokens.unwrap_or_else(|| tokenizer.count(&chunk.text)))
        .collect();
    let measure = SimilarityMeasure::new(chunks, similarity);
    let mut max_similarity = vec![0.0_f64; chunks.len()];
    let mut candidates: Vec<usize> = (0..chunks.len()).collect();
    let mut left = budget_tokens;
    let mut selection = ChunkSelection {
        selected: Vec::new(),
        tokens_used: 0,
    };
    loop {
        candidates.retain(|&index| sizes[index] <= left);
        let mmr =
            |index: usize| lambda * chunks[index].score - (1.0 - lambda) * max_similarity[index];
        let Some(best) = best_candidate(&candidates, mmr) else {
            break;
        };
        selection.selected.push(SelectedChunk {
            index: best,
            tokens: sizes[best],
            mmr_score: mmr(best),
            max_similarity: max_similarity[best],
        });
        selection.tokens_used += sizes[best];
        left -= sizes[best];
        candidates.retain(|&index| index != best);
        for &index in &candidates {
            let value = measure.between(index, best)?;
            max_similarity[index] = max_similarity[index].max(value);
        }
    }
    Ok(selection)
}

/// The candidate with the highest score; the first (lowest index) among equals.
fn best_candidate(candidates: &[usize], score: impl Fn(usize) -> f64) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for &index in candidates {
        let value = score(index);
        if best.is_none_or(|(_, top)| value > top) {
            best = Some((index, value));
        }
    }
    best.map(|(index, _)| index)
}

fn validate_selection_input(
    chunks: &[Chunk],
    lambda: f64,
    similarity: Similarity<'_>,
) -> Result<(), CoreError> {
    if !(lambda.is_finite() && (0.0..=1.0).contains(&lambda)) {
        return Err(CoreError::InvalidParameter {
            field: "lambda",
            reason: format!("{lambda} is outside the allowed range 0 to 1"),
        });
    }
    if let Some(index) = chunks.iter().position(|chunk| !chunk.score.is_finite()) {
        return Err(CoreError::InvalidParameter {
            field: "score",
            reason: format!("chunk {index} has score {}", chunks[index].score),
        });
    }
    if let Similarity::WordShingles(0) = similarity {
        return Err(CoreError::InvalidParameter {
            field: "similarity",
            reason: "word shingles need at least 1 word".to_owned(),
        });
    }
    Ok(())
}

/// A similarity ready to evaluate: shingle sets are built once per chunk.
enum SimilarityMeasure<'a> {
    Shingles(Vec<Vec<String>>),
    Custom(&'a dyn Fn(usize, usize) -> f64),
}

impl<'a> SimilarityMeasure<'a> {
    fn new(chunks: &[Chunk], similarity: Similarity<'a>) -> Self {
        match similarity {
            Similarity::WordShingles(words) => SimilarityMeasure::Shingles(
                chunks
                    .iter()
                    .map(|chunk| word_shingles(&chunk.text, words))
                    .collect(),
            ),
            Similarity::Custom(measure) => SimilarityMeasure::Custom(measure),
        }
    }

    fn between(&self, a: usize, b: usize) -> Result<f64, CoreError> {
        match self {
            SimilarityMeasure::Shingles(sets) => Ok(jaccard(&sets[a], &sets[b])),
            SimilarityMeasure::Custom(measure) => {
                let value = measure(a, b);
                if value.is_finite() {
                    Ok(value)
                } else {
                    Err(CoreError::InvalidParameter {
                        field: "similarity",
                        reason: format!("similarity of chunks {a} and {b} is {value}"),
                    })
                }
            }
        }
    }
}

/// Sorted, distinct lower-cased word n-grams of `text`; a text shorter than `words` words is one
/// shingle of all its words.
fn word_shingles(text: &str, words: usize) -> Vec<String> {
    let lowered = text.to_lowercase();
    let tokens: Vec<&str> = lowered
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .collect();
    let mut shingles: Vec<String> = if tokens.is_empty() {
        Vec::new()
    } else if tokens.len() <= words {
        vec![tokens.join(" ")]
    } else {
        tokens
            .windows(words)
            .map(|window| window.join(" "))
            .collect()
    };
    shingles.sort_unstable();
    shingles.dedup();
    shingles
}

/// |A ∩ B| / |A ∪ B| of two sorted, distinct sets; two empty texts count as identical.
fn jaccard(a: &[String], b: &[String]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - common;
    common as f64 / union as f64
}

/// How full a context window (or any token limit) is, and whether that calls for an alert.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UsageReport {
    /// Tokens used.
    pub used: usize,
    /// The limit.
    pub limit: usize,
    /// `used / limit` (above 1 when over the limit).
    pub ratio: f64,
    /// `ratio > ALERT_RATIO`.
    pub alert: bool,
}

impl UsageReport {
    /// The report for `used` tokens out of `limit`; a limit of 0 is an error.
    pub fn new(used: usize, limit: usize) -> Result<UsageReport, CoreError> {
        if limit == 0 {
            return Err(CoreError::InvalidParameter {
                field: "limit",
                reason: "a token limit must be at least 1".to_owned(),
            });
        }
        let ratio = used as f64 / limit as f64;
        Ok(UsageReport {
            used,
            limit,
            ratio,
            alert: ratio > ALERT_RATIO,
        })
    }

    /// The report for a chat request's prompt against a context window.
    pub fn for_messages(
        tokenizer: &dyn Tokenizer,
        messages: &[Message],
        tools: &[Tool],
        context_window: usize,
    ) -> Result<UsageReport, CoreError> {
        UsageReport::new(count_chat(tokenizer, messages, tools).total, context_window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ToolCall;
    use crate::tokens::Encoding;
    use proptest::prelude::*;

    /// One token per whitespace-separated word: easy to reason about in expectations.
    struct Words;

    impl Tokenizer for Words {
        fn name(&self) -> &str {
            "words"
        }
        fn exactness(&self) -> Exactness {
            Exactness::Estimate
        }
        fn count(&self, text: &str) -> usize {
            text.split_whitespace().count()
        }
    }

    fn tokens(messages: &[Message]) -> usize {
        count_chat(&Words, messages, &[]).total
    }

    #[test]
    fn available_tokens_table() {
        let cases = [
            ((8192, 5000, 2000), Some(1192)),
            ((8192, 6192, 2000), Some(0)),
            ((8192, 6193, 2000), None),
            ((8192, 9000, 0), None),
            ((8192, 0, 8193), None),
            ((usize::MAX, usize::MAX, 0), Some(0)),
        ];
        for ((window, prompt, reserved), expected) in cases {
            assert_eq!(
                available_tokens(window, prompt, reserved),
                expected,
                "{window} {prompt} {reserved}"
            );
        }
    }

    #[test]
    fn available_for_messages_counts_the_chat_format() {
        let messages = [Message::system("be brief"), Message::user("hello there")];
        let prompt = tokens(&messages);
        assert_eq!(
            available_for_messages(&Words, &messages, &[], prompt + 10, 4),
            Some(6)
        );
        assert_eq!(
            available_for_messages(&Words, &messages, &[], prompt, 1),
            None
        );
    }

    /// A conversation: system, then turns 1..=3 (turn 2 calls a tool), then a final user turn.
    fn conversation() -> Vec<Message> {
        vec![
            Message::system("you are a careful assistant"),
            Message::user("first question about apples"),
            Message::assistant("first answer about apples"),
            Message::user("second question needs the weather"),
            Message::assistant_tool_calls(vec![ToolCall::function(
                "call_1",
                "weather",
                "{\"city\": \"Paris\"}",
            )]),
            Message::tool_result("call_1", "sunny and warm today"),
            Message::assistant("it is sunny in Paris"),
            Message::user("third question"),
            Message::assistant("third answer"),
            Message::user("last question please"),
        ]
    }

    /// Truncates `messages` to `budget` prompt tokens and compares the kept indices (or the
    /// overflow error) with `expected`.
    fn check(messages: &[Message], budget: usize, expected: Result<&[usize], usize>) {
        let outcome = truncate_messages(messages, &[], &Words, budget + 7, 7);
        match (outcome, expected) {
            (Ok(truncation), Ok(kept)) => {
                let expected_messages: Vec<Message> =
                    kept.iter().map(|&i| messages[i].clone()).collect();
                assert_eq!(truncation.messages, expected_messages, "budget {budget}");
                assert_eq!(truncation.dropped_messages, messages.len() - kept.len());
                assert_eq!(truncation.prompt_tokens, tokens(&expected_messages));
                assert_eq!(
                    truncation.dropped_tokens,
                    tokens(messages) - truncation.prompt_tokens
                );
                assert_eq!(truncation.exactness, Exactness::Estimate);
            }
            (
                Err(CoreError::ContextOverflow {
                    required,
                    available,
                    ..
                }),
                Err(needed),
            ) => {
                assert_eq!((required, available), (needed, budget));
            }
            (outcome, expected) => {
                panic!("budget {budget}: got {outcome:?}, expected {expected:?}")
            }
        }
    }

    #[test]
    fn truncation_drops_whole_turns_oldest_first() {
        let messages = conversation();
        let all: Vec<usize> = (0..messages.len()).collect();
        let without_1: Vec<usize> = [0].into_iter().chain(3..10).collect();
        let without_2: Vec<usize> = [0, 7, 8, 9].into();
        let last_only: Vec<usize> = [0, 9].into();
        let pick = |kept: &[usize]| -> Vec<Message> {
            kept.iter().map(|&i| messages[i].clone()).collect()
        };
        let size = |kept: &[usize]| tokens(&pick(kept));
        let cases: Vec<(usize, Result<&[usize], usize>)> = vec![
            (size(&all) + 100, Ok(&all)),
            (size(&all), Ok(&all)),
            (size(&all) - 1, Ok(&without_1)),
            (size(&without_1), Ok(&without_1)),
            (size(&without_1) - 1, Ok(&without_2)),
            // The tool call, its result and the reply go together with their user message.
            (size(&without_2), Ok(&without_2)),
            (size(&without_2) - 1, Ok(&last_only)),
            (size(&last_only), Ok(&last_only)),
            (size(&last_only) - 1, Err(size(&last_only))),
            (0, Err(size(&last_only))),
        ];
        for (budget, expected) in cases {
            check(&messages, budget, expected);
        }
    }

    #[test]
    fn truncation_keeps_system_messages_anywhere_and_the_trailing_tool_loop() {
        let messages = vec![
            Message::assistant("welcome, how can I help"),
            Message::user("old question"),
            Message::new(Role::Developer, "mid conversation instruction"),
            Message::assistant("old answer"),
            Message::user("look this up"),
            Message::assistant_tool_calls(vec![
                ToolCall::function("a", "search", "{}"),
                ToolCall::function("b", "search", "{}"),
            ]),
            Message::tool_result("a", "result a"),
            Message::tool_result("b", "result b"),
        ];
        let pick = |kept: &[usize]| -> Vec<Message> {
            kept.iter().map(|&i| messages[i].clone()).collect()
        };
        let tight: Vec<usize> = vec![2, 4, 5, 6, 7];
        let without_greeting: Vec<usize> = (1..8).collect();
        check(&messages, tokens(&pick(&tight)), Ok(&tight));
        check(&messages, tokens(&messages) - 1, Ok(&without_greeting));
        check(
            &messages,
            tokens(&pick(&tight)) - 1,
            Err(tokens(&pick(&tight))),
        );
    }

    #[test]
    fn truncation_of_degenerate_conversations() {
        check(&[], 3, Ok(&[]));
        check(&[], 2, Err(3));
        let only_system = [Message::system("rules here")];
        check(&only_system, 100, Ok(&[0]));
        let no_user = [Message::assistant("one"), Message::assistant("two")];
        check(&no_user, tokens(&no_user), Ok(&[0, 1]));
        check(&no_user, tokens(&no_user) - 1, Err(tokens(&no_user)));
    }

    #[test]
    fn truncation_counts_tools_and_reports_the_numbers() {
        let tool: Tool = serde_json::from_value(serde_json::json!({
            "type": "function",
            "function": {"name": "weather", "description": "Get the weather in a city"}
        }))
        .unwrap();
        let messages = conversation();
        let with_tools = count_chat(&Words, &messages, std::slice::from_ref(&tool)).total;
        let truncation = truncate_messages(
            &messages,
            std::slice::from_ref(&tool),
            &Words,
            with_tools + 50,
            50,
        )
        .unwrap();
        assert_eq!(truncation.dropped_messages, 0);
        let truncation = truncate_messages(
            &messages,
            std::slice::from_ref(&tool),
            &Words,
            with_tools + 49,
            50,
        )
        .unwrap();
        assert_eq!(
            (truncation.dropped_turns, truncation.dropped_messages),
            (1, 2)
        );
        let err = truncate_messages(&messages, &[], &Words, 20, 15).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "system messages and the last turn need {} tokens but only 5 fit (20-token \
                 context window minus 15 reserved for output)",
                tokens(&[messages[0].clone(), messages[9].clone()])
            )
        );
        let err = truncate_messages(&messages, &[], &Words, 20, 21).unwrap_err();
        assert!(matches!(
            err,
            CoreError::InvalidParameter {
                field: "reserved_output",
                ..
            }
        ));
    }

    #[test]
    fn truncation_with_an_exact_encoding_is_exact() {
        let messages = conversation()[..4].to_vec();
        let exact = count_chat(&Encoding::O200kBase, &messages, &[]);
        let truncation =
            truncate_messages(&messages, &[], &Encoding::O200kBase, exact.total, 0).unwrap();
        assert_eq!(truncation.prompt_tokens, exact.total);
        assert_eq!(truncation.exactness, exact.exactness);
        let truncation =
            truncate_messages(&messages, &[], &Encoding::O200kBase, exact.total - 1, 0).unwrap();
        assert_eq!(
            truncation.messages,
            [messages[0].clone(), messages[3].clone()]
        );
        assert_eq!(truncation.exactness, Exactness::Exact);
    }

    /// A generated conversation step.
    #[derive(Debug, Clone)]
    enum Step {
        System(String),
        User(String),
        Assistant(String),
        ToolRound(usize, String),
    }

    fn step() -> impl Strategy<Value = Step> {
        let text = "[a-z]{1,6}( [a-z]{1,6}){0,8}";
        prop_oneof![
            1 => text.prop_map(Step::System),
            4 => text.prop_map(Step::User),
            3 => text.prop_map(Step::Assistant),
            2 => (1usize..3, text).prop_map(|(calls, text)| Step::ToolRound(calls, text)),
        ]
    }

    fn build(steps: &[Step]) -> Vec<Message> {
        let mut messages = Vec::new();
        for (n, step) in steps.iter().enumerate() {
            match step {
                Step::System(text) => messages.push(Message::system(text.clone())),
                Step::User(text) => messages.push(Message::user(text.clone())),
                Step::Assistant(text) => messages.push(Message::assistant(text.clone())),
                Step::ToolRound(calls, text) => {
                    let ids: Vec<String> = (0..*calls).map(|k| format!("call_{n}_{k}")).collect();
                    messages.push(Message::assistant_tool_calls(
                        ids.iter()
                            .map(|id| ToolCall::function(id.clone(), "lookup", "{}"))
                            .collect(),
                    ));
                    for id in ids {
                        messages.push(Message::tool_result(id, text.clone()));
                    }
                }
            }
        }
        messages
    }

    /// Index of the last user message, or of the first non-pinned one when there is none.
    fn last_turn_start(messages: &[Message]) -> Option<usize> {
        messages
            .iter()
            .rposition(|m| m.role == Role::User)
            .or_else(|| messages.iter().position(|m| !is_pinned(m)))
    }

    proptest! {
        #[test]
        fn truncation_fits_and_keeps_what_it_must(
            steps in proptest::collection::vec(step(), 0..14),
            share in 0.3f64..1.1,
            reserved in 0usize..60,
        ) {
            let messages = build(&steps);
            // A window around the conversation's size, so that most cases must truncate.
            let window = reserved + (tokens(&messages) as f64 * share) as usize;
            let Ok(truncation) = truncate_messages(&messages, &[], &Words, window, reserved) else {
                // Failure only when reserved output exceeds the window or the must-keep part
                // does not fit.
                let must_keep: Vec<Message> = match last_turn_start(&messages) {
                    Some(start) => messages.iter().enumerate()
                        .filter(|(i, m)| *i >= start || is_pinned(m))
                        .map(|(_, m)| m.clone()).collect(),
                    None => messages.clone(),
                };
                prop_assert!(reserved > window || tokens(&must_keep) > window - reserved);
                return Ok(());
            };
            let kept = &truncation.messages;
            prop_assert!(truncation.prompt_tokens <= window - reserved);
            prop_assert_eq!(tokens(kept), truncation.prompt_tokens);
            prop_assert_eq!(truncation.dropped_messages, messages.len() - kept.len());
            // Every system message, and the whole last turn, in order.
            let pinned: Vec<&Message> = messages.iter().filter(|m| is_pinned(m)).collect();
            let kept_pinned: Vec<&Message> = kept.iter().filter(|m| is_pinned(m)).collect();
            prop_assert_eq!(pinned, kept_pinned);
            if let Some(start) = last_turn_start(&messages) {
                let tail: Vec<&Message> = messages[start..].iter().filter(|m| !is_pinned(m)).collect();
                let kept_tail: Vec<&Message> = kept.iter().filter(|m| !is_pinned(m)).collect();
                prop_assert!(kept_tail.ends_with(&tail));
            }
            // No tool result without the assistant message that called it, earlier in the kept list.
            for (i, message) in kept.iter().enumerate() {
                if let Some(id) = &message.tool_call_id {
                    let called = kept[..i].iter().any(|m| m.tool_calls.iter().any(|c| &c.id == id));
                    prop_assert!(called, "orphan tool result {}", id);
                }
            }
            // Kept history begins at a user message whenever something was dropped.
            if truncation.dropped_messages > 0 {
                let first = kept.iter().find(|m| !is_pinned(m)).map(|m| m.role);
                prop_assert_eq!(first, Some(Role::User));
            }
        }
    }

    fn texts(chunks: &[Chunk]) -> Vec<&str> {
        chunks.iter().map(|c| c.text.as_str()).collect()
    }

    fn check_selection(
        chunks: &[Chunk],
        budget: usize,
        lambda: f64,
        similarity: Similarity<'_>,
        expected: &[usize],
    ) {
        let selection = select_chunks(chunks, &Words, budget, lambda, similarity).unwrap();
        assert_eq!(
            selection.indices(),
            expected,
            "{:?} budget {budget} lambda {lambda}",
            texts(chunks)
        );
        let used: usize = selection.selected.iter().map(|s| s.tokens).sum();
        assert_eq!(selection.tokens_used, used);
        assert!(used <= budget);
    }

    #[test]
    fn mmr_selection_table() {
        let retrieved = [
            Chunk::new("the cat sat on the mat today", 0.9),
            Chunk::new("the cat sat on the mat today", 0.89),
            Chunk::new("dogs chase balls in the park", 0.6),
            Chunk::new("a very long passage about cats and mats that goes on", 0.95)
                .with_tokens(50),
            Chunk::new("birds sing", 0.1),
        ];
        let words = Similarity::WordShingles(2);
        // Pure relevance: by score, skipping the passage that does not fit.
        check_selection(&retrieved, 20, 1.0, words, &[0, 1, 2]);
        // One token less: the third chunk no longer fits, a smaller one still does.
        check_selection(&retrieved, 19, 1.0, words, &[0, 1, 4]);
        // Balanced: the exact duplicate loses to a different, less relevant chunk.
        check_selection(&retrieved, 20, 0.5, words, &[0, 2, 4]);
        // Enough budget: the long passage first, then still no duplicate before the others.
        check_selection(&retrieved, 100, 0.5, words, &[3, 0, 2, 4, 1]);
        // Budget too small for anything.
        check_selection(&retrieved, 1, 0.5, words, &[]);
        // Exactly one fits.
        check_selection(&retrieved, 2, 0.5, words, &[4]);
        check_selection(&[], 10, 0.5, words, &[]);
        // Equal scores: lower index first.
        let ties = [
            Chunk::new("x y", 0.5),
            Chunk::new("p q", 0.5),
            Chunk::new("m n", 0.5),
        ];
        check_selection(&ties, 10, 0.7, words, &[0, 1, 2]);
    }

    #[test]
    fn mmr_with_a_custom_similarity() {
        // Chunks 0 and 1 are near-duplicates by the caller's measure although their words differ.
        let chunks = [
            Chunk::new("alpha", 0.9),
            Chunk::new("beta", 0.85),
            Chunk::new("gamma", 0.5),
        ];
        let near = |a: usize, b: usize| if a + b == 1 { 0.95 } else { 0.0 };
        check_selection(&chunks, 10, 0.5, Similarity::Custom(&near), &[0, 2, 1]);
        check_selection(&chunks, 10, 1.0, Similarity::Custom(&near), &[0, 1, 2]);
        let selection = select_chunks(&chunks, &Words, 10, 0.5, Similarity::Custom(&near)).unwrap();
        let last = selection.selected[2];
        assert_eq!(last.max_similarity, 0.95);
        assert!((last.mmr_score - (0.5 * 0.85 - 0.5 * 0.95)).abs() < 1e-12);
    }

    #[test]
    fn mmr_rejects_bad_parameters() {
        let chunks = [Chunk::new("a", 0.5), Chunk::new("b", f64::NAN)];
        let fine = [Chunk::new("a", 0.5), Chunk::new("b", 0.4)];
        let nan = |_: usize, _: usize| f64::NAN;
        let cases: Vec<(&[Chunk], f64, Similarity<'_>, &str, &str)> = vec![
            (
                &fine,
                1.5,
                Similarity::default(),
                "lambda",
                "1.5 is outside the allowed range 0 to 1",
            ),
            (&fine, -0.1, Similarity::default(), "lambda", "outside"),
            (&fine, f64::NAN, Similarity::default(), "lambda", "NaN"),
            (
                &chunks,
                0.5,
                Similarity::default(),
                "score",
                "chunk 1 has score NaN",
            ),
            (
                &fine,
                0.5,
                Similarity::WordShingles(0),
                "similarity",
                "at least 1 word",
            ),
            (
                &fine,
                0.5,
                Similarity::Custom(&nan),
                "similarity",
                "similarity of chunks 1 and 0 is NaN",
            ),
        ];
        for (chunks, lambda, similarity, want_field, want_reason) in cases {
            match select_chunks(chunks, &Words, 10, lambda, similarity) {
                Err(CoreError::InvalidParameter { field, reason }) => {
                    assert_eq!(field, want_field);
                    assert!(reason.contains(want_reason), "{reason:?}");
                }
                other => panic!("{similarity:?} lambda {lambda}: {other:?}"),
            }
        }
    }

    #[test]
    fn jaccard_over_word_shingles() {
        let cases = [
            ("the cat sat", "the cat sat", 2, 1.0),
            ("The Cat, sat!", "the cat sat", 2, 1.0),
            ("a b c", "a b d", 2, 1.0 / 3.0),
            ("a b c d", "x y z", 2, 0.0),
            ("a", "a b c", 2, 0.0),
            ("a b", "a b", 3, 1.0),
            ("", "", 3, 1.0),
            ("", "words here", 3, 0.0),
            ("été à Paris", "ÉTÉ À paris", 1, 1.0),
        ];
        for (a, b, words, expected) in cases {
            let value = jaccard(&word_shingles(a, words), &word_shingles(b, words));
            assert!((value - expected).abs() < 1e-12, "{a:?} vs {b:?}: {value}");
        }
    }

    #[test]
    fn chunks_without_sizes_are_counted_with_the_tokenizer() {
        let chunks = [
            Chunk::new("one two three", 0.9),
            Chunk::new("four", 0.8).with_tokens(7),
        ];
        let selection = select_chunks(&chunks, &Words, 10, 1.0, Similarity::default()).unwrap();
        let sizes: Vec<usize> = selection.selected.iter().map(|s| s.tokens).collect();
        assert_eq!(sizes, [3, 7]);
        let json = serde_json::to_value(&chunks[1]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"text": "four", "score": 0.8, "tokens": 7})
        );
    }

    /// Brute-force oracle: the MMR value of `index` given the chunks already chosen.
    fn mmr_of(chunks: &[Chunk], chosen: &[usize], index: usize, lambda: f64, words: usize) -> f64 {
        let shingles = |i: usize| word_shingles(&chunks[i].text, words);
        let redundancy = chosen
            .iter()
            .map(|&c| jaccard(&shingles(index), &shingles(c)))
            .fold(0.0, f64::max);
        lambda * chunks[index].score - (1.0 - lambda) * redundancy
    }

    fn chunk() -> impl Strategy<Value = Chunk> {
        (
            "(cat|dog|sun|sea|red|big)( (cat|dog|sun|sea|red|big)){0,5}",
            0.0f64..1.0,
            proptest::option::of(0usize..40),
        )
            .prop_map(|(text, score, tokens)| Chunk {
                text,
                score,
                tokens,
            })
    }

    proptest! {
        #[test]
        fn mmr_respects_the_budget_and_the_greedy_order(
            chunks in proptest::collection::vec(chunk(), 0..10),
            budget in 0usize..80,
            lambda in 0.0f64..=1.0,
        ) {
            let selection = select_chunks(&chunks, &Words, budget, lambda, Similarity::WordShingles(2)).unwrap();
            prop_assert!(selection.tokens_used <= budget);
            let size = |i: usize| chunks[i].tokens.unwrap_or_else(|| Words.count(&chunks[i].text));
            let order = selection.indices();
            let mut chosen: Vec<usize> = Vec::new();
            let mut left = budget;
            for &pick in &order {
                prop_assert!(!chosen.contains(&pick));
                // The pick is the best fitting candidate at its step (lowest index among ties).
                let best = (0..chunks.len())
                    .filter(|i| !chosen.contains(i) && size(*i) <= left)
                    .map(|i| (i, mmr_of(&chunks, &chosen, i, lambda, 2)))
                    .fold(None::<(usize, f64)>, |acc, (i, v)| match acc {
                        Some((_, top)) if v <= top => acc,
                        _ => Some((i, v)),
                    });
                prop_assert_eq!(best.map(|(i, _)| i), Some(pick));
                chosen.push(pick);
                left -= size(pick);
            }
            // Nothing that still fits was left out.
            prop_assert!((0..chunks.len()).all(|i| chosen.contains(&i) || size(i) > left));
        }
    }

    #[test]
    fn usage_report_alerts_above_80_percent() {
        let cases = [
            (0, 100, 0.0, false),
            (79, 100, 0.79, false),
            (80, 100, 0.8, false),
            (81, 100, 0.81, true),
            (6554, 8192, 6554.0 / 8192.0, true),
            (6553, 8192, 6553.0 / 8192.0, false),
            (150, 100, 1.5, true),
        ];
        for (used, limit, ratio, alert) in cases {
            let report = UsageReport::new(used, limit).unwrap();
            assert_eq!((report.used, report.limit), (used, limit));
            assert!((report.ratio - ratio).abs() < 1e-12, "{used}/{limit}");
            assert_eq!(report.alert, alert, "{used}/{limit}");
        }
        let err = UsageReport::new(1, 0).unwrap_err();
        assert!(matches!(
            err,
            CoreError::InvalidParameter { field: "limit", .. }
        ));
    }

    #[test]
    fn usage_report_for_a_conversation() {
        let messages = conversation();
        let used = tokens(&messages);
        let report = UsageReport::for_messages(&Words, &messages, &[], used).unwrap();
        assert_eq!((report.ratio, report.alert), (1.0, true));
        let report = UsageReport::for_messages(&Words, &messages, &[], used * 2).unwrap();
        assert_eq!((report.ratio, report.alert), (0.5, false));
        let json = serde_json::to_value(report).unwrap();
        assert_eq!(json["alert"], false);
    }
}
