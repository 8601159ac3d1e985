//! OpenAI's Responses door (`/v1/responses`): on OpenAI the request goes to
//! OpenAI's own Responses API intact and the answer comes back as it came;
//! elsewhere it is translated both ways, statelessly; what needs OpenAI is
//! refused elsewhere by name; usage is recorded once, under `responses`.

use byok_test_support::{TestApp, TestDb};
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{body, key_body, openai_key, providers};

async fn app_with(mock: &MockServer, db: &TestDb, keys: &[&str]) -> (TestApp, String) {
    let app = TestApp::spawn_with_providers(db, providers(mock)).await;
    let token = app.create_user("alice").await;
    for provider in keys {
        let key = match *provider {
            "anthropic" => format!("sk-ant-api03-{}AA", "r".repeat(93)),
            _ => openai_key("r"),
        };
        let response = app
            .save_key(&token, "alice", provider, key_body(&key))
            .await;
        assert_eq!(response.status(), 201);
    }
    (app, token)
}

async fn post(app: &TestApp, token: &str, request: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/responses"))
        .bearer_auth(token)
        .json(request)
        .send()
        .await
        .unwrap()
}

async fn doors(app: &TestApp, token: &str, n: usize) -> Vec<Value> {
    for _ in 0..50 {
        let (_, page) = body(
            app.client
                .get(app.url("/api/user/api-keys/alice/requests"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        let entries = page["requests"].as_array().cloned().unwrap_or_default();
        if entries.len() >= n {
            return entries;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    unreachable!("{n} usage records were not written");
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../byok-providers/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[tokio::test]
async fn on_openai_the_request_goes_to_its_responses_api_intact() {
    let mock = MockServer::start().await;
    let db = TestDb::sqlite();
    let (app, token) = app_with(&mock, &db, &["openai"]).await;
    let answer = json!({"id": "resp_abc", "object": "response", "created_at": 1, "status": "completed",
        "model": "gpt-4o-mini", "store": true,
        "output": [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},
                   {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": "Patched.", "annotations": []}]}],
        "usage": {"input_tokens": 1000, "input_tokens_details": {"cached_tokens": 400},
                  "output_tokens": 100, "output_tokens_details": {"reasoning_tokens": 60}, "total_tokens": 1100}});
    Mock::given(method("POST"))
        .and(path("/v1/responses"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer.clone()))
        .expect(1)
        .mount(&mock)
        .await;
    let request = json!({"model": "gpt-4o-mini", "previous_response_id": "resp_prev", "store": true,
        "include": ["reasoning.encrypted_content"], "truncation": "auto",
        "tools": [{"type": "custom", "name": "apply_patch", "description": "Apply a patch"}],
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Fix the bug."}]}]});
    let response = post(&app, &token, &request).await;
    let headers = response.headers().clone();
    let (status, got) = body(response).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, answer, "OpenAI's answer as it came");
    assert_eq!(headers["x-byok-provider"], "openai");
    // 600 x 0.15 + 400 x 0.075 + 100 x 0.60 per million.
    assert_eq!(headers["x-byok-cost-usd"], "0.00018");
    let sent: Vec<Value> = mock
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let mut expected = request.clone();
    expected["stream"] = json!(false);
    assert_eq!(sent, [expected]);
    let entries = doors(&app, &token, 1).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["door"], "responses");
    assert_eq!(entries[0]["cost_usd"], "0.00018");
}

#[tokio::test]
async fn elsewhere_it_is_translated_function_calls_included() {
    let mock = MockServer::start().await;
    let db = TestDb::sqlite();
    let (app, token) = app_with(&mock, &db, &["anthropic"]).await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(body_partial_json(json!({"system": "Be brief."})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": "Checking."},
                        {"type": "tool_use", "id": "toolu_7", "name": "weather", "input": {"city": "Oslo"}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 50, "output_tokens": 12}
        })))
        .expect(1)
        .mount(&mock)
        .await;
    let request = json!({"model": "auto", "instructions": "Be brief.", "store": false,
    "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}],
    "input": [
        {"role": "user", "content": "Weather in Oslo and Bergen?"},
        {"type": "function_call", "id": "fc_1", "call_id": "toolu_1", "name": "weather", "arguments": "{\"city\":\"Bergen\"}", "status": "completed"},
        {"type": "function_call_output", "call_id": "toolu_1", "output": "12C"}
    ]});
    let (status, got) = body(post(&app, &token, &request).await).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["object"], "response");
    assert_eq!(got["status"], "completed");
    assert_eq!(got["store"], false);
    assert_eq!(got["output"][0]["type"], "message");
    assert_eq!(got["output"][0]["content"][0]["text"], "Checking.");
    assert_eq!(got["output"][1]["type"], "function_call");
    assert_eq!(got["output"][1]["call_id"], "toolu_7");
    assert_eq!(got["output"][1]["arguments"], "{\"city\":\"Oslo\"}");
    assert_eq!(got["usage"]["input_tokens"], 50);
    assert_eq!(got["usage"]["output_tokens"], 12);
    assert_eq!(got["usage"]["cost_source"], "exact");

    let sent: Value =
        serde_json::from_slice(&mock.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(sent["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(sent["messages"][1]["content"][0]["id"], "toolu_1");
    assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(sent["tools"][0]["name"], "weather");
    let entries = doors(&app, &token, 1).await;
    assert_eq!(entries[0]["door"], "responses");
    assert_eq!(entries[0]["provider"], "anthropic");
}

#[tokio::test]
async fn what_needs_openai_is_refused_elsewhere_by_name() {
    let mock = MockServer::start().await;
    let db = TestDb::sqlite();
    let (app, token) = app_with(&mock, &db, &["anthropic"]).await;
    for (request, field) in [
        (
            json!({"model": "auto", "input": "hi", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (
            json!({"model": "auto", "input": "hi", "store": true}),
            "store",
        ),
        (
            json!({"model": "auto", "input": "hi", "tools": [{"type": "web_search"}]}),
            "tools[].type: web_search",
        ),
    ] {
        let (status, got) = body(post(&app, &token, &request).await).await;
        assert_eq!(status, 400, "{got}");
        assert_eq!(got["error"]["param"], field, "{got}");
        assert_eq!(got["error"]["type"], "invalid_request_error");
    }
    assert!(mock.received_requests().await.unwrap().is_empty());
}

fn events(text: &str) -> Vec<(String, Value)> {
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
}

#[tokio::test]
async fn streams_pass_openais_events_through_or_translate_them() {
    let mock = MockServer::start().await;
    let openai = fixture("openai/responses.sse");
    Mock::given(method("POST"))
        .and(path("/v1/responses"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(openai.clone()),
        )
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(fixture("anthropic/stream.sse")),
        )
        .mount(&mock)
        .await;
    let db = TestDb::sqlite();
    let (app, token) = app_with(&mock, &db, &["openai", "anthropic"]).await;
    let stream = |prefer: &'static str| {
        let (app, token) = (&app, &token);
        async move {
            app.client
                .post(app.url("/v1/responses"))
                .bearer_auth(token)
                .header("x-byok-prefer", prefer)
                .json(&json!({"model": "auto", "stream": true, "input": "Say hello."}))
                .send()
                .await
                .unwrap()
        }
    };
    let response = stream("openai").await;
    assert_eq!(response.headers()["x-byok-provider"], "openai");
    assert_eq!(events(&response.text().await.unwrap()), events(&openai));

    let response = stream("anthropic").await;
    assert_eq!(response.headers()["x-byok-provider"], "anthropic");
    let got = events(&response.text().await.unwrap());
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let done = &got[9].1["response"];
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello!");
    assert_eq!(done["usage"]["input_tokens"], 14);
    assert_eq!(done["usage"]["output_tokens"], 5);
    let entries = doors(&app, &token, 2).await;
    assert!(
        entries.iter().all(|e| e["door"] == "responses"),
        "{entries:?}"
    );
}

#[tokio::test]
async fn on_azure_the_request_goes_to_its_responses_api_with_the_deployment() {
    for (version, route) in [
        ("v1", "/openai/v1/responses"),
        ("2025-04-01-preview", "/openai/responses"),
    ] {
        let mock = MockServer::start().await;
        let answer = json!({"id": "resp_az", "object": "response", "status": "completed", "model": "gpt-4o-mini",
            "output": [{"type": "message", "id": "m", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": "From Azure.", "annotations": []}]}],
            "usage": {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}});
        Mock::given(method("POST"))
            .and(path(route))
            .respond_with(ResponseTemplate::new(200).set_body_json(answer.clone()))
            .expect(1)
            .mount(&mock)
            .await;
        let db = TestDb::sqlite();
        let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
        let token = app.create_user("alice").await;
        let saved = app
            .save_key(
                &token,
                "alice",
                "azure_openai",
                json!({"api_key": "0123456789abcdef0123456789abcdef", "endpoint": mock.uri(),
                       "deployment": "my-deploy", "api_version": version}),
            )
            .await;
        assert_eq!(saved.status(), 201, "{version}");
        let response = post(
            &app,
            &token,
            &json!({"model": "auto", "input": "Hi", "store": true}),
        )
        .await;
        assert_eq!(response.headers()["x-byok-provider"], "azure_openai");
        let (status, got) = body(response).await;
        assert_eq!(status, 200, "{version}: {got}");
        assert_eq!(got, answer, "{version}");
        let requests = mock.received_requests().await.unwrap();
        let sent: Value = serde_json::from_slice(&requests[0].body).unwrap();
        assert_eq!(
            sent["model"], "my-deploy",
            "{version}: the deployment goes in model"
        );
        assert_eq!(sent["store"], true);
        let query = requests[0].url.query().unwrap_or("");
        if version == "v1" {
            assert!(query.is_empty(), "{query}");
        } else {
            assert_eq!(query, format!("api-version={version}"));
        }
    }
}

#[tokio::test]
async fn an_azure_key_on_a_dated_version_without_responses_gets_the_translation() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/openai/deployments/chat1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Translated."}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
        })))
        .expect(1)
        .mount(&mock)
        .await;
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = app.create_user("alice").await;
    let saved = app
        .save_key(
            &token,
            "alice",
            "azure_openai",
            json!({"api_key": "0123456789abcdef0123456789abcdef", "endpoint": mock.uri(),
                   "deployment": "chat1", "api_version": "2024-10-21"}),
        )
        .await;
    assert_eq!(saved.status(), 201);
    let (status, got) =
        body(post(&app, &token, &json!({"model": "auto", "input": "Hi"})).await).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["object"], "response");
    assert_eq!(got["output"][0]["content"][0]["text"], "Translated.");
    // What only the Responses API carries cannot go by translation.
    let (status, got) = body(
        post(
            &app,
            &token,
            &json!({"model": "auto", "input": "Hi", "previous_response_id": "resp_1"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{got}");
    assert_eq!(got["error"]["param"], "previous_response_id");
}
