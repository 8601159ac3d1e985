//! The OpenAI-compatible gateway: `/v1/chat/completions`, `/v1/embeddings`
//! and `/v1/models`, authenticated with the user's byok token. Any OpenAI SDK
//! pointed at `http://HOST/v1` with a byok token as its API key works.

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use byok_core::{ChatChunk, ChatMessage, ChatRequest, EmbeddingRequest, FinishReason, Role, Usage};
use byok_router::{Preferences, Task};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::gateway::{Answered, Attempt, GatewayChat, GatewayError};
use crate::http::{Caller, JsonBody, context};

/// An OpenAI-shaped error response.
fn openai_error(
    status: StatusCode,
    kind: &str,
    code: &str,
    message: &str,
    attempts: Option<&[Attempt]>,
) -> HttpResponse {
    let mut error = json!({ "message": message, "type": kind, "code": code, "param": null });
    if let Some(attempts) = attempts {
        error["attempts"] = json!(attempts);
    }
    HttpResponse::build(status)
        .insert_header(("cache-control", "no-store"))
        .json(json!({ "error": error }))
}

fn gateway_error(error: &GatewayError) -> HttpResponse {
    match error {
        GatewayError::NotAUser => openai_error(
            StatusCode::FORBIDDEN,
            "permission_error",
            "user_token_required",
            "the gateway needs a user token, not an admin token",
            None,
        ),
        GatewayError::UnknownTask => openai_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_task",
            "X-BYOK-Task names no task of the routing policy (general, code, reasoning, embeddings, or the operator's own)",
            None,
        ),
        GatewayError::UnknownModel => openai_error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            "no configured provider serves this model; use \"auto\" or a model from /v1/models",
            None,
        ),
        GatewayError::NoCandidate { skipped } => {
            let reasons: Vec<String> = skipped.iter().map(ToString::to_string).collect();
            let body = json!({ "error": { "message": "none of your providers can serve this request now",
                "type": "service_unavailable", "code": "no_provider_available", "param": null, "skipped": reasons } });
            HttpResponse::ServiceUnavailable()
                .insert_header(("cache-control", "no-store"))
                .json(body)
        }
        GatewayError::Rejected { attempts, error } => openai_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            error.code(),
            &error.to_string(),
            Some(attempts),
        ),
        GatewayError::AllFailed { attempts } => openai_error(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "all_providers_failed",
            "every provider failed; see attempts",
            Some(attempts),
        ),
        GatewayError::Service(error) => {
            tracing::error!(%error, "gateway request failed");
            openai_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal",
                "internal error",
                None,
            )
        }
    }
}

/// The answer of a host application that mounted the API without a gateway.
fn gateway_disabled() -> HttpResponse {
    openai_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
        "gateway_disabled",
        "the gateway is not enabled",
        None,
    )
}

fn bad_request(code: &str, message: &str) -> HttpResponse {
    openai_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        code,
        message,
        None,
    )
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize)]
struct InMessage {
    role: String,
    content: Option<Content>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// The subset of OpenAI's request byok routes. Other fields are ignored.
#[derive(Deserialize)]
pub(crate) struct ChatCompletionRequest {
    model: String,
    messages: Vec<InMessage>,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    stop: Option<Stop>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
}

impl std::fmt::Debug for ChatCompletionRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatCompletionRequest")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// A refused request: a code and a message.
type Bad = (&'static str, &'static str);

fn text_of(content: Option<Content>) -> Result<String, Bad> {
    match content {
        None => Ok(String::new()),
        Some(Content::Text(text)) => Ok(text),
        Some(Content::Parts(parts)) => parts
            .into_iter()
            .map(|p| {
                if p.kind == "text" {
                    p.text.ok_or(())
                } else {
                    Err(())
                }
            })
            .collect::<Result<Vec<_>, ()>>()
            .map(|t| t.join(""))
            .map_err(|()| ("unsupported_content", "only text content is supported")),
    }
}

fn into_chat(body: ChatCompletionRequest) -> Result<ChatRequest, Bad> {
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for message in body.messages {
        let text = text_of(message.content)?;
        match message.role.as_str() {
            "system" | "developer" => system.push(text),
            "user" => messages.push(ChatMessage {
                role: Role::User,
                content: text,
            }),
            "assistant" => messages.push(ChatMessage {
                role: Role::Assistant,
                content: text,
            }),
            _ => {
                return Err((
                    "unsupported_role",
                    "roles are system, developer, user and assistant",
                ));
            }
        }
    }
    if messages.is_empty() {
        return Err((
            "no_messages",
            "messages must contain at least one user message",
        ));
    }
    Ok(ChatRequest {
        model: String::new(),
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        messages,
        temperature: body.temperature,
        max_output_tokens: body.max_completion_tokens.or(body.max_tokens),
        stop: match body.stop {
            None => vec![],
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        },
    })
}

fn task_of(req: &HttpRequest) -> Result<Task, Bad> {
    match req.headers().get("x-byok-task") {
        None => Ok(Task::general()),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| Task::new(v.trim()).ok())
            .ok_or((
                "invalid_task",
                "X-BYOK-Task must be a task name such as general, code, reasoning",
            )),
    }
}

