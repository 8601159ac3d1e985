//! The official Anthropic Python SDK against byok's Messages door, and the
//! official OpenAI Python SDK's Responses API against byok's Responses door:
//! plain, streamed and tool-loop calls, on the door's own provider (passed
//! through) and on others (translated). Needs `python3` with `anthropic` and
//! `openai` (`.ci/run` installs them); skipped loudly elsewhere, a failure
//! when `CI=true`.

use std::process::Command;

use byok_test_support::{TestApp, TestDb};
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{key_body, openai_key, providers};

fn fixture(provider: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../byok-providers/tests/fixtures/{provider}/stream.sse",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn sse(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "text/event-stream")
        .set_body_string(body)
}

/// One mock on `route`: `when` the body contains each string, `answer`.
async fn answer(
    mock: &MockServer,
    route: &str,
    when: &[&str],
    priority: u8,
    answer: ResponseTemplate,
) {
    let mut builder = Mock::given(method("POST")).and(path(route));
    for needle in when {
        builder = builder.and(body_string_contains(*needle));
    }
    builder
        .respond_with(answer)
        .with_priority(priority)
        .mount(mock)
        .await;
}

async fn mount_anthropic(mock: &MockServer) {
    let text = |text: &str| {
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_2", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 40, "output_tokens": 5}
        }))
    };
    let route = "/v1/messages";
    answer(
        mock,
        route,
        &[r#""tool_use_id":"toolu_1""#],
        1,
        text("21 degrees in Oslo."),
    )
    .await;
    answer(
        mock,
        route,
        &[r#""stream":true"#],
        1,
        sse(fixture("anthropic")),
    )
    .await;
    answer(
        mock,
        route,
        &["get_weather"],
        2,
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 20, "output_tokens": 10}
        })),
    )
    .await;
    answer(mock, route, &[], 3, text("Hello from Claude!")).await;
}

async fn mount_openai_chat(mock: &MockServer) {
    let text = |text: &str| {
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-2", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 40, "completion_tokens": 5, "total_tokens": 45}
        }))
    };
    let route = "/v1/chat/completions";
    answer(
        mock,
        route,
        &[r#""tool_call_id":"call_abc""#],
        1,
        text("21 degrees in Oslo."),
    )
    .await;
    answer(
        mock,
        route,
        &[r#""stream":true"#],
        1,
        sse(fixture("openai")),
    )
    .await;
    answer(
        mock,
        route,
        &["get_weather"],
        2,
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}
        })),
    )
    .await;
    answer(mock, route, &[], 3, text("Hello from GPT!")).await;
}

async fn mount_gemini(mock: &MockServer) {
    let route = "/v1beta/models/gemini-2.5-flash-lite:generateContent";
    // The second turn carries Gemini's thought signature back (it rode in
    // the tool_use id) and the result by name.
    answer(
        mock,
        route,
        &[
            r#""thoughtSignature":"U0lH""#,
            r#""functionResponse":{"name":"get_weather""#,
        ],
        1,
        ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [{"text": "21 degrees in Oslo."}]}}],
            "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 5}
        })),
    )
    .await;
    answer(
        mock,
        route,
        &[],
        2,
        ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "U0lH"}]}}],
            "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 5}
        })),
    )
    .await;
}

/// A user per provider, each with only that provider's key.
async fn users(app: &TestApp, mock: &MockServer) -> Value {
    let mut tokens = serde_json::Map::new();
    for provider in ["anthropic", "openai", "gemini"] {
        let token = app.create_user(provider).await;
        let key = match provider {
            "anthropic" => format!("sk-ant-api03-{}AA", "s".repeat(93)),
            "gemini" => format!("AIza{}", "g".repeat(35)),
            _ => openai_key("sdk"),
        };
        let _ = mock;
        assert_eq!(
            app.save_key(&token, provider, provider, key_body(&key))
                .await
                .status(),
            201
        );
        tokens.insert(provider.to_owned(), Value::String(token));
    }
    Value::Object(tokens)
}

