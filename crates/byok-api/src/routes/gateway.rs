//! The OpenAI-compatible gateway: `/v1/chat/completions`, `/v1/embeddings`,
//! `/v1/models` and `/v1/models/{id}`, authenticated with the user's byok
//! token. Any OpenAI SDK pointed at `http://HOST/v1` with a byok token as its
//! API key works. The wire types live in [`crate::openai`].

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, web};
use byok_core::{ChatChunk, Usage};
use byok_router::{Preferences, Task};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::AppState;
use crate::gateway::{Answered, Attempt, GatewayChat, GatewayError};
use crate::http::{ApiError, Caller, JsonBody, context};
use crate::openai::{
    ChatChunkOut, ChatCompletion, ChatCompletionRequest, Delta, EmbeddingsRequest, OutUsage,
    OutVector, Refusal, finish,
};
use crate::routes::messages;

/// A provider's own event, framed again as it came: its name, and every
/// line of its data (an event's data may span lines).
fn native_frame(event: &byok_core::NativeEvent) -> String {
    let mut frame = String::with_capacity(event.data.len() + 32);
    if let Some(name) = event.event.as_deref().filter(|n| !n.is_empty()) {
        frame.push_str("event: ");
        frame.push_str(name);
        frame.push('\n');
    }
    for line in event.data.split('\n') {
        frame.push_str("data: ");
        frame.push_str(line);
        frame.push('\n');
    }
    frame.push('\n');
    frame
}

/// How a door writes a translated stream in its API's events.
pub(crate) trait DoorWriter: Send + 'static {
    /// The events one piece of the answer makes.
    fn chunk(&mut self, chunk: ChatChunk) -> String;
    /// The events that end the answer.
    fn end(&mut self) -> String;
    /// The event a failure after the stream began makes.
    fn failed(&mut self, error: &byok_providers::ProviderError) -> String;
    /// Whether the provider's own event of this name says it failed.
    fn is_failure_event(name: &str) -> bool;
}

struct DoorStream<W> {
    chunks: byok_providers::ChatStream,
    writer: W,
    /// Whether the provider's own events go out as they came (known from
    /// the first piece: a native stream opens with its own events).
    native: Option<bool>,
    /// The provider's own stream already said it failed.
    errored: bool,
    done: bool,
}

/// A door's events for one answer: the provider's own passed through (a
/// request in its native API), or another provider's translated by
/// `writer`. A failure mid-stream ends it with the door's error event.
/// Dropping it (the client went away) cancels the upstream request.
pub(crate) fn door_events<W: DoorWriter>(
    chunks: byok_providers::ChatStream,
    writer: W,
) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
    let state = DoorStream {
        chunks,
        writer,
        native: None,
        errored: false,
        done: false,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if state.done {
                return None;
            }
            let next = state.chunks.next().await;
            if state.native.is_none()
                && let Some(Ok(chunk)) = &next
            {
                state.native = Some(matches!(chunk, ChatChunk::Native(_)));
            }
            let native = state.native == Some(true);
            let text = match next {
                Some(Ok(ChatChunk::Native(event))) if native => {
                    state.errored |=
                        W::is_failure_event(event.event.as_deref().unwrap_or_default());
                    native_frame(&event)
                }
                Some(Ok(_)) if native => continue,
                Some(Ok(chunk)) => state.writer.chunk(chunk),
                Some(Err(error)) => {
                    state.done = true;
                    if state.errored {
                        return None;
                    }
                    state.writer.failed(&error)
                }
                None => {
                    state.done = true;
                    if native {
                        return None;
                    }
                    state.writer.end()
                }
            };
            if text.is_empty() {
                continue;
            }
            return Some((Ok(Bytes::from(text)), state));
        }
    })
}

/// An error from an OpenAI-shaped door (`/v1/chat/completions`,
/// `/v1/responses`, `/v1/embeddings`, `/v1/models`): byok's stable `code`
/// and message, and where OpenAI has them its `type` and `param`, with
/// details beside them (`attempts`, `skipped`, `budget`).
#[derive(utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "documents the error shape in the OpenAPI document"
)]
pub(crate) struct OpenAiErrorBody {
    error: OpenAiErrorDetail,
}

