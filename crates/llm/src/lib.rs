//! The Provider contract and the remote providers behind it: OpenAI-compatible, Anthropic and
//! Ollama adapters, SSE streaming into typed deltas, config-built provider sets, and a router
//! with fallback chains, retries, timeouts and circuit breakers.
//!
//! The embedded local model (crates/local) implements [`Provider`] and is plugged in through a
//! [`LocalFactory`] or [`ProviderSet::insert`]; this crate never depends on it.

pub mod anthropic;
pub mod breaker;
pub mod config;
pub mod error;
pub mod health;
mod http;
pub mod ollama;
pub mod openai;
pub mod provider;
pub mod registry;
pub mod router;
pub mod sse;
pub mod types;
pub mod usage;

pub use anthropic::AnthropicProvider;
pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use config::{LlmConfig, ProviderConfig, RouteConfig, RouteTarget, Target};
pub use error::{AttemptRecord, LlmError};
pub use http::{CONNECT_TIMEOUT, MAX_RETRY_AFTER};
pub use ollama::OllamaProvider;
pub use openai::{OpenAiProvider, RemoteSettings};
pub use provider::{DeltaStream, Provider, ProviderKind};
pub use registry::{EnvLookup, LocalFactory, ProviderSet, check_reachable};
pub use router::{ChainTarget, FallbackChain, RetryPolicy, Routed, Router, RouterOptions};
pub use types::{
    Capabilities, ChatRequest, ChatResponse, Choice, EmbeddingRequest, EmbeddingResponse,
    FinishReason, ModelInfo, RawPayload, StreamAccumulator, StreamDelta, StreamOptions, ToolChoice,
    Usage,
};
