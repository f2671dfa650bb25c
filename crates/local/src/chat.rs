//! The embedded chat engine: a GGUF model run in-process by llama.cpp (through `llama-cpp-2`).
//!
//! The model is loaded once and shared (`Arc`); a fixed pool of worker threads each owns one
//! llama.cpp context, so concurrency is bounded by the pool size and requests beyond it queue.
//! Each worker keeps its context's KV cache between requests and re-evaluates only the part of a
//! new prompt after the longest common token prefix, which makes multi-turn chats cheap.
//! All llama.cpp work runs on those threads, never on an async executor; results come back
//! through channels, and a stream whose receiver is dropped cancels its generation.
//!
//! The prompt is rendered from the model's own Jinja chat template (`tokenizer.chat_template`
//! in the GGUF) with minijinja, as Hugging Face transformers does. llama.cpp's built-in ChatML
//! path (`apply_chat_template`) omits the default system prompt that SmolLM2's template adds
//! when the conversation has none, so the model would see a prompt it was not tuned on.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use promptops_core::message::{Message, Role};
use promptops_core::tokens::{Exactness, Tokenizer};
use serde::Serialize;
use tokio::sync::mpsc as tokio_mpsc;

use crate::error::{LocalError, Result};
use crate::models::{CHAT_MODEL, ModelCache, find_model};

/// How many recent tokens the repetition/frequency/presence penalties look at.
const PENALTY_WINDOW: i32 = 64;
/// The most top alternatives a request may ask for per token (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: u8 = 20;

/// The process-wide llama.cpp backend (it may be initialised only once per process).
static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
/// llama.cpp mutates the model while creating a context, so contexts are created one at a time.
static CONTEXT_CREATION: Mutex<()> = Mutex::new(());

fn backend() -> Result<&'static LlamaBackend> {
    BACKEND
        .get_or_init(|| {
            // llama.cpp logs every load to stderr; route it to `tracing` instead.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|error| error.to_string())
        })
        .as_ref()
        .map_err(|reason| LocalError::Inference(format!("initialising llama.cpp: {reason}")))
}

/// Engine settings fixed at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatOptions {
    /// Worker threads, each with its own context: the number of requests served at once.
    pub workers: usize,
    /// CPU threads each worker uses for matrix work. Defaults to the available cores; ggml's
    /// own thread pool (built without OpenMP) waits passively, so an oversubscribed box slows
    /// down gracefully instead of collapsing in spin barriers.
    pub threads: u32,
    /// Context window per worker in tokens (prompt plus generation).
    pub context_size: u32,
    /// Prompt tokens evaluated per llama.cpp batch.
    pub batch_size: u32,
}

impl Default for ChatOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ChatOptions {
            workers: 1,
            threads: u32::try_from(cores).unwrap_or(1),
            context_size: 4096,
            batch_size: 512,
        }
    }
}

/// What the model is asked to continue.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// A conversation, rendered through the model's chat template with the assistant turn
    /// opened.
    Messages(Vec<Message>),
    /// Raw text handed to the model as is (special-token text is not recognised in it).
    Text(String),
}

/// Sampling settings; `temperature == 0` means greedy decoding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sampling {
    /// Softmax temperature, 0 to 2. Default 1.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens.
    pub top_k: Option<u32>,
    /// Nucleus sampling: keep the smallest set whose probability reaches `p` (0 < p <= 1).
    pub top_p: Option<f32>,
    /// Drop tokens less likely than `p` times the most likely one (0 <= p < 1).
    pub min_p: Option<f32>,
    /// Multiplicative repetition penalty (> 0, 1 = off) over the last 64 generated tokens.
    pub repetition_penalty: Option<f32>,
    /// OpenAI-style frequency penalty (-2 to 2) over the last 64 generated tokens.
    pub frequency_penalty: Option<f32>,
    /// OpenAI-style presence penalty (-2 to 2) over the last 64 generated tokens.
    pub presence_penalty: Option<f32>,
    /// Seed: the same request with the same seed on the same build gives the same output.
    /// Without one, a random seed is used.
    pub seed: Option<u64>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            min_p: None,
            repetition_penalty: None,
            frequency_penalty: None,
            presence_penalty: None,
            seed: None,
        }
    }
}

impl Sampling {
    /// Greedy decoding (temperature 0): deterministic without a seed.
    pub fn greedy() -> Self {
        Sampling {
            temperature: 0.0,
            ..Sampling::default()
        }
    }

    fn validate(&self) -> Result<()> {
        let invalid =
            |field: &'static str, reason: String| LocalError::InvalidRequest { field, reason };
        if !(0.0..=2.0).contains(&self.temperature) {
            return Err(invalid(
                "temperature",
                format!("{} is outside 0..=2", self.temperature),
            ));
        }
        if self.top_k == Some(0) {
            return Err(invalid("top_k", "must be at least 1".to_owned()));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(invalid("top_p", format!("{p} is outside (0, 1]")));
        }
        if let Some(p) = self.min_p
            && !(0.0..1.0).contains(&p)
        {
            return Err(invalid("min_p", format!("{p} is outside [0, 1)")));
        }
        if let Some(penalty) = self.repetition_penalty
            && !(penalty > 0.0 && penalty.is_finite())
        {
            return Err(invalid(
                "repetition_penalty",
                format!("{penalty} must be a positive number"),
            ));
        }
        for (field, value) in [
            ("frequency_penalty", self.frequency_penalty),
            ("presence_penalty", self.presence_penalty),
        ] {
            if let Some(value) = value
                && !(-2.0..=2.0).contains(&value)
            {
                return Err(invalid(field, format!("{value} is outside -2..=2")));
            }
        }
        Ok(())
    }
}

