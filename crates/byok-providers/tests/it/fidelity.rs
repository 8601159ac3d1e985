//! Chat fidelity on the wire: the exact body each provider receives for a
//! tool-using, image-carrying, schema-constrained conversation, and tool
//! calls, reasoning and signatures read back from real-shaped answers,
//! streamed and not.

use byok_core::{
    ChatChunk, ChatMessage, ChatRequest, ContentPart, FinishReason, ImageSource, JsonSchema,
    ProviderKind, ReasoningEffort, ResponseFormat, Role, Tool, ToolCall, ToolCallDelta, ToolChoice,
};
use byok_providers::Credentials;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{adapter, collect, key, no_settings, sse};

const PNG: &str = "iVBORw0KGgo=";
const KEY: &str = "sk-proj-0123456789abcdef0123456789abcdef";

fn weather_tool() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: Some("Current weather".into()),
        parameters: Some(
            json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        ),
        strict: None,
    }
}

/// A second turn of a tool loop: the user's question with a picture, the
/// model's call (with provider state), and the tool's result.
fn tool_turn(model: &str, signature: Option<&str>) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        system: Some("Be brief.".into()),
        messages: vec![
            ChatMessage {
                role: Role::User,
                content: vec![
                    ContentPart::Text("Weather here?".into()),
                    ContentPart::Image {
                        source: ImageSource::Base64 {
                            media_type: "image/png".into(),
                            data: PNG.into(),
                        },
                        detail: None,
                    },
                ],
                ..ChatMessage::default()
            },
            ChatMessage {
                role: Role::Assistant,
                tool_calls: vec![ToolCall {
                    id: "call_1".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Paris"}"#.into(),
                    signature: signature.map(str::to_owned),
                }],
                ..ChatMessage::default()
            },
            ChatMessage {
                role: Role::Tool,
                content: vec![ContentPart::Text(r#"{"temp":21}"#.into())],
                tool_call_id: Some("call_1".into()),
                ..ChatMessage::default()
            },
        ],
        max_output_tokens: Some(2000),
        tools: vec![weather_tool()],
        tool_choice: Some(ToolChoice::Auto),
        ..ChatRequest::default()
    }
}

/// The one request `server` received, as JSON.
async fn received(server: &MockServer) -> Value {
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "exactly one upstream call");
    serde_json::from_slice(&requests[0].body).unwrap()
}

async fn answer(
    server: &MockServer,
    provider: ProviderKind,
    request: &ChatRequest,
) -> byok_core::ChatResponse {
    let (key, settings) = (key(KEY), no_settings());
    adapter(server, provider)
        .chat(
            Credentials {
                key: &key,
                settings: &settings,
            },
            request,
        )
        .await
        .unwrap()
}

async fn streamed(
    server: &MockServer,
    provider: ProviderKind,
    request: &ChatRequest,
) -> Vec<ChatChunk> {
    let (key, settings) = (key(KEY), no_settings());
    let stream = adapter(server, provider)
        .chat_stream(
            Credentials {
                key: &key,
                settings: &settings,
            },
            request,
        )
        .await
        .unwrap();
    collect(stream)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn openai_carries_tools_images_schema_and_sampling_natively() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": null,
                "message": {"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                    {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
                    {"id": "call_10", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]}}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let mut request = tool_turn("gpt-4o-mini", None);
    request.tool_choice = Some(ToolChoice::Function("get_weather".into()));
    request.parallel_tool_calls = Some(true);
    request.response_format = Some(ResponseFormat::JsonSchema(JsonSchema {
        name: "weather".into(),
        description: None,
        schema: json!({"type": "object"}),
        strict: Some(true),
    }));
    request.top_p = Some(0.9);
    request.seed = Some(7);
    request.presence_penalty = Some(0.5);
    request.frequency_penalty = Some(0.25);
    request.logprobs = true;
    request.top_logprobs = Some(2);
    request.user = Some("end-user-1".into());
    request
        .openai_only
        .insert("logit_bias".into(), json!({"50256": -100}));
    request
        .openai_hints
        .insert("prompt_cache_key".into(), json!("k1"));
    let answer = answer(&server, ProviderKind::OpenAi, &request).await;
    assert_eq!(
        received(&server).await,
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "content": "{\"temp\":21}", "tool_call_id": "call_1"}
            ],
            "top_p": 0.9,
            "max_completion_tokens": 2000,
            "stream": false,
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": true,
            "response_format": {"type": "json_schema", "json_schema": {"name": "weather", "schema": {"type": "object"}, "strict": true}},
            "seed": 7,
            "presence_penalty": 0.5,
            "frequency_penalty": 0.25,
            "logprobs": true,
            "top_logprobs": 2,
            "user": "end-user-1",
            "logit_bias": {"50256": -100},
            "prompt_cache_key": "k1"
        })
    );
    let choice = &answer.choices[0];
    assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(
        choice
            .tool_calls
            .iter()
            .map(|c| (c.id.as_str(), c.arguments.as_str()))
            .collect::<Vec<_>>(),
        [
            ("call_9", "{\"city\":\"Oslo\"}"),
            ("call_10", "{\"city\":\"Rome\"}")
        ]
    );
}

