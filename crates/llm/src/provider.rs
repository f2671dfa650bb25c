//! The Provider contract every model backend implements: remote adapters here, the embedded
//! local model in crates/local.

use std::pin::Pin;

use async_trait::async_trait;
use futures_core::Stream;
use serde::{Deserialize, Serialize};

use crate::error::LlmError;
use crate::types::{
    Capabilities, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, ModelInfo,
    StreamDelta,
};

/// A stream of typed deltas; it ends after the last delta or with one `Err`.
pub type DeltaStream = Pin<Box<dyn Stream<Item = Result<StreamDelta, LlmError>> + Send + 'static>>;

/// The closed set of provider kinds a config can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any OpenAI-compatible chat completions API (OpenAI, vLLM, Together, Groq, LM Studio...).
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
    /// Ollama: its OpenAI-compatible endpoint plus its native model listing.
    Ollama,
    /// The embedded local model (crates/local), built by a caller-supplied factory.
    Local,
}

impl ProviderKind {
    /// Every kind, in the order error messages list them.
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::OpenAi,
        ProviderKind::Anthropic,
        ProviderKind::Ollama,
        ProviderKind::Local,
    ];

    /// The config name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Ollama => "ollama",
            ProviderKind::Local => "local",
        }
    }
}

/// A model backend: chat (whole or streamed), embeddings, capabilities and model listing.
///
/// Object-safe (`Arc<dyn Provider>`); implementations are `Send + Sync` and shared across
/// requests. A provider makes exactly one attempt per call: retries, timeouts, fallback and
/// circuit breaking belong to [`crate::Router`], so errors say `attempt: 1` and the router
/// renumbers them. Every successful response has its usage filled (see [`crate::usage`]).
#[async_trait]
pub trait Provider: Send + Sync {
    /// The provider name from the config (the `PROVIDER` of `PROVIDER/MODEL`).
    fn name(&self) -> &str;

    /// Which kind of backend this is.
    fn kind(&self) -> ProviderKind;

    /// What this provider can do.
    fn capabilities(&self) -> Capabilities;

    /// One chat completion.
    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError>;

    /// A streamed chat completion. Errors before the first delta (HTTP status, connection)
    /// come back as `Err` here, so a router can still fall back; later failures end the stream
    /// with an `Err` item. The stream always carries one [`StreamDelta::Usage`].
    async fn stream(&self, request: &ChatRequest) -> Result<DeltaStream, LlmError>;

    /// Embeddings of the input texts, in input order.
    async fn embed(&self, request: &EmbeddingRequest) -> Result<EmbeddingResponse, LlmError>;

    /// The models this provider serves.
    async fn list_models(&self) -> Result<Vec<ModelInfo>, LlmError>;
}
