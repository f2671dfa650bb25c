//! Prompt builders (system prompts, few-shot, chain of thought) and the readers of their replies.
//!
//! Builders turn structured intent into stable, readable text: the same inputs always give the
//! same bytes, so prompts can be versioned, diffed and cached. The readers (`extract_answer`,
//! `parse_steps`, `normalize_answer`) take untrusted model output and never panic.

use std::cmp::Ordering;
use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::message::Message;

// ---------------------------------------------------------------------------------------------
// System prompts
// ---------------------------------------------------------------------------------------------

/// Builds a system prompt from a role, expertise, context, capabilities, constraints, an
/// output format and example exchanges. Empty parts are left out of the prompt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SystemPromptBuilder {
    /// Who the assistant is, e.g. "a senior code reviewer".
    pub role: String,
    /// Areas of expertise, listed after the role.
    pub expertise: Vec<String>,
    /// Background the assistant needs.
    pub context: String,
    /// What the assistant can do.
    pub capabilities: Vec<String>,
    /// Rules the assistant must follow.
    pub constraints: Vec<String>,
    /// How replies must be shaped.
    pub output_format: String,
    /// Example exchanges as (user, assistant) pairs.
    pub examples: Vec<(String, String)>,
}

impl SystemPromptBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the role ("You are ...").
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = role.into();
        self
    }

    /// Adds areas of expertise.
    pub fn expertise<I, S>(mut self, areas: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.expertise.extend(areas.into_iter().map(Into::into));
        self
    }

    /// Sets the background context.
    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.context = context.into();
        self
    }

    /// Adds a capability.
    pub fn capability(mut self, capability: impl Into<String>) -> Self {
        self.capabilities.push(capability.into());
        self
    }

    /// Adds a constraint.
    pub fn constraint(mut self, constraint: impl Into<String>) -> Self {
        self.constraints.push(constraint.into());
        self
    }

    /// Sets the required output format.
    pub fn output_format(mut self, format: impl Into<String>) -> Self {
        self.output_format = format.into();
        self
    }

    /// Adds an example exchange.
    pub fn example(mut self, user: impl Into<String>, assistant: impl Into<String>) -> Self {
        self.examples.push((user.into(), assistant.into()));
        self
    }

    /// The prompt: an identity line, the context, then `## ` sections separated by blank lines.
    pub fn build(&self) -> String {
        let mut sections: Vec<String> = Vec::new();
        if let Some(identity) = self.identity() {
            sections.push(identity);
        }
        push_nonblank(&mut sections, &self.context);
        push_bullets(&mut sections, "Capabilities", &self.capabilities);
        push_bullets(&mut sections, "Constraints", &self.constraints);
        if !self.output_format.trim().is_empty() {
            sections.push(format!("## Output format\n{}", self.output_format.trim()));
        }
        if !self.examples.is_empty() {
            let exchanges: Vec<String> = self
                .examples
                .iter()
                .map(|(user, assistant)| {
                    format!("User: {}\nAssistant: {}", user.trim(), assistant.trim())
                })
                .collect();
            sections.push(format!("## Examples\n{}", exchanges.join("\n\n")));
        }
        sections.join("\n\n")
    }

    /// The prompt as a system message.
    pub fn build_message(&self) -> Message {
        Message::system(self.build())
    }

    /// "You are {role}, with expertise in a, b and c."
    fn identity(&self) -> Option<String> {
        let role = self.role.trim().trim_end_matches('.');
        let areas: Vec<&str> = self
            .expertise
            .iter()
            .map(|area| area.trim())
            .filter(|area| !area.is_empty())
            .collect();
        match (role.is_empty(), areas.is_empty()) {
            (true, true) => None,
            (false, true) => Some(format!("You are {role}.")),
            (false, false) => Some(format!(
                "You are {role}, with expertise in {}.",
                join_human(&areas)
            )),
            (true, false) => Some(format!("You have expertise in {}.", join_human(&areas))),
        }
    }
}

/// "a", "a and b", "a, b and c".
fn join_human(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn push_nonblank(sections: &mut Vec<String>, text: &str) {
    if !text.trim().is_empty() {
        sections.push(text.trim().to_owned());
    }
}

/// A `## title` section with one bullet per non-blank item; continuation lines are indented.
fn push_bullets(sections: &mut Vec<String>, title: &str, items: &[String]) {
    let bullets: Vec<String> = items
        .iter()
        .map(|item| item.trim())
        .filter(|item| !item.is_empty())
        .map(|item| format!("- {}", item.replace('\n', "\n  ")))
        .collect();
    if !bullets.is_empty() {
        sections.push(format!("## {title}\n{}", bullets.join("\n")));
    }
}

// ---------------------------------------------------------------------------------------------
// Few-shot prompts
// ---------------------------------------------------------------------------------------------

/// One worked example of a few-shot prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FewShotExample {
    /// The example input.
    pub input: String,
    /// The expected output.
    pub output: String,
    /// Why the output is right; shown only when explanations are enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
}

impl FewShotExample {
    /// An example without explanation.
    pub fn new(input: impl Into<String>, output: impl Into<String>) -> Self {
        FewShotExample {
            input: input.into(),
            output: output.into(),
            explanation: None,
        }
    }

    /// The same example with an explanation.
    pub fn with_explanation(mut self, explanation: impl Into<String>) -> Self {
        self.explanation = Some(explanation.into());
        self
    }
}

/// Builds few-shot prompts: a task description, labelled examples, then the query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FewShotPromptBuilder {
    /// What the model must do.
    pub task: String,
    /// The examples, in prompt order.
    pub examples: Vec<FewShotExample>,
    /// Label before each input (default `Input`).
    pub input_label: String,
    /// Label before each output (default `Output`).
    pub output_label: String,
    /// Label before each explanation (default `Reasoning`).
    pub explanation_label: String,
    /// Whether explanations are shown, between the input and the output.
    pub include_explanations: bool,
}

