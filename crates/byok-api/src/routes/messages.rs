//! Anthropic's Messages door: `POST /v1/messages` and
//! `POST /v1/messages/count_tokens`, authenticated with a byok token as
//! `x-api-key` (or `Authorization: Bearer`), answering in Anthropic's shapes
//! and errors. Routing, fallback, budgets, limits, usage and audit are the
//! Chat Completions door's own ([`crate::gateway::Gateway`]). The wire types
//! live in [`crate::messages`].

use actix_web::{HttpRequest, HttpResponse, web};
use byok_router::Task;
use serde_json::{Value, json};

use crate::AppState;
use crate::gateway::GatewayChat;
use crate::http::{ApiError, Caller, JsonBody, context};
use crate::messages::{EventWriter, MessagesCall, MessagesRequest};
use crate::routes::gateway::{
    AnthropicErrorBody, Failure, bad_request_failure, door_events, gateway_disabled_failure,
    gateway_failure, preferences_of, refusal_failure, task_of, with_headers,
};

/// An authentication or body error, in Anthropic's shape.
pub(crate) fn api_failure(error: &ApiError) -> HttpResponse {
    let (status, code, message, retry) = error.parts();
    let mut failure = Failure::new(status, "invalid_request_error", code, &message);
    if let Some(secs) = retry {
        failure
            .headers
            .push(("retry-after".to_owned(), secs.to_string()));
    }
    failure.anthropic()
}

/// Every `anthropic-beta` header, joined.
fn beta_header(req: &HttpRequest) -> Option<String> {
    let values: Vec<&str> = req
        .headers()
        .get_all("anthropic-beta")
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// The caller, the parsed request and the routing headers, or the refusal.
fn parse(
    req: &HttpRequest,
    caller: Result<Caller, ApiError>,
    body: Result<JsonBody<Value>, ApiError>,
    count_only: bool,
) -> Result<(Caller, MessagesCall), Box<HttpResponse>> {
    let caller = caller.map_err(|e| Box::new(api_failure(&e)))?;
    let body = body.map_err(|e| Box::new(api_failure(&e)))?;
    MessagesRequest::parse(body.0, beta_header(req).as_deref(), count_only)
        .map(|call| (caller, call))
        .map_err(|refusal| Box::new(refusal_failure(&refusal).anthropic()))
}

/// `POST /v1/messages`.
#[utoipa::path(
    post, path = "/v1/messages", operation_id = "messages", tag = "gateway",
    description = "Anthropic's Messages API on the user's own keys (Claude Code, Anthropic's SDKs): the token as `x-api-key` \
        or `Authorization: Bearer`; `anthropic-version` and `anthropic-beta` accepted (betas byok cannot honour are refused by name). \
        On Anthropic the request goes through intact; elsewhere it is translated both ways. See docs/api.md.",
    request_body(content = Object, description = "Anthropic's Messages request"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Anthropic's message (or, with `stream`, its named events)",
            content((Object = "application/json"), (String = "text/event-stream"))),
        (status = 400, body = AnthropicErrorBody), (status = 401, body = AnthropicErrorBody),
        (status = 402, body = AnthropicErrorBody, description = "a budget is spent"),
        (status = 403, body = AnthropicErrorBody), (status = 404, body = AnthropicErrorBody),
        (status = 413, body = AnthropicErrorBody), (status = 415, body = AnthropicErrorBody),
        (status = 429, body = AnthropicErrorBody), (status = 502, body = AnthropicErrorBody),
        (status = 503, body = AnthropicErrorBody),
    )
)]
pub(crate) async fn messages(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    state: web::Data<AppState>,
    body: Result<JsonBody<Value>, ApiError>,
) -> HttpResponse {
    let Some(gateway) = state.gateway.as_ref() else {
        return gateway_disabled_failure().anthropic();
    };
    let (caller, call) = match parse(&req, caller, body, false) {
        Ok(parsed) => parsed,
        Err(response) => return *response,
    };
    let (task, preferences) = match (task_of(&req), preferences_of(&req)) {
        (Ok(task), Ok(preferences)) => (task, preferences),
        (Err((code, message)), _) | (_, Err((code, message))) => {
            return bad_request_failure(code, message).anthropic();
        }
    };
    let MessagesCall {
        mut request,
        model,
        stream,
    } = call;
    request.prefer_reasoning |= task.as_str() == Task::REASONING;
    let call = GatewayChat {
        task,
        model,
        request,
        preferences,
        door: "messages",
    };
    let ctx = context(&req);
    let id = format!("msg_byok{}", uuid::Uuid::new_v4().simple());
    if !stream {
        return match gateway.chat(&caller.0, call, &ctx).await {
            Ok(answered) => {
                let body = crate::messages::message(&id, &answered.value, answered.report.as_ref());
                with_headers(HttpResponse::Ok(), &answered).json(body)
            }
            Err(error) => gateway_failure(&error, ctx.request_id.as_deref()).anthropic(),
        };
    }
    match gateway.chat_stream(&caller.0, call, &ctx).await {
        Ok(answered) => {
            let writer = EventWriter::new(id, answered.model.clone());
            let mut builder = with_headers(HttpResponse::Ok(), &answered);
            builder
                .content_type("text/event-stream")
                .streaming(door_events(answered.value, writer))
        }
        Err(error) => gateway_failure(&error, ctx.request_id.as_deref()).anthropic(),
    }
}

