//! Chat fidelity through the whole gateway: every Chat Completions field has
//! a fate on every provider (carried in the provider's native form, or
//! refused with a 400 naming it, never silently dropped), requests route by
//! capability, Gemini's thought signatures survive a tool loop, and
//! embeddings carry their options and routing headers.

use base64::Engine as _;
use byok_api::openai::{CHAT_FIELDS, Fate};
use byok_test_support::{TestApp, TestDb};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{body, openai_key, providers};

const PROVIDERS: [&str; 5] = ["openai", "deepseek", "anthropic", "gemini", "azure_openai"];

fn key_for(provider: &str, mock: &MockServer) -> Value {
    match provider {
        "openai" => json!({"api_key": openai_key("t")}),
        "deepseek" => json!({"api_key": format!("sk-{}", "d".repeat(32))}),
        "anthropic" => json!({"api_key": format!("sk-ant-api03-{}AA", "a".repeat(93))}),
        "gemini" => json!({"api_key": format!("AIza{}", "g".repeat(35))}),
        _ => {
            json!({"api_key": "0123456789abcdef0123456789abcdef", "endpoint": mock.uri(), "deployment": "gpt-4o-mini"})
        }
    }
}

/// Plain answers for every provider's chat route.
async fn mount_answers(mock: &MockServer) {
    let openai = ResponseTemplate::new(200).set_body_json(json!({
        "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    }));
    for route in [
        "/v1/chat/completions",
        "/chat/completions",
        "/openai/v1/chat/completions",
    ] {
        Mock::given(method("POST"))
            .and(path(route))
            .respond_with(openai.clone())
            .mount(mock)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "m", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 5, "output_tokens": 1}
        })))
        .mount(mock)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/v1beta/models/[a-z0-9.-]+:generateContent$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [{"text": "ok"}]}}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1}
        })))
        .mount(mock)
        .await;
}

/// What must happen to a field on one provider.
#[derive(Debug, Clone)]
enum Exp {
    /// Answered; the upstream body has this value at this JSON pointer.
    Sent(&'static str, Value),
    /// Answered, and the upstream body has nothing at this pointer.
    NotSent(&'static str),
    /// Answered (the field is part of the request's core, seen elsewhere).
    Ok,
    /// A 400 naming the field (or the capability it needs); no upstream call.
    Refused,
}

use Exp::{NotSent, Ok as Answered, Refused, Sent};

fn tool() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}])
}