#[derive(utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "documents the error shape in the OpenAPI document"
)]
struct OpenAiErrorDetail {
    message: String,
    code: String,
    /// OpenAI's error type (`invalid_request_error`, `rate_limit_error`, ...).
    #[schema(rename = "type")]
    kind: Option<String>,
    /// The request field at fault.
    #[schema(nullable)]
    param: Option<String>,
}

/// An error from the Messages door, in Anthropic's shape, with byok's
/// `code` (and `param`, details) beside Anthropic's fields.
#[derive(utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "documents the error shape in the OpenAPI document"
)]
pub(crate) struct AnthropicErrorBody {
    /// Always `error`.
    #[schema(rename = "type")]
    kind: String,
    error: AnthropicErrorDetail,
}

#[derive(utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "documents the error shape in the OpenAPI document"
)]
struct AnthropicErrorDetail {
    /// Anthropic's error type (`invalid_request_error`, `authentication_error`,
    /// `rate_limit_error`, `overloaded_error`, ...).
    #[schema(rename = "type")]
    kind: String,
    message: String,
    code: String,
}

/// A failed gateway request, before it takes the error shape of the API
/// the client used (OpenAI's or Anthropic's).
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: StatusCode,
    /// OpenAI's error `type`.
    pub(crate) kind: &'static str,
    /// byok's stable code.
    pub(crate) code: String,
    pub(crate) message: String,
    /// The request field at fault.
    pub(crate) param: Option<String>,
    /// What else the error names (`attempts`, `skipped`, `budget`, ...).
    pub(crate) extra: serde_json::Map<String, Value>,
    /// `Retry-After`, `x-ratelimit-*`.
    pub(crate) headers: Vec<(String, String)>,
}

impl Failure {
    pub(crate) fn new(status: StatusCode, kind: &'static str, code: &str, message: &str) -> Self {
        Self {
            status,
            kind,
            code: code.to_owned(),
            message: message.to_owned(),
            param: None,
            extra: serde_json::Map::new(),
            headers: Vec::new(),
        }
    }

    fn param(mut self, param: Option<&str>) -> Self {
        self.param = param.map(str::to_owned);
        self
    }

    fn with(mut self, name: &str, value: Value) -> Self {
        self.extra.insert(name.to_owned(), value);
        self
    }

    fn attempts(self, attempts: Option<&[Attempt]>) -> Self {
        match attempts {
            Some(attempts) => self.with("attempts", json!(attempts)),
            None => self,
        }
    }

    fn header(mut self, name: &str, value: String) -> Self {
        self.headers.push((name.to_owned(), value));
        self
    }

    fn retry_after(self, wait: std::time::Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.header("retry-after", secs.max(1).to_string())
    }

    fn respond(self, body: Value) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.insert_header(("cache-control", "no-store"));
        for (name, value) in self.headers {
            response.insert_header((name, value));
        }
        response.json(body)
    }

    /// OpenAI's shape: `{"error": {"message", "type", "code", "param", ...}}`.
    pub(crate) fn openai(self) -> HttpResponse {
        let mut error = json!({ "message": self.message, "type": self.kind, "code": self.code, "param": self.param });
        for (name, value) in &self.extra {
            error[name] = value.clone();
        }
        self.respond(json!({ "error": error }))
    }

    /// Anthropic's shape: `{"type": "error", "error": {"type", "message", ...}}`,
    /// with byok's code and details beside Anthropic's fields.
    pub(crate) fn anthropic(self) -> HttpResponse {
        let kind = match self.status.as_u16() {
            401 => "authentication_error",
            402 => "billing_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            504 => "timeout_error",
            s if s >= 500 => "api_error",
            _ => "invalid_request_error",
        };
        let mut error = json!({ "type": kind, "message": self.message, "code": self.code });
        if let Some(param) = &self.param {
            error["param"] = json!(param);
        }
        for (name, value) in &self.extra {
            error[name] = value.clone();
        }
        self.respond(json!({ "type": "error", "error": error }))
    }
}