fn providers_header(req: &HttpRequest, name: &str) -> Result<Vec<byok_core::ProviderKind>, Bad> {
    let Some(value) = req.headers().get(name) else {
        return Ok(vec![]);
    };
    value
        .to_str()
        .map_err(|_| {
            (
                "invalid_preference",
                "X-BYOK-Prefer and X-BYOK-Exclude list providers, comma-separated",
            )
        })?
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse().map_err(|_| {
                (
                    "invalid_preference",
                    "X-BYOK-Prefer and X-BYOK-Exclude list providers, comma-separated",
                )
            })
        })
        .collect()
}

/// Per-request preferences: `X-BYOK-Prefer: anthropic,openai` (tried first,
/// in that order), `X-BYOK-Exclude: gemini`, `X-BYOK-Max-Cost-USD: 0.01`.
fn preferences_of(req: &HttpRequest) -> Result<Preferences, Bad> {
    let max_cost = match req.headers().get("x-byok-max-cost-usd") {
        None => None,
        Some(value) => {
            let bad = (
                "invalid_max_cost",
                "X-BYOK-Max-Cost-USD must be dollars with at most six decimals, such as 0.01",
            );
            let rate = value
                .to_str()
                .ok()
                .and_then(|v| byok_router::Rate::parse_usd(v).ok())
                .ok_or(bad)?;
            Some(byok_router::Money::from_picodollars(
                rate.micro_per_million().saturating_mul(1_000_000),
            ))
        }
    };
    Ok(Preferences {
        preferred: providers_header(req, "x-byok-prefer")?,
        excluded: providers_header(req, "x-byok-exclude")?,
        max_cost,
    })
}

fn finish(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Other => "stop",
        FinishReason::Length => "length",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::ToolCalls => "tool_calls",
    }
}

fn usage_json(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": { "cached_tokens": usage.cached_input_tokens },
        "completion_tokens_details": { "reasoning_tokens": usage.reasoning_tokens },
    })
}

fn with_headers<T>(
    mut response: actix_web::HttpResponseBuilder,
    answered: &Answered<T>,
    cost: bool,
) -> actix_web::HttpResponseBuilder {
    let attempts: Vec<&str> = answered
        .attempts
        .iter()
        .map(|a| a.provider.as_str())
        .collect();
    response
        .insert_header(("x-byok-provider", answered.provider.as_str()))
        .insert_header(("x-byok-model", answered.model.clone()))
        .insert_header(("x-byok-attempts", attempts.join(",")))
        .insert_header(("cache-control", "no-store"));
    if let (true, Some(amount)) = (cost, answered.cost) {
        response.insert_header(("x-byok-cost-usd", amount.to_usd_string()));
    }
    response
}

pub(crate) async fn chat_completions(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    body: JsonBody<ChatCompletionRequest>,
) -> HttpResponse {
    let Some(gateway) = state.gateway.as_ref() else {
        return gateway_disabled();
    };
    let task = match task_of(&req) {
        Ok(task) => task,
        Err((code, message)) => return bad_request(code, message),
    };
    let body = body.0;
    let model = (body.model != "auto").then(|| body.model.clone());
    let (stream, include_usage) = (
        body.stream,
        body.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage),
    );
    let request = match into_chat(body) {
        Ok(request) => request,
        Err((code, message)) => return bad_request(code, message),
    };
    let preferences = match preferences_of(&req) {
        Ok(preferences) => preferences,
        Err((code, message)) => return bad_request(code, message),
    };
    let call = GatewayChat {
        task,
        model,
        request,
        preferences,
    };
    let ctx = context(&req);
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = chrono::Utc::now().timestamp();
    if !stream {
        return match gateway.chat(&caller.0, call, &ctx).await {
            Ok(answered) => {
                let response = &answered.value;
                let body = json!({
                    "id": id, "object": "chat.completion", "created": created, "model": response.model,
                    "choices": [{ "index": 0, "message": { "role": "assistant", "content": response.text }, "finish_reason": finish(response.finish_reason) }],
                    "usage": usage_json(&response.usage),
                });
                with_headers(HttpResponse::Ok(), &answered, true).json(body)
            }
            Err(error) => gateway_error(&error),
        };
    }
    match gateway.chat_stream(&caller.0, call, &ctx).await {
        Ok(answered) => {
            let model = answered.model.clone();
            let mut builder = with_headers(HttpResponse::Ok(), &answered, false);
            let sse = openai_sse(answered.value, id, created, model, include_usage);
            builder.content_type("text/event-stream").streaming(sse)
        }
        Err(error) => gateway_error(&error),
    }
}

