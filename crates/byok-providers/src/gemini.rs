//! Google Gemini's Generative Language API: the key in `x-goog-api-key`
//! (never `?key=`), `systemInstruction`, the `model` role, an invalid key as
//! HTTP 400, the retry delay in the body, `alt=sse` chunks with running usage
//! totals and no terminator but the final `finishReason`.

use async_trait::async_trait;
use byok_core::{
    ChatChoice, ChatChunk, ChatRequest, ChatResponse, ContentPart, EmbeddingRequest,
    EmbeddingResponse, FinishReason, ImageSource, ProviderKind, ReasoningEffort, ResponseFormat,
    Role, ToolCall, ToolCallDelta, ToolChoice, Unsupported, Usage,
};
use futures_util::StreamExt as _;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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
            401 if reason == "ACCESS_TOKEN_TYPE_UNSUPPORTED" => ProviderError::KeyConfiguration {
                provider,
                problem: crate::KeyProblem::KeyKindRetired,
            },
            403 if reason.starts_with("API_KEY_") && reason.ends_with("_BLOCKED") => {
                ProviderError::KeyConfiguration {
                    provider,
                    problem: crate::KeyProblem::KeyRestricted,
                }
            }
            403 if matches!(
                reason,
                "SERVICE_DISABLED" | "BILLING_DISABLED" | "CONSUMER_SUSPENDED"
            ) =>
            {
                ProviderError::KeyConfiguration {
                    provider,
                    problem: crate::KeyProblem::ProjectSetting,
                }
            }
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

    /// What Gemini cannot carry (see the matrix in `docs/api.md`).
    fn refuse(request: &ChatRequest, stream: bool) -> Option<Unsupported> {
        let refuse = |field: &str, reason: &str| Some(Unsupported::new(field, reason));
        if let Some(field) = request.openai_only.keys().next() {
            return Some(Unsupported::new(
                field.clone(),
                "Gemini has no such parameter",
            ));
        }
        if request.logprobs || request.top_logprobs.is_some() {
            return refuse(
                "logprobs",
                "Gemini's log probabilities have another shape; byok does not translate them",
            );
        }
        if stream && request.n.is_some_and(|n| n > 1) {
            return refuse("n", "byok streams one answer; ask for n > 1 without stream");
        }
        if request.parallel_tool_calls == Some(false) && !request.tools.is_empty() {
            return refuse(
                "parallel_tool_calls",
                "Gemini cannot be limited to one tool call per turn",
            );
        }
        if request.messages.iter().any(|m| m.name.is_some()) {
            return refuse(
                "messages[].name",
                "Gemini messages have no participant names",
            );
        }
        for message in &request.messages {
            for part in &message.content {
                if let ContentPart::Image {
                    source: ImageSource::Url(_),
                    ..
                } = part
                {
                    return refuse(
                        "messages[].content[].image_url.url",
                        "Gemini takes images inline: send a data: URL (byok does not fetch remote images)",
                    );
                }
            }
            for call in &message.tool_calls {
                if serde_json::from_str::<serde_json::Map<String, Value>>(&call.arguments).is_err()
                {
                    return refuse(
                        "messages[].tool_calls[].function.arguments",
                        "Gemini needs tool arguments that are a JSON object",
                    );
                }
            }
            if message.role == Role::Tool && answered_call(request, message).is_none() {
                return refuse(
                    "messages[].tool_call_id",
                    "a tool result must answer a tool call of an earlier assistant turn",
                );
            }
        }
        None
    }

    fn body(request: &ChatRequest) -> Value {
        let mut body = json!({
            "contents": contents(request),
            "generationConfig": generation_config(request),
        });
        if let Some(system) = request.system_prompt() {
            body["systemInstruction"] = json!({"parts": [{"text": system}]});
        }
        if let Some((tools, config)) = tools(request) {
            body["tools"] = tools;
            body["toolConfig"] = config;
        }
        body
    }
}

