//! Anthropic's Messages API: `x-api-key` and `anthropic-version`, the system
//! prompt as a top-level field, named SSE events ending in `message_stop`,
//! and input usage that excludes cache reads and writes.

use async_trait::async_trait;
use byok_core::{
    ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, FinishReason,
    ProviderKind, Role, Usage,
};
use futures_util::StreamExt as _;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::http::{self, HttpClients, by_status, retry_after};
use crate::{ChatProvider, ChatStream, Credentials, ProviderError};

const PROVIDER: ProviderKind = ProviderKind::Anthropic;
/// The only API version the official SDK sends.
const API_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; used when the caller sets none.
const DEFAULT_MAX_TOKENS: u32 = 4096;

/// The Anthropic adapter.
#[derive(Debug, Clone)]
pub struct Anthropic {
    clients: HttpClients,
}

impl Anthropic {
    /// Anthropic at `ProviderSettings::anthropic_base_url`.
    #[must_use]
    pub fn new(clients: HttpClients) -> Self {
        Self { clients }
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        credentials: &Credentials<'_>,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let mut url = self.clients.settings().anthropic_base_url.clone();
        let joined = format!("{}{path}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
        let mut key = HeaderValue::from_str(credentials.key.expose_secret())
            .map_err(|_| ProviderError::InvalidKey { provider: PROVIDER })?;
        key.set_sensitive(true);
        Ok(self
            .clients
            .fixed
            .request(method, url)
            .header("x-api-key", key)
            .header("anthropic-version", API_VERSION))
    }

    fn classify(
        provider: ProviderKind,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> ProviderError {
        let error = serde_json::from_slice::<WireErrorBody>(body)
            .map(|b| b.error)
            .unwrap_or_default();
        let kind = error.kind.unwrap_or_default();
        let spend_limit = error
            .details
            .as_ref()
            .and_then(|d| d.get("error_code"))
            .and_then(serde_json::Value::as_str)
            == Some("enforced_spend_limit_reached");
        // The credit case has no code of its own on a 400; its message is the only signal.
        let no_credit_400 = status == StatusCode::BAD_REQUEST
            && error
                .message
                .as_deref()
                .is_some_and(|m| m.contains("credit balance"));
        match status.as_u16() {
            402 => ProviderError::NoCredit { provider },
            _ if kind == "billing_error" || no_credit_400 || spend_limit => {
                ProviderError::NoCredit { provider }
            }
            429 => ProviderError::RateLimited {
                provider,
                retry_after: retry_after(headers),
            },
            404 if kind == "not_found_error" => ProviderError::BadRequest {
                provider,
                status: 404,
                kind: crate::BadRequestKind::UnknownModel,
            },
            _ => by_status(provider, status),
        }
    }

    fn body(request: &ChatRequest, stream: bool) -> WireRequest<'_> {
        WireRequest {
            model: &request.model,
            max_tokens: request.max_output_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            system: request.system.as_deref(),
            messages: request
                .messages
                .iter()
                .map(|m| WireMessage {
                    role: match m.role {
                        Role::User => "user",
                        Role::Assistant => "assistant",
                    },
                    content: &m.content,
                })
                .collect(),
            temperature: request.temperature,
            stop_sequences: (!request.stop.is_empty()).then_some(&request.stop),
            stream,
        }
    }
}

#[async_trait]
impl ChatProvider for Anthropic {
    fn kind(&self) -> ProviderKind {
        PROVIDER
    }

    async fn verify_key(&self, credentials: Credentials<'_>) -> Result<(), ProviderError> {
        let request = self
            .request(reqwest::Method::GET, "/v1/models", &credentials)?
            .query(&[("limit", "1")])
            .timeout(self.clients.settings().request_timeout);
        let response = http::send(PROVIDER, request).await?;
        let _: serde_json::Value = http::json_or_error(
            PROVIDER,
            response,
            self.clients.settings().max_response_bytes,
            Self::classify,
        )
        .await?;
        Ok(())
    }

    async fn chat(
        &self,
        credentials: Credentials<'_>,
        request: &ChatRequest,
    ) -> Result<ChatResponse, ProviderError> {
        let http_request = self
            .request(reqwest::Method::POST, "/v1/messages", &credentials)?
            .json(&Self::body(request, false))
            .timeout(self.clients.settings().request_timeout);
        let response = http::send(PROVIDER, http_request).await?;
        let wire: WireMessageResponse = http::json_or_error(
            PROVIDER,
            response,
            self.clients.settings().max_response_bytes,
            Self::classify,
        )
        .await?;
        let text = wire
            .content
            .iter()
            .filter(|b| b.kind == "text")
            .filter_map(|b| b.text.as_deref())
            .collect::<String>();
        Ok(ChatResponse {
            model: wire.model.unwrap_or_else(|| request.model.clone()),
            text,
            finish_reason: stop_reason(wire.stop_reason.as_deref()),
            usage: wire.usage.unwrap_or_default().normalise(),
        })
    }