/// A constraint compiled into a token mask: every generated token keeps the output inside it.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// The output is a JSON document valid against this JSON schema (compiled to GBNF by
    /// llama.cpp's `json_schema_to_grammar`).
    JsonSchema(serde_json::Value),
    /// The output matches a GBNF grammar starting at rule `root`.
    Grammar {
        /// The grammar text.
        gbnf: String,
        /// The start rule, usually `root`.
        root: String,
    },
    /// The whole output matches a regular expression (Rust `regex` syntax), enforced by
    /// llguidance's lexer over the model's token trie.
    Regex(String),
}

/// A constraint ready for the sampler chain: a GBNF grammar for llama.cpp's grammar sampler, or
/// an llguidance matcher.
enum CompiledConstraint {
    Gbnf { gbnf: String, root: String },
    Guidance(Box<llguidance::Matcher>),
}

impl Constraint {
    /// The GBNF grammar and its root rule (JSON schemas and grammars; a regex has no GBNF form
    /// here: it is compiled by llguidance).
    pub fn to_gbnf(&self) -> Result<(String, String)> {
        match self {
            Constraint::JsonSchema(schema) => {
                let gbnf =
                    llama_cpp_2::json_schema_to_grammar(&schema.to_string()).map_err(|error| {
                        LocalError::Constraint {
                            kind: "json_schema",
                            reason: error.to_string(),
                        }
                    })?;
                Ok((gbnf, "root".to_owned()))
            }
            Constraint::Grammar { gbnf, root } => Ok((gbnf.clone(), root.clone())),
            Constraint::Regex(_) => Err(LocalError::Constraint {
                kind: "regex",
                reason: "a regex is compiled by llguidance, not to GBNF".to_owned(),
            }),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Constraint::JsonSchema(_) => "json_schema",
            Constraint::Grammar { .. } => "grammar",
            Constraint::Regex(_) => "regex",
        }
    }

    /// Compiles for `model`, checking it the way the sampler will use it, so that a bad schema,
    /// grammar or regex is an error of the call rather than of the stream.
    fn compile(&self, shared: &Shared) -> Result<CompiledConstraint> {
        let invalid = |reason: String| LocalError::Constraint {
            kind: self.kind(),
            reason,
        };
        match self {
            Constraint::Regex(pattern) => {
                let factory = shared.guidance_factory().map_err(invalid)?;
                let parser = factory
                    .create_parser(llguidance::api::TopLevelGrammar::from_regex(pattern))
                    .map_err(|error| invalid(error.to_string()))?;
                let matcher = llguidance::Matcher::new(Ok(parser));
                if let Some(error) = matcher.get_error() {
                    return Err(invalid(error));
                }
                Ok(CompiledConstraint::Guidance(Box::new(matcher)))
            }
            Constraint::JsonSchema(_) | Constraint::Grammar { .. } => {
                let (gbnf, root) = self.to_gbnf()?;
                LlamaSampler::grammar(&shared.model, &gbnf, &root)
                    .map_err(|error| invalid(error.to_string()))?;
                Ok(CompiledConstraint::Gbnf { gbnf, root })
            }
        }
    }
}

/// One generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// What to continue.
    pub prompt: Prompt,
    /// Sampling settings.
    pub sampling: Sampling,
    /// Most tokens to generate; `None` = until the end token or the context is full.
    pub max_tokens: Option<u32>,
    /// Stop sequences: generation ends before the first occurrence of any of them (matched on
    /// the decoded text, so a sequence split across tokens is still found), which is not
    /// included in the output.
    pub stop: Vec<String>,
    /// `Some(n)`: return each generated token's log probability and its `n` (<= 20) most
    /// likely alternatives.
    pub logprobs: Option<u8>,
    /// Constrained decoding.
    pub constraint: Option<Constraint>,
}

impl ChatRequest {
    /// A request continuing `messages` with default sampling.
    pub fn new(messages: Vec<Message>) -> Self {
        ChatRequest {
            prompt: Prompt::Messages(messages),
            sampling: Sampling::default(),
            max_tokens: None,
            stop: Vec::new(),
            logprobs: None,
            constraint: None,
        }
    }

    /// A request continuing raw `text`.
    pub fn text(text: impl Into<String>) -> Self {
        ChatRequest {
            prompt: Prompt::Text(text.into()),
            ..ChatRequest::new(Vec::new())
        }
    }

    fn validate(&self) -> Result<()> {
        self.sampling.validate()?;
        if let Some(n) = self.logprobs
            && n > MAX_TOP_LOGPROBS
        {
            return Err(LocalError::InvalidRequest {
                field: "top_logprobs",
                reason: format!("{n} is more than {MAX_TOP_LOGPROBS}"),
            });
        }
        if self.stop.iter().any(String::is_empty) {
            return Err(LocalError::InvalidRequest {
                field: "stop",
                reason: "a stop sequence is empty".to_owned(),
            });
        }
        match &self.prompt {
            Prompt::Messages(messages) if messages.is_empty() => Err(LocalError::InvalidRequest {
                field: "messages",
                reason: "no messages".to_owned(),
            }),
            Prompt::Text(text) if text.is_empty() => Err(LocalError::InvalidRequest {
                field: "prompt",
                reason: "empty prompt".to_owned(),
            }),
            _ => Ok(()),
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model produced its end token, or a stop sequence appeared.
    Stop,
    /// `max_tokens` was reached or the context window is full.
    Length,
}

/// Token counts of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Usage {
    /// Tokens in the rendered prompt.
    pub prompt_tokens: u32,
    /// Of those, tokens whose KV entries were reused from the worker's previous request.
    pub cached_tokens: u32,
    /// Tokens generated (the end token is not counted).
    pub completion_tokens: u32,
}

/// Wall-clock timings of one generation, measured on the worker.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Timings {
    /// Evaluating the prompt tokens that were not cached.
    pub prompt: Duration,
    /// From the start of the job to the first sampled token.
    pub first_token: Duration,
    /// Generating every token after the prompt.
    pub generation: Duration,
}