#[tokio::test]
async fn openai_streamed_tool_calls_arrive_as_deltas_by_index() {
    let server = MockServer::start().await;
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let body = [
        chunk(json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}), Value::Null),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}), Value::Null),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Oslo\"}"}}]}), Value::Null),
        chunk(json!({}), json!("tool_calls")),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(sse(body))
        .expect(1)
        .mount(&server)
        .await;
    let chunks = streamed(
        &server,
        ProviderKind::OpenAi,
        &tool_turn("gpt-4o-mini", None),
    )
    .await;
    let calls: Vec<&ToolCallDelta> = chunks
        .iter()
        .filter_map(|c| match c {
            ChatChunk::ToolCall(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].id.as_deref(), Some("call_1"));
    assert_eq!(calls[0].name.as_deref(), Some("get_weather"));
    let arguments: String = calls.iter().map(|c| c.arguments.as_str()).collect();
    assert_eq!(arguments, "{\"city\":\"Oslo\"}");
    assert!(chunks.contains(&ChatChunk::Finish(FinishReason::ToolCalls)));
}

#[tokio::test]
async fn deepseek_decides_thinking_explicitly_and_sends_back_tool_turn_reasoning() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "x", "object": "chat.completion", "created": 1, "model": "deepseek-v4-pro",
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "21 degrees.", "reasoning_content": "The tool said 21."}}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42,
                "completion_tokens_details": {"reasoning_tokens": 8}, "prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": 30}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let mut request = tool_turn("deepseek-v4-pro", None);
    request.messages.remove(0);
    request
        .messages
        .insert(0, ChatMessage::text(Role::User, "Weather in Paris?"));
    request.messages[1].reasoning = Some("I should call the tool.".into());
    request.reasoning = Some(ReasoningEffort::Xhigh);
    request.user = Some("u-1".into());
    let answer = answer(&server, ProviderKind::DeepSeek, &request).await;
    let body = received(&server).await;
    assert_eq!(body["thinking"], json!({"type": "enabled"}));
    assert_eq!(body["reasoning_effort"], "max");
    assert_eq!(body["max_tokens"], 2000);
    assert_eq!(body["user_id"], "u-1");
    assert!(body.get("max_completion_tokens").is_none());
    assert_eq!(
        body["messages"][2]["reasoning_content"],
        "I should call the tool."
    );
    assert_eq!(body["messages"][2]["tool_calls"][0]["id"], "call_1");
    assert_eq!(answer.choices[0].text, "21 degrees.");
    assert_eq!(
        answer.choices[0].reasoning.as_deref(),
        Some("The tool said 21.")
    );
    assert_eq!(answer.usage.unwrap().reasoning_tokens, 8);
}

