#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod chat;
mod error;
mod provider;
mod secret;
mod status;
mod user;

pub use chat::{
    Capability, ChatChoice, ChatChunk, ChatMessage, ChatRequest, ChatResponse, ContentPart,
    CostReport, CostSource, EmbeddingRequest, EmbeddingResponse, FinishReason, ImageSource,
    JsonSchema, NativeApi, NativeEvent, NativeRequest, ReasoningEffort, ResponseFormat, Role, Tool,
    ToolCall, ToolCallDelta, ToolChoice, Unsupported, Usage,
};
pub use error::{CoreError, Result};
pub use provider::ProviderKind;
pub use secret::{ApiKey, MAX_KEY_LEN, MaskedKey};
pub use status::KeyStatus;
pub use user::{MAX_USER_ID_LEN, UserId};