/// A generated token's log probability and its most likely alternatives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenLogprob {
    /// The token's text (lossy if it is part of a multi-byte character).
    pub token: String,
    /// The token's raw bytes.
    pub bytes: Vec<u8>,
    /// Natural log probability under the model's distribution (before temperature,
    /// penalties and constraints).
    pub logprob: f32,
    /// The most likely tokens at this position, most likely first.
    pub top: Vec<TopLogprob>,
}

/// One alternative in [`TokenLogprob::top`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopLogprob {
    /// The alternative's text.
    pub token: String,
    /// Its natural log probability.
    pub logprob: f32,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    /// The generated text (stop sequence excluded).
    pub text: String,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Token counts.
    pub usage: Usage,
    /// Per-token log probabilities when requested.
    pub logprobs: Option<Vec<TokenLogprob>>,
    /// Timings.
    pub timings: Timings,
}

/// One item of a generation stream.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// More text (and the log probabilities of the tokens it came from, when requested).
    Delta {
        /// The new text.
        text: String,
        /// Log probabilities of the tokens behind `text`.
        logprobs: Vec<TokenLogprob>,
    },
    /// The last event.
    Done {
        /// Why it ended.
        finish_reason: FinishReason,
        /// Token counts.
        usage: Usage,
        /// Timings.
        timings: Timings,
    },
}

/// Receives a job's events on the worker; `false` from `send` cancels the job.
trait EventSink: Send {
    fn send(&mut self, event: Result<ChatEvent>) -> bool;
    fn is_closed(&self) -> bool;
}

impl EventSink for tokio_mpsc::UnboundedSender<Result<ChatEvent>> {
    fn send(&mut self, event: Result<ChatEvent>) -> bool {
        tokio_mpsc::UnboundedSender::send(self, event).is_ok()
    }
    fn is_closed(&self) -> bool {
        tokio_mpsc::UnboundedSender::is_closed(self)
    }
}

impl EventSink for std_mpsc::Sender<Result<ChatEvent>> {
    fn send(&mut self, event: Result<ChatEvent>) -> bool {
        std_mpsc::Sender::send(self, event).is_ok()
    }
    fn is_closed(&self) -> bool {
        false
    }
}

struct Job {
    request: ChatRequest,
    constraint: Option<CompiledConstraint>,
    prompt: String,
    parse_special: bool,
    sink: Box<dyn EventSink>,
}

struct Shared {
    model: Arc<LlamaModel>,
    path: PathBuf,
    template: Option<String>,
    options: ChatOptions,
    jobs: Mutex<Option<std_mpsc::Sender<Job>>>,
    /// llguidance's parser factory over the model's token trie: walking the vocabulary costs
    /// a few hundred milliseconds, so it is built on the first regex and kept.
    guidance: std::sync::OnceLock<std::result::Result<Arc<llguidance::ParserFactory>, String>>,
}

impl Shared {
    fn guidance_factory(&self) -> std::result::Result<Arc<llguidance::ParserFactory>, String> {
        self.guidance
            .get_or_init(|| {
                let tok_env = LlamaSampler::llguidance_tok_env(&self.model);
                let mut factory = llguidance::ParserFactory::new_simple(&tok_env)
                    .map_err(|error| error.to_string())?;
                factory.quiet();
                Ok(Arc::new(factory))
            })
            .clone()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Dropping the sender ends every worker's loop.
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
    }
}

/// The embedded chat model: cheap to clone, shared across requests.
#[derive(Clone)]
pub struct LocalChat {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LocalChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalChat")
            .field("path", &self.shared.path)
            .field("options", &self.shared.options)
            .finish()
    }
}

impl LocalChat {
    /// Loads the registry's chat model (`smollm2-135m`) from `cache`, checking it is installed
    /// with the right size first (a missing model's error names the command that fetches it).
    pub fn from_cache(cache: &ModelCache, options: ChatOptions) -> Result<Self> {
        let dir = cache.require(CHAT_MODEL)?;
        let spec = find_model(CHAT_MODEL)?;
        let mut chat = None;
        for file in spec.files {
            chat = Some(
                LocalChat::load(dir.join(file.path), options.clone()).map_err(
                    |error| match error {
                        LocalError::Load { path, reason } => LocalError::ModelCorrupted {
                            path,
                            reason,
                            command: cache.pull_command(spec),
                        },
                        other => other,
                    },
                )?,
            );
        }
        chat.ok_or_else(|| LocalError::ModelMissing {
            name: CHAT_MODEL.to_owned(),
            dir,
            command: cache.pull_command(spec),
        })
    }

