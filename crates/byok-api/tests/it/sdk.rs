//! The official OpenAI Python SDK, pointed at byok's `/v1` with a byok token
//! as its API key, works — streaming included. Needs `python3` with the
//! `openai` package (`.ci/run` installs it); skipped loudly elsewhere, and a
//! failure when `CI=true`.

use std::process::Command;

use byok_test_support::{TestApp, TestDb};
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::key_body;

const SCRIPT: &str = r#"
import json, os, sys
from openai import OpenAI
client = OpenAI(base_url=os.environ["BYOK_URL"] + "/v1", api_key=os.environ["BYOK_TOKEN"], max_retries=0)
plain = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Say hello."}])
raw = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": "Say hello."}])
streamed = ""
usage = None
for chunk in client.chat.completions.create(model="auto", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "Say hello."}]):
    if chunk.choices and chunk.choices[0].delta.content:
        streamed += chunk.choices[0].delta.content
    if chunk.usage:
        usage = chunk.usage.total_tokens
models = [m.id for m in client.models.list()]
print(json.dumps({"plain": plain.choices[0].message.content, "provider": raw.headers.get("x-byok-provider"),
                  "streamed": streamed, "usage": usage, "models": models}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_sdk_works_against_the_gateway() {
    if !crate::python_has("openai") {
        return;
    }
    let mock = MockServer::start().await;
    let base = Url::parse(&mock.uri()).unwrap();
    let providers = byok_providers::ProviderSettings {
        anthropic_base_url: base,
        ..byok_providers::ProviderSettings::default()
    };
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_providers(&db, providers).await;
    let token = app.create_user("alice").await;
    let key = format!("sk-ant-api03-{}AA", "p".repeat(93));
    assert_eq!(
        app.save_key(&token, "alice", "anthropic", key_body(&key))
            .await
            .status(),
        201
    );
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", key.as_str()))
        .and(body_partial_json(json!({"stream": false})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": "Hello from Claude!"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 10, "output_tokens": 4}
        })))
        .expect(2)
        .mount(&mock)
        .await;
    let fixture = std::fs::read_to_string(format!(
        "{}/../byok-providers/tests/fixtures/anthropic/stream.sse",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(body_partial_json(json!({"stream": true})))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(fixture),
        )
        .expect(1)
        .mount(&mock)
        .await;

    let (url, token) = (app.base_url.clone(), token.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", SCRIPT])
            .env("BYOK_URL", url)
            .env("BYOK_TOKEN", token)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        output.status.success(),
        "the SDK failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["plain"], "Hello from Claude!");
    assert_eq!(result["provider"], "anthropic");
    assert_eq!(result["streamed"], "Hello!");
    assert_eq!(result["usage"], 19);
    assert!(
        result["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "claude-haiku-4-5")
    );
}

const AGENT_SCRIPT: &str = r#"
import json, os
import openai
from openai import OpenAI
from pydantic import BaseModel

url = os.environ["BYOK_URL"] + "/v1"
tokens = json.loads(os.environ["BYOK_TOKENS"])
tools = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
out = {}
for provider, token in tokens.items():
    client = OpenAI(base_url=url, api_key=token, max_retries=0)
    messages = [{"role": "user", "content": "Weather in Oslo?"}]
    first = client.chat.completions.create(model="auto", messages=messages, tools=tools)
    message = first.choices[0].message
    call = message.tool_calls[0]
    args = json.loads(call.function.arguments)
    # The SDK's own object goes back, nulls and all, as agent frameworks do.
    messages.append(message.model_dump())
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp": 21, "city": args["city"]})})
    second = client.chat.completions.create(model="auto", messages=messages, tools=tools)
    out[provider] = {"finish": first.choices[0].finish_reason, "tool": call.function.name, "args": args,
                     "answer": second.choices[0].message.content}

client = OpenAI(base_url=url, api_key=tokens["anthropic"], max_retries=0)
with client.chat.completions.stream(model="auto", messages=[{"role": "user", "content": "Weather in Oslo?"}], tools=tools) as stream:
    final = stream.get_final_completion()
streamed = final.choices[0].message.tool_calls[0]
out["streamed"] = {"name": streamed.function.name, "args": json.loads(streamed.function.arguments),
                   "finish": final.choices[0].finish_reason}

class Weather(BaseModel):
    city: str
    temp: int

client = OpenAI(base_url=url, api_key=tokens["gemini"], max_retries=0)
parsed = client.chat.completions.parse(model="auto", messages=[{"role": "user", "content": "Oslo weather as JSON"}],
                                       response_format=Weather)
out["parsed"] = parsed.choices[0].message.parsed.model_dump()

client = OpenAI(base_url=url, api_key=tokens["anthropic"], max_retries=0)
picture = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": [
    {"type": "text", "text": "What is this?"},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}])
out["image"] = picture.choices[0].message.content

try:
    client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}], logit_bias={"50256": -100})
    out["refused"] = None
except openai.BadRequestError as e:
    out["refused"] = {"status": e.status_code, "code": e.code, "param": e.param, "message": e.message}
print(json.dumps(out))
"#;

fn openai_tool_turn() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}
    }))
}

fn openai_text(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-2", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 5, "total_tokens": 45}
    }))
}

fn anthropic_text(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "msg_2", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 40, "output_tokens": 5}
    }))
}

fn gemini_text(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [{"text": text}]}}],
        "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 5}
    }))
}

/// Each provider's mock: a tool call first; once the tool's result is in
/// the conversation (in that provider's own form), an answer.
async fn mount_tool_loops(mock: &MockServer) {
    mount_openai_compatible(mock).await;
    mount_anthropic(mock).await;
    mount_gemini(mock).await;
}

