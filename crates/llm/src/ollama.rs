//! The Ollama adapter: chat and embeddings through Ollama's OpenAI-compatible `/v1` endpoint,
//! models listed through its native `/api/tags`.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use crate::error::LlmError;
use crate::http::{Upstream, headers, join_url};
use crate::openai::{OpenAiProvider, RemoteSettings, from_value};
use crate::provider::{DeltaStream, Provider, ProviderKind};
use crate::types::{
    Capabilities, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, ModelInfo,
};

/// Where a default Ollama listens; the default `base_url` of kind `ollama`.
pub const OLLAMA_BASE_URL: &str = "http://127.0.0.1:11434";

/// What Ollama's OpenAI-compatible endpoint supports.
const OLLAMA_CAPABILITIES: Capabilities = Capabilities {
    tools: true,
    json_schema: true,
    logprobs: false,
    seed: true,
    vision: true,
    streaming: true,
    embeddings: true,
    multiple_choices: false,
};

/// An Ollama server.
#[derive(Clone)]
pub struct OllamaProvider {
    compatible: OpenAiProvider,
    native: Upstream,
    root: String,
}

impl OllamaProvider {
    /// A provider for `settings.base_url`: the server root (`http://host:11434`); a trailing
    /// `/v1` is accepted and stripped for the native API.
    pub fn new(settings: &RemoteSettings) -> Result<OllamaProvider, LlmError> {
        let trimmed = settings.base_url.trim_end_matches('/');
        let root = trimmed.strip_suffix("/v1").unwrap_or(trimmed).to_owned();
        let compatible = OpenAiProvider::with_kind(
            &RemoteSettings {
                base_url: join_url(&root, "v1"),
                ..settings.clone()
            },
            ProviderKind::Ollama,
            OLLAMA_CAPABILITIES,
        )?;
        Ok(OllamaProvider {
            compatible,
            native: Upstream::new(settings)?,
            root,
        })
    }
}

#[derive(Deserialize)]
struct Tags {
    models: Vec<TagEntry>,
}

#[derive(Deserialize)]
struct TagEntry {
    name: String,
    #[serde(default)]
    size: Option<u64>,
}

#[async_trait]
impl Provider for OllamaProvider {
    fn name(&self) -> &str {
        self.compatible.name()
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Ollama
    }

    fn capabilities(&self) -> Capabilities {
        OLLAMA_CAPABILITIES
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.compatible.chat(request).await
    }

    async fn stream(&self, request: &ChatRequest) -> Result<DeltaStream, LlmError> {
        self.compatible.stream(request).await
    }

    async fn embed(&self, request: &EmbeddingRequest) -> Result<EmbeddingResponse, LlmError> {
        self.compatible.embed(request).await
    }

    async fn list_models(&self) -> Result<Vec<ModelInfo>, LlmError> {
        let url = join_url(&self.root, "api/tags");
        let auth = match &self.native.api_key {
            Some(key) => headers(
                &self.native.provider,
                &[("authorization", &format!("Bearer {key}"))],
            )?,
            None => Default::default(),
        };
        let response = self.native.get(&url, auth).await?;
        let raw = self.native.read_json(&url, response).await?;
        let tags: Tags = from_value(&self.native, "tags", &raw)?;
        let entries = raw
            .get("models")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(tags
            .models
            .into_iter()
            .zip(entries)
            .map(|(entry, raw)| ModelInfo {
                id: entry.name,
                size_bytes: entry.size,
                raw,
            })
            .collect())
    }
}