/// One line per failed request naming what was tried (never a key).
fn log_failure(error: &GatewayError, request_id: Option<&str>) {
    match error {
        GatewayError::AllFailed { attempts, .. }
        | GatewayError::Rejected { attempts, .. }
        | GatewayError::BudgetExceeded { attempts, .. } => {
            let tried: Vec<String> = attempts
                .iter()
                .map(|a| format!("{}:{}={}", a.provider, a.model, a.error.unwrap_or("ok")))
                .collect();
            tracing::warn!(request_id, attempts = %tried.join(" "), "gateway request failed");
        }
        GatewayError::NoCandidate { skipped } => {
            let skipped: Vec<String> = skipped.iter().map(ToString::to_string).collect();
            tracing::warn!(request_id, skipped = %skipped.join("; "), "no provider could serve the request");
        }
        _ => {}
    }
}

/// The failure a gateway error is, for any door.
pub(crate) fn gateway_failure(error: &GatewayError, request_id: Option<&str>) -> Failure {
    log_failure(error, request_id);
    match error {
        GatewayError::Paused => Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "gateway_paused",
            "the gateway is paused; resume it in byok",
        ),
        GatewayError::NotAUser => Failure::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "user_token_required",
            "the gateway needs a user token, not an admin token",
        ),
        GatewayError::UnknownTask => Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_task",
            "X-BYOK-Task names no task of the routing policy (general, code, reasoning, embeddings, or the operator's own)",
        ),
        GatewayError::UnknownModel => Failure::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            "no configured provider serves this model; use \"auto\" or a model from /v1/models",
        ),
        GatewayError::Unsupported { skipped } => unsupported(skipped),
        GatewayError::NoCandidate { skipped } => {
            let reasons: Vec<String> = skipped.iter().map(ToString::to_string).collect();
            match rate_limited_only(skipped) {
                Some(wait) => Failure::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "rate_limited",
                    "your providers are rate-limiting you; retry after the wait in Retry-After",
                )
                .retry_after(wait),
                None => Failure::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    "no_provider_available",
                    "none of your providers can serve this request now",
                ),
            }
            .with("skipped", json!(reasons))
        }
        GatewayError::Rejected { attempts, error } => Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            error.code(),
            &error.to_string(),
        )
        .attempts(Some(attempts)),
        GatewayError::AllFailed {
            attempts,
            rate_limited: Some(wait),
        } => Failure::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "rate_limited",
            "every provider that could take this request is rate-limiting it; retry after the wait in Retry-After",
        )
        .attempts(Some(attempts))
        .retry_after(*wait),
        GatewayError::AllFailed { attempts, .. } => Failure::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "all_providers_failed",
            "every provider failed; see attempts",
        )
        .attempts(Some(attempts)),
        GatewayError::BudgetExceeded { state, attempts } => budget_exceeded(state, attempts),
        GatewayError::RateLimited(refusal) => rate_limited(refusal),
        GatewayError::Service(error) => service_failure(error),
    }
}

/// A service error (authentication, a token's scope, the store) as a failure.
pub(crate) fn service_failure(error: &crate::ServiceError) -> Failure {
    let status = crate::http::service_status(error);
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(%error, "gateway request failed");
        return Failure::new(status, "server_error", "internal", "internal error");
    }
    let kind = match status {
        StatusCode::UNAUTHORIZED => "authentication_error",
        StatusCode::FORBIDDEN => "permission_error",
        StatusCode::NOT_FOUND => "not_found_error",
        StatusCode::SERVICE_UNAVAILABLE => "service_unavailable",
        _ => "invalid_request_error",
    };
    Failure::new(status, kind, error.code(), &error.to_string())
}