/// Gemini's turns: `model` for the assistant, function calls with their
/// thought signatures, tool results as `functionResponse` parts by name,
/// consecutive turns of one role merged.
fn contents(request: &ChatRequest) -> Vec<Value> {
    let mut contents: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in &request.messages {
        let (role, mut parts): (&'static str, Vec<Value>) = match message.role {
            // Later instructions are in `systemInstruction`.
            Role::System => continue,
            Role::User => ("user", message.content.iter().map(part).collect()),
            Role::Assistant => {
                let mut parts: Vec<Value> = message
                    .content
                    .iter()
                    .filter(|p| !matches!(p, ContentPart::Text(t) if t.is_empty()))
                    .map(part)
                    .collect();
                parts.extend(message.tool_calls.iter().map(|c| {
                        let mut call = json!({"functionCall": {
                            "name": c.name,
                            "args": serde_json::from_str::<Value>(&c.arguments).unwrap_or_else(|_| json!({})),
                        }});
                        if let Some(signature) = c
                            .signature
                            .as_deref()
                            .and_then(|s| s.strip_prefix(SIGNATURE_PREFIX))
                            .filter(|s| !s.is_empty())
                        {
                            call["thoughtSignature"] = json!(signature);
                        }
                        if let Some(id) = gemini_id(c) {
                            call["functionCall"]["id"] = json!(id);
                        }
                        call
                    }));
                ("model", parts)
            }
            Role::Tool => {
                let text = message.text_content();
                // Gemini wants an object: a JSON object result as it is,
                // anything else under "result".
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(object @ Value::Object(_)) => object,
                    _ => json!({"result": text}),
                };
                let call = answered_call(request, message);
                let name = call.map_or("", |c| c.name.as_str());
                let mut result = json!({"functionResponse": {"name": name, "response": response}});
                if let Some(id) = call.and_then(gemini_id) {
                    result["functionResponse"]["id"] = json!(id);
                }
                ("user", vec![result])
            }
        };
        match contents.last_mut() {
            Some((last, previous)) if *last == role => previous.append(&mut parts),
            _ => contents.push((role, parts)),
        }
    }
    contents
        .into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect()
}

fn generation_config(request: &ChatRequest) -> serde_json::Map<String, Value> {
    let mut config = serde_json::Map::new();
    let mut set = |k: &str, v: Value| {
        config.insert(k.to_owned(), v);
    };
    if let Some(t) = request.temperature {
        set("temperature", json!(t));
    }
    if let Some(p) = request.top_p {
        set("topP", json!(p));
    }
    if let Some(m) = request.max_output_tokens {
        set("maxOutputTokens", json!(m));
    }
    if !request.stop.is_empty() {
        set("stopSequences", json!(request.stop));
    }
    if let Some(n) = request.n {
        set("candidateCount", json!(n));
    }
    if let Some(seed) = request.seed {
        set("seed", json!(seed));
    }
    if let Some(p) = request.presence_penalty {
        set("presencePenalty", json!(p));
    }
    if let Some(p) = request.frequency_penalty {
        set("frequencyPenalty", json!(p));
    }
    match &request.response_format {
        Some(ResponseFormat::JsonObject) => set("responseMimeType", json!("application/json")),
        Some(ResponseFormat::JsonSchema(schema)) => {
            set("responseMimeType", json!("application/json"));
            set("responseJsonSchema", schema.schema.clone());
        }
        None => {}
    }
    if let Some(effort) = request.reasoning {
        set("thinkingConfig", thinking_config(&request.model, effort));
    }
    config
}

/// Function declarations, and how the model may call them.
fn tools(request: &ChatRequest) -> Option<(Value, Value)> {
    if request.tools.is_empty() {
        return None;
    }
    let declarations: Vec<Value> = request
        .tools
        .iter()
        .map(|t| {
            let mut d = json!({"name": t.name});
            if let Some(description) = &t.description {
                d["description"] = json!(description);
            }
            if let Some(parameters) = &t.parameters {
                d["parametersJsonSchema"] = parameters.clone();
            }
            d
        })
        .collect();
    let strict = request.tools.iter().any(|t| t.strict == Some(true));
    let calling = match &request.tool_choice {
        Some(ToolChoice::None) => json!({"mode": "NONE"}),
        Some(ToolChoice::Required) => json!({"mode": "ANY"}),
        Some(ToolChoice::Function(name)) => {
            json!({"mode": "ANY", "allowedFunctionNames": [name]})
        }
        // OpenAI's `strict` schemas: Gemini's VALIDATED mode keeps
        // calls to the declared schema.
        Some(ToolChoice::Auto) | None if strict => json!({"mode": "VALIDATED"}),
        Some(ToolChoice::Auto) | None => json!({"mode": "AUTO"}),
    };
    Some((
        json!([{"functionDeclarations": declarations}]),
        json!({"functionCallingConfig": calling}),
    ))
}