async fn mount_openai_compatible(mock: &MockServer) {
    use wiremock::matchers::body_string_contains;
    for route in [
        "/v1/chat/completions",
        "/chat/completions",
        "/openai/v1/chat/completions",
    ] {
        Mock::given(method("POST"))
            .and(path(route))
            .and(body_string_contains(
                r#""role":"tool","content":"{\"temp\": 21"#,
            ))
            .and(body_string_contains(r#""tool_call_id":"call_abc""#))
            .respond_with(openai_text("21 degrees in Oslo."))
            .with_priority(1)
            .expect(1)
            .mount(mock)
            .await;
        Mock::given(method("POST"))
            .and(path(route))
            .respond_with(openai_tool_turn())
            .expect(1)
            .mount(mock)
            .await;
    }
}

async fn mount_anthropic(mock: &MockServer) {
    use wiremock::matchers::body_string_contains;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(body_string_contains(r#""tool_use_id":"toolu_1""#))
        .respond_with(anthropic_text("21 degrees in Oslo."))
        .with_priority(1)
        .expect(1)
        .mount(mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(body_string_contains(r#""type":"image""#))
        .respond_with(anthropic_text("A tiny PNG."))
        .with_priority(1)
        .expect(1)
        .mount(mock)
        .await;
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let stream = [
        event("message_start", json!({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "model": "claude-haiku-4-5", "content": [], "usage": {"input_tokens": 20, "output_tokens": 1}}})),
        event("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {}}})),
        event("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"city\""}})),
        event("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": ": \"Oslo\"}"}})),
        event("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        event("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 12}})),
        event("message_stop", json!({"type": "message_stop"})),
    ]
    .concat();
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(body_string_contains(r#""stream":true"#))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(stream),
        )
        .with_priority(1)
        .expect(1)
        .mount(mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 20, "output_tokens": 10}
        })))
        .expect(1)
        .mount(mock)
        .await;
}

async fn mount_gemini(mock: &MockServer) {
    use wiremock::matchers::body_string_contains;
    let gemini = "/v1beta/models/gemini-2.5-flash-lite:generateContent";
    // The second turn must carry the thought signature back, and the result by name.
    Mock::given(method("POST"))
        .and(path(gemini))
        .and(body_string_contains(r#""thoughtSignature":"U0lH""#))
        .and(body_string_contains(
            r#""functionResponse":{"name":"get_weather""#,
        ))
        .respond_with(gemini_text("21 degrees in Oslo."))
        .with_priority(1)
        .expect(1)
        .mount(mock)
        .await;
    Mock::given(method("POST"))
        .and(path(gemini))
        .and(body_string_contains(r#""responseJsonSchema""#))
        .respond_with(gemini_text(r#"{"city": "Oslo", "temp": 21}"#))
        .with_priority(1)
        .expect(1)
        .mount(mock)
        .await;
    Mock::given(method("POST"))
        .and(path(gemini))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "U0lH"}]}}],
            "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 5}
        })))
        .expect(1)
        .mount(mock)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_runs_tool_loops_structured_output_images_and_refusals() {
    if !crate::python_has("openai") {
        return;
    }
    let mock = MockServer::start().await;
    mount_tool_loops(&mock).await;
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_providers(&db, crate::providers(&mock)).await;
    let mut tokens = serde_json::Map::new();
    for (provider, key) in [
        ("openai", json!({"api_key": crate::openai_key("sdk")})),
        (
            "deepseek",
            json!({"api_key": format!("sk-{}", "d".repeat(32))}),
        ),
        (
            "anthropic",
            json!({"api_key": format!("sk-ant-api03-{}AA", "a".repeat(93))}),
        ),
        (
            "gemini",
            json!({"api_key": format!("AIza{}", "g".repeat(35))}),
        ),
        (
            "azure_openai",
            json!({"api_key": "0123456789abcdef0123456789abcdef", "endpoint": mock.uri(), "deployment": "gpt-4o-mini"}),
        ),
    ] {
        let user = format!("sdk-{provider}").replace('_', "-");
        let token = app.create_user(&user).await;
        assert_eq!(
            app.save_key(&token, &user, provider, key).await.status(),
            201
        );
        tokens.insert(provider.to_owned(), Value::String(token));
    }
    let (url, tokens) = (app.base_url.clone(), Value::Object(tokens).to_string());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", AGENT_SCRIPT])
            .env("BYOK_URL", url)
            .env("BYOK_TOKENS", tokens)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        output.status.success(),
        "the SDK failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    for provider in ["openai", "deepseek", "anthropic", "gemini", "azure_openai"] {
        assert_eq!(
            result[provider],
            json!({"finish": "tool_calls", "tool": "get_weather", "args": {"city": "Oslo"}, "answer": "21 degrees in Oslo."}),
            "{provider}"
        );
    }
    assert_eq!(
        result["streamed"],
        json!({"name": "get_weather", "args": {"city": "Oslo"}, "finish": "tool_calls"})
    );
    assert_eq!(result["parsed"], json!({"city": "Oslo", "temp": 21}));
    assert_eq!(result["image"], "A tiny PNG.");
    let refused = &result["refused"];
    assert_eq!(refused["status"], 400, "{refused}");
    assert_eq!(refused["code"], "unsupported_parameter");
    assert_eq!(refused["param"], "logit_bias");
    assert!(
        refused["message"].as_str().unwrap().contains("Anthropic"),
        "{refused}"
    );
    app.stop().await;
}