/// One sample per row: the field, extra request fields, the task, and the
/// expectation on `openai`, `deepseek`, `anthropic`, `gemini`, `azure_openai`.
#[expect(clippy::too_many_lines, reason = "one table")]
fn table() -> Vec<(&'static str, Value, &'static str, [Exp; 5])> {
    let same = |e: Exp| [e.clone(), e.clone(), e.clone(), e.clone(), e];
    let openai_only = |pointer: &'static str, value: Value| {
        [
            Sent(pointer, value.clone()),
            Refused,
            Refused,
            Refused,
            Sent(pointer, value),
        ]
    };
    let hint = |pointer: &'static str, value: Value| {
        [
            Sent(pointer, value.clone()),
            NotSent(pointer),
            NotSent(pointer),
            NotSent(pointer),
            Sent(pointer, value),
        ]
    };
    vec![
        ("model", json!({}), "general", same(Answered)),
        (
            "messages",
            json!({}),
            "general",
            [
                Sent("/messages/0/content", json!("hi")),
                Sent("/messages/0/content", json!("hi")),
                Sent("/messages/0/content", json!("hi")),
                Sent("/contents/0/parts/0/text", json!("hi")),
                Sent("/messages/0/content", json!("hi")),
            ],
        ),
        (
            "stream",
            json!({"stream": false}),
            "general",
            [
                Sent("/stream", json!(false)),
                Sent("/stream", json!(false)),
                Sent("/stream", json!(false)),
                Answered,
                Sent("/stream", json!(false)),
            ],
        ),
        (
            "stream_options",
            json!({"stream_options": {"include_usage": true, "include_obfuscation": false}}),
            "general",
            same(Answered),
        ),
        (
            "temperature",
            json!({"temperature": 0.5}),
            "general",
            [
                Sent("/temperature", json!(0.5)),
                Sent("/temperature", json!(0.5)),
                Sent("/temperature", json!(0.5)),
                Sent("/generationConfig/temperature", json!(0.5)),
                Sent("/temperature", json!(0.5)),
            ],
        ),
        (
            "top_p",
            json!({"top_p": 0.5}),
            "general",
            [
                Sent("/top_p", json!(0.5)),
                Sent("/top_p", json!(0.5)),
                Sent("/top_p", json!(0.5)),
                Sent("/generationConfig/topP", json!(0.5)),
                Sent("/top_p", json!(0.5)),
            ],
        ),
        (
            "n",
            json!({"n": 2}),
            "general",
            [
                Sent("/n", json!(2)),
                Refused,
                Refused,
                Sent("/generationConfig/candidateCount", json!(2)),
                Sent("/n", json!(2)),
            ],
        ),
        (
            "stop",
            json!({"stop": "END"}),
            "general",
            [
                Sent("/stop/0", json!("END")),
                Sent("/stop/0", json!("END")),
                Sent("/stop_sequences/0", json!("END")),
                Sent("/generationConfig/stopSequences/0", json!("END")),
                Sent("/stop/0", json!("END")),
            ],
        ),
        (
            "max_tokens",
            json!({"max_tokens": 100}),
            "general",
            [
                Sent("/max_completion_tokens", json!(100)),
                Sent("/max_tokens", json!(100)),
                Sent("/max_tokens", json!(100)),
                Sent("/generationConfig/maxOutputTokens", json!(100)),
                Sent("/max_completion_tokens", json!(100)),
            ],
        ),
        (
            "max_completion_tokens",
            json!({"max_completion_tokens": 100}),
            "general",
            [
                Sent("/max_completion_tokens", json!(100)),
                Sent("/max_tokens", json!(100)),
                Sent("/max_tokens", json!(100)),
                Sent("/generationConfig/maxOutputTokens", json!(100)),
                Sent("/max_completion_tokens", json!(100)),
            ],
        ),
        (
            "tools",
            json!({"tools": tool()}),
            "general",
            [
                Sent("/tools/0/function/name", json!("get_weather")),
                Sent("/tools/0/function/name", json!("get_weather")),
                Sent("/tools/0/name", json!("get_weather")),
                Sent("/tools/0/functionDeclarations/0/name", json!("get_weather")),
                Sent("/tools/0/function/name", json!("get_weather")),
            ],
        ),
        (
            "tool_choice",
            json!({"tools": tool(), "tool_choice": "required"}),
            "general",
            [
                Sent("/tool_choice", json!("required")),
                Sent("/tool_choice", json!("required")),
                Sent("/tool_choice/type", json!("any")),
                Sent("/toolConfig/functionCallingConfig/mode", json!("ANY")),
                Sent("/tool_choice", json!("required")),
            ],
        ),
        (
            "parallel_tool_calls",
            json!({"tools": tool(), "parallel_tool_calls": false}),
            "general",
            [
                Sent("/parallel_tool_calls", json!(false)),
                Refused,
                Sent("/tool_choice/disable_parallel_tool_use", json!(true)),
                Refused,
                Sent("/parallel_tool_calls", json!(false)),
            ],
        ),
        (
            "response_format",
            json!({"response_format": {"type": "json_object"}}),
            "general",
            [
                Sent("/response_format/type", json!("json_object")),
                Sent("/response_format/type", json!("json_object")),
                Refused,
                Sent(
                    "/generationConfig/responseMimeType",
                    json!("application/json"),
                ),
                Sent("/response_format/type", json!("json_object")),
            ],
        ),
        (
            "response_format",
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}}}),
            "general",
            [
                Sent("/response_format/json_schema/name", json!("s")),
                Refused,
                Sent("/output_config/format/type", json!("json_schema")),
                Sent("/generationConfig/responseJsonSchema/type", json!("object")),
                Sent("/response_format/json_schema/name", json!("s")),
            ],
        ),
        (
            "reasoning_effort",
            json!({"reasoning_effort": "low"}),
            "reasoning",
            [
                Sent("/reasoning_effort", json!("low")),
                Sent("/thinking/type", json!("enabled")),
                Sent("/thinking/type", json!("enabled")),
                // The reasoning route's Gemini model is a 3.x: a level, not a budget.
                Sent(
                    "/generationConfig/thinkingConfig/thinkingLevel",
                    json!("low"),
                ),
                Refused,
            ],
        ),
        (
            "seed",
            json!({"seed": 7}),
            "general",
            [
                Sent("/seed", json!(7)),
                Refused,
                Refused,
                Sent("/generationConfig/seed", json!(7)),
                Sent("/seed", json!(7)),
            ],
        ),
        (
            "presence_penalty",
            json!({"presence_penalty": 0.5}),
            "general",
            [
                Sent("/presence_penalty", json!(0.5)),
                Sent("/presence_penalty", json!(0.5)),
                Refused,
                Sent("/generationConfig/presencePenalty", json!(0.5)),
                Sent("/presence_penalty", json!(0.5)),
            ],
        ),
        (
            "frequency_penalty",
            json!({"frequency_penalty": 0.5}),
            "general",
            [
                Sent("/frequency_penalty", json!(0.5)),
                Sent("/frequency_penalty", json!(0.5)),
                Refused,
                Sent("/generationConfig/frequencyPenalty", json!(0.5)),
                Sent("/frequency_penalty", json!(0.5)),
            ],
        ),
        (
            "logprobs",
            json!({"logprobs": true}),
            "general",
            [
                Sent("/logprobs", json!(true)),
                Sent("/logprobs", json!(true)),
                Refused,
                Refused,
                Sent("/logprobs", json!(true)),
            ],
        ),
        (
            "top_logprobs",
            json!({"logprobs": true, "top_logprobs": 2}),
            "general",
            [
                Sent("/top_logprobs", json!(2)),
                Sent("/top_logprobs", json!(2)),
                Refused,
                Refused,
                Sent("/top_logprobs", json!(2)),
            ],
        ),
        (
            "user",
            json!({"user": "u1"}),
            "general",
            [
                Sent("/user", json!("u1")),
                Sent("/user_id", json!("u1")),
                Sent("/metadata/user_id", json!("u1")),
                NotSent("/user"),
                Sent("/user", json!("u1")),
            ],
        ),
        (
            "safety_identifier",
            json!({"safety_identifier": "s1"}),
            "general",
            [
                Sent("/user", json!("s1")),
                Sent("/user_id", json!("s1")),
                Sent("/metadata/user_id", json!("s1")),
                NotSent("/user"),
                Sent("/user", json!("s1")),
            ],
        ),
        (
            "modalities",
            json!({"modalities": ["text"]}),
            "general",
            same(NotSent("/modalities")),
        ),
        (
            "modalities",
            json!({"modalities": ["text", "audio"]}),
            "general",
            same(Refused),
        ),
        (
            "service_tier",
            json!({"service_tier": "auto"}),
            "general",
            same(NotSent("/service_tier")),
        ),
        (
            "service_tier",
            json!({"service_tier": "priority"}),
            "general",
            same(Refused),
        ),
        (
            "logit_bias",
            json!({"logit_bias": {"50256": -100}}),
            "general",
            openai_only("/logit_bias/50256", json!(-100)),
        ),
        (
            "verbosity",
            json!({"verbosity": "low"}),
            "general",
            openai_only("/verbosity", json!("low")),
        ),
        (
            "metadata",
            json!({"metadata": {"k": "v"}}),
            "general",
            openai_only("/metadata/k", json!("v")),
        ),
        (
            "prediction",
            json!({"prediction": {"type": "content", "content": "x"}}),
            "general",
            openai_only("/prediction/content", json!("x")),
        ),
        (
            "store",
            json!({"store": true}),
            "general",
            openai_only("/store", json!(true)),
        ),
        (
            "store",
            json!({"store": false}),
            "general",
            hint("/store", json!(false)),
        ),
        (
            "prompt_cache_key",
            json!({"prompt_cache_key": "k"}),
            "general",
            hint("/prompt_cache_key", json!("k")),
        ),
        (
            "prompt_cache_retention",
            json!({"prompt_cache_retention": "24h"}),
            "general",
            hint("/prompt_cache_retention", json!("24h")),
        ),
        (
            "audio",
            json!({"audio": {"voice": "alloy", "format": "wav"}}),
            "general",
            same(Refused),
        ),
        (
            "web_search_options",
            json!({"web_search_options": {}}),
            "general",
            same(Refused),
        ),
        (
            "functions",
            json!({"functions": [{"name": "f"}]}),
            "general",
            same(Refused),
        ),
        (
            "function_call",
            json!({"function_call": "auto"}),
            "general",
            same(Refused),
        ),
    ]
}