/// Writes OpenAI chunk frames for one response.
struct Framer {
    id: String,
    created: i64,
    model: String,
}

impl Framer {
    fn delta(&self, delta: &Value, finish: Option<&str>) -> Bytes {
        let chunk = json!({ "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] });
        Bytes::from(format!("data: {chunk}\n\n"))
    }

    fn usage(&self, usage: &Usage) -> String {
        let chunk = json!({ "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [], "usage": usage_json(usage) });
        format!("data: {chunk}\n\n")
    }
}

struct SseState {
    chunks: byok_providers::ChatStream,
    framer: Framer,
    include_usage: bool,
    first: bool,
    usage: Option<Usage>,
    done: bool,
}

/// Translates any provider's chunks into OpenAI's chunk format, ending with
/// `data: [DONE]` (or an error event if the provider failed mid-stream).
/// Dropping it (the client went away) drops the provider stream, which
/// cancels the upstream request.
fn openai_sse(
    chunks: byok_providers::ChatStream,
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
    let state = SseState {
        chunks,
        framer: Framer { id, created, model },
        include_usage,
        first: true,
        usage: None,
        done: false,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        loop {
            match state.chunks.next().await {
                Some(Ok(ChatChunk::Text(text))) => {
                    let delta = if state.first {
                        json!({ "role": "assistant", "content": text })
                    } else {
                        json!({ "content": text })
                    };
                    state.first = false;
                    let bytes = state.framer.delta(&delta, None);
                    return Some((Ok(bytes), state));
                }
                Some(Ok(ChatChunk::Finish(reason))) => {
                    let bytes = state.framer.delta(&json!({}), Some(finish(reason)));
                    return Some((Ok(bytes), state));
                }
                Some(Ok(ChatChunk::Usage(usage))) => state.usage = Some(usage),
                Some(Ok(ChatChunk::Reasoning(_))) => {}
                Some(Err(error)) => {
                    let event = json!({ "error": { "message": error.to_string(), "type": "upstream_error", "code": error.code(), "param": null } });
                    state.done = true;
                    return Some((Ok(Bytes::from(format!("data: {event}\n\n"))), state));
                }
                None => {
                    let mut tail = String::new();
                    if state.include_usage
                        && let Some(usage) = &state.usage
                    {
                        tail.push_str(&state.framer.usage(usage));
                    }
                    tail.push_str("data: [DONE]\n\n");
                    state.done = true;
                    return Some((Ok(Bytes::from(tail)), state));
                }
            }
        }
    })
}

/// `GET /v1/models`: the catalog models this user's keys can reach, and `auto`.
pub(crate) async fn models(caller: Caller, state: web::Data<AppState>) -> HttpResponse {
    let Some(gateway) = state.gateway.as_ref() else {
        return gateway_disabled();
    };
    match gateway.models(&caller.0).await {
        Ok(models) => {
            let mut data =
                vec![json!({ "id": "auto", "object": "model", "created": 0, "owned_by": "byok" })];
            let mut seen = std::collections::BTreeSet::new();
            for (provider, model) in models {
                if seen.insert(model.clone()) {
                    data.push(json!({ "id": model, "object": "model", "created": 0, "owned_by": provider.as_str() }));
                }
            }
            HttpResponse::Ok()
                .insert_header(("cache-control", "no-store"))
                .json(json!({ "object": "list", "data": data }))
        }
        Err(error) => gateway_error(&error),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

/// The subset of OpenAI's embeddings request byok routes.
#[derive(Deserialize)]
pub(crate) struct EmbeddingsRequest {
    model: String,
    input: EmbeddingInput,
}

impl std::fmt::Debug for EmbeddingsRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingsRequest")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// `POST /v1/embeddings` (task `embeddings`).
pub(crate) async fn embeddings(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    body: JsonBody<EmbeddingsRequest>,
) -> HttpResponse {
    let Some(gateway) = state.gateway.as_ref() else {
        return gateway_disabled();
    };
    let body = body.0;
    let model = (body.model != "auto").then(|| body.model.clone());
    let inputs = match body.input {
        EmbeddingInput::One(text) => vec![text],
        EmbeddingInput::Many(texts) => texts,
    };
    let request = EmbeddingRequest {
        model: String::new(),
        inputs,
    };
    match gateway
        .embed(&caller.0, model, request, &context(&req))
        .await
    {
        Ok(answered) => {
            let data: Vec<Value> = answered
                .value
                .vectors
                .iter()
                .enumerate()
                .map(|(index, vector)| json!({ "object": "embedding", "index": index, "embedding": vector }))
                .collect();
            let tokens = answered.value.input_tokens.unwrap_or(0);
            let body = json!({ "object": "list", "data": data, "model": answered.model,
                "usage": { "prompt_tokens": tokens, "total_tokens": tokens } });
            with_headers(HttpResponse::Ok(), &answered, true).json(body)
        }
        Err(error) => gateway_error(&error),
    }
}