impl Default for FewShotPromptBuilder {
    fn default() -> Self {
        FewShotPromptBuilder {
            task: String::new(),
            examples: Vec::new(),
            input_label: "Input".to_owned(),
            output_label: "Output".to_owned(),
            explanation_label: "Reasoning".to_owned(),
            include_explanations: false,
        }
    }
}

impl FewShotPromptBuilder {
    /// A builder for `task` with default labels and no examples.
    pub fn new(task: impl Into<String>) -> Self {
        FewShotPromptBuilder {
            task: task.into(),
            ..Self::default()
        }
    }

    /// Adds an example.
    pub fn example(mut self, example: FewShotExample) -> Self {
        self.examples.push(example);
        self
    }

    /// Sets the input and output labels.
    pub fn labels(mut self, input: impl Into<String>, output: impl Into<String>) -> Self {
        self.input_label = input.into();
        self.output_label = output.into();
        self
    }

    /// Shows (or hides) the examples' explanations.
    pub fn include_explanations(mut self, include: bool) -> Self {
        self.include_explanations = include;
        self
    }

    /// The prompt as one string, ending with the query and an empty output label.
    pub fn build(&self, query: &str) -> String {
        let mut sections: Vec<String> = Vec::new();
        push_nonblank(&mut sections, &self.task);
        if !self.examples.is_empty() {
            let shown: Vec<String> = self
                .examples
                .iter()
                .map(|example| {
                    format!(
                        "{}: {}\n{}",
                        self.input_label,
                        example.input.trim(),
                        self.answer_text(example)
                    )
                })
                .collect();
            sections.push(format!("Examples:\n\n{}", shown.join("\n\n")));
        }
        sections.push(format!(
            "{}: {}\n{}:",
            self.input_label,
            query.trim(),
            self.output_label
        ));
        sections.join("\n\n")
    }

    /// The prompt as chat messages: the task as a system message (when not blank), each
    /// example as a user/assistant pair, then the query as the last user message.
    pub fn build_messages(&self, query: &str) -> Vec<Message> {
        let mut messages = Vec::with_capacity(self.examples.len() * 2 + 2);
        if !self.task.trim().is_empty() {
            messages.push(Message::system(self.task.trim()));
        }
        for example in &self.examples {
            messages.push(Message::user(example.input.trim()));
            let reply = if self.shows_explanation(example) {
                self.answer_text(example)
            } else {
                example.output.trim().to_owned()
            };
            messages.push(Message::assistant(reply));
        }
        messages.push(Message::user(query.trim()));
        messages
    }

    /// Example indices with their scores for `query`, best first; equal scores keep the
    /// original order and NaN scores rank last.
    pub fn rank<F>(&self, query: &str, scorer: F) -> Vec<(usize, f64)>
    where
        F: Fn(&str, &FewShotExample) -> f64,
    {
        let mut ranked: Vec<(usize, f64)> = self
            .examples
            .iter()
            .enumerate()
            .map(|(index, example)| (index, scorer(query, example)))
            .collect();
        ranked.sort_by(|(ia, sa), (ib, sb)| compare_scores(*sb, *sa).then(ia.cmp(ib)));
        ranked
    }

    /// A copy of this builder keeping the `k` best examples for `query`, best first.
    ///
    /// Use [`lexical_similarity`] as the scorer when nothing better (embeddings) is at hand.
    pub fn select<F>(&self, k: usize, query: &str, scorer: F) -> FewShotPromptBuilder
    where
        F: Fn(&str, &FewShotExample) -> f64,
    {
        let examples = self
            .rank(query, scorer)
            .into_iter()
            .take(k)
            .filter_map(|(index, _)| self.examples.get(index).cloned())
            .collect();
        FewShotPromptBuilder {
            examples,
            ..self.clone()
        }
    }

    fn shows_explanation(&self, example: &FewShotExample) -> bool {
        self.include_explanations
            && example
                .explanation
                .as_deref()
                .is_some_and(|text| !text.trim().is_empty())
    }

    /// The labelled explanation (when shown) and output of an example.
    fn answer_text(&self, example: &FewShotExample) -> String {
        let output = format!("{}: {}", self.output_label, example.output.trim());
        match example.explanation.as_deref() {
            Some(explanation) if self.shows_explanation(example) => {
                format!(
                    "{}: {}\n{output}",
                    self.explanation_label,
                    explanation.trim()
                )
            }
            _ => output,
        }
    }
}

/// Orders scores with NaN below everything, so a broken scorer cannot win.
fn compare_scores(a: f64, b: f64) -> Ordering {
    let sanitize = |score: f64| {
        if score.is_nan() {
            f64::NEG_INFINITY
        } else {
            score
        }
    };
    sanitize(a).total_cmp(&sanitize(b))
}

/// Token Jaccard similarity between the query and an example's input; the default scorer
/// for [`FewShotPromptBuilder::select`].
pub fn lexical_similarity(query: &str, example: &FewShotExample) -> f64 {
    token_jaccard(query, &example.input)
}

/// |A ∩ B| / |A ∪ B| over the lowercased alphanumeric words of `a` and `b`; 0 when both are empty.
pub fn token_jaccard(a: &str, b: &str) -> f64 {
    let words_a = word_set(a);
    let words_b = word_set(b);
    let union = words_a.union(&words_b).count();
    if union == 0 {
        return 0.0;
    }
    let shared = words_a.intersection(&words_b).count();
    shared as f64 / union as f64
}

