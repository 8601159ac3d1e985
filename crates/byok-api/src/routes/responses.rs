//! OpenAI's Responses door: `POST /v1/responses`, authenticated with a byok
//! token, answering in the Responses API's shapes and OpenAI's errors.
//! Routing, fallback, budgets, limits, usage and audit are the Chat
//! Completions door's own ([`crate::gateway::Gateway`]). The wire types live
//! in [`crate::responses`].

use actix_web::{HttpRequest, HttpResponse, web};
use byok_router::Task;
use serde_json::Value;

use crate::AppState;
use crate::gateway::GatewayChat;
use crate::http::{Caller, JsonBody, context};
use crate::responses::{EventWriter, ResponsesCall, ResponsesRequest};
use crate::routes::gateway::{
    OpenAiErrorBody, bad_request_failure, door_events, gateway_disabled_failure, gateway_failure,
    preferences_of, refusal_failure, task_of, with_headers,
};

/// `POST /v1/responses`.
#[utoipa::path(
    post, path = "/v1/responses", operation_id = "responses", tag = "gateway",
    description = "OpenAI's Responses API on the user's own keys (Codex, the Agents SDK), stateless: byok keeps no responses. \
        On OpenAI the request goes to OpenAI's Responses API intact (`previous_response_id` and `store: true` are OpenAI's to honour); \
        elsewhere it is translated, and what needs OpenAI is refused by name. See docs/api.md.",
    request_body(content = Object, description = "OpenAI's Responses request"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A response object (or, with `stream`, its events)",
            content((Object = "application/json"), (String = "text/event-stream"))),
        (status = 400, body = OpenAiErrorBody), (status = 401, body = OpenAiErrorBody),
        (status = 402, body = OpenAiErrorBody, description = "a budget is spent"),
        (status = 403, body = OpenAiErrorBody), (status = 404, body = OpenAiErrorBody),
        (status = 413, body = OpenAiErrorBody), (status = 415, body = OpenAiErrorBody),
        (status = 429, body = OpenAiErrorBody), (status = 502, body = OpenAiErrorBody),
        (status = 503, body = OpenAiErrorBody),
    )
)]
pub(crate) async fn responses(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    body: JsonBody<Value>,
) -> HttpResponse {
    let Some(gateway) = state.gateway.as_ref() else {
        return gateway_disabled_failure().openai();
    };
    let call = match ResponsesRequest::parse(body.0) {
        Ok(call) => call,
        Err(refusal) => return refusal_failure(&refusal).openai(),
    };
    let (task, preferences) = match (task_of(&req), preferences_of(&req)) {
        (Ok(task), Ok(preferences)) => (task, preferences),
        (Err((code, message)), _) | (_, Err((code, message))) => {
            return bad_request_failure(code, message).openai();
        }
    };
    let ResponsesCall {
        mut request,
        model,
        stream,
        echo,
    } = call;
    request.prefer_reasoning |= task.as_str() == Task::REASONING;
    let call = GatewayChat {
        task,
        model,
        request,
        preferences,
        door: "responses",
    };
    let ctx = context(&req);
    let id = format!("resp_byok{}", uuid::Uuid::new_v4().simple());
    let created = chrono::Utc::now().timestamp();
    if !stream {
        return match gateway.chat(&caller.0, call, &ctx).await {
            Ok(answered) => {
                let body = crate::responses::response(
                    (&id, created),
                    &echo,
                    &answered.value,
                    answered.report.as_ref(),
                );
                with_headers(HttpResponse::Ok(), &answered).json(body)
            }
            Err(error) => gateway_failure(&error, ctx.request_id.as_deref()).openai(),
        };
    }
    match gateway.chat_stream(&caller.0, call, &ctx).await {
        Ok(answered) => {
            let writer = EventWriter::new(id, created, answered.model.clone(), echo);
            let mut builder = with_headers(HttpResponse::Ok(), &answered);
            builder
                .content_type("text/event-stream")
                .streaming(door_events(answered.value, writer))
        }
        Err(error) => gateway_failure(&error, ctx.request_id.as_deref()).openai(),
    }
}