    /// Loads a GGUF chat model from `path` and starts its worker threads.
    pub fn load(path: impl AsRef<Path>, options: ChatOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if options.workers == 0 || options.threads == 0 || options.context_size < 16 {
            return Err(LocalError::InvalidRequest {
                field: "options",
                reason: format!(
                    "workers and threads must be at least 1 and context_size at least 16, got {options:?}"
                ),
            });
        }
        check_gguf_header(&path)?;
        let backend = backend()?;
        let model = LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default())
            .map_err(|error| LocalError::Load {
                path: path.clone(),
                reason: format!("llama.cpp could not load it ({error}): not a valid GGUF model"),
            })?;
        let template = model.meta_val_str("tokenizer.chat_template").ok();
        let model = Arc::new(model);
        let (job_sender, job_receiver) = std_mpsc::channel::<Job>();
        let job_receiver = Arc::new(Mutex::new(job_receiver));
        let (ready_sender, ready_receiver) = std_mpsc::channel::<Result<()>>();
        for index in 0..options.workers {
            let model = Arc::clone(&model);
            let jobs = Arc::clone(&job_receiver);
            let ready = ready_sender.clone();
            let options = options.clone();
            let path = path.clone();
            std::thread::Builder::new()
                .name(format!("local-chat-{index}"))
                .spawn(move || worker(&model, &path, &options, &jobs, &ready))
                .map_err(|error| LocalError::Inference(format!("spawning a worker: {error}")))?;
        }
        drop(ready_sender);
        for _ in 0..options.workers {
            ready_receiver.recv().map_err(|_| {
                LocalError::EngineStopped("a worker exited while starting".to_owned())
            })??;
        }
        Ok(LocalChat {
            shared: Arc::new(Shared {
                model,
                path,
                template,
                options,
                jobs: Mutex::new(Some(job_sender)),
                guidance: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The options it runs with.
    pub fn options(&self) -> &ChatOptions {
        &self.shared.options
    }

    /// The context window of each worker in tokens.
    pub fn context_size(&self) -> u32 {
        self.shared.options.context_size
    }

    /// The model's tokenizer (exact: it is llama.cpp's own tokenizer for this GGUF).
    pub fn tokenizer(&self) -> GgufTokenizer {
        GgufTokenizer {
            model: Arc::clone(&self.shared.model),
            name: self
                .shared
                .model
                .meta_val_str("general.name")
                .unwrap_or_else(|_| "gguf".to_owned()),
        }
    }

    /// The prompt text `messages` render to through the model's chat template, with the
    /// assistant turn opened.
    pub fn render(&self, messages: &[Message]) -> Result<String> {
        let template = self
            .shared
            .template
            .as_deref()
            .ok_or_else(|| LocalError::Template {
                model: self.shared.path.display().to_string(),
                reason: "the GGUF has no tokenizer.chat_template".to_owned(),
            })?;
        render_chat_template(template, messages, &self.shared.path)
    }

    /// Prompt tokens `request` evaluates to (what [`Usage::prompt_tokens`] will report).
    pub fn count_prompt_tokens(&self, request: &ChatRequest) -> Result<usize> {
        let (prompt, parse_special) = self.prompt_text(request)?;
        Ok(self
            .shared
            .model
            .vocab()
            .tokenize(prompt.as_bytes(), true, parse_special)
            .len())
    }

    fn prompt_text(&self, request: &ChatRequest) -> Result<(String, bool)> {
        match &request.prompt {
            Prompt::Messages(messages) => Ok((self.render(messages)?, true)),
            Prompt::Text(text) => Ok((text.clone(), false)),
        }
    }

    fn submit(&self, request: ChatRequest, sink: Box<dyn EventSink>) -> Result<()> {
        request.validate()?;
        let constraint = request
            .constraint
            .as_ref()
            .map(|constraint| constraint.compile(&self.shared))
            .transpose()?;
        let (prompt, parse_special) = self.prompt_text(&request)?;
        let jobs = self
            .shared
            .jobs
            .lock()
            .map_err(|_| LocalError::EngineStopped("job queue lock poisoned".to_owned()))?;
        let sender = jobs
            .as_ref()
            .ok_or_else(|| LocalError::EngineStopped("engine shut down".to_owned()))?;
        sender
            .send(Job {
                request,
                constraint,
                prompt,
                parse_special,
                sink,
            })
            .map_err(|_| LocalError::EngineStopped("every worker has exited".to_owned()))
    }

    /// Starts generating; text arrives as [`ChatEvent::Delta`]s, then one [`ChatEvent::Done`].
    /// Dropping the stream cancels the generation on its worker.
    pub fn stream(&self, request: ChatRequest) -> Result<ChatStream> {
        let (sender, receiver) = tokio_mpsc::unbounded_channel();
        self.submit(request, Box::new(sender))?;
        Ok(ChatStream {
            receiver,
            finished: false,
        })
    }

    /// Generates to the end without blocking the async executor (the work runs on a worker
    /// thread).
    pub async fn generate(&self, request: ChatRequest) -> Result<Generation> {
        let want_logprobs = request.logprobs.is_some();
        let mut stream = self.stream(request)?;
        let mut collector = Collector::new(want_logprobs);
        while let Some(event) = stream.next_event().await {
            if let Some(generation) = collector.push(event?) {
                return Ok(generation);
            }
        }
        Err(collector.unfinished())
    }

    /// Generates to the end, blocking the calling thread (for threads outside an async runtime).
    pub fn generate_blocking(&self, request: ChatRequest) -> Result<Generation> {
        let want_logprobs = request.logprobs.is_some();
        let (sender, receiver) = std_mpsc::channel();
        self.submit(request, Box::new(sender))?;
        let mut collector = Collector::new(want_logprobs);
        while let Ok(event) = receiver.recv() {
            if let Some(generation) = collector.push(event?) {
                return Ok(generation);
            }
        }
        Err(collector.unfinished())
    }
}

/// Accumulates events into a [`Generation`].
struct Collector {
    text: String,
    logprobs: Option<Vec<TokenLogprob>>,
}

impl Collector {
    fn new(want_logprobs: bool) -> Self {
        Collector {
            text: String::new(),
            logprobs: want_logprobs.then(Vec::new),
        }
    }

    fn push(&mut self, event: ChatEvent) -> Option<Generation> {
        match event {
            ChatEvent::Delta { text, logprobs } => {
                self.text.push_str(&text);
                if let Some(all) = &mut self.logprobs {
                    all.extend(logprobs);
                }
                None
            }
            ChatEvent::Done {
                finish_reason,
                usage,
                timings,
            } => Some(Generation {
                text: std::mem::take(&mut self.text),
                finish_reason,
                usage,
                logprobs: self.logprobs.take(),
                timings,
            }),
        }
    }

    fn unfinished(&self) -> LocalError {
        LocalError::EngineStopped("the worker ended the generation without finishing it".to_owned())
    }
}

/// The events of one generation; dropping it cancels the generation.
#[derive(Debug)]
pub struct ChatStream {
    receiver: tokio_mpsc::UnboundedReceiver<Result<ChatEvent>>,
    finished: bool,
}

impl ChatStream {
    /// The next event, or `None` after [`ChatEvent::Done`] or an error.
    pub async fn next_event(&mut self) -> Option<Result<ChatEvent>> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<ChatEvent>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.receiver.poll_recv(cx) {
            Poll::Ready(Some(event)) => {
                if matches!(event, Ok(ChatEvent::Done { .. }) | Err(_)) {
                    self.finished = true;
                }
                Poll::Ready(Some(event))
            }
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(Some(Err(LocalError::EngineStopped(
                    "the worker ended the stream without finishing it".to_owned(),
                ))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl futures_core::Stream for ChatStream {
    type Item = Result<ChatEvent>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_event(cx)
    }
}

/// The GGUF's own tokenizer (llama.cpp's implementation of the model's byte-level BPE).
#[derive(Clone)]
pub struct GgufTokenizer {
    model: Arc<LlamaModel>,
    name: String,
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field("name", &self.name)
            .finish()
    }
}

impl GgufTokenizer {
    /// Token ids of `text`; special-token text (`<|im_start|>`) is recognised when
    /// `parse_special` is set, otherwise it is tokenized as plain text.
    pub fn encode(&self, text: &str, parse_special: bool) -> Vec<u32> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, parse_special)
            .into_iter()
            .filter_map(|token| u32::try_from(token.0).ok())
            .collect()
    }

    /// The text of `ids` (special tokens rendered as their text); invalid UTF-8 is replaced.
    pub fn decode(&self, ids: &[u32]) -> String {
        let vocab = self.model.vocab();
        let mut bytes = Vec::new();
        for id in ids {
            if let Ok(id) = i32::try_from(*id) {
                vocab.token_to_piece_into(LlamaToken(id), &mut bytes, true, None);
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The vocabulary size.
    pub fn vocab_size(&self) -> usize {
        usize::try_from(self.model.n_vocab()).unwrap_or(0)
    }
}

impl Tokenizer for GgufTokenizer {
    fn name(&self) -> &str {
        &self.name
    }

    fn exactness(&self) -> Exactness {
        Exactness::Exact
    }

    fn count(&self, text: &str) -> usize {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, false)
            .len()
    }
}

/// Fails with [`LocalError::ModelCorrupted`] unless `path` starts like a GGUF file; llama.cpp
/// then checks the structure (tensor table, data bounds) itself.
fn check_gguf_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            LocalError::ModelMissing {
                name: path.display().to_string(),
                dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
                command: format!("promptops models pull {CHAT_MODEL}"),
            }
        } else {
            LocalError::io("opening", path, error)
        }
    })?;
    let mut magic = [0u8; 4];
    let corrupted = |reason: &str| LocalError::ModelCorrupted {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
        command: format!("promptops models pull {CHAT_MODEL}"),
    };
    file.read_exact(&mut magic)
        .map_err(|_| corrupted("shorter than a GGUF header"))?;
    if &magic != b"GGUF" {
        return Err(corrupted("it does not start with the GGUF magic bytes"));
    }
    Ok(())
}

/// Renders the GGUF's Jinja chat template with minijinja.
fn render_chat_template(template: &str, messages: &[Message], path: &Path) -> Result<String> {
    let error = |reason: String| LocalError::Template {
        model: path.display().to_string(),
        reason,
    };
    let mut env = minijinja::Environment::new();
    env.add_function(
        "raise_exception",
        |message: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                message,
            ))
        },
    );
    env.add_template("chat", template)
        .map_err(|e| error(format!("{e:#}")))?;
    let turns: Vec<minijinja::Value> = messages
        .iter()
        .map(|message| {
            let role = match message.role {
                Role::Developer => Role::System.as_str(),
                role => role.as_str(),
            };
            minijinja::Value::from_pairs([
                ("role", minijinja::Value::from(role)),
                ("content", minijinja::Value::from(message.text())),
            ])
        })
        .collect();
    env.get_template("chat")
        .and_then(|template| {
            template.render(minijinja::context! {
                messages => turns,
                add_generation_prompt => true,
                bos_token => "<|im_start|>",
                eos_token => "<|im_end|>",
            })
        })
        .map_err(|e| error(format!("{e:#}")))
}