async fn run_python(script: &'static str, url: String, tokens: &Value) -> Value {
    let tokens = tokens.to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", script])
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
    serde_json::from_slice(&output.stdout).unwrap()
}

const ANTHROPIC_SCRIPT: &str = r#"
import json, os
import anthropic
url = os.environ["BYOK_URL"]
tokens = json.loads(os.environ["BYOK_TOKENS"])
tools = [{"name": "get_weather", "description": "Current weather",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
out = {}
for provider, token in tokens.items():
    client = anthropic.Anthropic(base_url=url, api_key=token, max_retries=0)
    result = {}
    if provider != "gemini":
        hello = [{"role": "user", "content": "Say hello."}]
        plain = client.messages.create(model="auto", max_tokens=100, messages=hello)
        result["plain"] = plain.content[0].text
        with client.messages.stream(model="auto", max_tokens=100, messages=hello) as stream:
            result["streamed"] = "".join(stream.text_stream)
            final = stream.get_final_message()
        result["stream_stop"] = final.stop_reason
        result["stream_output_tokens"] = final.usage.output_tokens
    messages = [{"role": "user", "content": "Weather in Oslo?"}]
    first = client.messages.create(model="auto", max_tokens=200, tools=tools, messages=messages)
    call = next(b for b in first.content if b.type == "tool_use")
    # The SDK's own blocks go back, as agent loops send them.
    messages.append({"role": "assistant", "content": [b.model_dump() for b in first.content]})
    messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                  "content": json.dumps({"temp": 21})}]})
    second = client.messages.create(model="auto", max_tokens=200, tools=tools, messages=messages)
    result.update({"first_stop": first.stop_reason, "tool": call.name, "args": call.input,
                   "answer": second.content[0].text})
    out[provider] = result
try:
    anthropic.Anthropic(base_url=url, api_key="byok-wrong", max_retries=0).messages.create(
        model="auto", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    out["refused"] = None
except anthropic.AuthenticationError as e:
    out["refused"] = {"status": e.status_code, "type": e.body["error"]["type"]}
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_sdk_works_on_anthropic_and_through_translation() {
    if !crate::python_has("anthropic") {
        return;
    }
    let mock = MockServer::start().await;
    mount_anthropic(&mock).await;
    mount_openai_chat(&mock).await;
    mount_gemini(&mock).await;
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let tokens = users(&app, &mock).await;
    let out = run_python(ANTHROPIC_SCRIPT, app.base_url.clone(), &tokens).await;

    assert_eq!(out["anthropic"]["plain"], "Hello from Claude!");
    assert_eq!(out["anthropic"]["streamed"], "Hello!");
    assert_eq!(out["anthropic"]["stream_output_tokens"], 5);
    assert_eq!(out["openai"]["plain"], "Hello from GPT!");
    assert_eq!(out["openai"]["streamed"], "Hello!");
    assert_eq!(out["openai"]["stream_stop"], "end_turn");
    assert_eq!(out["openai"]["stream_output_tokens"], 3);
    for provider in ["anthropic", "openai", "gemini"] {
        let result = &out[provider];
        assert_eq!(result["first_stop"], "tool_use", "{provider}: {result}");
        assert_eq!(result["tool"], "get_weather", "{provider}");
        assert_eq!(result["args"], json!({"city": "Oslo"}), "{provider}");
        assert_eq!(result["answer"], "21 degrees in Oslo.", "{provider}");
    }
    assert_eq!(
        out["refused"],
        json!({"status": 401, "type": "authentication_error"})
    );
}

fn responses_answer(output: &Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "resp_1", "object": "response", "created_at": 1, "status": "completed", "model": "gpt-4o-mini",
        "output": output,
        "usage": {"input_tokens": 20, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
                  "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 25}
    }))
}

fn responses_text(text: &str) -> ResponseTemplate {
    responses_answer(
        &json!([{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]}]),
    )
}