#[tokio::test]
async fn deepseek_turns_thinking_off_unless_asked_and_refuses_what_thinking_ignores() {
    let server = MockServer::start().await;
    let deepseek = adapter(&server, ProviderKind::DeepSeek);
    let mut plain = crate::hello("deepseek-flash");
    assert_eq!(deepseek.unsupported(&plain, false), None);
    // The body says so explicitly: V4 models think unless told not to.
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "model": "deepseek-flash", "choices": [{"index": 0, "finish_reason": "stop", "message": {"content": "Hi"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}
        })))
        .expect(1)
        .mount(&server)
        .await;
    answer(&server, ProviderKind::DeepSeek, &plain).await;
    assert_eq!(
        received(&server).await["thinking"],
        json!({"type": "disabled"})
    );
    // The reasoning task turns it on; temperature then means nothing, so it is refused.
    plain.prefer_reasoning = true;
    let refused = deepseek.unsupported(&plain, false).unwrap();
    assert_eq!(refused.field, "temperature");
    plain.temperature = None;
    plain.logprobs = true;
    assert_eq!(
        deepseek.unsupported(&plain, false).unwrap().field,
        "logprobs"
    );
    plain.logprobs = false;
    plain.response_format = Some(ResponseFormat::JsonSchema(JsonSchema {
        name: "x".into(),
        description: None,
        schema: json!({}),
        strict: None,
    }));
    assert_eq!(
        deepseek.unsupported(&plain, false).unwrap().field,
        "response_format.json_schema"
    );
    plain.response_format = None;
    plain.seed = Some(1);
    assert_eq!(deepseek.unsupported(&plain, false).unwrap().field, "seed");
}

#[tokio::test]
async fn anthropic_translates_tools_images_results_schema_and_thinking() {
    let server = MockServer::start().await;
    let thinking = json!({"type": "thinking", "thinking": "Check the tool.", "signature": "sig-A"});
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
            "content": [thinking, {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Oslo"}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 100, "output_tokens": 40}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let signature = format!("anthropic:{}", json!([thinking]));
    let mut request = tool_turn("claude-sonnet-4-6", Some(&signature));
    request.parallel_tool_calls = Some(false);
    request.reasoning = Some(ReasoningEffort::Medium);
    request.response_format = Some(ResponseFormat::JsonSchema(JsonSchema {
        name: "weather".into(),
        description: None,
        schema: json!({"type": "object", "properties": {"temp": {"type": "number"}}}),
        strict: Some(true),
    }));
    request.user = Some("end-user-1".into());
    let answer = answer(&server, ProviderKind::Anthropic, &request).await;
    assert_eq!(
        received(&server).await,
        json!({
            "model": "claude-sonnet-4-6",
            "max_tokens": 2000,
            "stream": false,
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]},
                {"role": "assistant", "content": [
                    thinking,
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "{\"temp\":21}"}]}
            ],
            "tools": [{"name": "get_weather", "description": "Current weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
            "output_config": {"format": {"type": "json_schema", "schema": {"type": "object", "properties": {"temp": {"type": "number"}}}}},
            "thinking": {"type": "enabled", "budget_tokens": 1999},
            "metadata": {"user_id": "end-user-1"}
        })
    );
    let choice = &answer.choices[0];
    assert_eq!(choice.text, "Let me look.");
    assert_eq!(choice.reasoning.as_deref(), Some("Check the tool."));
    assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(choice.tool_calls.len(), 1);
    let call = &choice.tool_calls[0];
    assert_eq!(
        (
            call.id.as_str(),
            call.name.as_str(),
            call.arguments.as_str()
        ),
        ("toolu_2", "get_weather", "{\"city\":\"Oslo\"}")
    );
    // The signed thinking block rides with the call, to be sent back next turn.
    assert_eq!(
        call.signature.as_deref(),
        Some(format!("anthropic:{}", json!([thinking])).as_str())
    );
}

