//! Anthropic's Messages door (`/v1/messages`): a request that lands on
//! Anthropic goes through intact and comes back as Anthropic sent it; one
//! that lands elsewhere is translated both ways; errors, streams, token
//! counts and the models list are in Anthropic's shapes; usage is recorded
//! once, under the `messages` door.

use byok_test_support::{TestApp, TestDb};
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::{body, key_body, openai_key, providers};

fn anthropic_key() -> String {
    format!("sk-ant-api03-{}AA", "m".repeat(93))
}

async fn app_with(mock: &MockServer, db: &TestDb, keys: &[&str]) -> (TestApp, String) {
    let app = TestApp::spawn_with_providers(db, providers(mock)).await;
    let token = app.create_user("alice").await;
    for provider in keys {
        let key = match *provider {
            "anthropic" => anthropic_key(),
            _ => openai_key("m"),
        };
        let response = app
            .save_key(&token, "alice", provider, key_body(&key))
            .await;
        assert_eq!(response.status(), 201);
    }
    (app, token)
}

/// `POST /v1/messages` as Anthropic's SDK sends it: the token as `x-api-key`.
async fn post(app: &TestApp, token: &str, route: &str, request: &Value) -> reqwest::Response {
    app.client
        .post(app.url(route))
        .header("x-api-key", token)
        .header("anthropic-version", "2023-06-01")
        .json(request)
        .send()
        .await
        .unwrap()
}

/// The usage log's entries, once `n` are written.
async fn logged(app: &TestApp, token: &str, n: usize) -> Vec<Value> {
    for _ in 0..50 {
        let (status, page) = body(
            app.client
                .get(app.url("/api/user/api-keys/alice/requests"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let entries = page["requests"].as_array().unwrap().clone();
        if entries.len() >= n {
            return entries;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    unreachable!("{n} usage records were not written");
}

fn received(requests: &[Request], route: &str) -> Vec<Value> {
    requests
        .iter()
        .filter(|r| r.url.path() == route)
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn on_anthropic_the_request_and_answer_go_through_intact() {
    let mock = MockServer::start().await;
    let db = TestDb::sqlite();
    let (app, token) = app_with(&mock, &db, &["anthropic", "openai"]).await;
    let answer = json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
        "content": [
            {"type": "thinking", "thinking": "Let me see.", "signature": "sig-abc"},
            {"type": "text", "text": "Done.", "citations": null}
        ],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 20, "cache_read_input_tokens": 100,
                  "cache_creation_input_tokens": 50, "service_tier": "standard"}
    });
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", anthropic_key().as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer.clone()))
        .expect(1)
        .mount(&mock)
        .await;
    let request = json!({
        "model": "claude-sonnet-4-6", "max_tokens": 2048, "top_k": 40,
        "system": [{"type": "text", "text": "You review code.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "u-1"},
        "tools": [{"name": "read", "description": "Read a file", "input_schema": {"type": "object"},
                   "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
            {"type": "text", "text": "Review it.", "cache_control": {"type": "ephemeral"}}
        ]}]
    });
    let response = app
        .client
        .post(app.url("/v1/messages"))
        .header("x-api-key", &token)
        .header("anthropic-version", "2023-06-01")
        .header(
            "anthropic-beta",
            "claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14",
        )
        .json(&request)
        .send()
        .await
        .unwrap();
    let headers = response.headers().clone();
    let (status, got) = body(response).await;
    assert_eq!(status, 200, "{got}");
    // Anthropic's answer as it came: signed thinking included.
    assert_eq!(got, answer);
    assert_eq!(headers["x-byok-provider"], "anthropic");
    // 10 x 3.00 + 100 x 0.30 + 50 x 3.75 + 20 x 15.00 per million.
    assert_eq!(headers["x-byok-cost-usd"], "0.0005475");
    assert_eq!(headers["x-byok-cost-source"], "exact");

    let requests = mock.received_requests().await.unwrap();
    // oauth is byok's business, not Anthropic's: not passed on.
    assert_eq!(
        requests[0].headers["anthropic-beta"],
        "claude-code-20250219,interleaved-thinking-2025-05-14"
    );
    let sent = received(&requests, "/v1/messages");
    assert_eq!(sent.len(), 1);
    let mut expected = request.clone();
    expected["stream"] = json!(false);
    assert_eq!(sent[0], expected, "the body Anthropic got is the client's");

    let entries = logged(&app, &token, 1).await;
    assert_eq!(entries.len(), 1, "recorded once: {entries:?}");
    assert_eq!(entries[0]["door"], "messages");
    assert_eq!(entries[0]["provider"], "anthropic");
    assert_eq!(entries[0]["cost_usd"], "0.0005475");
}

#[tokio::test]
async fn elsewhere_the_request_and_answer_are_translated_tool_calls_included() {
    let mock = MockServer::start().await;
    let db = TestDb::sqlite();
    let (app, token) = app_with(&mock, &db, &["openai"]).await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]}}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 8, "total_tokens": 38}
        })))
        .expect(1)
        .mount(&mock)
        .await;
    let request = json!({
        "model": "auto", "max_tokens": 300, "system": "Be brief.",
        "tools": [{"name": "weather", "description": "Weather now", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": "Weather in Oslo and Bergen?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Bergen"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "12C"}]}
        ]
    });
    let response = post(&app, &token, "/v1/messages", &request).await;
    assert_eq!(response.headers()["x-byok-provider"], "openai");
    let (status, got) = body(response).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["type"], "message");
    assert_eq!(got["role"], "assistant");
    assert_eq!(got["stop_reason"], "tool_use");
    assert_eq!(
        got["content"],
        json!([{"type": "tool_use", "id": "call_9", "name": "weather", "input": {"city": "Oslo"}}])
    );
    assert_eq!(
        got["usage"],
        json!({"input_tokens": 30, "output_tokens": 8, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0})
    );

    let sent = received(
        &mock.received_requests().await.unwrap(),
        "/v1/chat/completions",
    );
    let sent = &sent[0];
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(
        sent["messages"][2]["tool_calls"][0]["function"],
        json!({"name": "weather", "arguments": "{\"city\":\"Bergen\"}"})
    );
    assert_eq!(sent["messages"][3]["role"], "tool");
    assert_eq!(sent["messages"][3]["tool_call_id"], "toolu_1");
    assert_eq!(sent["tools"][0]["function"]["name"], "weather");
    assert_eq!(sent["parallel_tool_calls"], false);
    assert_eq!(sent["max_completion_tokens"], 300);

    let entries = logged(&app, &token, 1).await;
    assert_eq!(entries[0]["door"], "messages");
    assert_eq!(entries[0]["provider"], "openai");
}