/// The call a tool result answers, from the assistant turn that made it.
fn answered_call<'a>(
    request: &'a ChatRequest,
    result: &byok_core::ChatMessage,
) -> Option<&'a byok_core::ToolCall> {
    let id = result.tool_call_id.as_deref()?;
    request
        .messages
        .iter()
        .flat_map(|m| &m.tool_calls)
        .find(|c| c.id == id)
}

/// Prefix of the ids byok gives Gemini calls that came without one.
const BYOK_CALL_ID: &str = "call_byok_";

/// The id to send back with a call Gemini made: its own id (a call from
/// Gemini carries Gemini's signature, possibly empty), never one byok made
/// up or another provider's.
fn gemini_id(call: &byok_core::ToolCall) -> Option<&str> {
    let from_gemini = call
        .signature
        .as_deref()
        .is_some_and(|s| s.starts_with(SIGNATURE_PREFIX));
    (from_gemini && !call.id.starts_with(BYOK_CALL_ID) && !call.id.is_empty())
        .then_some(call.id.as_str())
}

/// Gemini 2.5 takes a token budget, within each model's range (Pro cannot
/// turn thinking off: its least is 128; Flash and Flash-Lite stop at
/// 24,576, Flash-Lite starts at 512); later models take a level (Pro: low or
/// high; Flash also minimal and medium). `none` asks for the least the model
/// allows.
fn thinking_config(model: &str, effort: ReasoningEffort) -> Value {
    let thoughts = effort != ReasoningEffort::None;
    let pro = model.contains("-pro");
    if model.starts_with("gemini-2.5") {
        let (least, most) = match (pro, model.contains("flash-lite")) {
            (true, _) => (128, 32_768),
            (false, true) => (512, 24_576),
            (false, false) => (1, 24_576),
        };
        let budget = match effort {
            ReasoningEffort::None if !pro => 0,
            ReasoningEffort::None | ReasoningEffort::Minimal => least,
            ReasoningEffort::Low => 1024,
            ReasoningEffort::Medium => 8192,
            ReasoningEffort::High => 24_576,
            ReasoningEffort::Xhigh => most,
        };
        let budget = if budget == 0 {
            0
        } else {
            budget.clamp(least, most)
        };
        json!({"thinkingBudget": budget, "includeThoughts": thoughts})
    } else {
        let level = match (effort, pro) {
            (ReasoningEffort::None | ReasoningEffort::Minimal, false) => "minimal",
            (ReasoningEffort::Medium, false) => "medium",
            (ReasoningEffort::None | ReasoningEffort::Minimal | ReasoningEffort::Low, _) => "low",
            _ => "high",
        };
        json!({"thinkingLevel": level, "includeThoughts": thoughts})
    }
}

fn part(part: &ContentPart) -> Value {
    match part {
        ContentPart::Text(text) => json!({"text": text}),
        ContentPart::Image { source, .. } => match source {
            ImageSource::Base64 { media_type, data } => {
                json!({"inlineData": {"mimeType": media_type, "data": data}})
            }
            // Refused before a request is built.
            ImageSource::Url(url) => json!({"fileData": {"fileUri": url}}),
        },
    }
}

/// Marks a tool call's signature as Gemini's `thoughtSignature`.
const SIGNATURE_PREFIX: &str = "gemini:";

#[async_trait]
impl ChatProvider for Gemini {
    fn kind(&self) -> ProviderKind {
        PROVIDER
    }

    fn unsupported(&self, request: &ChatRequest, stream: bool) -> Option<Unsupported> {
        Self::refuse(request, stream)
    }

