//! Provider-neutral chat and embedding types: what the gateway asks for and
//! what every provider adapter answers with.

use serde::{Deserialize, Serialize};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The person (or program) asking.
    User,
    /// The model's earlier turns.
    Assistant,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
}

/// A chat request, normalised across providers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The provider's model id (for Azure, ignored: the deployment decides).
    pub model: String,
    /// The system prompt, sent the way each provider expects it.
    pub system: Option<String>,
    /// The conversation, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Most tokens to generate.
    pub max_output_tokens: Option<u32>,
    /// Sequences that end generation.
    pub stop: Vec<String>,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A natural end or a stop sequence.
    Stop,
    /// The output token limit.
    Length,
    /// A safety or content filter.
    ContentFilter,
    /// The model wants to call a tool.
    ToolCalls,
    /// Anything else the provider reported.
    Other,
}

/// Token counts, normalised. Each provider's own accounting is converted to
/// these definitions by its adapter (see `docs/providers.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// All input tokens, including cached ones and cache writes.
    pub input_tokens: u64,
    /// Input tokens read from the provider's prompt cache (billed lower).
    pub cached_input_tokens: u64,
    /// Input tokens written to the provider's prompt cache (Anthropic; billed higher).
    pub cache_write_tokens: u64,
    /// All output tokens, including reasoning ("thinking") tokens.
    pub output_tokens: u64,
    /// Output tokens spent on reasoning.
    pub reasoning_tokens: u64,
}

/// A whole chat answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The model that answered, as the provider names it.
    pub model: String,
    /// The answer's text.
    pub text: String,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Token counts.
    pub usage: Usage,
}

/// One piece of a streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChatChunk {
    /// More answer text.
    Text(String),
    /// More reasoning text (DeepSeek, Anthropic thinking), not part of the answer.
    Reasoning(String),
    /// Generation ended, for this reason.
    Finish(FinishReason),
    /// Final token counts (may come after `Finish`).
    Usage(Usage),
}

/// An embeddings request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EmbeddingRequest {
    /// The provider's embedding model (for Azure, ignored: the embedding deployment decides).
    pub model: String,
    /// The texts to embed.
    pub inputs: Vec<String>,
}

/// Embedding vectors, in input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingResponse {
    /// The model that answered.
    pub model: String,
    /// One vector per input.
    pub vectors: Vec<Vec<f32>>,
    /// Input tokens, when the provider reports them (Gemini does not).
    pub input_tokens: Option<u64>,
}