fn word_set(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Chain of thought: prompts
// ---------------------------------------------------------------------------------------------

/// The zero-shot chain-of-thought trigger (Kojima et al., 2022).
pub const ZERO_SHOT_TRIGGER: &str = "Let's think step by step.";

/// A worked example for few-shot chain of thought.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CotExample {
    /// The question.
    pub question: String,
    /// The reasoning that leads to the answer.
    pub reasoning: String,
    /// The final answer.
    pub answer: String,
}

/// How a chain-of-thought prompt asks the model to reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "style", content = "with", rename_all = "snake_case")]
pub enum CotStyle {
    /// The question followed by [`ZERO_SHOT_TRIGGER`].
    ZeroShot,
    /// Worked examples (question, reasoning, answer), then the question.
    FewShot(Vec<CotExample>),
    /// Named steps the model must work through, then a final answer line.
    Structured(Vec<String>),
}

impl CotStyle {
    /// The prompt for `question`. Every style leads to an answer that [`extract_answer`] reads.
    pub fn build(&self, question: &str) -> String {
        let question = question.trim();
        match self {
            CotStyle::ZeroShot => format!("{question}\n\n{ZERO_SHOT_TRIGGER}"),
            CotStyle::FewShot(examples) => {
                let mut blocks: Vec<String> = examples
                    .iter()
                    .map(|example| {
                        format!(
                            "Question: {}\nReasoning: {}\nAnswer: {}",
                            example.question.trim(),
                            example.reasoning.trim(),
                            example.answer.trim()
                        )
                    })
                    .collect();
                blocks.push(format!("Question: {question}\nReasoning:"));
                blocks.join("\n\n")
            }
            CotStyle::Structured(steps) => {
                let listed: Vec<String> = steps
                    .iter()
                    .enumerate()
                    .map(|(index, step)| format!("Step {}: {}", index + 1, step.trim()))
                    .collect();
                format!(
                    "Question: {question}\n\nReason through these steps in order, \
                     labelling each one as shown:\n{}\n\nEnd with a line of the form \
                     \"Final answer: <answer>\".",
                    listed.join("\n")
                )
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Chain of thought: reading replies
// ---------------------------------------------------------------------------------------------

/// The final answer stated in a reasoning reply, or `None` when no answer marker is present.
///
/// Markers, strongest first (within one kind the last occurrence wins, since models restate
/// and correct themselves): `\boxed{...}`; a GSM8K-style `#### 42` as the last non-blank line;
/// `Final answer:` / `The final answer is`; `Answer:` at the start of a line; `the answer is`
/// anywhere (as in "Therefore, the answer is 42."). The answer is the rest of the marker's line
/// (or the next non-blank line when that is empty), with surrounding `**`/`$`/backticks
/// removed; after "... answer is" a sentence-ending period is dropped too.
pub fn extract_answer(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    boxed_answer(text)
        .or_else(|| gsm8k_answer(text))
        .or_else(|| after_last_marker(text, &lower, &["final answer:", "final answer**:"], false))
        .or_else(|| after_last_marker(text, &lower, &["final answer is"], true))
        .or_else(|| line_label_answer(text, &lower))
        .or_else(|| after_last_marker(text, &lower, &["answer is"], true))
}

/// [`extract_answer`], falling back to the last non-blank line when no marker is present.
///
/// Separate because the fallback turns any reply into an "answer", which is right for terse
/// replies and wrong for refusals; callers choose.
pub fn extract_answer_or_last_line(text: &str) -> Option<String> {
    extract_answer(text).or_else(|| {
        text.lines()
            .rev()
            .map(clean_answer)
            .find(|line| !line.is_empty())
    })
}

/// Content of the last balanced `\boxed{...}`.
fn boxed_answer(text: &str) -> Option<String> {
    const MARKER: &str = "\\boxed{";
    let start = text.rfind(MARKER)? + MARKER.len();
    let body = text.get(start..)?;
    let mut depth = 1usize;
    for (index, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    let answer = clean_answer(body.get(..index)?);
                    return (!answer.is_empty()).then_some(answer);
                }
            }
            _ => {}
        }
    }
    None
}

/// `#### 42` when it is the last non-blank line (earlier `####` lines are markdown headings).
fn gsm8k_answer(text: &str) -> Option<String> {
    let last = text.lines().rev().find(|line| !line.trim().is_empty())?;
    let rest = last.trim_start().strip_prefix("####")?;
    if rest.starts_with('#') {
        return None;
    }
    let answer = clean_answer(rest);
    (!answer.is_empty()).then_some(answer)
}

/// `Answer:` as a label at the start of a line (after markdown emphasis), last one wins.
fn line_label_answer(text: &str, lower: &str) -> Option<String> {
    let mut found = None;
    let mut offset = 0;
    for line in lower.split_inclusive('\n') {
        let stripped = strip_emphasis(line);
        if stripped.starts_with("answer:") || stripped.starts_with("answer**:") {
            found = Some(offset + (line.len() - stripped.len()) + "answer".len());
        }
        offset += line.len();
    }
    answer_after(text, found?, false)
}

/// The answer after the last occurrence of any marker (matched on the lowercased text at a
/// word start).
fn after_last_marker(text: &str, lower: &str, markers: &[&str], sentence: bool) -> Option<String> {
    let found = markers
        .iter()
        .filter_map(|marker| last_word_match(lower, marker).map(|at| at + marker.len()))
        .max()?;
    answer_after(text, found, sentence)
}

/// Last occurrence of `marker` in `lower` that starts a word.
fn last_word_match(lower: &str, marker: &str) -> Option<usize> {
    let mut end = lower.len();
    while let Some(at) = lower.get(..end)?.rfind(marker) {
        let starts_word = lower
            .get(..at)
            .and_then(|before| before.chars().next_back())
            .is_none_or(|c| !c.is_alphanumeric());
        if starts_word {
            return Some(at);
        }
        end = at;
    }
    None
}

/// The answer text starting at byte `from` of `text`: the rest of that line, or the next
/// non-blank line when the rest is empty.
fn answer_after(text: &str, from: usize, sentence: bool) -> Option<String> {
    let rest = skip_marker_tail(text.get(from..)?);
    let mut lines = rest.lines();
    let first = lines.next().unwrap_or_default();
    let line = if clean_answer(first).is_empty() {
        lines.find(|line| !clean_answer(line).is_empty())?
    } else {
        first
    };
    let mut answer = clean_answer(line);
    if sentence && answer.ends_with('.') && !answer.ends_with("..") {
        answer.pop();
        answer = clean_answer(&answer);
    }
    (!answer.is_empty()).then_some(answer)
}

/// Skips what closes an answer marker: emphasis (`**`), a colon and blanks, as in
/// `**Answer:** 42` or `**Answer**: 42`, but not the opening `**` of a bold answer.
fn skip_marker_tail(rest: &str) -> &str {
    let rest = skip_closing_emphasis(rest);
    let rest = rest.trim_start_matches([':', ' ', '\t']);
    skip_closing_emphasis(rest).trim_start_matches([' ', '\t'])
}

fn skip_closing_emphasis(rest: &str) -> &str {
    match rest.strip_prefix("**").or_else(|| rest.strip_prefix("__")) {
        Some(after)
            if after.is_empty() || after.starts_with(|c: char| c == ':' || c.is_whitespace()) =>
        {
            after
        }
        _ => rest,
    }
}

/// Trims whitespace and strips wrapping markup: `**x**`, `__x__`, `` `x` ``, `$x$`, `\boxed{x}`.
fn clean_answer(raw: &str) -> String {
    strip_markup(raw).to_owned()
}

/// [`clean_answer`] without the copy: strips wrapping pairs until none is left.
fn strip_markup(raw: &str) -> &str {
    const PAIRS: [(&str, &str); 6] = [
        ("**", "**"),
        ("__", "__"),
        ("`", "`"),
        ("$", "$"),
        ("\\(", "\\)"),
        ("\\boxed{", "}"),
    ];
    let mut answer = raw.trim();
    loop {
        let before = answer;
        for (open, close) in PAIRS {
            if let Some(inner) = answer
                .strip_prefix(open)
                .and_then(|rest| rest.strip_suffix(close))
            {
                answer = inner.trim();
            }
        }
        // Bold followed by sentence punctuation: "**42**."
        let body = answer.trim_end_matches(['.', ',', ';', ':', '!', '?']);
        if body.len() < answer.len()
            && let Some(inner) = body
                .strip_prefix("**")
                .and_then(|rest| rest.strip_suffix("**"))
        {
            answer = inner.trim();
        }
        if answer == before {
            return answer;
        }
    }
}

/// How a reasoning step was introduced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepMarker {
    /// "Step 3:", "**Step 3 -** ...": the number as written.
    Step(u32),
    /// "3." or "3)": the number as written.
    Numbered(u32),
    /// "First,", "Then,", "Finally,": the word as written.
    Ordinal(String),
}