/// A worker thread: owns one context and serves jobs until the queue closes.
fn worker(
    model: &LlamaModel,
    path: &Path,
    options: &ChatOptions,
    jobs: &Mutex<std_mpsc::Receiver<Job>>,
    ready: &std_mpsc::Sender<Result<()>>,
) {
    let context = new_context(model, path, options);
    let mut context = match context {
        Ok(context) => {
            let _ = ready.send(Ok(()));
            context
        }
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    let mut cached: Vec<LlamaToken> = Vec::new();
    loop {
        let job = match jobs.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(mut job) = job else { return };
        if job.sink.is_closed() {
            continue;
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_job(model, &mut context, &mut cached, options, &mut job)
        }));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                let _ = job.sink.send(Err(error));
            }
            Err(_) => {
                // State of the context is unknown after a panic inside llama-cpp-2: forget it.
                context.clear_kv_cache();
                cached.clear();
                let _ = job.sink.send(Err(LocalError::Inference(
                    "the generation panicked inside llama-cpp-2".to_owned(),
                )));
            }
        }
    }
}

fn new_context<'model>(
    model: &'model LlamaModel,
    path: &Path,
    options: &ChatOptions,
) -> Result<LlamaContext<'model>> {
    let threads = i32::try_from(options.threads).unwrap_or(1);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(options.context_size))
        .with_n_batch(options.batch_size)
        .with_n_ubatch(options.batch_size)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let _guard = CONTEXT_CREATION.lock();
    model
        .new_context(backend()?, params)
        .map_err(|error| LocalError::Load {
            path: path.to_path_buf(),
            reason: format!("creating a context: {error}"),
        })
}

