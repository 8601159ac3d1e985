//! Provider-neutral chat and embedding types: what the gateway asks for and
//! what every provider adapter answers with.
//!
//! Every field here has one meaning across providers; each adapter either
//! carries it in its provider's native form or refuses the request with
//! [`Unsupported`] naming the field. Nothing is dropped silently.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ProviderKind;

/// A provider's own request API that a gateway door speaks: the door keeps
/// the client's request as it came, so a request that lands on that API's
/// provider goes through intact (every block, marker and field, even those
/// byok's neutral types do not name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NativeApi {
    /// Anthropic's Messages API (`POST /v1/messages`).
    AnthropicMessages,
    /// OpenAI's Responses API (`POST /v1/responses`).
    OpenAiResponses,
}

impl NativeApi {
    /// Whether `provider` serves this API itself (OpenAI's Responses API is
    /// OpenAI's and Azure OpenAI's).
    #[must_use]
    pub fn served_by(self, provider: ProviderKind) -> bool {
        match self {
            Self::AnthropicMessages => provider == ProviderKind::Anthropic,
            Self::OpenAiResponses => {
                matches!(provider, ProviderKind::OpenAi | ProviderKind::AzureOpenAi)
            }
        }
    }

    /// Its name in messages.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::AnthropicMessages => "Anthropic's Messages API",
            Self::OpenAiResponses => "OpenAI's Responses API",
        }
    }
}

/// The client's own request, in its provider's API, next to its neutral
/// translation.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeRequest {
    /// Which API the body is in.
    pub api: NativeApi,
    /// The body as the client sent it; the adapter sets `model` and `stream`.
    pub body: Arc<serde_json::Value>,
    /// Extra request headers the provider needs for it (`anthropic-beta`).
    pub headers: Vec<(String, String)>,
    /// Fields (or headers) only that API can carry: every other provider
    /// refuses the request, naming the first.
    pub only: Vec<String>,
}

/// One server-sent event of a provider's own stream, passed through to a
/// client of the same API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeEvent {
    /// The event's name (`message_start`), when it has one.
    pub event: Option<String>,
    /// Its data, as the provider sent it.
    pub data: String,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The person (or program) asking.
    #[default]
    User,
    /// The model's earlier turns.
    Assistant,
    /// The result of a tool call the model asked for.
    Tool,
    /// Instructions in the middle of a conversation (OpenAI's `system` or
    /// `developer` message after other turns); providers without such turns
    /// get them with the system prompt.
    System,
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageSource {
    /// Inline bytes, base64-encoded, with their media type (`image/png`).
    Base64 {
        /// `image/png`, `image/jpeg`, `image/gif` or `image/webp`.
        media_type: String,
        /// Standard base64, no line breaks.
        data: String,
    },
    /// An `https` URL the provider fetches itself.
    Url(String),
}

/// One part of a message's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContentPart {
    /// Text.
    Text(String),
    /// An image.
    Image {
        /// The picture.
        source: ImageSource,
        /// OpenAI's `detail` (`low`, `high`, `auto`), where the provider has it.
        detail: Option<String>,
    },
}

/// A tool call the model made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id; the tool's result names it.
    pub id: String,
    /// The function's name.
    pub name: String,
    /// The arguments, a JSON object as text.
    pub arguments: String,
    /// Opaque state the provider needs back on the next turn (Gemini's
    /// `thoughtSignature`, Anthropic's signed thinking blocks). Clients
    /// round-trip it inside the tool call id (see `docs/api.md`).
    pub signature: Option<String>,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// The text and images.
    pub content: Vec<ContentPart>,
    /// Tool calls an assistant turn made.
    pub tool_calls: Vec<ToolCall>,
    /// For [`Role::Tool`]: the call this is the result of.
    pub tool_call_id: Option<String>,
    /// An assistant turn's reasoning, sent back where the provider needs it
    /// (DeepSeek's `reasoning_content` in tool-calling turns).
    pub reasoning: Option<String>,
    /// A participant name (OpenAI's `name`).
    pub name: Option<String>,
}