/// `POST /v1/messages/count_tokens`: Anthropic's own count when the user has
/// a working Anthropic key, otherwise byok's estimate; `X-BYOK-Count-Source`
/// (`exact` or `estimated`) and the body's `estimated` say which.
#[utoipa::path(
    post, path = "/v1/messages/count_tokens", operation_id = "count_tokens", tag = "gateway",
    description = "A Messages request's input tokens: Anthropic's own count with the user's Anthropic key, \
        otherwise byok's estimate (`estimated: true`, `X-BYOK-Count-Source: estimated`).",
    request_body(content = Object, description = "Anthropic's count_tokens request"),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Object, description = "`{\"input_tokens\": N, \"estimated\": bool}`"),
        (status = 400, body = AnthropicErrorBody), (status = 401, body = AnthropicErrorBody),
        (status = 403, body = AnthropicErrorBody), (status = 413, body = AnthropicErrorBody),
        (status = 415, body = AnthropicErrorBody), (status = 503, body = AnthropicErrorBody),
    )
)]
pub(crate) async fn count_tokens(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    state: web::Data<AppState>,
    body: Result<JsonBody<Value>, ApiError>,
) -> HttpResponse {
    let Some(gateway) = state.gateway.as_ref() else {
        return gateway_disabled_failure().anthropic();
    };
    let (caller, call) = match parse(&req, caller, body, true) {
        Ok(parsed) => parsed,
        Err(response) => return *response,
    };
    match gateway
        .count_tokens(&caller.0, call.model.as_deref(), &call.request)
        .await
    {
        Ok(count) => HttpResponse::Ok()
            .insert_header(("cache-control", "no-store"))
            .insert_header((
                "x-byok-count-source",
                if count.exact { "exact" } else { "estimated" },
            ))
            .json(json!({ "input_tokens": count.input_tokens, "estimated": !count.exact })),
        Err(error) => gateway_failure(&error, None).anthropic(),
    }
}

/// Whether a request comes from an Anthropic client (it names an
/// `anthropic-version`): `/v1/models` then answers in Anthropic's shape.
pub(crate) fn speaks_anthropic(req: &HttpRequest) -> bool {
    req.headers().contains_key("anthropic-version")
}

/// One model in Anthropic's shape.
pub(crate) fn model_info(id: &str, display: &str) -> Value {
    json!({ "type": "model", "id": id, "display_name": display, "created_at": "1970-01-01T00:00:00Z" })
}

/// The models list in Anthropic's shape (one page: byok lists them all).
pub(crate) fn model_list(data: &[Value]) -> HttpResponse {
    let first = data
        .first()
        .and_then(|m| m["id"].as_str())
        .map(str::to_owned);
    let last = data
        .last()
        .and_then(|m| m["id"].as_str())
        .map(str::to_owned);
    HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(json!({ "data": data, "has_more": false, "first_id": first, "last_id": last }))
}