/// Checks one cell of the matrix against what the client got and what the
/// provider received.
fn check(
    exp: &Exp,
    (status, answer): (u16, &Value),
    upstream: &[Value],
    case: &str,
    (field, extra): (&str, &Value),
) {
    match exp {
        Refused => {
            assert_eq!(status, 400, "{case}: {answer}");
            let code = answer["error"]["code"].as_str().unwrap_or_default();
            assert!(
                code == "unsupported_parameter" || code == "unsupported_capability",
                "{case}: {answer}"
            );
            let named = answer["error"]["param"].as_str().unwrap_or_default();
            // The param names the field, or another field of the sample
            // refused first (`top_logprobs` needs `logprobs`).
            let sample_field = extra
                .as_object()
                .unwrap()
                .keys()
                .any(|k| named.contains(k.as_str()));
            assert!(
                named.contains(field) || sample_field,
                "{case}: param {named}: {answer}"
            );
            assert!(
                upstream.is_empty(),
                "{case}: a refused request reached a provider"
            );
        }
        Answered | Sent(..) | NotSent(_) => {
            assert_eq!(status, 200, "{case}: {answer}");
            assert_eq!(upstream.len(), 1, "{case}");
            match exp {
                Sent(pointer, value) => assert_eq!(
                    upstream[0].pointer(pointer),
                    Some(value),
                    "{case}: {}",
                    upstream[0]
                ),
                NotSent(pointer) => assert_eq!(
                    upstream[0].pointer(pointer),
                    None,
                    "{case}: {}",
                    upstream[0]
                ),
                _ => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_chat_field_has_a_fate_on_every_provider() {
    let rows = table();
    // The table covers every field byok knows, and the fates agree.
    for (field, fate) in CHAT_FIELDS {
        let row = rows.iter().find(|r| r.0 == *field);
        assert!(row.is_some(), "{field} has no row in the matrix");
        if *fate == Fate::Refused {
            assert!(
                rows.iter()
                    .filter(|r| r.0 == *field)
                    .all(|r| r.3.iter().all(|e| matches!(e, Refused))),
                "{field} is refused everywhere"
            );
        }
    }
    let mock = MockServer::start().await;
    mount_answers(&mock).await;
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let mut tokens = Vec::new();
    for provider in PROVIDERS {
        let user = format!("u-{provider}").replace('_', "-");
        let token = app.create_user(&user).await;
        let saved = app
            .save_key(&token, &user, provider, key_for(provider, &mock))
            .await;
        assert_eq!(saved.status(), 201, "{provider}");
        tokens.push(token);
    }
    for (field, extra, task, expectations) in rows {
        for ((provider, token), exp) in PROVIDERS.iter().zip(&tokens).zip(expectations) {
            let mut request =
                json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
            for (k, v) in extra.as_object().unwrap() {
                request[k] = v.clone();
            }
            // Azure's built-in rows have no reasoning model, so its `reasoning`
            // policy is empty: ask its general model, which lacks the capability.
            let task = if *provider == "azure_openai" {
                "general"
            } else {
                task
            };
            let before = mock.received_requests().await.unwrap().len();
            let response = app
                .client
                .post(app.url("/v1/chat/completions"))
                .bearer_auth(token)
                .header("x-byok-task", task)
                .json(&request)
                .send()
                .await
                .unwrap();
            let (status, answer) = body(response).await;
            let sent = mock.received_requests().await.unwrap();
            let upstream: Vec<Value> = sent[before..]
                .iter()
                .map(|r| serde_json::from_slice(&r.body).unwrap())
                .collect();
            let case = format!("{field} {extra} on {provider}");
            check(&exp, (status, &answer), &upstream, &case, (field, &extra));
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_route_by_capability_and_say_which_one_is_missing() {
    let mock = MockServer::start().await;
    mount_answers(&mock).await;
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = app.create_user("alice").await;
    for provider in ["deepseek", "openai"] {
        assert_eq!(
            app.save_key(&token, "alice", provider, key_for(provider, &mock))
                .await
                .status(),
            201
        );
    }
    let ask = |extra: Value, prefer: &'static str| {
        let mut request = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            request[k] = v.clone();
        }
        app.client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&token)
            .header("x-byok-prefer", prefer)
            .json(&request)
            .send()
    };
    // OpenAI first, by preference, for plain text...
    let response = ask(json!({}), "openai").await.unwrap();
    assert_eq!(response.headers()["x-byok-provider"], "openai");
    // ...but its general model does not reason: reasoning goes to DeepSeek.
    let response = ask(json!({"reasoning_effort": "high"}), "openai")
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-byok-provider"], "deepseek");
    let last = mock.received_requests().await.unwrap().pop().unwrap();
    let sent: Value = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(sent["thinking"], json!({"type": "enabled"}));
    // DeepSeek first, by preference, but it cannot carry a JSON schema: OpenAI.
    let schema = json!({"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}}});
    let response = ask(schema.clone(), "deepseek").await.unwrap();
    assert_eq!(response.headers()["x-byok-provider"], "openai");
    // With one provider only, each is a 400 that names the field and why.
    let only = |extra: Value, exclude: &'static str| {
        let mut request = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            request[k] = v.clone();
        }
        app.client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&token)
            .header("x-byok-exclude", exclude)
            .json(&request)
            .send()
    };
    let (status, error) = body(
        only(json!({"reasoning_effort": "high"}), "deepseek")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["code"], "unsupported_capability");
    assert_eq!(error["error"]["param"], "reasoning_effort");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("OpenAI") && message.contains("reasoning"),
        "{message}"
    );
    let (status, error) = body(only(schema, "openai").await.unwrap()).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["code"], "unsupported_parameter");
    assert_eq!(error["error"]["param"], "response_format.json_schema");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("DeepSeek")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_thought_signatures_survive_a_tool_loop_through_the_gateway() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash-lite:generateContent"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "U0lHLTE="}]}}],
            "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 5},
            "modelVersion": "gemini-2.5-flash-lite"
        })))
        .up_to_n_times(1)
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash-lite:generateContent"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [{"text": "21 degrees in Oslo."}]}}],
            "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 6}
        })))
        .expect(1)
        .mount(&mock)
        .await;
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = app.create_user("alice").await;
    assert_eq!(
        app.save_key(&token, "alice", "gemini", key_for("gemini", &mock))
            .await
            .status(),
        201
    );
    let mut messages = vec![json!({"role": "user", "content": "Weather in Oslo?"})];
    let first = crate::gateway_chat(
        &app,
        &token,
        &json!({"model": "auto", "messages": messages, "tools": tool()}),
    )
    .await;
    let (status, first) = body(first).await;
    assert_eq!(status, 200, "{first}");
    let choice = &first["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"Oslo\"}");
    let id = call["id"].as_str().unwrap().to_owned();
    assert!(id.contains("~byok~"), "the signature rides in the id: {id}");
    messages.push(choice["message"].clone());
    messages.push(json!({"role": "tool", "tool_call_id": id, "content": "{\"temp\": 21}"}));
    let second = crate::gateway_chat(
        &app,
        &token,
        &json!({"model": "auto", "messages": messages, "tools": tool()}),
    )
    .await;
    let (status, second) = body(second).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        second["choices"][0]["message"]["content"],
        "21 degrees in Oslo."
    );
    let sent: Value =
        serde_json::from_slice(&mock.received_requests().await.unwrap()[1].body).unwrap();
    assert_eq!(
        sent["contents"][1],
        json!({"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "U0lHLTE="}]})
    );
    assert_eq!(
        sent["contents"][2],
        json!({"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}]})
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_carry_dimensions_base64_and_routing_headers() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(
            "/v1beta/models/gemini-embedding-001:batchEmbedContents",
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"embeddings": [{"values": [0.5, -1.0]}]})),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = app.create_user("alice").await;
    for provider in ["openai", "gemini"] {
        assert_eq!(
            app.save_key(&token, "alice", provider, key_for(provider, &mock))
                .await
                .status(),
            201
        );
    }
    // OpenAI is cheaper; the exclusion header sends this to Gemini.
    let response = app
        .client
        .post(app.url("/v1/embeddings"))
        .bearer_auth(&token)
        .header("x-byok-exclude", "openai")
        .json(&json!({"model": "auto", "input": "hello", "dimensions": 2, "encoding_format": "base64"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-byok-provider"], "gemini");
    let (status, answer) = body(response).await;
    assert_eq!(status, 200, "{answer}");
    let sent: Value =
        serde_json::from_slice(&mock.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(sent["requests"][0]["outputDimensionality"], 2);
    let encoded = answer["data"][0]["embedding"].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let floats: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(floats, [0.5, -1.0]);
    // A malformed routing header is refused on embeddings too.
    let refused = app
        .client
        .post(app.url("/v1/embeddings"))
        .bearer_auth(&token)
        .header("x-byok-max-cost-usd", "lots")
        .json(&json!({"model": "auto", "input": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(body(refused).await.1["error"]["code"], "invalid_max_cost");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_model_is_described_like_openai_does() {
    let mock = MockServer::start().await;
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = app.create_user("alice").await;
    assert_eq!(
        app.save_key(&token, "alice", "openai", key_for("openai", &mock))
            .await
            .status(),
        201
    );
    let get = |id: &str| {
        app.client
            .get(app.url(&format!("/v1/models/{id}")))
            .bearer_auth(&token)
            .send()
    };
    let (status, model) = body(get("gpt-4o-mini").await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        model,
        json!({"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "openai"})
    );
    let (status, auto) = body(get("auto").await.unwrap()).await;
    assert_eq!((status, auto["owned_by"].as_str()), (200, Some("byok")));
    // A model of a provider alice has no key for is not hers to use.
    let (status, missing) = body(get("claude-haiku-4-5").await.unwrap()).await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], "model_not_found");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_key_without_an_embedding_deployment_is_no_embedding_candidate() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list", "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.25]}],
            "usage": {"prompt_tokens": 1, "total_tokens": 1}
        })))
        .expect(1)
        .mount(&mock)
        .await;
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = app.create_user("alice").await;
    let azure = json!({"api_key": "0123456789abcdef0123456789abcdef", "endpoint": mock.uri(), "deployment": "gpt-4o-mini"});
    assert_eq!(
        app.save_key(&token, "alice", "azure_openai", azure)
            .await
            .status(),
        201
    );
    let embed = |prefer: &'static str| {
        app.client
            .post(app.url("/v1/embeddings"))
            .bearer_auth(&token)
            .header("x-byok-prefer", prefer)
            .json(&json!({"model": "auto", "input": "hi"}))
            .send()
    };
    // Azure alone: a 400 that says why, not a provider error.
    let (status, error) = body(embed("azure_openai").await.unwrap()).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["code"], "unsupported_parameter");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("embedding deployment")
    );
    let models = app
        .client
        .get(app.url("/v1/models"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (_, models) = body(models).await;
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"gpt-4o-mini") && !ids.contains(&"text-embedding-3-small"),
        "{ids:?}"
    );
    // With OpenAI too, the preference for Azure cannot make Azure embed.
    assert_eq!(
        app.save_key(&token, "alice", "openai", key_for("openai", &mock))
            .await
            .status(),
        201
    );
    let response = embed("azure_openai").await.unwrap();
    assert_eq!(response.headers()["x-byok-provider"], "openai");
    app.stop().await;
}
