//! Anthropic's Messages API: `x-api-key` and `anthropic-version`, the system
//! prompt as a top-level field, named SSE events ending in `message_stop`,
//! and input usage that excludes cache reads and writes.

use async_trait::async_trait;
use byok_core::{
    ChatChoice, ChatChunk, ChatRequest, ChatResponse, ContentPart, EmbeddingRequest,
    EmbeddingResponse, FinishReason, ImageSource, ProviderKind, ReasoningEffort, ResponseFormat,
    Role, ToolCall, ToolCallDelta, ToolChoice, Unsupported, Usage,
};
use futures_util::StreamExt as _;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};

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
        let mut request = self
            .clients
            .fixed
            .request(method, url)
            .header("x-api-key", key)
            .header("anthropic-version", API_VERSION);
        // Keys bound to a workspace (or a person) must name it.
        if let Some(workspace) = credentials.settings.get("workspace_id") {
            request = request.header("anthropic-workspace-id", workspace.as_str());
        }
        Ok(request)
    }

    /// A Messages call: the client's own body when it came through byok's
    /// Messages door (with its beta headers), otherwise byok's translation.
    fn messages_call(
        &self,
        credentials: &Credentials<'_>,
        request: &ChatRequest,
        stream: bool,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let mut call = self.request(reqwest::Method::POST, "/v1/messages", credentials)?;
        let body = match request.native_for(PROVIDER) {
            Some(native) => {
                for (name, value) in &native.headers {
                    call = call.header(name.as_str(), value.as_str());
                }
                let mut body = (*native.body).clone();
                body["model"] = json!(request.model);
                body["stream"] = json!(stream);
                body
            }
            None => Self::body(request, stream),
        };
        Ok(call.json(&body))
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
        // A workspace-bound key without its workspace id: the message is the
        // only signal (a plain invalid_request_error), and it says "API key",
        // so it must not be read as a bad key or a bad request.
        let workspace_required = status == StatusCode::BAD_REQUEST
            && error
                .message
                .as_deref()
                .is_some_and(|m| m.contains("anthropic-workspace-id"));
        match status.as_u16() {
            _ if workspace_required => ProviderError::KeyConfiguration {
                provider,
                problem: crate::KeyProblem::WorkspaceRequired,
            },
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

    /// What Anthropic cannot carry (see the matrix in `docs/api.md`).
    fn refuse(request: &ChatRequest) -> Option<Unsupported> {
        let refuse = |field: &str, reason: &str| Some(Unsupported::new(field, reason));
        if let Some(field) = request.openai_only.keys().next() {
            return Some(Unsupported::new(
                field.clone(),
                "Anthropic has no such parameter",
            ));
        }
        for (field, set) in [
            ("n", request.n.is_some_and(|n| n > 1)),
            ("seed", request.seed.is_some()),
            ("presence_penalty", request.presence_penalty.is_some()),
            ("frequency_penalty", request.frequency_penalty.is_some()),
            (
                "logprobs",
                request.logprobs || request.top_logprobs.is_some(),
            ),
        ] {
            if set {
                return refuse(field, "Anthropic has no such parameter");
            }
        }
        if request.messages.iter().any(|m| m.name.is_some()) {
            return refuse(
                "messages[].name",
                "Anthropic messages have no participant names",
            );
        }
        if matches!(request.response_format, Some(ResponseFormat::JsonObject)) {
            return refuse(
                "response_format.json_object",
                "Anthropic has schema-constrained output only; send a json_schema",
            );
        }
        for message in &request.messages {
            for call in &message.tool_calls {
                if serde_json::from_str::<serde_json::Map<String, Value>>(&call.arguments).is_err()
                {
                    return refuse(
                        "messages[].tool_calls[].function.arguments",
                        "Anthropic needs tool arguments that are a JSON object",
                    );
                }
            }
        }
        if request.wants_reasoning() {
            if request
                .temperature
                .is_some_and(|t| (t - 1.0).abs() > f32::EPSILON)
            {
                return refuse(
                    "temperature",
                    "Anthropic's extended thinking needs temperature 1 (or none)",
                );
            }
            if request.top_p.is_some_and(|p| p < 0.95) {
                return refuse(
                    "top_p",
                    "Anthropic's extended thinking needs top_p of 0.95 or more",
                );
            }
            if matches!(
                request.tool_choice,
                Some(ToolChoice::Required | ToolChoice::Function(_))
            ) {
                return refuse(
                    "tool_choice",
                    "Anthropic's extended thinking allows only tool_choice auto or none",
                );
            }
            if request
                .max_output_tokens
                .is_some_and(|m| m <= MIN_THINKING_BUDGET)
            {
                return refuse(
                    "max_completion_tokens",
                    "Anthropic's extended thinking needs more than 1024 output tokens",
                );
            }
        }
        None
    }

    /// The thinking budget for `effort`, below the request's output limit.
    fn thinking_budget(effort: ReasoningEffort, max_tokens: Option<u32>) -> u32 {
        let wanted = match effort {
            ReasoningEffort::None | ReasoningEffort::Minimal | ReasoningEffort::Low => {
                MIN_THINKING_BUDGET
            }
            ReasoningEffort::Medium => 4096,
            ReasoningEffort::High => 16_384,
            ReasoningEffort::Xhigh => 32_768,
        };
        match max_tokens {
            Some(max) => wanted.min(max.saturating_sub(1)).max(MIN_THINKING_BUDGET),
            None => wanted,
        }
    }

    fn body(request: &ChatRequest, stream: bool) -> Value {
        let thinking = request
            .reasoning
            .filter(|e| *e != ReasoningEffort::None)
            .map(|e| Self::thinking_budget(e, request.max_output_tokens));
        // Without a caller's limit, the answer gets its default on top of the thinking budget.
        let max_tokens = request
            .max_output_tokens
            .unwrap_or(DEFAULT_MAX_TOKENS + thinking.unwrap_or(0));
        let mut body = json!({
            "model": request.model,
            "max_tokens": max_tokens,
            "messages": messages(request),
            "stream": stream,
        });
        if let Some(system) = request.system_prompt() {
            body["system"] = json!(system);
        }
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(p) = request.top_p {
            body["top_p"] = json!(p);
        }
        if !request.stop.is_empty() {
            body["stop_sequences"] = json!(request.stop);
        }
        if request.tools.is_empty() {
            // Anthropic refuses tool_use and tool_result blocks unless tools
            // are declared: declare the functions the conversation used, and
            // let the model call none of them now.
            let mut used: Vec<&str> = request
                .messages
                .iter()
                .flat_map(|m| &m.tool_calls)
                .map(|c| c.name.as_str())
                .collect();
            used.sort_unstable();
            used.dedup();
            if !used.is_empty() {
                body["tools"] = used
                    .iter()
                    .map(|name| json!({"name": name, "input_schema": {"type": "object"}}))
                    .collect();
                body["tool_choice"] = json!({"type": "none"});
            }
        } else {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| {
                    let mut tool = json!({
                        "name": t.name,
                        "input_schema": t.parameters.clone().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                    });
                    if let Some(d) = &t.description {
                        tool["description"] = json!(d);
                    }
                    if let Some(strict) = t.strict {
                        tool["strict"] = json!(strict);
                    }
                    tool
                })
                .collect();
        }
        let mut choice = request.tool_choice.as_ref().map(|c| match c {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::Function(name) => json!({"type": "tool", "name": name}),
        });
        if request.parallel_tool_calls == Some(false) && !request.tools.is_empty() {
            let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
            if c["type"] != "none" {
                c["disable_parallel_tool_use"] = json!(true);
            }
        }
        if let Some(choice) = choice {
            body["tool_choice"] = choice;
        }
        if let Some(ResponseFormat::JsonSchema(schema)) = &request.response_format {
            body["output_config"] =
                json!({"format": {"type": "json_schema", "schema": schema.schema}});
        }
        if let Some(budget) = thinking {
            body["thinking"] = json!({"type": "enabled", "budget_tokens": budget});
        }
        if let Some(user) = &request.user {
            body["metadata"] = json!({"user_id": user});
        }
        body
    }
}