fn inference(what: &str, error: impl std::fmt::Display) -> LocalError {
    LocalError::Inference(format!("{what}: {error}"))
}

fn run_job(
    model: &LlamaModel,
    context: &mut LlamaContext<'_>,
    cached: &mut Vec<LlamaToken>,
    options: &ChatOptions,
    job: &mut Job,
) -> Result<()> {
    let started = Instant::now();
    let vocab = model.vocab();
    let request = job.request.clone();
    let tokens = vocab.tokenize(job.prompt.as_bytes(), true, job.parse_special);
    let n_ctx = usize::try_from(context.n_ctx()).unwrap_or(usize::MAX);
    if tokens.is_empty() {
        return Err(LocalError::InvalidRequest {
            field: "prompt",
            reason: "renders to no tokens".to_owned(),
        });
    }
    if tokens.len() >= n_ctx {
        return Err(LocalError::InvalidRequest {
            field: "prompt",
            reason: format!(
                "{} tokens do not fit the {n_ctx}-token context with room to answer",
                tokens.len()
            ),
        });
    }
    let room = n_ctx - tokens.len();
    let limit = request.max_tokens.map_or(room, |max| {
        usize::try_from(max).unwrap_or(usize::MAX).min(room)
    });

    // Reuse the KV entries of the longest common prefix; at least one token must be evaluated
    // to get logits.
    let common = cached
        .iter()
        .zip(&tokens)
        .take_while(|(a, b)| a == b)
        .count()
        .min(tokens.len() - 1);
    let keep = match context.kv_cache_seq_rm(0, u32::try_from(common).ok(), None) {
        Ok(()) => common,
        Err(_) => {
            context.clear_kv_cache();
            0
        }
    };
    cached.truncate(keep);

    let batch_size = usize::try_from(options.batch_size).unwrap_or(512).max(1);
    let mut batch = LlamaBatch::new(batch_size.max(1), 1);
    let prompt_start = Instant::now();
    let new_tokens = tokens.get(keep..).unwrap_or_default();
    let mut position = keep;
    for chunk in new_tokens.chunks(batch_size) {
        if job.sink.is_closed() {
            return Ok(());
        }
        batch.clear();
        for token in chunk {
            let is_last = position + 1 == tokens.len();
            batch
                .add(*token, pos(position)?, &[0], is_last)
                .map_err(|error| inference("filling the prompt batch", error))?;
            position += 1;
        }
        context
            .decode(&mut batch)
            .map_err(|error| inference("evaluating the prompt", error))?;
        cached.extend_from_slice(chunk);
    }
    let prompt_time = prompt_start.elapsed();

    let mut sampler = build_sampler(model, &request, job.constraint.take())?;
    let mut output = OutputText::new(&request.stop);
    let mut pending_logprobs: Vec<(usize, TokenLogprob)> = Vec::new();
    let mut first_token = None;
    let generation_start = Instant::now();
    let mut completion_tokens = 0usize;
    let mut finish_reason = FinishReason::Length;
    let mut cancelled = false;
    let mut piece = Vec::new();
    while completion_tokens < limit {
        let index = batch.n_tokens() - 1;
        let token = sampler.sample(context, index);
        first_token.get_or_insert_with(|| started.elapsed());
        if vocab.is_eog(token) {
            finish_reason = FinishReason::Stop;
            break;
        }
        completion_tokens += 1;
        piece.clear();
        vocab.token_to_piece_into(token, &mut piece, false, None);
        if let Some(top) = request.logprobs {
            let logits = context.get_logits_ith(index);
            pending_logprobs.push((
                output.byte_len(),
                logprob_of(model, logits, token, &piece, top),
            ));
        }
        let step = output.push(&piece);
        if !emit(job, &mut output, &mut pending_logprobs, step.release_to) {
            cancelled = true;
            break;
        }
        if step.stopped {
            finish_reason = FinishReason::Stop;
            break;
        }
        if completion_tokens == limit {
            break;
        }
        batch.clear();
        batch
            .add(token, pos(position)?, &[0], true)
            .map_err(|error| inference("filling the generation batch", error))?;
        position += 1;
        context
            .decode(&mut batch)
            .map_err(|error| inference("evaluating a generated token", error))?;
        cached.push(token);
    }
    if cancelled {
        return Ok(());
    }
    let end = output.finish();
    if !emit(job, &mut output, &mut pending_logprobs, end) {
        return Ok(());
    }
    let usage = Usage {
        prompt_tokens: u32::try_from(tokens.len()).unwrap_or(u32::MAX),
        cached_tokens: u32::try_from(keep).unwrap_or(u32::MAX),
        completion_tokens: u32::try_from(completion_tokens).unwrap_or(u32::MAX),
    };
    let timings = Timings {
        prompt: prompt_time,
        first_token: first_token.unwrap_or_else(|| started.elapsed()),
        generation: generation_start.elapsed(),
    };
    job.sink.send(Ok(ChatEvent::Done {
        finish_reason,
        usage,
        timings,
    }));
    Ok(())
}