/// One step of a reasoning reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Position in the reply, from 1.
    pub index: usize,
    /// How the step was introduced.
    pub marker: StepMarker,
    /// The step's text, lines joined with `\n`, markers and answer lines removed.
    pub text: String,
}

/// Ordinal words that open a step, matched case-insensitively before a comma.
const ORDINAL_WORDS: [&str; 12] = [
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "next",
    "then",
    "after that",
    "afterwards",
    "finally",
    "lastly",
];

/// The reasoning steps of a reply.
///
/// One style is used per reply, the most explicit one present: `Step N:` lines (also
/// `Step N -`, `Step N.`, bold or heading-marked) if any, else numbered lines (`1.`, `1)`),
/// else ordinal sentences (`First, ... Then, ... Finally, ...`, at a line start or after a
/// sentence end). Lines after a step belong to it until the next step or a final-answer line
/// (`Answer:`, `Final answer`, `####`). Text before the first step is ignored.
pub fn parse_steps(text: &str) -> Vec<Step> {
    let lines: Vec<&str> = text.lines().collect();
    let steps = steps_by_line_marker(&lines, step_marker);
    if !steps.is_empty() {
        return steps;
    }
    let steps = steps_by_line_marker(&lines, numbered_marker);
    if !steps.is_empty() {
        return steps;
    }
    ordinal_steps(&lines)
}

/// Groups lines into steps at lines where `marker` matches; stops at an answer line.
fn steps_by_line_marker(
    lines: &[&str],
    marker: fn(&str) -> Option<(StepMarker, &str)>,
) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for line in lines {
        if is_answer_line(line) {
            break;
        }
        if let Some((kind, rest)) = marker(line) {
            steps.push(Step {
                index: steps.len() + 1,
                marker: kind,
                text: rest.trim().to_owned(),
            });
        } else if let Some(step) = steps.last_mut() {
            append_line(&mut step.text, line);
        }
    }
    for step in &mut steps {
        step.text = step.text.trim().to_owned();
    }
    steps
}

fn append_line(text: &mut String, line: &str) {
    if !text.is_empty() || !line.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(line.trim());
    }
}

fn is_answer_line(line: &str) -> bool {
    let stripped = strip_emphasis(line).to_ascii_lowercase();
    stripped.starts_with("answer:")
        || stripped.starts_with("answer**:")
        || stripped.starts_with("final answer")
        || is_gsm8k_line(line)
}