fn gateway_error(error: &GatewayError, request_id: Option<&str>) -> HttpResponse {
    gateway_failure(error, request_id).openai()
}

/// When every option was skipped for a provider's rate limit (or had no
/// key): the shortest wait until one may be called again.
fn rate_limited_only(skipped: &[byok_router::Skipped]) -> Option<std::time::Duration> {
    use byok_router::SkipReason;
    let mut wait: Option<u64> = None;
    for skip in skipped {
        match skip.reason {
            SkipReason::RateLimited { remaining_ms } => {
                wait = Some(wait.map_or(remaining_ms, |w| w.min(remaining_ms)));
            }
            SkipReason::NoKey | SkipReason::Excluded | SkipReason::NotInTokenScope => {}
            _ => return None,
        }
    }
    wait.map(std::time::Duration::from_millis)
}

/// `429 rate_limited`: which limit (the user's or the token's), with
/// `Retry-After` and OpenAI-style `x-ratelimit-*` headers naming it.
fn rate_limited(refusal: &crate::limits::RateRefusal) -> Failure {
    let message = match refusal.limit {
        "requests" => format!(
            "the {}'s limit of {} requests a minute is reached",
            refusal.whose, refusal.max
        ),
        "tokens" => format!(
            "the {}'s limit of {} tokens a minute is reached",
            refusal.whose, refusal.max
        ),
        _ => format!(
            "the {}'s limit of {} streams at once is reached",
            refusal.whose, refusal.max
        ),
    };
    Failure::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_error",
        "rate_limited",
        &message,
    )
    .with("limit", json!(refusal.limit))
    .with("whose", json!(refusal.whose))
    .header(
        &format!("x-ratelimit-limit-{}", refusal.limit),
        refusal.max.to_string(),
    )
    .header(
        &format!("x-ratelimit-remaining-{}", refusal.limit),
        "0".to_owned(),
    )
    .header(
        &format!("x-ratelimit-reset-{}", refusal.limit),
        format!("{}s", refusal.retry_after.as_secs()),
    )
    .retry_after(refusal.retry_after)
}

/// `402 budget_exceeded`: which budget, its limit, what is spent and
/// reserved, and when it resets.
fn budget_exceeded(
    state: &byok_store::budgets::BudgetState,
    attempts: &[crate::gateway::Attempt],
) -> Failure {
    let budget = crate::service::BudgetView::from(state.clone());
    let message = format!(
        "your {} budget{} of ${} is spent (${} spent, ${} reserved by requests in flight); it resets at {}",
        budget.period.as_str(),
        budget
            .provider
            .map_or(String::new(), |p| format!(" for {}", p.display_name())),
        budget.limit_usd,
        budget.spent_usd,
        budget.reserved_usd,
        budget
            .resets_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    Failure::new(
        StatusCode::PAYMENT_REQUIRED,
        "insufficient_quota",
        "budget_exceeded",
        &message,
    )
    .with("budget", json!(budget))
    .attempts(Some(attempts))
}

/// The answer of a host application that mounted the API without a gateway.
pub(crate) fn gateway_disabled_failure() -> Failure {
    Failure::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
        "gateway_disabled",
        "the gateway is not enabled",
    )
}

fn gateway_disabled() -> HttpResponse {
    gateway_disabled_failure().openai()
}

pub(crate) fn bad_request_failure(code: &str, message: &str) -> Failure {
    Failure::new(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        code,
        message,
    )
}

fn bad_request(code: &str, message: &str) -> HttpResponse {
    bad_request_failure(code, message).openai()
}

/// A refused request: a code and a message.
pub(crate) type Bad = (&'static str, &'static str);

pub(crate) fn refusal_failure(refusal: &Refusal) -> Failure {
    bad_request_failure(refusal.code, &refusal.message).param(refusal.param.as_deref())
}

fn refused(refusal: &Refusal) -> HttpResponse {
    refusal_failure(refusal).openai()
}