impl ChatMessage {
    /// A text-only message.
    #[must_use]
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            content: vec![ContentPart::Text(text.into())],
            ..Self::default()
        }
    }

    /// The text parts, joined.
    #[must_use]
    pub fn text_content(&self) -> String {
        self.content
            .iter()
            .filter_map(|p| match p {
                ContentPart::Text(t) => Some(t.as_str()),
                ContentPart::Image { .. } => None,
            })
            .collect()
    }

    /// Whether any part is an image.
    #[must_use]
    pub fn has_images(&self) -> bool {
        self.content
            .iter()
            .any(|p| matches!(p, ContentPart::Image { .. }))
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    /// The function's name.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// Its parameters, a JSON Schema object.
    pub parameters: Option<serde_json::Value>,
    /// OpenAI's `strict` schema adherence.
    pub strict: Option<bool>,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No tool calls.
    None,
    /// At least one tool call.
    Required,
    /// This function.
    Function(String),
}

/// A JSON Schema the answer must follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonSchema {
    /// The schema's name.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// The schema.
    pub schema: serde_json::Value,
    /// Strict adherence (OpenAI).
    pub strict: Option<bool>,
}

/// The answer's format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseFormat {
    /// Any JSON object.
    JsonObject,
    /// JSON following a schema.
    JsonSchema(JsonSchema),
}

/// How hard a reasoning model thinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningEffort {
    /// No reasoning.
    None,
    /// The least.
    Minimal,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// The most.
    Xhigh,
}

impl ReasoningEffort {
    /// OpenAI's name for it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Minimal => "minimal",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Xhigh => "xhigh",
        }
    }

    /// Parses OpenAI's name.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "none" => Self::None,
            "minimal" => Self::Minimal,
            "low" => Self::Low,
            "medium" => Self::Medium,
            "high" => Self::High,
            "xhigh" => Self::Xhigh,
            _ => return None,
        })
    }
}

/// What a model must be able to do for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Function calling.
    Tools,
    /// Several tool calls in one turn.
    ParallelTools,
    /// Image input.
    Vision,
    /// JSON mode.
    JsonObject,
    /// JSON Schema output.
    JsonSchema,
    /// Adjustable reasoning.
    Reasoning,
}

impl Capability {
    /// Every capability.
    pub const ALL: [Self; 6] = [
        Self::Tools,
        Self::ParallelTools,
        Self::Vision,
        Self::JsonObject,
        Self::JsonSchema,
        Self::Reasoning,
    ];

    /// Its name in the catalog and in errors.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::ParallelTools => "parallel_tools",
            Self::Vision => "vision",
            Self::JsonObject => "json_object",
            Self::JsonSchema => "json_schema",
            Self::Reasoning => "reasoning",
        }
    }
}

impl Capability {
    /// The request field that uses it, as OpenAI's API names it.
    #[must_use]
    pub fn field(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::ParallelTools => "parallel_tool_calls",
            Self::Vision => "messages[].content[].image_url",
            Self::JsonObject | Self::JsonSchema => "response_format",
            Self::Reasoning => "reasoning_effort",
        }
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// Nucleus sampling.
    pub top_p: Option<f32>,
    /// Most tokens to generate.
    pub max_output_tokens: Option<u32>,
    /// Whether `max_output_tokens` is only a ceiling the client sets by
    /// convention (Anthropic requires one, and clients set it high): a model
    /// with a lower output limit answers within its own limit instead of
    /// being skipped.
    pub output_ceiling: bool,
    /// Sequences that end generation.
    pub stop: Vec<String>,
    /// Functions the model may call.
    pub tools: Vec<Tool>,
    /// Whether and which tool to call.
    pub tool_choice: Option<ToolChoice>,
    /// Whether several tool calls may come in one turn.
    pub parallel_tool_calls: Option<bool>,
    /// JSON mode or a JSON Schema.
    pub response_format: Option<ResponseFormat>,
    /// Reasoning effort.
    pub reasoning: Option<ReasoningEffort>,
    /// Whether the task wants reasoning when the request names no effort:
    /// providers whose models think optionally (DeepSeek V4) turn it on.
    pub prefer_reasoning: bool,
    /// An effort the client leaves to the model (Anthropic's adaptive
    /// thinking, its `effort`): applied where the chosen model reasons, and
    /// not a reason to skip one that does not.
    pub reasoning_hint: Option<ReasoningEffort>,
    /// Sampling seed.
    pub seed: Option<i64>,
    /// Presence penalty.
    pub presence_penalty: Option<f32>,
    /// Frequency penalty.
    pub frequency_penalty: Option<f32>,
    /// Return log probabilities of the output tokens.
    pub logprobs: bool,
    /// How many alternatives per token (with `logprobs`).
    pub top_logprobs: Option<u8>,
    /// How many answers.
    pub n: Option<u32>,
    /// The end user, forwarded as the provider's end-user field (never logged).
    pub user: Option<String>,
    /// OpenAI fields only the OpenAI wire format has (`logit_bias`,
    /// `verbosity`, `store`, `metadata`, `prompt_cache_key`, ...): forwarded
    /// verbatim to OpenAI and Azure, refused by the other adapters.
    pub openai_only: BTreeMap<String, serde_json::Value>,
    /// OpenAI fields that only tune how an answer is produced, never what it
    /// says (`prompt_cache_key`, `prompt_cache_retention`, `store: false`):
    /// forwarded verbatim to OpenAI and Azure, not sent to the others, whose
    /// caching works without them.
    pub openai_hints: BTreeMap<String, serde_json::Value>,
    /// The client's own request, when a door speaks a provider's API: sent
    /// as it came when the route lands on that provider (see [`NativeRequest`]).
    #[serde(skip)]
    pub native: Option<NativeRequest>,
}