    fn unsupported_embedding(&self, request: &EmbeddingRequest) -> Option<Unsupported> {
        let _ = request;
        None
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
        if wire.candidates.is_empty() {
            // No candidates at all: the prompt itself was blocked.
            return Err(ProviderError::BadRequest {
                provider: PROVIDER,
                status: 200,
                kind: BadRequestKind::ContentFilter,
            });
        }
        let usage = wire.usage_metadata.as_ref().map(WireUsage::normalise);
        let model = wire
            .model_version
            .clone()
            .unwrap_or_else(|| request.model.clone());
        let mut candidates = wire.candidates;
        candidates.sort_by_key(|c| c.index.unwrap_or(0));
        Ok(ChatResponse {
            model,
            choices: candidates.iter().map(WireCandidate::choice).collect(),
            usage,
            native: None,
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
                    output_dimensionality: request.dimensions,
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

/// What the stream decoder remembers between chunks.
#[derive(Default)]
struct Decoder {
    pending: std::collections::VecDeque<ChatChunk>,
    done: bool,
    /// Tool calls so far (their indexes).
    calls: u32,
    /// Whether the model was named already.
    named: bool,
}

impl Decoder {
    /// Queues the pieces of one chunk; a finished or blocked chunk is the last.
    fn chunk(&mut self, wire: &WireResponse) {
        let usage = wire.usage_metadata.as_ref().map(WireUsage::normalise);
        if let Some(version) = wire.model_version.as_ref().filter(|v| !v.is_empty())
            && !self.named
        {
            self.named = true;
            self.pending.push_back(ChatChunk::Model(version.clone()));
        }
        let Some(candidate) = wire.candidates.iter().find(|c| c.index.unwrap_or(0) == 0) else {
            // A blocked prompt: no candidates, a block reason.
            if wire
                .prompt_feedback
                .as_ref()
                .is_some_and(|f| f.block_reason.is_some())
            {
                self.end(FinishReason::ContentFilter, usage);
            }
            return;
        };
        let choice = candidate.choice();
        if let Some(reasoning) = choice.reasoning {
            self.pending.push_back(ChatChunk::Reasoning(reasoning));
        }
        if !choice.text.is_empty() {
            self.pending.push_back(ChatChunk::Text(choice.text));
        }
        // Gemini sends each call whole, in one chunk.
        for call in choice.tool_calls {
            self.pending.push_back(ChatChunk::ToolCall(ToolCallDelta {
                index: self.calls,
                id: Some(call.id),
                name: Some(call.name),
                arguments: call.arguments,
                signature: call.signature,
            }));
            self.calls += 1;
        }
        if let Some(reason) = candidate.finish_reason.as_deref() {
            let finish = match finish_reason(reason) {
                FinishReason::Stop if self.calls > 0 => FinishReason::ToolCalls,
                other => other,
            };
            self.end(finish, usage);
        }
    }

    fn end(&mut self, finish: FinishReason, usage: Option<Usage>) {
        self.pending.push_back(ChatChunk::Finish(finish));
        if let Some(usage) = usage {
            self.pending.push_back(ChatChunk::Usage(usage));
        }
        self.done = true;
    }
}

/// Each chunk holds new text and running usage totals; the chunk with a
/// `finishReason` is the last. A stream that closes before one is incomplete.
fn decode(
    events: impl futures_util::Stream<Item = Result<crate::sse::Event, ProviderError>> + Send + 'static,
) -> impl futures_util::Stream<Item = Result<ChatChunk, ProviderError>> + Send + 'static {
    let state = (Box::pin(events), Decoder::default());
    futures_util::stream::unfold(state, |(mut events, mut decoder)| async move {
        loop {
            if let Some(chunk) = decoder.pending.pop_front() {
                return Some((Ok(chunk), (events, decoder)));
            }
            if decoder.done {
                return None;
            }
            let failure = match events.next().await {
                None => ProviderError::IncompleteStream { provider: PROVIDER },
                Some(Err(error)) => error,
                Some(Ok(event)) => match serde_json::from_str::<WireResponse>(&event.data) {
                    Ok(wire) if wire.error.is_none() => {
                        decoder.chunk(&wire);
                        continue;
                    }
                    Ok(_) => ProviderError::StreamError { provider: PROVIDER },
                    Err(_) => ProviderError::BadResponse { provider: PROVIDER },
                },
            };
            decoder.done = true;
            return Some((Err(failure), (events, decoder)));
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
        // A call Gemini failed to make is not a call: no `tool_calls` follow.
        "MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL" | "TOO_MANY_TOOL_CALLS" => {
            FinishReason::Other
        }
        _ => FinishReason::Other,
    }
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
    prompt_feedback: Option<WirePromptFeedback>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePromptFeedback {
    block_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCandidate {
    content: Option<WireCandidateContent>,
    finish_reason: Option<String>,
    index: Option<u32>,
}

impl WireCandidate {
    /// Text, thoughts and function calls; a finished turn with calls ends
    /// for `tool_calls` (Gemini says `STOP`).
    fn choice(&self) -> ChatChoice {
        let mut choice = ChatChoice::default();
        for part in self.content.iter().flat_map(|c| &c.parts) {
            if let Some(call) = &part.function_call {
                choice.tool_calls.push(ToolCall {
                    id: call.id.clone().unwrap_or_else(|| {
                        format!("{BYOK_CALL_ID}{}", uuid::Uuid::new_v4().simple())
                    }),
                    name: call.name.clone(),
                    arguments: call
                        .args
                        .as_ref()
                        .map_or_else(|| "{}".to_owned(), Value::to_string),
                    // Gemini's state for the next turn: its thought signature,
                    // and (by the mark alone) that the id is Gemini's own.
                    signature: match (&part.thought_signature, &call.id) {
                        (Some(s), _) => Some(format!("{SIGNATURE_PREFIX}{s}")),
                        (None, Some(_)) => Some(SIGNATURE_PREFIX.to_owned()),
                        (None, None) => None,
                    },
                });
            } else if let Some(text) = &part.text {
                if part.thought.unwrap_or(false) {
                    choice
                        .reasoning
                        .get_or_insert_with(String::new)
                        .push_str(text);
                } else {
                    choice.text.push_str(text);
                }
            }
        }
        choice.finish_reason = self
            .finish_reason
            .as_deref()
            .map(|r| match finish_reason(r) {
                FinishReason::Stop if !choice.tool_calls.is_empty() => FinishReason::ToolCalls,
                other => other,
            });
        choice
    }
}

#[derive(Deserialize)]
struct WireCandidateContent {
    #[serde(default)]
    parts: Vec<WireAnswerPart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAnswerPart {
    text: Option<String>,
    thought: Option<bool>,
    function_call: Option<WireFunctionCall>,
    thought_signature: Option<String>,
}

#[derive(Deserialize)]
struct WireFunctionCall {
    id: Option<String>,
    name: String,
    args: Option<Value>,
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
            cache_write_1h_tokens: 0,
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
#[serde(rename_all = "camelCase")]
struct WireEmbedItem<'a> {
    model: &'a str,
    content: WireContent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u32>,
}

#[derive(Deserialize)]
struct WireEmbedResponse {
    embeddings: Vec<WireEmbedding>,
}

#[derive(Deserialize)]
struct WireEmbedding {
    values: Vec<f32>,
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    const FRAGMENTS: &[&str] = &[
        r#"{"candidates":[{"index":0,"content":{"parts":[{"text":"hi"}]}}],"modelVersion":"g"}"#,
        r#"{"candidates":[{"index":0,"finishReason":"STOP","content":{"parts":[{"functionCall":{"name":"f","args":{}},"thoughtSignature":"s"}]}}],"usageMetadata":{"promptTokenCount":1}}"#,
        r#"{"candidates":[{"index":0,"finishReason":"MALFORMED_FUNCTION_CALL"}]}"#,
        r#"{"promptFeedback":{"blockReason":"SAFETY"}}"#,
        r#"{"candidates":[{"index":1,"content":{"parts":[{"text":"x","thought":true}]}}]}"#,
        r#"{"error":{"code":500}}"#,
    ];

    fn data() -> impl Strategy<Value = String> {
        crate::sse::fuzzing::data(FRAGMENTS)
    }

    fn run(events: Vec<(String, String)>) -> usize {
        crate::sse::fuzzing::decoded_len(events, decode)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Any sequence of events: no panic, and the stream ends.
        #[test]
        fn any_events_decode_without_panicking(
            events in proptest::collection::vec(("", data()), 0..12),
        ) {
            let items = run(events.clone());
            prop_assert!(items <= events.len() * 8 + 2);
        }

        /// Any body: parsing an answer never panics.
        #[test]
        fn any_answer_body_parses_or_is_refused(body in prop_oneof![data(), ".{0,200}"]) {
            let _ = serde_json::from_str::<WireResponse>(&body);
        }
    }
}