/// The 400 for a request none of the user's providers can honour: names
/// each field or capability, and which provider (or model) lacks it.
fn unsupported(skipped: &[byok_router::Skipped]) -> Failure {
    use byok_router::SkipReason;
    let mismatches: Vec<&byok_router::Skipped> = skipped
        .iter()
        .filter(|s| s.reason.is_request_mismatch())
        .collect();
    let param = mismatches.iter().find_map(|s| match &s.reason {
        SkipReason::Refuses { unsupported } => Some(unsupported.field.clone()),
        SkipReason::Lacks { capability } => Some(capability.field().to_owned()),
        _ => None,
    });
    let code = if mismatches
        .iter()
        .any(|s| matches!(s.reason, SkipReason::Refuses { .. }))
    {
        "unsupported_parameter"
    } else {
        "unsupported_capability"
    };
    let reasons: Vec<String> = mismatches
        .iter()
        .map(|s| {
            let name = s.provider.display_name();
            match &s.reason {
                SkipReason::Refuses { unsupported } => format!("{name} cannot carry {unsupported}"),
                SkipReason::Lacks { capability } => {
                    format!("{name} model {} has no {capability} capability", s.model)
                }
                other => format!("{name} model {}: {}", s.model, s_reason(other)),
            }
        })
        .collect();
    let message = format!(
        "none of your providers can honour this request: {}",
        reasons.join("; ")
    );
    let all: Vec<String> = skipped.iter().map(ToString::to_string).collect();
    bad_request_failure(code, &message)
        .param(param.as_deref())
        .with("skipped", json!(all))
}

fn s_reason(reason: &byok_router::SkipReason) -> String {
    match reason {
        byok_router::SkipReason::OutputTooLarge { max_output } => {
            format!("the output limit is above its {max_output} tokens")
        }
        _ => "not suitable".to_owned(),
    }
}

pub(crate) fn task_of(req: &HttpRequest) -> Result<Task, Bad> {
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
pub(crate) fn preferences_of(req: &HttpRequest) -> Result<Preferences, Bad> {
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

/// The routing headers; for a whole answer also its cost
/// (`X-BYOK-Cost-USD`, absent when unknown) and how that is known
/// (`X-BYOK-Cost-Source`: `exact`, `estimated` or `unknown`). A stream's
/// cost comes in its last usage chunk. `X-BYOK-Budget-Warning` names soft
/// budgets the answer goes over.
pub(crate) fn with_headers<T>(
    mut response: actix_web::HttpResponseBuilder,
    answered: &Answered<T>,
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
    if let Some(amount) = answered.cost {
        response.insert_header(("x-byok-cost-usd", amount.to_usd_string()));
    }
    if let Some(report) = &answered.report {
        response.insert_header(("x-byok-cost-source", report.source.as_str()));
    }
    if !answered.budget_warnings.is_empty() {
        // A soft budget the answer goes over: served, and said so.
        response.insert_header(("x-byok-budget-warning", answered.budget_warnings.join("; ")));
    }
    response
}

#[utoipa::path(
    post, path = "/v1/chat/completions", operation_id = "chat_completions", tag = "gateway",
    description = "OpenAI's Chat Completions API on the user's own keys: routed, with fallback, priced and recorded. \
        Headers: `X-BYOK-Task`, `X-BYOK-Prefer`, `X-BYOK-Exclude`, `X-BYOK-Max-Cost-USD`. Every field is carried or refused by name; see docs/api.md.",
    request_body(content = Object, description = "OpenAI's Chat Completions request"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "OpenAI's chat.completion (or, with `stream`, its chunk events)",
            content((Object = "application/json"), (String = "text/event-stream"))),
        (status = 400, body = OpenAiErrorBody), (status = 401, body = OpenAiErrorBody),
        (status = 402, body = OpenAiErrorBody, description = "a budget is spent"),
        (status = 403, body = OpenAiErrorBody), (status = 404, body = OpenAiErrorBody),
        (status = 413, body = OpenAiErrorBody), (status = 415, body = OpenAiErrorBody),
        (status = 429, body = OpenAiErrorBody), (status = 502, body = OpenAiErrorBody),
        (status = 503, body = OpenAiErrorBody),
    )
)]
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
    let stream = body.stream;
    let call = match body.into_chat() {
        Ok(call) => call,
        Err(refusal) => return refused(&refusal),
    };
    let preferences = match preferences_of(&req) {
        Ok(preferences) => preferences,
        Err((code, message)) => return bad_request(code, message),
    };
    let include_usage = call.include_usage;
    let mut request = call.request;
    request.prefer_reasoning |= task.as_str() == Task::REASONING;
    let call = GatewayChat {
        task,
        model,
        request,
        preferences,
        door: "chat",
    };
    let ctx = context(&req);
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = chrono::Utc::now().timestamp();
    if !stream {
        return match gateway.chat(&caller.0, call, &ctx).await {
            Ok(answered) => {
                let response = &answered.value;
                let body = ChatCompletion::new(
                    &id,
                    created,
                    &response.model,
                    &response.choices,
                    answered
                        .report
                        .as_ref()
                        .map_or_else(|| OutUsage::from(&Usage::default()), OutUsage::priced),
                );
                with_headers(HttpResponse::Ok(), &answered).json(body)
            }
            Err(error) => gateway_error(&error, ctx.request_id.as_deref()),
        };
    }
    match gateway.chat_stream(&caller.0, call, &ctx).await {
        Ok(answered) => {
            let model = answered.model.clone();
            let mut builder = with_headers(HttpResponse::Ok(), &answered);
            let sse = openai_sse(answered.value, id, created, model, include_usage);
            builder.content_type("text/event-stream").streaming(sse)
        }
        Err(error) => gateway_error(&error, ctx.request_id.as_deref()),
    }
}

