//! promptops-local: the embedded local models that make promptops work fully offline.

pub mod chat;
pub mod embed;
pub mod error;
pub mod models;
pub mod provider;

pub use chat::{ChatOptions, ChatRequest, Generation, LocalChat};
pub use error::LocalError;
pub use models::{ModelCache, ModelSource};
pub use provider::LocalProvider;