    async fn chat_stream(
        &self,
        credentials: Credentials<'_>,
        request: &ChatRequest,
    ) -> Result<ChatStream, ProviderError> {
        let http_request = self
            .request(reqwest::Method::POST, "/v1/messages", &credentials)?
            .json(&Self::body(request, true));
        let response = http::send(PROVIDER, http_request).await?;
        if !response.status().is_success() {
            let status = response.status();
            let headers = response.headers().clone();
            let body = http::read_body(PROVIDER, response, 64 * 1024).await?;
            return Err(Self::classify(PROVIDER, status, &headers, &body));
        }
        Ok(Box::pin(decode(crate::sse::events(
            PROVIDER,
            response,
            self.clients.settings().max_response_bytes,
        ))))
    }

    async fn embed(
        &self,
        _: Credentials<'_>,
        _: &EmbeddingRequest,
    ) -> Result<EmbeddingResponse, ProviderError> {
        Err(ProviderError::Unsupported {
            provider: PROVIDER,
            capability: "embeddings",
        })
    }
}

/// Decodes the named events. Input usage comes with `message_start`; output
/// usage in `message_delta` is cumulative, so the last one counts; the
/// stream is complete only at `message_stop`.
fn decode(
    events: impl futures_util::Stream<Item = Result<crate::sse::Event, ProviderError>> + Send + 'static,
) -> impl futures_util::Stream<Item = Result<ChatChunk, ProviderError>> + Send + 'static {
    struct State<S> {
        events: std::pin::Pin<Box<S>>,
        usage: WireUsage,
        done: bool,
    }
    let state = State {
        events: Box::pin(events),
        usage: WireUsage::default(),
        done: false,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if state.done {
                return None;
            }
            let event = match state.events.next().await {
                None => {
                    state.done = true;
                    return Some((
                        Err(ProviderError::IncompleteStream { provider: PROVIDER }),
                        state,
                    ));
                }
                Some(Err(error)) => {
                    state.done = true;
                    return Some((Err(error), state));
                }
                Some(Ok(event)) => event,
            };
            let Ok(data) = serde_json::from_str::<WireEvent>(&event.data) else {
                state.done = true;
                return Some((
                    Err(ProviderError::BadResponse { provider: PROVIDER }),
                    state,
                ));
            };
            match data.kind.as_str() {
                "message_start" => {
                    if let Some(usage) = data.message.and_then(|m| m.usage) {
                        state.usage.merge(&usage);
                    }
                }
                "content_block_delta" => match data.delta {
                    Some(WireDelta {
                        kind: Some(kind),
                        text: Some(text),
                        ..
                    }) if kind == "text_delta" => {
                        return Some((Ok(ChatChunk::Text(text)), state));
                    }
                    Some(WireDelta {
                        kind: Some(kind),
                        thinking: Some(thinking),
                        ..
                    }) if kind == "thinking_delta" => {
                        return Some((Ok(ChatChunk::Reasoning(thinking)), state));
                    }
                    _ => {}
                },
                "message_delta" => {
                    if let Some(usage) = &data.usage {
                        state.usage.merge(usage);
                    }
                    if let Some(reason) = data.delta.and_then(|d| d.stop_reason) {
                        return Some((Ok(ChatChunk::Finish(stop_reason(Some(&reason)))), state));
                    }
                }
                "message_stop" => {
                    state.done = true;
                    let usage = state.usage.normalise();
                    return Some((Ok(ChatChunk::Usage(usage)), state));
                }
                "error" => {
                    state.done = true;
                    return Some((
                        Err(ProviderError::StreamError { provider: PROVIDER }),
                        state,
                    ));
                }
                _ => {} // ping, content_block_start/stop, unknown future events
            }
        }
    })
}

fn stop_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        Some("end_turn" | "stop_sequence") => FinishReason::Stop,
        Some("max_tokens" | "model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        _ => FinishReason::Other,
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<&'a Vec<String>>,
    stream: bool,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Deserialize, Default)]
struct WireErrorBody {
    #[serde(default)]
    error: WireError,
}

#[derive(Deserialize, Default)]
struct WireError {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
    details: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct WireMessageResponse {
    model: Option<String>,
    #[serde(default)]
    content: Vec<WireBlock>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireBlock {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[expect(clippy::struct_field_names, reason = "mirrors Anthropic's wire names")]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Later values win (output tokens are cumulative in `message_delta`).
    fn merge(&mut self, newer: &Self) {
        self.input_tokens = newer.input_tokens.or(self.input_tokens);
        self.output_tokens = newer.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = newer
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = newer
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }

    /// Anthropic's `input_tokens` excludes cache reads and writes; `Usage`
    /// counts all input.
    fn normalise(&self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_creation_input_tokens.unwrap_or(0);
        Usage {
            input_tokens: self.input_tokens.unwrap_or(0) + read + write,
            cached_input_tokens: read,
            cache_write_tokens: write,
            output_tokens: self.output_tokens.unwrap_or(0),
            reasoning_tokens: 0,
        }
    }
}

#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: String,
    message: Option<WireStartMessage>,
    delta: Option<WireDelta>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireStartMessage {
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireDelta {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    thinking: Option<String>,
    stop_reason: Option<String>,
}