/// Writes OpenAI chunk frames for one response.
struct Framer {
    id: String,
    created: i64,
    model: String,
}

impl Framer {
    fn frame(chunk: &ChatChunkOut<'_>) -> Bytes {
        let json = serde_json::to_string(chunk).unwrap_or_default();
        Bytes::from(format!("data: {json}\n\n"))
    }

    fn delta(
        &self,
        delta: Delta<'_>,
        logprobs: Option<&Value>,
        finish: Option<&'static str>,
    ) -> Bytes {
        Self::frame(&ChatChunkOut::delta(
            &self.id,
            self.created,
            &self.model,
            delta,
            logprobs,
            finish,
        ))
    }

    fn usage(&self, usage: OutUsage) -> Bytes {
        Self::frame(&ChatChunkOut::usage(
            &self.id,
            self.created,
            &self.model,
            usage,
        ))
    }
}

struct SseState {
    chunks: byok_providers::ChatStream,
    framer: Framer,
    include_usage: bool,
    first: bool,
    usage: Option<OutUsage>,
    done: bool,
}

impl SseState {
    /// The first delta of the answer also says who speaks.
    fn opening<'a>(&mut self, delta: Delta<'a>) -> Delta<'a> {
        if std::mem::take(&mut self.first) {
            delta.role()
        } else {
            delta
        }
    }
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
            let bytes = match state.chunks.next().await {
                Some(Ok(ChatChunk::Text(text))) => {
                    let delta = state.opening(Delta::text(&text));
                    state.framer.delta(delta, None, None)
                }
                Some(Ok(ChatChunk::Reasoning(text))) => {
                    let delta = state.opening(Delta::reasoning(&text));
                    state.framer.delta(delta, None, None)
                }
                Some(Ok(ChatChunk::Refusal(text))) => {
                    let delta = state.opening(Delta::refusal(&text));
                    state.framer.delta(delta, None, None)
                }
                Some(Ok(ChatChunk::ToolCall(call))) => {
                    let delta = state.opening(Delta::tool_call(&call));
                    state.framer.delta(delta, None, None)
                }
                Some(Ok(ChatChunk::Logprobs(logprobs))) => {
                    let delta = state.opening(Delta::default());
                    state.framer.delta(delta, Some(&logprobs), None)
                }
                Some(Ok(ChatChunk::Finish(reason))) => {
                    let delta = state.opening(Delta::default());
                    state.framer.delta(delta, None, Some(finish(reason)))
                }
                Some(Ok(ChatChunk::Usage(usage))) => {
                    state.usage = Some(OutUsage::from(&usage));
                    continue;
                }
                // The gateway's last word: the priced usage, with its cost.
                Some(Ok(ChatChunk::Cost(report))) => {
                    state.usage = Some(OutUsage::priced(&report));
                    continue;
                }
                Some(Ok(ChatChunk::Model(model))) => {
                    state.framer.model = model;
                    continue;
                }
                // Only a door speaking the provider's own API asks for these.
                Some(Ok(ChatChunk::Native(_))) => continue,
                Some(Err(error)) => {
                    let event = json!({ "error": { "message": error.to_string(), "type": "upstream_error", "code": error.code(), "param": null } });
                    state.done = true;
                    Bytes::from(format!("data: {event}\n\n"))
                }
                None => {
                    let mut tail = Vec::new();
                    if state.include_usage
                        && let Some(usage) = state.usage.take()
                    {
                        tail.extend_from_slice(&state.framer.usage(usage));
                    }
                    tail.extend_from_slice(b"data: [DONE]\n\n");
                    state.done = true;
                    Bytes::from(tail)
                }
            };
            return Some((Ok(bytes), state));
        }
    })
}