/// Anthropic's turns: system prompts out, tool results as `tool_result`
/// blocks in user turns, consecutive turns of one role merged, and an
/// assistant turn's signed thinking blocks put back before its tool calls.
fn messages(request: &ChatRequest) -> Vec<Value> {
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in &request.messages {
        let (role, mut blocks) = match message.role {
            // Later instructions are in the system prompt.
            Role::System => continue,
            Role::User => ("user", message.content.iter().map(block).collect()),
            Role::Tool => {
                let content = if message.has_images() {
                    Value::Array(message.content.iter().map(block).collect())
                } else {
                    Value::String(message.text_content())
                };
                (
                    "user",
                    vec![json!({
                        "type": "tool_result",
                        "tool_use_id": message.tool_call_id.clone().unwrap_or_default(),
                        "content": content,
                    })],
                )
            }
            Role::Assistant => {
                let mut blocks: Vec<Value> = message
                    .tool_calls
                    .iter()
                    .filter_map(|c| c.signature.as_deref())
                    .filter_map(|s| s.strip_prefix(SIGNATURE_PREFIX))
                    .take(1)
                    .filter_map(|s| serde_json::from_str::<Vec<Value>>(s).ok())
                    .flatten()
                    // Only thinking blocks come back this way: the signature is
                    // client-held, so nothing else may ride in it.
                    .filter(|b| {
                        matches!(b["type"].as_str(), Some("thinking" | "redacted_thinking"))
                    })
                    .collect();
                blocks.extend(
                    message
                        .content
                        .iter()
                        .filter(|p| !matches!(p, ContentPart::Text(t) if t.is_empty()))
                        .map(block),
                );
                blocks.extend(message.tool_calls.iter().map(|c| {
                    json!({
                        "type": "tool_use",
                        "id": c.id,
                        "name": c.name,
                        "input": serde_json::from_str::<Value>(&c.arguments).unwrap_or_else(|_| json!({})),
                    })
                }));
                ("assistant", blocks)
            }
        };
        match out.last_mut() {
            Some((last, previous)) if *last == role => previous.append(&mut blocks),
            _ => out.push((role, blocks)),
        }
    }
    out.into_iter()
        .map(|(role, content)| match content.as_slice() {
            // A lone text block is sent as a plain string, as Anthropic's own examples do.
            [only] if only["type"] == "text" => {
                json!({"role": role, "content": only["text"]})
            }
            _ => json!({"role": role, "content": content}),
        })
        .collect()
}

