//! Google Gemini's Generative Language API: the key in `x-goog-api-key`
//! (never `?key=`), `systemInstruction`, the `model` role, an invalid key as
//! HTTP 400, the retry delay in the body, `alt=sse` chunks with running usage
//! totals and no terminator but the final `finishReason`.

use async_trait::async_trait;
use byok_core::{
    ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, FinishReason,
    ProviderKind, Role, Usage,
};
use futures_util::StreamExt as _;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::http::{self, HttpClients, by_status, parse_duration};
use crate::{BadRequestKind, ChatProvider, ChatStream, Credentials, ProviderError};

const PROVIDER: ProviderKind = ProviderKind::Gemini;

/// The Gemini adapter.
#[derive(Debug, Clone)]
pub struct Gemini {
    clients: HttpClients,
}

impl Gemini {
    /// Gemini at `ProviderSettings::gemini_base_url`.
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
        let mut url = self.clients.settings().gemini_base_url.clone();
        let joined = format!("{}{path}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
        let mut key = HeaderValue::from_str(credentials.key.expose_secret())
            .map_err(|_| ProviderError::InvalidKey { provider: PROVIDER })?;
        key.set_sensitive(true);
        Ok(self
            .clients
            .fixed
            .request(method, url)
            .header("x-goog-api-key", key))
    }

    fn model_path(model: &str, method: &str) -> Result<String, ProviderError> {
        let model = model.strip_prefix("models/").unwrap_or(model);
        // The model id goes into the path: keep it to a plain id.
        let plain = !model.is_empty()
            && model
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if plain {
            Ok(format!("/v1beta/models/{model}:{method}"))
        } else {
            Err(ProviderError::BadRequest {
                provider: PROVIDER,
                status: 400,
                kind: BadRequestKind::UnknownModel,
            })
        }
    }

    fn classify(
        provider: ProviderKind,
        status: StatusCode,
        _: &HeaderMap,
        body: &[u8],
    ) -> ProviderError {
        // Errors may come wrapped in an array (alt=json streams).
        let error = serde_json::from_slice::<WireErrorBody>(body)
            .or_else(|_| {
                serde_json::from_slice::<Vec<WireErrorBody>>(body)
                    .map(|v| v.into_iter().next().unwrap_or_default())
            })
            .map(|b| b.error)
            .unwrap_or_default();
        let details = error.details.unwrap_or_default();
        let reason = details
            .iter()
            .find_map(|d| d.reason.as_deref())
            .unwrap_or_default();
        let grpc = error.status.unwrap_or_default();
        match status.as_u16() {
            400 if reason == "API_KEY_INVALID" => ProviderError::InvalidKey { provider },
            400 if grpc == "FAILED_PRECONDITION" => ProviderError::Unavailable {
                provider,
                status: 400,
            },
            403 => ProviderError::InvalidKey { provider },
            429 => {
                let daily = details
                    .iter()
                    .flat_map(|d| d.violations.iter().flatten())
                    .any(|v| v.quota_id.as_deref().is_some_and(|q| q.contains("PerDay")));
                if daily {
                    ProviderError::NoCredit { provider }
                } else {
                    let retry_after = details
                        .iter()
                        .find_map(|d| d.retry_delay.as_deref())
                        .and_then(parse_duration);
                    ProviderError::RateLimited {
                        provider,
                        retry_after,
                    }
                }
            }
            404 => ProviderError::BadRequest {
                provider,
                status: 404,
                kind: BadRequestKind::UnknownModel,
            },
            _ => by_status(provider, status),
        }
    }

    fn body(request: &ChatRequest) -> WireRequest<'_> {
        WireRequest {
            system_instruction: request.system.as_deref().map(|text| WireContent {
                role: None,
                parts: vec![WirePart { text }],
            }),
            contents: request
                .messages
                .iter()
                .map(|m| WireContent {
                    role: Some(match m.role {
                        Role::User => "user",
                        Role::Assistant => "model",
                    }),
                    parts: vec![WirePart { text: &m.content }],
                })
                .collect(),
            generation_config: WireGenerationConfig {
                temperature: request.temperature,
                max_output_tokens: request.max_output_tokens,
                stop_sequences: (!request.stop.is_empty()).then_some(&request.stop),
            },
        }
    }
}

