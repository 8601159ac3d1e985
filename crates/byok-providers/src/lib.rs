#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod anthropic;
pub mod endpoint;
mod error;
mod gemini;
mod http;
pub mod key_format;
mod openai_compat;
mod responses;
mod sse;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use byok_core::{
    ApiKey, ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse,
    ProviderKind, Unsupported,
};
use futures_util::Stream;

pub use anthropic::Anthropic;
pub use error::{BadRequestKind, KeyProblem, ProviderError, Result};
pub use gemini::Gemini;
pub use http::{HttpClients, ProviderSettings};
pub use openai_compat::{
    AZURE_DEFAULT_API_VERSION, AZURE_V1, OpenAiCompatible, azure_serves_responses,
};

/// A streamed answer.
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<ChatChunk, ProviderError>> + Send>>;

/// The user's key and its non-secret settings, passed on every call: one
/// adapter serves every user.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// The key; it goes only into a request header.
    pub key: &'a ApiKey,
    /// Provider settings (Azure's `endpoint`, `deployment`, `api_version`,
    /// `embedding_deployment`).
    pub settings: &'a BTreeMap<String, String>,
}

/// What every provider adapter does.
#[async_trait]
pub trait ChatProvider: Send + Sync + std::fmt::Debug {
    /// Which provider this is.
    fn kind(&self) -> ProviderKind;

    /// The first field of `request` this provider cannot honour, in its
    /// native form or by translation; `None` when it can carry all of it.
    /// The gateway never sends a request an adapter refuses here: it routes
    /// to another provider, or answers 400 naming the field.
    fn unsupported(&self, request: &ChatRequest, stream: bool) -> Option<Unsupported>;

    /// As [`ChatProvider::unsupported`], for embeddings.
    fn unsupported_embedding(&self, request: &EmbeddingRequest) -> Option<Unsupported> {
        let _ = request;
        None
    }

    /// The cheapest authenticated call that proves the key works.
    async fn verify_key(&self, credentials: Credentials<'_>) -> Result<(), ProviderError>;

    /// A whole chat answer.
    async fn chat(
        &self,
        credentials: Credentials<'_>,
        request: &ChatRequest,
    ) -> Result<ChatResponse, ProviderError>;

    /// A streamed chat answer. Errors before the first byte come back here;
    /// later ones arrive in the stream. A stream that ends without its
    /// provider's terminator ends with [`ProviderError::IncompleteStream`].
    async fn chat_stream(
        &self,
        credentials: Credentials<'_>,
        request: &ChatRequest,
    ) -> Result<ChatStream, ProviderError>;

    /// The request's input tokens counted the provider's own way, where it
    /// offers that without a charge (Anthropic's `count_tokens`); `None`
    /// where it does not.
    async fn count_tokens(
        &self,
        credentials: Credentials<'_>,
        request: &ChatRequest,
    ) -> Result<Option<u64>, ProviderError> {
        let _ = (credentials, request);
        Ok(None)
    }

    /// Embedding vectors; [`ProviderError::Unsupported`] where there are none.
    async fn embed(
        &self,
        credentials: Credentials<'_>,
        request: &EmbeddingRequest,
    ) -> Result<EmbeddingResponse, ProviderError>;
}

/// One adapter per provider, sharing the HTTP clients.
#[derive(Debug, Clone)]
pub struct ProviderSet {
    adapters: BTreeMap<ProviderKind, Arc<dyn ChatProvider>>,
}

impl ProviderSet {
    /// The five adapters over `clients`.
    #[must_use]
    pub fn new(clients: &HttpClients) -> Self {
        let adapters: [Arc<dyn ChatProvider>; 5] = [
            Arc::new(OpenAiCompatible::openai(clients.clone())),
            Arc::new(OpenAiCompatible::deepseek(clients.clone())),
            Arc::new(Anthropic::new(clients.clone())),
            Arc::new(Gemini::new(clients.clone())),
            Arc::new(OpenAiCompatible::azure(clients.clone())),
        ];
        Self {
            adapters: adapters.into_iter().map(|a| (a.kind(), a)).collect(),
        }
    }

    /// Replaces (or adds) the adapter for its provider: for tests and custom adapters.
    #[must_use]
    pub fn with(mut self, adapter: Arc<dyn ChatProvider>) -> Self {
        self.adapters.insert(adapter.kind(), adapter);
        self
    }

    /// The adapter for `provider`.
    #[must_use]
    pub fn get(&self, provider: ProviderKind) -> Option<&Arc<dyn ChatProvider>> {
        self.adapters.get(&provider)
    }
}