fn block(part: &ContentPart) -> Value {
    match part {
        ContentPart::Text(text) => json!({"type": "text", "text": text}),
        ContentPart::Image { source, .. } => match source {
            ImageSource::Base64 { media_type, data } => {
                json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
            }
            ImageSource::Url(url) => {
                json!({"type": "image", "source": {"type": "url", "url": url}})
            }
        },
    }
}

/// Marks a tool call's signature as Anthropic's signed thinking blocks.
const SIGNATURE_PREFIX: &str = "anthropic:";
/// Anthropic's smallest thinking budget.
const MIN_THINKING_BUDGET: u32 = 1024;

#[async_trait]
impl ChatProvider for Anthropic {
    fn kind(&self) -> ProviderKind {
        PROVIDER
    }

    fn unsupported(&self, request: &ChatRequest, _stream: bool) -> Option<Unsupported> {
        // The client's own Messages request: Anthropic itself judges it.
        if request.native_for(PROVIDER).is_some() {
            return None;
        }
        Self::refuse(request)
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
            .messages_call(&credentials, request, false)?
            .timeout(self.clients.settings().request_timeout);
        let response = http::send(PROVIDER, http_request).await?;
        let raw: Value = http::json_or_error(
            PROVIDER,
            response,
            self.clients.settings().max_response_bytes,
            Self::classify,
        )
        .await?;
        let wire = WireMessageResponse::deserialize(&raw)
            .map_err(|_| ProviderError::BadResponse { provider: PROVIDER })?;
        let native = request.native_for(PROVIDER).is_some().then_some(raw);
        let mut choice = ChatChoice {
            finish_reason: Some(stop_reason(wire.stop_reason.as_deref())),
            ..ChatChoice::default()
        };
        let mut thinking_blocks = Vec::new();
        for block in wire.content {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    choice
                        .text
                        .push_str(block.get("text").and_then(Value::as_str).unwrap_or(""));
                }
                Some("thinking") => {
                    let text = block.get("thinking").and_then(Value::as_str).unwrap_or("");
                    choice
                        .reasoning
                        .get_or_insert_with(String::new)
                        .push_str(text);
                    thinking_blocks.push(block);
                }
                Some("redacted_thinking") => thinking_blocks.push(block),
                Some("tool_use") => choice.tool_calls.push(ToolCall {
                    id: block
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    name: block
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    arguments: block
                        .get("input")
                        .map_or_else(|| "{}".to_owned(), Value::to_string),
                    signature: None,
                }),
                _ => {}
            }
        }
        if let Some(first) = choice.tool_calls.first_mut()
            && !thinking_blocks.is_empty()
        {
            first.signature = Some(format!(
                "{SIGNATURE_PREFIX}{}",
                Value::Array(thinking_blocks)
            ));
        }
        Ok(ChatResponse {
            model: wire.model.unwrap_or_else(|| request.model.clone()),
            choices: vec![choice],
            usage: wire.usage.map(|u| u.normalise()),
            native,
        })
    }

    async fn chat_stream(
        &self,
        credentials: Credentials<'_>,
        request: &ChatRequest,
    ) -> Result<ChatStream, ProviderError> {
        let http_request = self.messages_call(&credentials, request, true)?;
        let native = request.native_for(PROVIDER).is_some();
        let response = http::send(PROVIDER, http_request).await?;
        if !response.status().is_success() {
            let status = response.status();
            let headers = response.headers().clone();
            let body = http::read_body(PROVIDER, response, 64 * 1024).await?;
            return Err(Self::classify(PROVIDER, status, &headers, &body));
        }
        Ok(Box::pin(decode(
            crate::sse::events(
                PROVIDER,
                response,
                self.clients.settings().max_response_bytes,
            ),
            native,
        )))
    }

    async fn count_tokens(
        &self,
        credentials: Credentials<'_>,
        request: &ChatRequest,
    ) -> Result<Option<u64>, ProviderError> {
        /// What `count_tokens` takes of a Messages body.
        const COUNTED: [&str; 9] = [
            "model",
            "messages",
            "system",
            "tools",
            "tool_choice",
            "thinking",
            "context_management",
            "mcp_servers",
            "output_config",
        ];
        let mut call = self.request(
            reqwest::Method::POST,
            "/v1/messages/count_tokens",
            &credentials,
        )?;
        let mut body = match request.native_for(PROVIDER) {
            Some(native) => {
                for (name, value) in &native.headers {
                    call = call.header(name.as_str(), value.as_str());
                }
                (*native.body).clone()
            }
            None => Self::body(request, false),
        };
        body["model"] = json!(request.model);
        if let Value::Object(fields) = &mut body {
            fields.retain(|name, _| COUNTED.contains(&name.as_str()));
        }
        let response = http::send(
            PROVIDER,
            call.json(&body)
                .timeout(self.clients.settings().request_timeout),
        )
        .await?;
        let counted: WireCount = http::json_or_error(
            PROVIDER,
            response,
            self.clients.settings().max_response_bytes,
            Self::classify,
        )
        .await?;
        Ok(Some(counted.input_tokens))
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

/// What the decoder remembers between events.
#[derive(Default)]
struct Decoder {
    usage: WireUsage,
    done: bool,
    /// Content block index → tool call index, for `input_json_delta`.
    tools: Vec<(u64, u32)>,
    /// Signed thinking blocks seen so far, given to the first tool call.
    thinking: Vec<Value>,
    thinking_given: bool,
    /// Whether each event also goes out as it came (the Messages door).
    native: bool,
}

impl Decoder {
    /// The chunk one event yields, if any.
    fn event(&mut self, data: WireEvent) -> Option<Result<ChatChunk, ProviderError>> {
        match data.kind.as_str() {
            "message_start" => {
                let message = data.message?;
                if let Some(usage) = message.usage {
                    self.usage.merge(&usage);
                }
                message.model.map(|m| Ok(ChatChunk::Model(m)))
            }
            "content_block_start" => self.block_start(
                data.index.unwrap_or(0),
                data.content_block.unwrap_or(Value::Null),
            ),
            "content_block_delta" => self.delta(data.index.unwrap_or(0), data.delta?),
            "message_delta" => {
                if let Some(usage) = &data.usage {
                    self.usage.merge(usage);
                }
                let reason = data.delta.and_then(|d| d.stop_reason)?;
                Some(Ok(ChatChunk::Finish(stop_reason(Some(&reason)))))
            }
            "message_stop" => {
                self.done = true;
                Some(Ok(ChatChunk::Usage(self.usage.normalise())))
            }
            "error" => {
                self.done = true;
                Some(Err(stream_error(
                    data.error.and_then(|e| e.kind).as_deref(),
                )))
            }
            _ => None, // ping, content_block_stop, unknown future events
        }
    }

    /// A tool call starts (with the signed thinking before it, once), or a
    /// thinking block starts.
    fn block_start(&mut self, at: u64, block: Value) -> Option<Result<ChatChunk, ProviderError>> {
        match block.get("type").and_then(Value::as_str) {
            Some("tool_use") => {
                let index = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
                self.tools.push((at, index));
                let signature = (!self.thinking_given && !self.thinking.is_empty()).then(|| {
                    format!(
                        "{SIGNATURE_PREFIX}{}",
                        Value::Array(std::mem::take(&mut self.thinking))
                    )
                });
                self.thinking_given |= signature.is_some();
                let text = |k: &str| block.get(k).and_then(Value::as_str).map(str::to_owned);
                Some(Ok(ChatChunk::ToolCall(ToolCallDelta {
                    index,
                    id: text("id"),
                    name: text("name"),
                    arguments: String::new(),
                    signature,
                })))
            }
            Some("thinking" | "redacted_thinking") => {
                self.thinking.push(block);
                None
            }
            _ => None,
        }
    }

    fn delta(&mut self, at: u64, delta: WireDelta) -> Option<Result<ChatChunk, ProviderError>> {
        match delta.kind.as_deref()? {
            "text_delta" => Some(Ok(ChatChunk::Text(delta.text?))),
            "thinking_delta" => {
                let thinking = delta.thinking?;
                if let Some(Value::Object(block)) = self.thinking.last_mut()
                    && let Some(Value::String(so_far)) = block.get_mut("thinking")
                {
                    so_far.push_str(&thinking);
                }
                Some(Ok(ChatChunk::Reasoning(thinking)))
            }
            "signature_delta" => {
                if let (Some(Value::Object(block)), Some(signature)) =
                    (self.thinking.last_mut(), delta.signature)
                {
                    block.insert("signature".to_owned(), Value::String(signature));
                }
                None
            }
            "input_json_delta" => {
                let (_, index) = self.tools.iter().find(|(b, _)| *b == at)?;
                Some(Ok(ChatChunk::ToolCall(ToolCallDelta {
                    index: *index,
                    id: None,
                    name: None,
                    arguments: delta.partial_json?,
                    signature: None,
                })))
            }
            _ => None,
        }
    }
}

/// An `error` event as a provider error: overload and server errors (and
/// rate limits) are worth another provider while nothing has been sent.
fn stream_error(kind: Option<&str>) -> ProviderError {
    match kind {
        Some("overloaded_error") => ProviderError::Unavailable {
            provider: PROVIDER,
            status: 529,
        },
        Some("api_error") => ProviderError::Unavailable {
            provider: PROVIDER,
            status: 500,
        },
        Some("rate_limit_error") => ProviderError::RateLimited {
            provider: PROVIDER,
            retry_after: None,
        },
        _ => ProviderError::StreamError { provider: PROVIDER },
    }
}

/// Decodes the named events. Input usage comes with `message_start`; output
/// usage in `message_delta` is cumulative, so the last one counts; the
/// stream is complete only at `message_stop`. With `native`, each event also
/// goes out as it came ([`ChatChunk::Native`]), before what is decoded from it.
fn decode(
    events: impl futures_util::Stream<Item = Result<crate::sse::Event, ProviderError>> + Send + 'static,
    native: bool,
) -> impl futures_util::Stream<Item = Result<ChatChunk, ProviderError>> + Send + 'static {
    let decoder = Decoder {
        native,
        ..Decoder::default()
    };
    let state = (
        Box::pin(events),
        decoder,
        None::<Result<ChatChunk, ProviderError>>,
    );
    futures_util::stream::unfold(state, |(mut events, mut decoder, mut queued)| async move {
        if let Some(item) = queued.take() {
            decoder.done |= item.is_err();
            return Some((item, (events, decoder, None)));
        }
        loop {
            if decoder.done {
                return None;
            }
            let item = match events.next().await {
                None => Err(ProviderError::IncompleteStream { provider: PROVIDER }),
                Some(Err(error)) => Err(error),
                Some(Ok(event)) => match serde_json::from_str::<WireEvent>(&event.data) {
                    Ok(data) => {
                        let piece = decoder.event(data);
                        if decoder.native {
                            let passed = ChatChunk::Native(byok_core::NativeEvent {
                                event: (!event.name.is_empty()).then(|| event.name.clone()),
                                data: event.data,
                            });
                            // The stream's model comes before its first piece.
                            return Some(match piece {
                                Some(Ok(model @ ChatChunk::Model(_))) => {
                                    (Ok(model), (events, decoder, Some(Ok(passed))))
                                }
                                other => (Ok(passed), (events, decoder, other)),
                            });
                        }
                        match piece {
                            Some(item) => item,
                            None => continue,
                        }
                    }
                    Err(_) => Err(ProviderError::BadResponse { provider: PROVIDER }),
                },
            };
            decoder.done |= item.is_err();
            return Some((item, (events, decoder, None)));
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

#[derive(Deserialize)]
struct WireCount {
    input_tokens: u64,
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
    content: Vec<Value>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize, Default, Clone)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation: Option<WireCacheCreation>,
}

/// Cache writes by how long they live (billed differently).
#[derive(Deserialize, Default, Clone, Copy)]
struct WireCacheCreation {
    ephemeral_1h_input_tokens: Option<u64>,
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
        self.cache_creation = newer.cache_creation.or(self.cache_creation);
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
            cache_write_1h_tokens: self
                .cache_creation
                .and_then(|c| c.ephemeral_1h_input_tokens)
                .unwrap_or(0)
                .min(write),
            output_tokens: self.output_tokens.unwrap_or(0),
            reasoning_tokens: 0,
        }
    }
}

#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: String,
    index: Option<u64>,
    message: Option<WireStartMessage>,
    content_block: Option<Value>,
    delta: Option<WireDelta>,
    usage: Option<WireUsage>,
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireStartMessage {
    model: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireDelta {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    thinking: Option<String>,
    signature: Option<String>,
    partial_json: Option<String>,
    stop_reason: Option<String>,
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    const FRAGMENTS: &[&str] = &[
        r#"{"type":"message_start","message":{"model":"m","usage":{"input_tokens":3}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#,
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"thinking","thinking":""}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{"}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"thinking_delta","thinking":"x"}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"signature_delta","signature":"s"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}"#,
        r#"{"type":"message_stop"}"#,
        r#"{"type":"error","error":{"type":"overloaded_error"}}"#,
    ];

    fn data() -> impl Strategy<Value = String> {
        crate::sse::fuzzing::data(FRAGMENTS)
    }

    fn run(events: Vec<(String, String)>) -> usize {
        crate::sse::fuzzing::decoded_len(events, |e| decode(e, false))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Any sequence of events: no panic, and the stream ends.
        #[test]
        fn any_events_decode_without_panicking(
            events in proptest::collection::vec(("(message_start|content_block_start|content_block_delta|message_delta|message_stop|error|ping)", data()), 0..12),
        ) {
            let items = run(events.clone());
            prop_assert!(items <= events.len() * 8 + 2);
        }

        /// Any body: parsing an answer never panics.
        #[test]
        fn any_answer_body_parses_or_is_refused(body in prop_oneof![data(), ".{0,200}"]) {
            let _ = serde_json::from_str::<WireMessageResponse>(&body);
        }
    }
}