impl ChatRequest {
    /// The client's own request, when `provider` serves its API.
    #[must_use]
    pub fn native_for(&self, provider: ProviderKind) -> Option<&NativeRequest> {
        self.native.as_ref().filter(|n| n.api.served_by(provider))
    }

    /// The field `provider` cannot carry because only the native API has it.
    #[must_use]
    pub fn native_refusal(&self, provider: ProviderKind) -> Option<Unsupported> {
        let native = self.native.as_ref()?;
        if native.api.served_by(provider) {
            return None;
        }
        native.only.first().map(|field| {
            Unsupported::new(
                field.clone(),
                format!("only {} carries it", native.api.name()),
            )
        })
    }

    /// Whether the request turns reasoning on (an effort other than `none`).
    #[must_use]
    pub fn wants_reasoning(&self) -> bool {
        self.reasoning.is_some_and(|e| e != ReasoningEffort::None)
    }

    /// The system prompt with every later instruction ([`Role::System`]
    /// turns) appended, for providers that take instructions in one place.
    #[must_use]
    pub fn system_prompt(&self) -> Option<String> {
        let later = self
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(ChatMessage::text_content);
        let parts: Vec<String> = self.system.iter().cloned().chain(later).collect();
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    }

    /// The model capabilities the request uses.
    #[must_use]
    pub fn needs(&self) -> Vec<Capability> {
        let mut needs = Vec::new();
        let has_tool_history = self.messages.iter().any(|m| !m.tool_calls.is_empty());
        if !self.tools.is_empty() || has_tool_history {
            needs.push(Capability::Tools);
        }
        if !self.tools.is_empty() && self.parallel_tool_calls == Some(true) {
            needs.push(Capability::ParallelTools);
        }
        if self.messages.iter().any(ChatMessage::has_images) {
            needs.push(Capability::Vision);
        }
        match self.response_format {
            Some(ResponseFormat::JsonObject) => needs.push(Capability::JsonObject),
            Some(ResponseFormat::JsonSchema(_)) => needs.push(Capability::JsonSchema),
            None => {}
        }
        if self.wants_reasoning() {
            needs.push(Capability::Reasoning);
        }
        needs
    }
}

/// A request field an adapter cannot honour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsupported {
    /// The field as the client named it (`logit_bias`, `messages[].name`).
    pub field: String,
    /// Why, in a few words.
    pub reason: String,
}

impl Unsupported {
    /// `field` is refused because `reason`.
    #[must_use]
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {}", self.field, self.reason)
    }
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
    /// Of `cache_write_tokens`, those written for an hour (Anthropic's
    /// `ephemeral_1h_input_tokens`, billed above five-minute writes).
    pub cache_write_1h_tokens: u64,
    /// All output tokens, including reasoning ("thinking") tokens.
    pub output_tokens: u64,
    /// Output tokens spent on reasoning.
    pub reasoning_tokens: u64,
}