async fn mount_openai_responses(mock: &MockServer) {
    let route = "/v1/responses";
    answer(
        mock,
        route,
        &[
            r#""type":"function_call_output""#,
            r#""call_id":"call_abc""#,
        ],
        1,
        responses_text("21 degrees in Oslo."),
    )
    .await;
    let stream = std::fs::read_to_string(format!(
        "{}/../byok-providers/tests/fixtures/openai/responses.sse",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    answer(mock, route, &[r#""stream":true"#], 1, sse(stream)).await;
    answer(
        mock,
        route,
        &[r#""json_schema""#],
        1,
        responses_text(r#"{"city": "Oslo", "temp": 21}"#),
    )
    .await;
    answer(
        mock,
        route,
        &["get_weather"],
        2,
        responses_answer(
            &json!([{"type": "function_call", "id": "fc_1", "call_id": "call_abc",
            "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}", "status": "completed"}]),
        ),
    )
    .await;
    answer(mock, route, &[], 3, responses_text("Hello from GPT!")).await;
}

const RESPONSES_SCRIPT: &str = r#"
import json, os
from openai import OpenAI
from pydantic import BaseModel
url = os.environ["BYOK_URL"] + "/v1"
tokens = json.loads(os.environ["BYOK_TOKENS"])
tools = [{"type": "function", "name": "get_weather", "description": "Current weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]

class Weather(BaseModel):
    city: str
    temp: int

out = {}
for provider in ["openai", "anthropic"]:
    client = OpenAI(base_url=url, api_key=tokens[provider], max_retries=0)
    result = {}
    result["plain"] = client.responses.create(model="auto", input="Say hello.").output_text
    with client.responses.stream(model="auto", input="Say hello.") as stream:
        result["streamed"] = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    result["final"] = final.output_text
    result["stream_output_tokens"] = final.usage.output_tokens
    items = [{"role": "user", "content": "Weather in Oslo?"}]
    first = client.responses.create(model="auto", input=items, tools=tools)
    call = next(i for i in first.output if i.type == "function_call")
    # The SDK's own items go back, as agent loops send them.
    items += [i.model_dump(exclude_none=True) for i in first.output]
    items.append({"type": "function_call_output", "call_id": call.call_id, "output": json.dumps({"temp": 21})})
    second = client.responses.create(model="auto", input=items, tools=tools)
    result.update({"tool": call.name, "args": json.loads(call.arguments), "answer": second.output_text})
    parsed = client.responses.parse(model="auto", input="Oslo weather as JSON", text_format=Weather)
    result["parsed"] = parsed.output_parsed.model_dump()
    out[provider] = result
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdks_responses_api_works_on_openai_and_through_translation() {
    if !crate::python_has("openai") {
        return;
    }
    let mock = MockServer::start().await;
    mount_openai_responses(&mock).await;
    // Structured output translated for Anthropic: its output_config format.
    answer(
        &mock,
        "/v1/messages",
        &[r#""output_config""#],
        1,
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_3", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": "{\"city\": \"Oslo\", \"temp\": 21}"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 30, "output_tokens": 9}
        })),
    )
    .await;
    mount_anthropic(&mock).await;
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let tokens = users(&app, &mock).await;
    let out = run_python(RESPONSES_SCRIPT, app.base_url.clone(), &tokens).await;

    assert_eq!(out["openai"]["plain"], "Hello from GPT!");
    assert_eq!(out["anthropic"]["plain"], "Hello from Claude!");
    for provider in ["openai", "anthropic"] {
        let result = &out[provider];
        assert_eq!(result["streamed"], "Hello!", "{provider}: {result}");
        assert_eq!(result["final"], "Hello!", "{provider}");
        assert_eq!(result["tool"], "get_weather", "{provider}");
        assert_eq!(result["args"], json!({"city": "Oslo"}), "{provider}");
        assert_eq!(result["answer"], "21 degrees in Oslo.", "{provider}");
        assert_eq!(
            result["parsed"],
            json!({"city": "Oslo", "temp": 21}),
            "{provider}"
        );
    }
    assert_eq!(out["openai"]["stream_output_tokens"], 3);
    assert_eq!(out["anthropic"]["stream_output_tokens"], 5);
}