#[tokio::test]
async fn anthropic_refuses_what_it_cannot_carry() {
    let server = MockServer::start().await;
    let anthropic = adapter(&server, ProviderKind::Anthropic);
    let base = crate::hello("claude-haiku-4-5");
    let cases: Vec<(Box<dyn Fn(&mut ChatRequest)>, &str)> = vec![
        (Box::new(|r| r.seed = Some(1)), "seed"),
        (Box::new(|r| r.logprobs = true), "logprobs"),
        (Box::new(|r| r.n = Some(2)), "n"),
        (
            Box::new(|r| r.presence_penalty = Some(0.1)),
            "presence_penalty",
        ),
        (
            Box::new(|r| r.response_format = Some(ResponseFormat::JsonObject)),
            "response_format.json_object",
        ),
        (
            Box::new(|r| {
                r.openai_only.insert("logit_bias".into(), json!({}));
            }),
            "logit_bias",
        ),
        (
            Box::new(|r| r.messages[0].name = Some("bob".into())),
            "messages[].name",
        ),
        // Extended thinking rules: temperature 1 only, no forced tool.
        (
            Box::new(|r| r.reasoning = Some(ReasoningEffort::High)),
            "temperature",
        ),
        (
            Box::new(|r| {
                r.temperature = None;
                r.reasoning = Some(ReasoningEffort::High);
                r.tool_choice = Some(ToolChoice::Required);
            }),
            "tool_choice",
        ),
    ];
    assert_eq!(anthropic.unsupported(&base, false), None);
    for (change, field) in cases {
        let mut request = base.clone();
        change(&mut request);
        assert_eq!(
            anthropic.unsupported(&request, false).map(|u| u.field),
            Some(field.to_owned())
        );
    }
    // Hints only tune OpenAI's caching: not refused, not sent.
    let mut hinted = base.clone();
    hinted
        .openai_hints
        .insert("prompt_cache_key".into(), json!("k"));
    assert_eq!(anthropic.unsupported(&hinted, false), None);
}

#[tokio::test]
async fn anthropic_streams_tool_input_and_gives_the_signed_thinking_to_the_first_call() {
    let server = MockServer::start().await;
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let body = [
        event("message_start", json!({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6", "content": [], "usage": {"input_tokens": 20, "output_tokens": 1}}})),
        event("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}})),
        event("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Use the tool."}})),
        event("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig-B"}})),
        event("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        event("content_block_start", json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}})),
        event("content_block_delta", json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}})),
        event("content_block_delta", json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Oslo\"}"}})),
        event("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
        event("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 30}})),
        event("message_stop", json!({"type": "message_stop"})),
    ]
    .concat();
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(sse(body))
        .expect(1)
        .mount(&server)
        .await;
    let chunks = streamed(
        &server,
        ProviderKind::Anthropic,
        &tool_turn("claude-sonnet-4-6", None),
    )
    .await;
    let thinking = json!([{"type": "thinking", "thinking": "Use the tool.", "signature": "sig-B"}]);
    assert_eq!(
        chunks,
        [
            ChatChunk::Model("claude-sonnet-4-6".into()),
            ChatChunk::Reasoning("Use the tool.".into()),
            ChatChunk::ToolCall(ToolCallDelta {
                index: 0,
                id: Some("toolu_1".into()),
                name: Some("get_weather".into()),
                arguments: String::new(),
                signature: Some(format!("anthropic:{thinking}")),
            }),
            ChatChunk::ToolCall(ToolCallDelta {
                index: 0,
                id: None,
                name: None,
                arguments: "{\"city\": ".into(),
                signature: None,
            }),
            ChatChunk::ToolCall(ToolCallDelta {
                index: 0,
                id: None,
                name: None,
                arguments: "\"Oslo\"}".into(),
                signature: None,
            }),
            ChatChunk::Finish(FinishReason::ToolCalls),
            ChatChunk::Usage(byok_core::Usage {
                input_tokens: 20,
                output_tokens: 30,
                ..byok_core::Usage::default()
            }),
        ]
    );
}