/// `#### 42`: four hashes then something number-like (other `####` lines are headings).
fn is_gsm8k_line(line: &str) -> bool {
    line.trim_start()
        .strip_prefix("####")
        .map(str::trim_start)
        .is_some_and(|rest| {
            rest.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '$' | '.'))
        })
}

/// Leading whitespace and markdown emphasis/heading/quote marks removed.
fn strip_emphasis(line: &str) -> &str {
    line.trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '*' | '_' | '#' | '>'))
}

/// `Step 3:` / `Step 3 -` / `Step 3.` / `Step 3)` / `**Step 3:**` / `### Step 3`.
fn step_marker(line: &str) -> Option<(StepMarker, &str)> {
    let stripped = strip_emphasis(line);
    let word = stripped.get(..4)?;
    if !word.eq_ignore_ascii_case("step") {
        return None;
    }
    let after_word = stripped.get(4..)?.trim_start();
    let (number, rest) = leading_number(after_word)?;
    let rest = rest.trim_start_matches(|c: char| {
        c.is_whitespace() || matches!(c, ':' | '-' | '–' | '—' | '.' | ')' | '*' | '_')
    });
    if !starts_cleanly(after_word, rest) {
        return None;
    }
    Some((StepMarker::Step(number), rest))
}

/// True when what follows the number is a separator, not more of a word ("Step 3rd").
fn starts_cleanly(after_word: &str, rest: &str) -> bool {
    let digits = after_word.bytes().take_while(u8::is_ascii_digit).count();
    let separator = after_word.get(digits..).unwrap_or_default();
    separator.is_empty()
        || rest.len() < separator.len()
        || separator.starts_with(char::is_whitespace)
}

/// `3.` / `3)` followed by whitespace (after optional emphasis).
fn numbered_marker(line: &str) -> Option<(StepMarker, &str)> {
    let stripped = line.trim_start().trim_start_matches(['*', '_']);
    let (number, rest) = leading_number(stripped)?;
    let rest = rest.strip_prefix('.').or_else(|| rest.strip_prefix(')'))?;
    let rest = rest.trim_start_matches(['*', '_']);
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    Some((StepMarker::Numbered(number), rest))
}

/// A number of at most nine digits at the start, and what follows it.
fn leading_number(text: &str) -> Option<(u32, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 9 {
        return None;
    }
    let number = text.get(..digits)?.parse().ok()?;
    Some((number, text.get(digits..)?))
}

/// Splits the reply at ordinal words ("First,", "Then,") that start a line or a sentence.
fn ordinal_steps(lines: &[&str]) -> Vec<Step> {
    let mut body = String::new();
    for line in lines {
        if is_answer_line(line) {
            break;
        }
        body.push_str(line);
        body.push('\n');
    }
    let lower = body.to_ascii_lowercase();
    let mut starts: Vec<(usize, usize, &str)> = Vec::new();
    let mut previous: Option<char> = None;
    for (at, c) in body.char_indices() {
        let after_space = previous.is_none_or(char::is_whitespace);
        previous = Some(c);
        if !after_space || !c.is_alphabetic() || !starts_sentence(&body, at) {
            continue;
        }
        if let Some(word) = ordinal_at(&lower, at) {
            starts.push((
                at,
                at + word.len() + 1,
                body.get(at..at + word.len()).unwrap_or(word),
            ));
        }
    }
    let mut steps = Vec::with_capacity(starts.len());
    for (position, (_, text_start, word)) in starts.iter().enumerate() {
        let end = starts.get(position + 1).map_or(body.len(), |next| next.0);
        let text = body.get(*text_start..end).unwrap_or_default().trim();
        steps.push(Step {
            index: position + 1,
            marker: StepMarker::Ordinal((*word).to_owned()),
            text: text.to_owned(),
        });
    }
    steps
}

/// Whether byte `at` starts a line (after indentation) or follows a sentence end and a space.
fn starts_sentence(body: &str, at: usize) -> bool {
    let Some(before) = body.get(..at) else {
        return false;
    };
    let trimmed = before.trim_end_matches([' ', '\t']);
    trimmed.is_empty()
        || trimmed.ends_with('\n')
        || (trimmed.len() < before.len() && trimmed.ends_with(['.', '!', '?', ':', ';']))
}

/// The ordinal word followed by a comma at byte `at` of the lowercased text.
fn ordinal_at(lower: &str, at: usize) -> Option<&'static str> {
    let rest = lower.get(at..)?;
    ORDINAL_WORDS.into_iter().find(|word| {
        rest.strip_prefix(word)
            .is_some_and(|after| after.starts_with(','))
    })
}

// ---------------------------------------------------------------------------------------------
// Answer normalisation (for self-consistency voting)
// ---------------------------------------------------------------------------------------------

/// A canonical form of an answer so that equal answers vote together.
///
/// Trims, strips wrapping markup (`**`, `$`, backticks, `\boxed{}`), lowercases, collapses
/// whitespace, strips trailing punctuation, and rewrites each numeric word canonically:
/// thousands separators and currency signs dropped, `+` dropped, leading zeros and trailing
/// fractional zeros removed (`"$1,000.50"` → `"1000.5"`, `"42.0"` → `"42"`, `"-0"` → `"0"`).
/// Purely textual, so no float rounding ever merges different answers.
pub fn normalize_answer(answer: &str) -> String {
    let lowered = answer.to_lowercase();
    let mut current = lowered.as_str();
    loop {
        let next = strip_markup(current).trim_end_matches(|c: char| {
            c.is_whitespace() || matches!(c, '.' | ',' | ';' | ':' | '!' | '?')
        });
        if next == current {
            break;
        }
        current = next;
    }
    let words: Vec<String> = current
        .split_whitespace()
        .map(|word| normalize_number(word).unwrap_or_else(|| word.to_owned()))
        .collect();
    words.join(" ")
}

