//! promptops-runtime: the one request pipeline every front end shares (gateway, `promptops
//! run`, evaluations). No HTTP here: [`Runtime::chat`], [`Runtime::chat_stream`],
//! [`Runtime::embed`] and [`Runtime::models`] take typed calls and return typed outcomes or a
//! [`RuntimeError`] that carries its own HTTP policy.

pub mod config;
pub mod error;
mod guard_stage;
pub mod pipeline;

pub use config::{
    AlertsConfig, DocumentAction, DocumentsConfig, GuardConfig, OutputGuardConfig,
    RouteGuardConfig, SpotlightMode, ToolCallAction,
};
pub use error::RuntimeError;
pub use guard_stage::{ANONYMOUS_ROLE, AlertSink, DocumentReport, RetrievedDocument};
pub use pipeline::{
    ChatCall, ChatOutcome, EmbedCall, EmbedOutcome, ModelEntry, ModelSource, OutputCheck,
    PROMPT_PREFIX, PromptUse, Runtime, RuntimeBuilder, StreamMeta,
};
pub use promptops_guard::spike::SpikeAlert;