fn pos(position: usize) -> Result<i32> {
    i32::try_from(position).map_err(|_| inference("position", "beyond i32"))
}

/// Sends the text up to byte `release_to` (and the log probabilities of the tokens starting
/// before it); `false` when the receiver has gone.
fn emit(
    job: &mut Job,
    output: &mut OutputText,
    pending_logprobs: &mut Vec<(usize, TokenLogprob)>,
    release_to: usize,
) -> bool {
    let text = output.release(release_to);
    let split = pending_logprobs
        .iter()
        .position(|(start, _)| *start >= release_to)
        .unwrap_or(pending_logprobs.len());
    let logprobs: Vec<TokenLogprob> = pending_logprobs
        .drain(..split)
        .map(|(_, logprob)| logprob)
        .collect();
    if text.is_empty() && logprobs.is_empty() {
        return !job.sink.is_closed();
    }
    job.sink.send(Ok(ChatEvent::Delta { text, logprobs }))
}

fn build_sampler(
    model: &LlamaModel,
    request: &ChatRequest,
    constraint: Option<CompiledConstraint>,
) -> Result<LlamaSampler> {
    let sampling = &request.sampling;
    let mut chain = Vec::new();
    match constraint {
        Some(CompiledConstraint::Gbnf { gbnf, root }) => {
            chain.push(LlamaSampler::grammar(model, &gbnf, &root).map_err(|error| {
                LocalError::Constraint {
                    kind: "grammar",
                    reason: error.to_string(),
                }
            })?);
        }
        Some(CompiledConstraint::Guidance(matcher)) => chain.push(LlamaSampler::from(*matcher)),
        None => {}
    }
    if sampling.repetition_penalty.is_some()
        || sampling.frequency_penalty.is_some()
        || sampling.presence_penalty.is_some()
    {
        chain.push(LlamaSampler::penalties(
            model.n_vocab(),
            PENALTY_WINDOW,
            sampling.repetition_penalty.unwrap_or(1.0),
            sampling.frequency_penalty.unwrap_or(0.0),
            sampling.presence_penalty.unwrap_or(0.0),
        ));
    }
    if sampling.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if let Some(k) = sampling.top_k {
            chain.push(LlamaSampler::top_k(i32::try_from(k).unwrap_or(i32::MAX)));
        }
        if let Some(p) = sampling.top_p {
            chain.push(LlamaSampler::top_p(p, 1));
        }
        if let Some(p) = sampling.min_p {
            chain.push(LlamaSampler::min_p(p, 1));
        }
        chain.push(LlamaSampler::temp(sampling.temperature));
        chain.push(LlamaSampler::dist(seed32(sampling.seed)));
    }
    Ok(LlamaSampler::chain_simple(chain))
}

/// llama.cpp seeds are 32-bit; fold a 64-bit seed, or draw one when none is given.
fn seed32(seed: Option<u64>) -> u32 {
    let seed = seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        u64::try_from(nanos & u128::from(u64::MAX)).unwrap_or(0)
    });
    let folded = (seed ^ (seed >> 32)) & u64::from(u32::MAX);
    let folded = u32::try_from(folded).unwrap_or(0);
    // 0xFFFFFFFF is llama.cpp's "random seed" marker: never pass it for a given seed.
    if folded == u32::MAX { 0 } else { folded }
}

/// Log-softmax of the raw logits: the chosen token's log probability and the `top` best.
fn logprob_of(
    model: &LlamaModel,
    logits: &[f32],
    token: LlamaToken,
    piece: &[u8],
    top: u8,
) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = logits
        .iter()
        .map(|logit| (logit - max).exp())
        .sum::<f32>()
        .ln()
        + max;
    let chosen = usize::try_from(token.0)
        .ok()
        .and_then(|index| logits.get(index))
        .map_or(f32::NEG_INFINITY, |logit| logit - log_sum);
    let mut best: Vec<(usize, f32)> = Vec::with_capacity(usize::from(top) + 1);
    if top > 0 {
        for (index, logit) in logits.iter().enumerate() {
            if best.len() < usize::from(top) || best.last().is_some_and(|(_, low)| logit > low) {
                let at = best.partition_point(|(_, other)| other >= logit);
                best.insert(at, (index, *logit));
                best.truncate(usize::from(top));
            }
        }
    }
    let vocab = model.vocab();
    TokenLogprob {
        token: String::from_utf8_lossy(piece).into_owned(),
        bytes: piece.to_vec(),
        logprob: chosen,
        top: best
            .into_iter()
            .map(|(index, logit)| TopLogprob {
                token: String::from_utf8_lossy(&vocab.token_to_piece(
                    LlamaToken(i32::try_from(index).unwrap_or(0)),
                    false,
                    None,
                ))
                .into_owned(),
                logprob: logit - log_sum,
            })
            .collect(),
    }
}