/// One answer of a chat response.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatChoice {
    /// The answer's text.
    pub text: String,
    /// The model's reasoning, where the provider returns it.
    pub reasoning: Option<String>,
    /// Tool calls, in order.
    pub tool_calls: Vec<ToolCall>,
    /// Why it ended.
    pub finish_reason: Option<FinishReason>,
    /// Log probabilities in OpenAI's shape, where asked for and returned.
    pub logprobs: Option<serde_json::Value>,
    /// The model's refusal to answer (OpenAI), instead of text.
    pub refusal: Option<String>,
}

/// A whole chat answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The model that answered, as the provider names it.
    pub model: String,
    /// The answers (one unless the request asked for `n`).
    pub choices: Vec<ChatChoice>,
    /// Token counts as the provider reported them; `None` when the answer
    /// had none (its cost is then estimated, never taken as zero).
    pub usage: Option<Usage>,
    /// The provider's own answer, when the request went through in its
    /// native API (see [`NativeRequest`]): the door returns it as it came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native: Option<serde_json::Value>,
}

impl ChatResponse {
    /// The first answer's text.
    #[must_use]
    pub fn text(&self) -> &str {
        self.choices.first().map_or("", |c| c.text.as_str())
    }
}

/// A piece of a streamed tool call: the first piece of a call has its id and
/// name, later ones add argument text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Which call of this answer (0, 1, ...).
    pub index: u32,
    /// The call's id (first piece).
    pub id: Option<String>,
    /// The function's name (first piece).
    pub name: Option<String>,
    /// More argument text.
    pub arguments: String,
    /// Opaque provider state (see [`ToolCall::signature`]).
    pub signature: Option<String>,
}

/// One piece of a streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChatChunk {
    /// More answer text.
    Text(String),
    /// More reasoning text (DeepSeek, Anthropic thinking), not part of the answer.
    Reasoning(String),
    /// A piece of a tool call.
    ToolCall(ToolCallDelta),
    /// Log probabilities of the last piece, in OpenAI's shape.
    Logprobs(serde_json::Value),
    /// More of a refusal (OpenAI), instead of answer text.
    Refusal(String),
    /// Generation ended, for this reason.
    Finish(FinishReason),
    /// Final token counts (may come after `Finish`).
    Usage(Usage),
    /// The model that is answering, as the provider names it (Azure's
    /// deployment decides it; streams say so in their chunks).
    Model(String),
    /// What the answer cost, once it ended (added by the gateway, not by
    /// adapters).
    Cost(CostReport),
    /// The provider's own event, when the request went through in its
    /// native API: it comes before the pieces decoded from it.
    Native(NativeEvent),
}

/// How a recorded cost was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostSource {
    /// From the provider's own token counts and the model's catalog price.
    Exact,
    /// From byok's estimate of the tokens (the provider reported none).
    Estimated,
    /// The model that answered has no price in the catalog.
    Unknown,
}

impl CostSource {
    /// `exact`, `estimated` or `unknown`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Estimated => "estimated",
            Self::Unknown => "unknown",
        }
    }

    /// Parses [`CostSource::as_str`].
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "exact" => Self::Exact,
            "estimated" => Self::Estimated,
            "unknown" => Self::Unknown,
            _ => return None,
        })
    }
}

/// A finished answer's cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostReport {
    /// The cost in picodollars (1e-12 USD); `None` when unknown.
    pub picodollars: Option<u64>,
    /// How it was obtained.
    pub source: CostSource,
    /// The token counts it was computed from.
    pub usage: Usage,
}

/// An embeddings request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EmbeddingRequest {
    /// The provider's embedding model (for Azure, ignored: the embedding deployment decides).
    pub model: String,
    /// The texts to embed.
    pub inputs: Vec<String>,
    /// Shorter vectors, where the model supports it.
    pub dimensions: Option<u32>,
    /// The end user (OpenAI's `user`).
    pub user: Option<String>,
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