/// The caller of `/v1/models`, or the refusal in the shape its client speaks.
fn models_caller(
    req: &HttpRequest,
    caller: Result<Caller, ApiError>,
) -> Result<(Caller, bool), Box<HttpResponse>> {
    let anthropic = messages::speaks_anthropic(req);
    match caller {
        Ok(caller) => Ok((caller, anthropic)),
        Err(error) if anthropic => Err(Box::new(messages::api_failure(&error))),
        Err(error) => Err(Box::new(error.error_response())),
    }
}

fn in_shape(failure: Failure, anthropic: bool) -> HttpResponse {
    if anthropic {
        failure.anthropic()
    } else {
        failure.openai()
    }
}

/// `GET /v1/models`: the catalog models this user's keys can reach, and
/// `auto`; in Anthropic's shape when the request names an
/// `anthropic-version` (Anthropic's clients do), OpenAI's otherwise.
#[utoipa::path(
    get, path = "/v1/models", operation_id = "gateway_models", tag = "gateway",
    description = "The models the user's keys reach, and `auto`: OpenAI's list, or Anthropic's \
        (`data`, `has_more`, `first_id`, `last_id`) when the request carries `anthropic-version`.",
    security(("bearer" = [])),
    responses(
        (status = 200, body = Object),
        (status = 401, body = OpenAiErrorBody), (status = 403, body = OpenAiErrorBody),
    )
)]
pub(crate) async fn models(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (caller, anthropic) = match models_caller(&req, caller) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let Some(gateway) = state.gateway.as_ref() else {
        return in_shape(gateway_disabled_failure(), anthropic);
    };
    match gateway.models(&caller.0).await {
        Ok(models) => {
            let mut seen = std::collections::BTreeSet::new();
            let reachable: Vec<(&str, String)> = models
                .into_iter()
                .filter(|(_, model)| seen.insert(model.clone()))
                .map(|(provider, model)| (provider.as_str(), model))
                .collect();
            if anthropic {
                let mut data = vec![messages::model_info(
                    "auto",
                    "byok: the cheapest able model",
                )];
                data.extend(reachable.iter().map(|(_, m)| messages::model_info(m, m)));
                return messages::model_list(&data);
            }
            let mut data =
                vec![json!({ "id": "auto", "object": "model", "created": 0, "owned_by": "byok" })];
            data.extend(reachable.iter().map(|(owner, model)| {
                json!({ "id": model, "object": "model", "created": 0, "owned_by": owner })
            }));
            HttpResponse::Ok()
                .insert_header(("cache-control", "no-store"))
                .json(json!({ "object": "list", "data": data }))
        }
        Err(error) => in_shape(gateway_failure(&error, None), anthropic),
    }
}