/// The generated text as it grows: UTF-8 assembled across token boundaries, stop sequences
/// found across token boundaries, and the tail that could still become a stop sequence held
/// back.
struct OutputText {
    stops: Vec<String>,
    longest_stop: usize,
    /// Bytes not yet forming a complete UTF-8 character.
    partial: Vec<u8>,
    text: String,
    released: usize,
    /// Where a stop sequence was found (the output ends there).
    cut: Option<usize>,
}

/// The outcome of pushing one token's bytes.
struct Step {
    /// Text up to this byte may be sent.
    release_to: usize,
    /// A stop sequence was found.
    stopped: bool,
}

impl OutputText {
    fn new(stops: &[String]) -> Self {
        OutputText {
            stops: stops.to_vec(),
            longest_stop: stops.iter().map(String::len).max().unwrap_or(0),
            partial: Vec::new(),
            text: String::new(),
            released: 0,
            cut: None,
        }
    }

    /// Bytes generated so far (complete and partial characters).
    fn byte_len(&self) -> usize {
        self.text.len() + self.partial.len()
    }

    fn push(&mut self, bytes: &[u8]) -> Step {
        self.partial.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.partial) {
            Ok(text) => text.len(),
            Err(error) if error.error_len().is_some() => {
                // Invalid bytes (not merely incomplete): replace them.
                let lossy = String::from_utf8_lossy(&self.partial).into_owned();
                self.text.push_str(&lossy);
                self.partial.clear();
                0
            }
            Err(error) => error.valid_up_to(),
        };
        if valid > 0 {
            let rest = self.partial.split_off(valid);
            self.text
                .push_str(&String::from_utf8_lossy(&std::mem::replace(
                    &mut self.partial,
                    rest,
                )));
        }
        if self.stops.is_empty() {
            return Step {
                release_to: self.text.len(),
                stopped: false,
            };
        }
        let mut from = self.released.saturating_sub(self.longest_stop);
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        let found = self
            .stops
            .iter()
            .filter_map(|stop| {
                self.text
                    .get(from..)
                    .and_then(|tail| tail.find(stop.as_str()))
                    .map(|at| from + at)
            })
            .min();
        if let Some(at) = found {
            self.cut = Some(at);
            return Step {
                release_to: at.max(self.released),
                stopped: true,
            };
        }
        let hold = self
            .stops
            .iter()
            .map(|stop| {
                (1..stop.len())
                    .rev()
                    .filter(|&k| stop.is_char_boundary(k))
                    .find(|&k| {
                        stop.get(..k)
                            .is_some_and(|prefix| self.text.ends_with(prefix))
                    })
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        Step {
            release_to: (self.text.len() - hold).max(self.released),
            stopped: false,
        }
    }

    /// Everything left to release at the end (up to the stop sequence if one was found).
    fn finish(&mut self) -> usize {
        if self.cut.is_none() && !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.text.push_str(&String::from_utf8_lossy(&rest));
        }
        self.cut.unwrap_or(self.text.len())
    }

    /// The text between what was released and `to`.
    fn release(&mut self, to: usize) -> String {
        let to = to.min(self.text.len());
        if to <= self.released {
            return String::new();
        }
        let text = self
            .text
            .get(self.released..to)
            .unwrap_or_default()
            .to_owned();
        self.released = to;
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&[u8]]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| (*s).to_owned()).collect();
        let mut output = OutputText::new(&stops);
        let mut sent = String::new();
        for piece in pieces {
            let step = output.push(piece);
            sent.push_str(&output.release(step.release_to));
            if step.stopped {
                let end = output.finish();
                sent.push_str(&output.release(end));
                return (sent, true);
            }
        }
        let end = output.finish();
        sent.push_str(&output.release(end));
        (sent, false)
    }

    #[test]
    fn stop_sequence_split_across_tokens_is_found_and_excluded() {
        let (text, stopped) = run(&["END"], &[b"hello E", b"N", b"D more"]);
        assert_eq!(text, "hello ");
        assert!(stopped);
    }

    #[test]
    fn partial_match_that_does_not_complete_is_released() {
        let (text, stopped) = run(&["END"], &[b"hello EN", b"oh"]);
        assert_eq!(text, "hello ENoh");
        assert!(!stopped);
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let (text, _) = run(&["b", "a"], &[b"xxab"]);
        assert_eq!(text, "xx");
    }

    #[test]
    fn utf8_split_across_tokens_is_reassembled() {
        let snowman = "☃".as_bytes();
        let (text, _) = run(&[], &[&snowman[..1], &snowman[1..], b"!"]);
        assert_eq!(text, "☃!");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let (text, _) = run(&[], &[b"a\xffb"]);
        assert_eq!(text, "a\u{fffd}b");
    }

    #[test]
    fn sampling_values_are_checked() {
        let hot = Sampling {
            temperature: 3.0,
            ..Sampling::default()
        };
        assert!(
            hot.validate()
                .unwrap_err()
                .to_string()
                .contains("temperature")
        );
        let no_nucleus = Sampling {
            top_p: Some(0.0),
            ..Sampling::default()
        };
        assert!(
            no_nucleus
                .validate()
                .unwrap_err()
                .to_string()
                .contains("top_p")
        );
        let bad_min_p = Sampling {
            min_p: Some(1.5),
            ..Sampling::default()
        };
        assert!(
            bad_min_p
                .validate()
                .unwrap_err()
                .to_string()
                .contains("min_p")
        );
    }

    #[test]
    fn seeds_fold_to_32_bits_and_avoid_the_random_marker() {
        assert_eq!(seed32(Some(7)), 7);
        assert_ne!(seed32(Some(u64::from(u32::MAX))), u32::MAX);
        assert_ne!(seed32(Some(1)), seed32(Some(2)));
    }
}