#[tokio::test]
async fn fields_only_anthropic_carries_are_refused_elsewhere_by_name() {
    let mock = MockServer::start().await;
    let db = TestDb::sqlite();
    let (app, token) = app_with(&mock, &db, &["openai"]).await;
    for (request, field) in [
        (
            json!({"model": "auto", "max_tokens": 10, "top_k": 5, "messages": [{"role": "user", "content": "x"}]}),
            "top_k",
        ),
        (
            json!({"model": "auto", "max_tokens": 10, "messages": [{"role": "user", "content": [
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hi"}}]}]}),
            "messages[].content[].document",
        ),
        (
            json!({"model": "auto", "max_tokens": 10, "future_field": 1, "messages": [{"role": "user", "content": "x"}]}),
            "future_field",
        ),
    ] {
        let (status, got) = body(post(&app, &token, "/v1/messages", &request).await).await;
        assert_eq!(status, 400, "{got}");
        assert_eq!(got["type"], "error");
        assert_eq!(got["error"]["type"], "invalid_request_error");
        assert_eq!(got["error"]["param"], field, "{got}");
        assert!(
            got["error"]["message"]
                .as_str()
                .unwrap()
                .contains("only Anthropic's Messages API carries it"),
            "{got}"
        );
    }
    assert!(mock.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn errors_are_in_anthropics_shape() {
    let mock = MockServer::start().await;
    let db = TestDb::sqlite();
    let (app, token) = app_with(&mock, &db, &["anthropic"]).await;
    let hello =
        json!({"model": "auto", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]});

    let (status, got) = body(post(&app, "byok-not-a-token", "/v1/messages", &hello).await).await;
    assert_eq!(status, 401);
    assert_eq!(got["type"], "error");
    assert_eq!(got["error"]["type"], "authentication_error");

    let (status, got) = body(
        post(
            &app,
            &token,
            "/v1/messages",
            &json!({"model": "auto", "messages": []}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(got["error"]["type"], "invalid_request_error");
    assert_eq!(got["error"]["param"], "max_tokens");

    let response = app
        .client
        .post(app.url("/v1/messages"))
        .header("x-api-key", &token)
        .header("anthropic-beta", "context-1m-2025-08-07")
        .json(&hello)
        .send()
        .await
        .unwrap();
    let (status, got) = body(response).await;
    assert_eq!(status, 400);
    assert_eq!(
        got["error"]["param"],
        "anthropic-beta: context-1m-2025-08-07"
    );

    // No provider may take it now: Anthropic's overloaded_error.
    let response = app
        .client
        .post(app.url("/v1/messages"))
        .header("x-api-key", &token)
        .header("x-byok-exclude", "anthropic")
        .json(&hello)
        .send()
        .await
        .unwrap();
    let (status, got) = body(response).await;
    assert_eq!(status, 503, "{got}");
    assert_eq!(got["error"]["type"], "overloaded_error");
    assert_eq!(got["error"]["code"], "no_provider_available");

    // Anthropic rate-limits the only key: Anthropic's 429, with retry-after.
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "7")
                .set_body_json(json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})),
        )
        .mount(&mock)
        .await;
    let response = post(&app, &token, "/v1/messages", &hello).await;
    let retry = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .to_owned();
    let (status, got) = body(response).await;
    assert_eq!(status, 429, "{got}");
    assert_eq!(got["error"]["type"], "rate_limit_error");
    assert!(retry.parse::<u64>().unwrap() >= 1);
}

#[tokio::test]
async fn streams_are_anthropics_events_passed_through_or_translated() {
    let mock = MockServer::start().await;
    let fixture = |provider: &str| {
        std::fs::read_to_string(format!(
            "{}/../byok-providers/tests/fixtures/{provider}/stream.sse",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let anthropic = fixture("anthropic");
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(body_partial_json(json!({"stream": true})))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(anthropic.clone()),
        )
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(fixture("openai")),
        )
        .mount(&mock)
        .await;
    let db = TestDb::sqlite();
    let (app, token) = app_with(&mock, &db, &["anthropic", "openai"]).await;
    let stream = |prefer: &'static str| {
        let request = json!({"model": "auto", "max_tokens": 100, "stream": true,
            "messages": [{"role": "user", "content": "Say hello."}]});
        let (app, token) = (&app, &token);
        async move {
            app.client
                .post(app.url("/v1/messages"))
                .header("x-api-key", token)
                .header("x-byok-prefer", prefer)
                .json(&request)
                .send()
                .await
                .unwrap()
        }
    };
    // On Anthropic: its own events, every one, in order.
    let response = stream("anthropic").await;
    assert_eq!(response.headers()["x-byok-provider"], "anthropic");
    let text = response.text().await.unwrap();
    let events = |text: &str| -> Vec<(String, Value)> {
        text.split("\n\n")
            .filter(|frame| !frame.trim().is_empty())
            .map(|frame| {
                let name = frame
                    .lines()
                    .find_map(|l| l.strip_prefix("event: "))
                    .unwrap();
                let data = frame
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap();
                (name.to_owned(), serde_json::from_str(data).unwrap())
            })
            .collect()
    };
    assert_eq!(events(&text), events(&anthropic));

    // On OpenAI: translated into Anthropic's events.
    let response = stream("openai").await;
    assert_eq!(response.headers()["x-byok-provider"], "openai");
    let got = events(&response.text().await.unwrap());
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(got[3].1["delta"]["text"], "Hello!");
    assert_eq!(got[5].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(got[5].1["usage"]["input_tokens"], 19);
    assert_eq!(got[5].1["usage"]["output_tokens"], 3);

    let entries = logged(&app, &token, 2).await;
    assert!(
        entries.iter().all(|e| e["door"] == "messages"),
        "{entries:?}"
    );
}

#[tokio::test]
async fn token_counts_are_anthropics_or_an_estimate_that_says_so() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages/count_tokens"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"input_tokens": 42})))
        .expect(1)
        .mount(&mock)
        .await;
    let db = TestDb::sqlite();
    let (app, token) = app_with(&mock, &db, &["anthropic"]).await;
    let request = json!({"model": "claude-sonnet-4-6", "system": "Be brief.",
        "messages": [{"role": "user", "content": "How many tokens is this?"}]});
    let response = post(&app, &token, "/v1/messages/count_tokens", &request).await;
    assert_eq!(response.headers()["x-byok-count-source"], "exact");
    let (status, got) = body(response).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, json!({"input_tokens": 42, "estimated": false}));
    let sent = received(
        &mock.received_requests().await.unwrap(),
        "/v1/messages/count_tokens",
    );
    assert_eq!(sent[0]["model"], "claude-sonnet-4-6");
    assert_eq!(sent[0]["system"], "Be brief.");
    assert!(sent[0].get("max_tokens").is_none() && sent[0].get("stream").is_none());

    // No Anthropic key: byok's estimate, marked.
    let other = TestDb::sqlite();
    let (app, token) = app_with(&mock, &other, &["openai"]).await;
    let response = post(&app, &token, "/v1/messages/count_tokens", &request).await;
    assert_eq!(response.headers()["x-byok-count-source"], "estimated");
    let (status, got) = body(response).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["estimated"], true);
    assert!(got["input_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn the_models_list_speaks_the_clients_api() {
    let mock = MockServer::start().await;
    let db = TestDb::sqlite();
    let (app, token) = app_with(&mock, &db, &["anthropic"]).await;
    let (status, got) = body(
        app.client
            .get(app.url("/v1/models"))
            .header("x-api-key", &token)
            .header("anthropic-version", "2023-06-01")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["has_more"], false);
    assert_eq!(got["first_id"], "auto");
    let data = got["data"].as_array().unwrap();
    assert!(data.iter().all(|m| m["type"] == "model"));
    assert!(data.iter().any(|m| m["id"] == "claude-sonnet-4-6"));
    // Without anthropic-version: OpenAI's shape.
    let (status, got) = body(
        app.client
            .get(app.url("/v1/models"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got["object"], "list");
    // An Anthropic client's failed sign-in: Anthropic's error.
    let (status, got) = body(
        app.client
            .get(app.url("/v1/models"))
            .header("x-api-key", "nope")
            .header("anthropic-version", "2023-06-01")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(got["error"]["type"], "authentication_error");
}

#[tokio::test]
async fn an_error_before_the_first_piece_of_a_native_stream_falls_back() {
    let mock = MockServer::start().await;
    let overloaded = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-haiku-4-5\",\"content\":[],\"usage\":{\"input_tokens\":5,\"output_tokens\":0}}}\n\n",
        "event: error\n",
        "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
    );
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(overloaded),
        )
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(
                    std::fs::read_to_string(format!(
                        "{}/../byok-providers/tests/fixtures/openai/stream.sse",
                        env!("CARGO_MANIFEST_DIR")
                    ))
                    .unwrap(),
                ),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let db = TestDb::sqlite();
    let (app, token) = app_with(&mock, &db, &["anthropic", "openai"]).await;
    let response = app
        .client
        .post(app.url("/v1/messages"))
        .header("x-api-key", &token)
        .header("x-byok-prefer", "anthropic,openai")
        .json(&json!({"model": "auto", "max_tokens": 50, "stream": true,
            "messages": [{"role": "user", "content": "Say hello."}]}))
        .send()
        .await
        .unwrap();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    assert_eq!(
        headers.get("x-byok-provider").map(|v| v.to_str().unwrap()),
        Some("openai"),
        "{text}"
    );
    assert_eq!(headers["x-byok-attempts"], "anthropic,openai");
    assert!(!text.contains("overloaded_error"), "{text}");
    assert!(text.contains("\"text\":\"Hello!\""), "{text}");
    assert!(text.contains("event: message_stop"), "{text}");
}

/// A request shaped as Claude Code sends it (adaptive thinking, an effort,
/// a high `max_tokens`, context management, a JSON user id, a system turn,
/// its betas): on OpenAI it is translated with the model's own output limit,
/// no required reasoning and a hashed end-user id.
#[tokio::test]
async fn claude_codes_requests_are_translated_for_other_providers() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi."}}],
            "usage": {"prompt_tokens": 900, "completion_tokens": 2, "total_tokens": 902}
        })))
        .expect(1)
        .mount(&mock)
        .await;
    let db = TestDb::sqlite();
    let (app, token) = app_with(&mock, &db, &["openai"]).await;
    let request = json!({
        "model": "auto", "max_tokens": 32000, "stream": false,
        "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": "{\"device_id\":\"9bc42ab4e6b53188ef2d2bfd4e894a39d9d4aa03bb9fa47848644f5fe8383655\",\"session_id\":\"9c2d394c\"}"},
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "tools": [{"name": "Bash", "description": "Run a command", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Say hi", "cache_control": {"type": "ephemeral"}}]},
            {"role": "system", "content": "Reminder: be brief."}
        ]
    });
    let response = app
        .client
        .post(app.url("/v1/messages?beta=true"))
        .header("authorization", format!("Bearer {token}"))
        .header(
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14,thinking-token-count-2026-05-13,context-management-2025-06-27,prompt-caching-scope-2026-01-05,effort-2025-11-24",
        )
        .json(&request)
        .send()
        .await
        .unwrap();
    let (status, got) = body(response).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["content"][0]["text"], "Hi.");
    let sent = received(
        &mock.received_requests().await.unwrap(),
        "/v1/chat/completions",
    );
    let sent = &sent[0];
    assert_eq!(
        sent["max_completion_tokens"], 16384,
        "gpt-4o-mini's own limit"
    );
    assert!(
        sent.get("reasoning_effort").is_none(),
        "gpt-4o-mini does not reason: {sent}"
    );
    let user = sent["user"].as_str().unwrap();
    assert!(user.starts_with("sha256:") && user.len() <= 64, "{user}");
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "system"]);
    assert_eq!(sent["tools"][0]["function"]["name"], "Bash");
}