#[async_trait]
impl ChatProvider for Gemini {
    fn kind(&self) -> ProviderKind {
        PROVIDER
    }

    async fn verify_key(&self, credentials: Credentials<'_>) -> Result<(), ProviderError> {
        let request = self
            .request(reqwest::Method::GET, "/v1beta/models", &credentials)?
            .query(&[("pageSize", "1")])
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
        let path = Self::model_path(&request.model, "generateContent")?;
        let http_request = self
            .request(reqwest::Method::POST, &path, &credentials)?
            .json(&Self::body(request))
            .timeout(self.clients.settings().request_timeout);
        let response = http::send(PROVIDER, http_request).await?;
        let wire: WireResponse = http::json_or_error(
            PROVIDER,
            response,
            self.clients.settings().max_response_bytes,
            Self::classify,
        )
        .await?;
        let (text, finish) = wire.answer();
        let Some(finish) = finish else {
            // No candidates at all: the prompt itself was blocked.
            return Err(ProviderError::BadRequest {
                provider: PROVIDER,
                status: 200,
                kind: BadRequestKind::ContentFilter,
            });
        };
        Ok(ChatResponse {
            model: wire.model_version.unwrap_or_else(|| request.model.clone()),
            text,
            finish_reason: finish,
            usage: wire.usage_metadata.unwrap_or_default().normalise(),
        })
    }

    async fn chat_stream(
        &self,
        credentials: Credentials<'_>,
        request: &ChatRequest,
    ) -> Result<ChatStream, ProviderError> {
        let path = Self::model_path(&request.model, "streamGenerateContent")?;
        let http_request = self
            .request(reqwest::Method::POST, &path, &credentials)?
            .query(&[("alt", "sse")])
            .json(&Self::body(request));
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
        credentials: Credentials<'_>,
        request: &EmbeddingRequest,
    ) -> Result<EmbeddingResponse, ProviderError> {
        let path = Self::model_path(&request.model, "batchEmbedContents")?;
        let model = format!(
            "models/{}",
            request
                .model
                .strip_prefix("models/")
                .unwrap_or(&request.model)
        );
        let body = WireEmbedRequest {
            requests: request
                .inputs
                .iter()
                .map(|text| WireEmbedItem {
                    model: &model,
                    content: WireContent {
                        role: None,
                        parts: vec![WirePart { text }],
                    },
                })
                .collect(),
        };
        let http_request = self
            .request(reqwest::Method::POST, &path, &credentials)?
            .json(&body)
            .timeout(self.clients.settings().request_timeout);
        let response = http::send(PROVIDER, http_request).await?;
        let wire: WireEmbedResponse = http::json_or_error(
            PROVIDER,
            response,
            self.clients.settings().max_response_bytes,
            Self::classify,
        )
        .await?;
        Ok(EmbeddingResponse {
            model: request.model.clone(),
            vectors: wire.embeddings.into_iter().map(|e| e.values).collect(),
            input_tokens: None,
        })
    }
}