#[tokio::test]
async fn gemini_translates_tools_signatures_images_schema_and_thinking() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash:generateContent"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [
                {"text": "Thinking about Oslo.", "thought": true},
                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "c2lnLTI="}]}}],
            "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 10, "thoughtsTokenCount": 5},
            "modelVersion": "gemini-2.5-flash"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let mut request = tool_turn("gemini-2.5-flash", Some("gemini:c2lnLTE="));
    request.tools[0].strict = Some(true);
    request.response_format = Some(ResponseFormat::JsonObject);
    request.reasoning = Some(ReasoningEffort::Low);
    request.seed = Some(3);
    request.n = Some(2);
    let answer = answer(&server, ProviderKind::Gemini, &request).await;
    assert_eq!(
        received(&server).await,
        json!({
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [
                {"role": "user", "parts": [
                    {"text": "Weather here?"},
                    {"inlineData": {"mimeType": "image/png", "data": PNG}}]},
                {"role": "model", "parts": [
                    {"functionCall": {"id": "call_1", "name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnLTE="}]},
                {"role": "user", "parts": [
                    {"functionResponse": {"id": "call_1", "name": "get_weather", "response": {"temp": 21}}}]}
            ],
            "generationConfig": {
                "maxOutputTokens": 2000,
                "candidateCount": 2,
                "seed": 3,
                "responseMimeType": "application/json",
                "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true}
            },
            "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "Current weather",
                "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "VALIDATED"}}
        })
    );
    let choice = &answer.choices[0];
    assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(choice.reasoning.as_deref(), Some("Thinking about Oslo."));
    assert_eq!(choice.text, "");
    let call = &choice.tool_calls[0];
    assert!(call.id.starts_with("call_byok_"), "{}", call.id);
    assert_eq!(
        (
            call.name.as_str(),
            call.arguments.as_str(),
            call.signature.as_deref()
        ),
        (
            "get_weather",
            "{\"city\":\"Oslo\"}",
            Some("gemini:c2lnLTI=")
        )
    );
}

#[tokio::test]
async fn gemini_streams_whole_calls_and_refuses_what_it_cannot_carry() {
    let server = MockServer::start().await;
    let body = format!(
        "data: {}\n\ndata: {}\n\n",
        json!({"candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": "Checking."}]}}],
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 2}}),
        json!({"candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "c2ln"}]}}],
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 7}})
    );
    Mock::given(method("POST"))
        .and(path(
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        ))
        .respond_with(sse(body))
        .expect(1)
        .mount(&server)
        .await;
    let chunks = streamed(
        &server,
        ProviderKind::Gemini,
        &tool_turn("gemini-2.5-flash", None),
    )
    .await;
    assert_eq!(chunks[0], ChatChunk::Text("Checking.".into()));
    let ChatChunk::ToolCall(call) = &chunks[1] else {
        unreachable!("a tool call: {chunks:?}")
    };
    assert_eq!(
        (
            call.index,
            call.name.as_deref(),
            call.arguments.as_str(),
            call.signature.as_deref()
        ),
        (
            0,
            Some("get_weather"),
            "{\"city\":\"Oslo\"}",
            Some("gemini:c2ln")
        )
    );
    assert_eq!(chunks[2], ChatChunk::Finish(FinishReason::ToolCalls));

    let gemini = adapter(&server, ProviderKind::Gemini);
    let mut remote = crate::hello("gemini-2.5-flash");
    remote.messages[0].content.push(ContentPart::Image {
        source: ImageSource::Url("https://example.com/a.png".into()),
        detail: None,
    });
    assert_eq!(
        gemini.unsupported(&remote, false).unwrap().field,
        "messages[].content[].image_url.url"
    );
    let mut orphan = tool_turn("gemini-2.5-flash", None);
    orphan.messages[2].tool_call_id = Some("call_unknown".into());
    assert_eq!(
        gemini.unsupported(&orphan, false).unwrap().field,
        "messages[].tool_call_id"
    );
    let mut serial = tool_turn("gemini-2.5-flash", None);
    serial.parallel_tool_calls = Some(false);
    assert_eq!(
        gemini.unsupported(&serial, false).unwrap().field,
        "parallel_tool_calls"
    );
    let mut logprobs = crate::hello("gemini-2.5-flash");
    logprobs.logprobs = true;
    assert_eq!(
        gemini.unsupported(&logprobs, false).unwrap().field,
        "logprobs"
    );
}