/// The canonical text of a plain decimal number, or `None` if `word` is not one.
fn normalize_number(word: &str) -> Option<String> {
    let (negative, unsigned) = match word.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, word.strip_prefix('+').unwrap_or(word)),
    };
    let unsigned = unsigned.trim_start_matches(['$', '€', '£']);
    let (int_part, frac_part) = match unsigned.split_once('.') {
        Some((int_part, frac_part)) => (int_part, Some(frac_part)),
        None => (unsigned, None),
    };
    let digits = integer_digits(int_part)?;
    if let Some(frac) = frac_part
        && !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    if digits.is_empty() && frac_part.is_none_or(str::is_empty) {
        return None;
    }
    let int_text = digits.trim_start_matches('0');
    let int_text = if int_text.is_empty() { "0" } else { int_text };
    let frac_text = frac_part.unwrap_or_default().trim_end_matches('0');
    let is_zero = int_text == "0" && frac_text.is_empty();
    let sign = if negative && !is_zero { "-" } else { "" };
    Some(if frac_text.is_empty() {
        format!("{sign}{int_text}")
    } else {
        format!("{sign}{int_text}.{frac_text}")
    })
}

/// The digits of an integer part, accepting `1,000,000` grouping (groups of exactly three).
fn integer_digits(int_part: &str) -> Option<String> {
    if !int_part.contains(',') {
        return int_part
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| int_part.to_owned());
    }
    let mut groups = int_part.split(',');
    let head = groups.next()?;
    if head.is_empty() || head.len() > 3 || !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits = head.to_owned();
    for group in groups {
        if group.len() != 3 || !group.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.push_str(group);
    }
    Some(digits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Role;
    use proptest::prelude::*;

    #[test]
    fn system_prompt_has_stable_sections() {
        let prompt = SystemPromptBuilder::new()
            .role("a support agent")
            .expertise(["billing", "accounts", "troubleshooting"])
            .context("Customers ask about our SaaS product.")
            .capability("Look up accounts")
            .capability("Open tickets\nwith a priority")
            .constraint("Verify identity first")
            .output_format("1. Acknowledge\n2. Solve")
            .example(
                "I can't log in",
                "Sorry to hear that. Which email do you use?",
            )
            .build();
        let expected = "\
You are a support agent, with expertise in billing, accounts and troubleshooting.

Customers ask about our SaaS product.

## Capabilities
- Look up accounts
- Open tickets
  with a priority

## Constraints
- Verify identity first

## Output format
1. Acknowledge
2. Solve

## Examples
User: I can't log in
Assistant: Sorry to hear that. Which email do you use?";
        assert_eq!(prompt, expected);
    }

    fn check_system(builder: SystemPromptBuilder, expected: &str) {
        assert_eq!(builder.build(), expected);
    }

    #[test]
    fn system_prompt_omits_empty_parts() {
        check_system(SystemPromptBuilder::new(), "");
        check_system(
            SystemPromptBuilder::new().role("a poet."),
            "You are a poet.",
        );
        check_system(
            SystemPromptBuilder::new().expertise(["rust"]),
            "You have expertise in rust.",
        );
        check_system(
            SystemPromptBuilder::new()
                .role("an editor")
                .expertise(["style", "grammar"]),
            "You are an editor, with expertise in style and grammar.",
        );
        check_system(
            SystemPromptBuilder::new()
                .constraint("  ")
                .constraint("Be brief"),
            "## Constraints\n- Be brief",
        );
        let message = SystemPromptBuilder::new().role("a judge").build_message();
        assert_eq!(message.role, Role::System);
        assert_eq!(message.text(), "You are a judge.");
    }

    fn sentiment() -> FewShotPromptBuilder {
        FewShotPromptBuilder::new("Classify the sentiment as positive, negative or neutral.")
            .example(
                FewShotExample::new("This product exceeded my expectations!", "positive")
                    .with_explanation("Strong satisfaction"),
            )
            .example(FewShotExample::new("It broke after one day.", "negative"))
            .example(FewShotExample::new("It works as described.", "neutral"))
    }

    #[test]
    fn few_shot_prompt_text() {
        let expected = "\
Classify the sentiment as positive, negative or neutral.

Examples:

Input: This product exceeded my expectations!
Output: positive

Input: It broke after one day.
Output: negative

Input: It works as described.
Output: neutral

Input: Never again!
Output:";
        assert_eq!(sentiment().build("Never again!"), expected);

        let with_reasons = sentiment()
            .include_explanations(true)
            .labels("Review", "Sentiment")
            .build("Meh");
        assert!(with_reasons.contains(
            "Review: This product exceeded my expectations!\nReasoning: Strong satisfaction\nSentiment: positive"
        ));
        assert!(with_reasons.contains("Review: It broke after one day.\nSentiment: negative"));
        assert!(with_reasons.ends_with("Review: Meh\nSentiment:"));

        assert_eq!(
            FewShotPromptBuilder::new("").build("q"),
            "Input: q\nOutput:"
        );
    }

    #[test]
    fn few_shot_messages_alternate() {
        let messages = sentiment()
            .include_explanations(true)
            .build_messages("Fine.");
        let shape: Vec<(Role, String)> = messages
            .iter()
            .map(|message| (message.role, message.text()))
            .collect();
        let expected = vec![
            (
                Role::System,
                "Classify the sentiment as positive, negative or neutral.".to_owned(),
            ),
            (
                Role::User,
                "This product exceeded my expectations!".to_owned(),
            ),
            (
                Role::Assistant,
                "Reasoning: Strong satisfaction\nOutput: positive".to_owned(),
            ),
            (Role::User, "It broke after one day.".to_owned()),
            (Role::Assistant, "negative".to_owned()),
            (Role::User, "It works as described.".to_owned()),
            (Role::Assistant, "neutral".to_owned()),
            (Role::User, "Fine.".to_owned()),
        ];
        assert_eq!(shape, expected);
        let bare = FewShotPromptBuilder::new(" ").build_messages("q");
        assert_eq!(bare.len(), 1);
        assert_eq!(bare[0].role, Role::User);
    }

    #[test]
    fn selection_ranks_by_score_with_stable_ties() {
        let builder = FewShotPromptBuilder::new("t")
            .example(FewShotExample::new("a", "1"))
            .example(FewShotExample::new("bb", "2"))
            .example(FewShotExample::new("cc", "3"))
            .example(FewShotExample::new("ddd", "4"));
        let by_length = |_: &str, example: &FewShotExample| example.input.len() as f64;
        assert_eq!(
            builder.rank("q", by_length),
            vec![(3, 3.0), (1, 2.0), (2, 2.0), (0, 1.0)]
        );
        let chosen: Vec<String> = builder
            .select(2, "q", by_length)
            .examples
            .into_iter()
            .map(|example| example.input)
            .collect();
        assert_eq!(chosen, vec!["ddd", "bb"]);
        let nan_first = |_: &str, example: &FewShotExample| {
            if example.input == "a" { f64::NAN } else { 0.0 }
        };
        assert_eq!(builder.rank("q", nan_first)[3].0, 0);
        assert_eq!(builder.select(10, "q", by_length).examples.len(), 4);
        assert!(builder.select(0, "q", by_length).examples.is_empty());
    }

    #[test]
    fn lexical_selection_prefers_overlapping_inputs() {
        let selected = sentiment().select(1, "the product broke after a day", lexical_similarity);
        assert_eq!(selected.examples[0].output, "negative");
        assert_eq!(selected.task, sentiment().task);
        assert_eq!(token_jaccard("A b, c!", "c B d"), 0.5);
        assert_eq!(token_jaccard("", "  "), 0.0);
        assert_eq!(token_jaccard("Same", "same"), 1.0);
    }

    #[test]
    fn chain_of_thought_prompts() {
        assert_eq!(
            CotStyle::ZeroShot.build(" How many legs do 3 spiders have? "),
            "How many legs do 3 spiders have?\n\nLet's think step by step."
        );
        let few = CotStyle::FewShot(vec![CotExample {
            question: "2 + 2 * 3?".into(),
            reasoning: "Multiply first: 2 * 3 = 6, then 2 + 6 = 8.".into(),
            answer: "8".into(),
        }]);
        assert_eq!(
            few.build("10 - 2 * 4?"),
            "Question: 2 + 2 * 3?\nReasoning: Multiply first: 2 * 3 = 6, then 2 + 6 = 8.\nAnswer: 8\n\nQuestion: 10 - 2 * 4?\nReasoning:"
        );
        let structured = CotStyle::Structured(vec!["Identify the facts".into(), "Solve".into()]);
        let prompt = structured.build("Average speed?");
        assert!(prompt.starts_with("Question: Average speed?\n\n"));
        assert!(prompt.contains("\nStep 1: Identify the facts\nStep 2: Solve\n"));
        assert!(prompt.ends_with("\"Final answer: <answer>\"."));
    }

    fn check_answer(input: &str, expected: Option<&str>) {
        assert_eq!(
            extract_answer(input).as_deref(),
            expected,
            "input: {input:?}"
        );
    }

    #[test]
    fn answers_are_extracted() {
        check_answer("Total is 210/4.\nAnswer: 52.5 mph", Some("52.5 mph"));
        check_answer("answer: yes", Some("yes"));
        check_answer("Reasoning...\nFinal answer: 42", Some("42"));
        check_answer("**Final Answer:** 42", Some("42"));
        check_answer("**Final Answer**: **42**.", Some("42"));
        check_answer("Therefore, the answer is 42.", Some("42"));
        check_answer("The answer is $\\frac{1}{2}$.", Some("\\frac{1}{2}"));
        check_answer("So the final answer is Paris.", Some("Paris"));
        check_answer("Natalia sold 48 + 24 = 72 clips.\n#### 72", Some("72"));
        check_answer("#### 1,000\n\n", Some("1,000"));
        check_answer("so $x = \\boxed{\\frac{3}{4}}$ done", Some("\\frac{3}{4}"));
        check_answer("\\boxed{1} wait, no: \\boxed{2}", Some("2"));
        // Strongest marker wins over position; within a marker, the last one wins.
        check_answer("\\boxed{7}\nAnswer: 8", Some("7"));
        check_answer("Answer: 3\nHmm, recheck.\nAnswer: 4", Some("4"));
        check_answer("Final answer: 5\nAnswer: 6", Some("5"));
        // "Answer:" must start a line; "answer is" must start a word.
        check_answer("I need an answer: maybe", None);
        check_answer("Wrong answer. The real answer is 9", Some("9"));
        check_answer("the reanswer is 9", None);
        // An empty marker line takes the next non-blank line.
        check_answer("Answer:\n\n  17  \nThanks", Some("17"));
        check_answer("#### Heading\nNo marker here.", None);
        check_answer("Answer:", None);
        check_answer("\\boxed{unclosed", None);
        check_answer("", None);
        assert_eq!(
            extract_answer_or_last_line("Reasoning.\n**12**\n\n").as_deref(),
            Some("12")
        );
        assert_eq!(
            extract_answer_or_last_line("Answer: 3\nok").as_deref(),
            Some("3")
        );
        assert_eq!(extract_answer_or_last_line(" \n "), None);
    }

    fn check_steps(input: &str, expected: &[(StepMarker, &str)]) {
        let got: Vec<(usize, StepMarker, String)> = parse_steps(input)
            .into_iter()
            .map(|step| (step.index, step.marker, step.text))
            .collect();
        let want: Vec<(usize, StepMarker, String)> = expected
            .iter()
            .enumerate()
            .map(|(index, (marker, text))| (index + 1, marker.clone(), (*text).to_owned()))
            .collect();
        assert_eq!(got, want, "input: {input:?}");
    }

    fn ordinal(word: &str) -> StepMarker {
        StepMarker::Ordinal(word.to_owned())
    }

    #[test]
    fn steps_are_parsed() {
        check_steps(
            "Let me work through this.\nStep 1: Total distance 120 + 90 = 210\nStep 2 - Total time:\n2 + 0.5 + 1.5 = 4\n**Step 3:** 210 / 4 = 52.5\nAnswer: 52.5 mph",
            &[
                (StepMarker::Step(1), "Total distance 120 + 90 = 210"),
                (StepMarker::Step(2), "Total time:\n2 + 0.5 + 1.5 = 4"),
                (StepMarker::Step(3), "210 / 4 = 52.5"),
            ],
        );
        // "Step" headers win over numbered lines inside them.
        check_steps(
            "### Step 1. Facts\n1. a\n2. b\n### Step 2\nsolve",
            &[
                (StepMarker::Step(1), "Facts\n1. a\n2. b"),
                (StepMarker::Step(2), "solve"),
            ],
        );
        check_steps(
            "1. Distance: 210\n2) Time: 4\n\n3. Speed: 52.5\n#### 52.5",
            &[
                (StepMarker::Numbered(1), "Distance: 210"),
                (StepMarker::Numbered(2), "Time: 4"),
                (StepMarker::Numbered(3), "Speed: 52.5"),
            ],
        );
        check_steps(
            "First, add the distances. Then, add the times.\nFinally, divide 210 by 4.\nFinal answer: 52.5",
            &[
                (ordinal("First"), "add the distances."),
                (ordinal("Then"), "add the times."),
                (ordinal("Finally"), "divide 210 by 4."),
            ],
        );
        check_steps(
            "  after that, x. next, y",
            &[(ordinal("after that"), "x."), (ordinal("next"), "y")],
        );
        // Not markers: mid-sentence ordinals, "Steps", decimals.
        check_steps("We first, then second, go.", &[]);
        check_steps("Steps 1: x\n1.5 is a number", &[]);
        check_steps("", &[]);
    }

    fn check_normalized(input: &str, expected: &str) {
        assert_eq!(normalize_answer(input), expected, "input: {input:?}");
    }

    #[test]
    fn answers_normalize() {
        check_normalized("  Paris. ", "paris");
        check_normalized("**42**", "42");
        check_normalized("42.0", "42");
        check_normalized("42.50", "42.5");
        check_normalized("1,000", "1000");
        check_normalized("$1,234,567.00", "1234567");
        check_normalized("+7", "7");
        check_normalized("-0.0", "0");
        check_normalized("007", "7");
        check_normalized(".5", "0.5");
        check_normalized("42.", "42");
        check_normalized("52.5  MPH!", "52.5 mph");
        check_normalized("\\boxed{12}", "12");
        check_normalized("$\\frac{1}{2}$", "\\frac{1}{2}");
        check_normalized("1,00", "1,00");
        check_normalized("1e5", "1e5");
        check_normalized("-", "-");
        check_normalized("", "");
        check_normalized("Yes, 1,000 apples.", "yes, 1000 apples");
    }

    proptest! {
        #[test]
        fn readers_never_panic(text in any::<String>()) {
            let _ = extract_answer(&text);
            let _ = extract_answer_or_last_line(&text);
            let _ = parse_steps(&text);
            let _ = normalize_answer(&text);
        }

        #[test]
        fn readers_never_panic_on_markup(text in "(Step |Answer|answer is|\\\\boxed\\{|####|First, |1\\. |\\*\\*|[{}$.,:\n 0-9a-z])*") {
            let _ = extract_answer(&text);
            let _ = parse_steps(&text);
            let _ = normalize_answer(&text);
        }

        #[test]
        fn normalization_is_idempotent(text in "[ $,.0-9a-zA-Z*!-]{0,24}") {
            let once = normalize_answer(&text);
            prop_assert_eq!(normalize_answer(&once), once.clone());
        }

        #[test]
        fn grouped_integers_normalize_to_plain(n in 0u64..10_000_000_000) {
            let plain = n.to_string();
            let digits: Vec<char> = plain.chars().collect();
            let mut grouped = String::new();
            for (index, digit) in digits.iter().enumerate() {
                if index > 0 && (digits.len() - index).is_multiple_of(3) {
                    grouped.push(',');
                }
                grouped.push(*digit);
            }
            prop_assert_eq!(normalize_answer(&grouped), plain.clone());
            prop_assert_eq!(normalize_answer(&format!("{plain}.000")), plain);
        }

        #[test]
        fn boxed_answers_round_trip(answer in "[a-z0-9+ ]{1,10}") {
            prop_assume!(!answer.trim().is_empty());
            let text = format!("Reasoning here.\nSo we get $\\boxed{{{answer}}}$.");
            prop_assert_eq!(extract_answer(&text), Some(answer.trim().to_owned()));
        }
    }
}