/// Each chunk holds new text and running usage totals; the chunk with a
/// `finishReason` is the last. A stream that closes before one is incomplete.
fn decode(
    events: impl futures_util::Stream<Item = Result<crate::sse::Event, ProviderError>> + Send + 'static,
) -> impl futures_util::Stream<Item = Result<ChatChunk, ProviderError>> + Send + 'static {
    let state = (
        Box::pin(events),
        std::collections::VecDeque::<ChatChunk>::new(),
        false,
    );
    futures_util::stream::unfold(state, |(mut events, mut pending, mut done)| async move {
        loop {
            if let Some(chunk) = pending.pop_front() {
                return Some((Ok(chunk), (events, pending, done)));
            }
            if done {
                return None;
            }
            match events.next().await {
                None => {
                    done = true;
                    return Some((
                        Err(ProviderError::IncompleteStream { provider: PROVIDER }),
                        (events, pending, done),
                    ));
                }
                Some(Err(error)) => {
                    done = true;
                    return Some((Err(error), (events, pending, done)));
                }
                Some(Ok(event)) => {
                    let Ok(wire) = serde_json::from_str::<WireResponse>(&event.data) else {
                        done = true;
                        return Some((
                            Err(ProviderError::BadResponse { provider: PROVIDER }),
                            (events, pending, done),
                        ));
                    };
                    if wire.error.is_some() {
                        done = true;
                        return Some((
                            Err(ProviderError::StreamError { provider: PROVIDER }),
                            (events, pending, done),
                        ));
                    }
                    let usage = wire.usage_metadata.clone();
                    let (text, finish) = wire.answer();
                    if !text.is_empty() {
                        pending.push_back(ChatChunk::Text(text));
                    }
                    if let Some(finish) = finish {
                        pending.push_back(ChatChunk::Finish(finish));
                        if let Some(usage) = usage {
                            pending.push_back(ChatChunk::Usage(usage.normalise()));
                        }
                        done = true;
                    }
                }
            }
        }
    })
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        "MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL" | "TOO_MANY_TOOL_CALLS" => {
            FinishReason::ToolCalls
        }
        _ => FinishReason::Other,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<WireContent<'a>>,
    contents: Vec<WireContent<'a>>,
    generation_config: WireGenerationConfig<'a>,
}

#[derive(Serialize)]
struct WireContent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    parts: Vec<WirePart<'a>>,
}

#[derive(Serialize)]
struct WirePart<'a> {
    text: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireGenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<&'a Vec<String>>,
}

#[derive(Deserialize, Default)]
struct WireErrorBody {
    #[serde(default)]
    error: WireError,
}

#[derive(Deserialize, Default)]
struct WireError {
    status: Option<String>,
    details: Option<Vec<WireDetail>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireDetail {
    reason: Option<String>,
    retry_delay: Option<String>,
    violations: Option<Vec<WireViolation>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireViolation {
    quota_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    #[serde(default)]
    candidates: Vec<WireCandidate>,
    usage_metadata: Option<WireUsage>,
    model_version: Option<String>,
    error: Option<serde_json::Value>,
}

impl WireResponse {
    /// The first candidate's non-thought text and finish reason.
    fn answer(&self) -> (String, Option<FinishReason>) {
        let Some(candidate) = self.candidates.first() else {
            return (String::new(), None);
        };
        let text = candidate
            .content
            .as_ref()
            .map(|c| {
                c.parts
                    .iter()
                    .filter(|p| !p.thought.unwrap_or(false))
                    .filter_map(|p| p.text.as_deref())
                    .collect()
            })
            .unwrap_or_default();
        (text, candidate.finish_reason.as_deref().map(finish_reason))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCandidate {
    content: Option<WireCandidateContent>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireCandidateContent {
    #[serde(default)]
    parts: Vec<WireAnswerPart>,
}

#[derive(Deserialize)]
struct WireAnswerPart {
    text: Option<String>,
    thought: Option<bool>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
#[expect(clippy::struct_field_names, reason = "mirrors Gemini's wire names")]
struct WireUsage {
    prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    cached_content_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
}

impl WireUsage {
    /// Gemini's prompt count includes cached tokens; thinking tokens are
    /// billed as output but are not inside `candidatesTokenCount`.
    fn normalise(&self) -> Usage {
        let thoughts = self.thoughts_token_count.unwrap_or(0);
        Usage {
            input_tokens: self.prompt_token_count.unwrap_or(0),
            cached_input_tokens: self.cached_content_token_count.unwrap_or(0),
            cache_write_tokens: 0,
            output_tokens: self.candidates_token_count.unwrap_or(0) + thoughts,
            reasoning_tokens: thoughts,
        }
    }
}

#[derive(Serialize)]
struct WireEmbedRequest<'a> {
    requests: Vec<WireEmbedItem<'a>>,
}

#[derive(Serialize)]
struct WireEmbedItem<'a> {
    model: &'a str,
    content: WireContent<'a>,
}

#[derive(Deserialize)]
struct WireEmbedResponse {
    embeddings: Vec<WireEmbedding>,
}

#[derive(Deserialize)]
struct WireEmbedding {
    values: Vec<f32>,
}