#[tokio::test]
async fn anthropic_declares_the_tools_a_history_used_and_hoists_later_instructions() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "m", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": "It was 21."}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 30, "output_tokens": 4}
        })))
        .expect(1)
        .mount(&server)
        .await;
    // A last "summarise" turn sent without tools, after a tool loop, with an
    // instruction in the middle of the conversation.
    let mut request = tool_turn("claude-haiku-4-5", None);
    request.tools.clear();
    request.tool_choice = None;
    request
        .messages
        .push(ChatMessage::text(Role::System, "Answer in one line."));
    answer(&server, ProviderKind::Anthropic, &request).await;
    let body = received(&server).await;
    assert_eq!(
        body["tools"],
        json!([{"name": "get_weather", "input_schema": {"type": "object"}}])
    );
    assert_eq!(body["tool_choice"], json!({"type": "none"}));
    assert_eq!(body["system"], "Be brief.\n\nAnswer in one line.");
    assert!(
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["role"] != "system"),
        "{body}"
    );
}

#[tokio::test]
async fn openai_keeps_later_instructions_in_place() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "model": "gpt-4o-mini", "choices": [{"index": 0, "finish_reason": "stop", "message": {"content": "ok"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let mut request = crate::hello("gpt-4o-mini");
    request
        .messages
        .push(ChatMessage::text(Role::System, "Now in French."));
    answer(&server, ProviderKind::OpenAi, &request).await;
    let body = received(&server).await;
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "You are terse."})
    );
    assert_eq!(
        body["messages"][2],
        json!({"role": "system", "content": "Now in French."})
    );
}

#[tokio::test]
async fn gemini_thinking_stays_in_each_models_range_and_failed_calls_are_not_calls() {
    let server = MockServer::start().await;
    let gemini = |finish: &str| {
        ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"index": 0, "finishReason": finish, "content": {"role": "model", "parts": [{"text": ""}]}}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 0}
        }))
    };
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-pro:generateContent"))
        .respond_with(gemini("MALFORMED_FUNCTION_CALL"))
        .expect(1)
        .mount(&server)
        .await;
    let mut request = crate::hello("gemini-2.5-pro");
    request.reasoning = Some(ReasoningEffort::None);
    let answered = answer(&server, ProviderKind::Gemini, &request).await;
    // 2.5 Pro cannot stop thinking: the least it allows.
    assert_eq!(
        received(&server).await["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 128, "includeThoughts": false})
    );
    assert_eq!(answered.choices[0].finish_reason, Some(FinishReason::Other));
    assert!(answered.choices[0].tool_calls.is_empty());
}

#[tokio::test]
async fn a_blocked_gemini_prompt_ends_its_stream_as_filtered() {
    let server = MockServer::start().await;
    let body = format!(
        "data: {}\n\n",
        json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 7}})
    );
    Mock::given(method("POST"))
        .and(path(
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        ))
        .respond_with(sse(body))
        .expect(1)
        .mount(&server)
        .await;
    let chunks = streamed(
        &server,
        ProviderKind::Gemini,
        &crate::hello("gemini-2.5-flash"),
    )
    .await;
    assert_eq!(chunks[0], ChatChunk::Finish(FinishReason::ContentFilter));
    assert!(matches!(chunks[1], ChatChunk::Usage(u) if u.input_tokens == 7));
}

#[tokio::test]
async fn gemini_gets_its_own_call_ids_back() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash:generateContent"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [{"text": "ok"}]}}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let mut request = tool_turn("gemini-2.5-flash", Some("gemini:"));
    request.messages[1].tool_calls[0].id = "fc-7".into();
    request.messages[2].tool_call_id = Some("fc-7".into());
    let answered = answer(&server, ProviderKind::Gemini, &request).await;
    assert_eq!(answered.usage, None, "no usage block: none, not zero");
    let body = received(&server).await;
    assert_eq!(
        body["contents"][1]["parts"][0]["functionCall"]["id"],
        "fc-7"
    );
    assert_eq!(
        body["contents"][2]["parts"][0]["functionResponse"]["id"],
        "fc-7"
    );
    // An empty signature only marks the id as Gemini's: no thoughtSignature.
    assert!(
        body["contents"][1]["parts"][0]
            .get("thoughtSignature")
            .is_none()
    );
}