/// `GET /v1/models/{id}`: one model as OpenAI (or, for an Anthropic client,
/// Anthropic) describes it, or a 404.
#[utoipa::path(
    get, path = "/v1/models/{id}", operation_id = "gateway_model", tag = "gateway",
    description = "One model, in OpenAI's shape (Anthropic's with `anthropic-version`).",
    params(("id" = String, Path, description = "a model id, or `auto`")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Object),
        (status = 401, body = OpenAiErrorBody), (status = 403, body = OpenAiErrorBody),
        (status = 404, body = OpenAiErrorBody),
    )
)]
pub(crate) async fn model(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let (caller, anthropic) = match models_caller(&req, caller) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let Some(gateway) = state.gateway.as_ref() else {
        return in_shape(gateway_disabled_failure(), anthropic);
    };
    let id = id.into_inner();
    match gateway.models(&caller.0).await {
        Ok(models) => {
            let owner = if id == "auto" {
                Some("byok")
            } else {
                models
                    .iter()
                    .find(|(_, m)| *m == id)
                    .map(|(p, _)| p.as_str())
            };
            match owner {
                Some(_) if anthropic => HttpResponse::Ok()
                    .insert_header(("cache-control", "no-store"))
                    .json(messages::model_info(&id, &id)),
                Some(owner) => HttpResponse::Ok()
                    .insert_header(("cache-control", "no-store"))
                    .json(json!({ "id": id, "object": "model", "created": 0, "owned_by": owner })),
                None => in_shape(
                    Failure::new(
                        StatusCode::NOT_FOUND,
                        "invalid_request_error",
                        "model_not_found",
                        "none of your providers serves this model; see /v1/models",
                    )
                    .param(Some("model")),
                    anthropic,
                ),
            }
        }
        Err(error) => in_shape(gateway_failure(&error, None), anthropic),
    }
}

/// `POST /v1/embeddings` (task `embeddings`).
#[utoipa::path(
    post, path = "/v1/embeddings", operation_id = "embeddings", tag = "gateway",
    description = "OpenAI's Embeddings API on the user's own keys (task `embeddings`).",
    request_body(content = Object, description = "OpenAI's Embeddings request"),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Object, description = "OpenAI's embedding list"),
        (status = 400, body = OpenAiErrorBody), (status = 401, body = OpenAiErrorBody),
        (status = 402, body = OpenAiErrorBody), (status = 403, body = OpenAiErrorBody),
        (status = 404, body = OpenAiErrorBody), (status = 413, body = OpenAiErrorBody),
        (status = 415, body = OpenAiErrorBody), (status = 429, body = OpenAiErrorBody),
        (status = 502, body = OpenAiErrorBody), (status = 503, body = OpenAiErrorBody),
    )
)]
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
    let call = match body.into_embed() {
        Ok(call) => call,
        Err(refusal) => return refused(&refusal),
    };
    let preferences = match preferences_of(&req) {
        Ok(preferences) => preferences,
        Err((code, message)) => return bad_request(code, message),
    };
    let ctx = context(&req);
    match gateway
        .embed(&caller.0, model, call.request, &preferences, &ctx)
        .await
    {
        Ok(answered) => {
            let data: Vec<Value> = answered
                .value
                .vectors
                .iter()
                .enumerate()
                .map(|(index, vector)| json!({ "object": "embedding", "index": index, "embedding": OutVector::new(vector, call.base64) }))
                .collect();
            let tokens = answered.value.input_tokens.unwrap_or(0);
            let body = json!({ "object": "list", "data": data, "model": answered.model,
                "usage": { "prompt_tokens": tokens, "total_tokens": tokens } });
            with_headers(HttpResponse::Ok(), &answered).json(body)
        }
        Err(error) => gateway_error(&error, ctx.request_id.as_deref()),
    }
}
