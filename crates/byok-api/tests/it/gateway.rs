//! The OpenAI-compatible gateway end to end: the real server, mock
//! providers, fallback, health, streaming translation and usage records.

use byok_test_support::{TestApp, TestDb, both_backends};
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{body, key_body, openai_key, providers};

both_backends!(
    cheapest_fails_then_the_next_answers_and_usage_is_recorded_once,
    a_rejected_key_is_skipped_next_time_and_bad_requests_are_not_retried,
    streams_are_translated_to_openai_chunks,
    users_never_use_each_others_keys_under_concurrent_load,
    providers_echoing_the_key_never_put_it_in_logs_or_responses,
    bad_gateway_input_gets_a_clear_code_and_reaches_no_provider,
    a_host_without_the_gateway_answers_gateway_disabled,
);

fn gemini_key(tag: &str) -> String {
    format!("AIza{tag:_<35}")
}

fn openai_answer(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500, "prompt_tokens_details": {"cached_tokens": 400}}
    }))
}

fn hello(stream: bool) -> Value {
    json!({"model": "auto", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}], "max_tokens": 64, "stream": stream, "stream_options": {"include_usage": true}})
}

/// Metrics after one failed Gemini attempt and an OpenAI success; admin token only.
async fn assert_fallback_metrics(app: &TestApp, token: &str) {
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(byok_test_support::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.unwrap();
    for line in [
        "byok_gateway_attempts_total{provider=\"gemini\",outcome=\"provider_unavailable\"} 1",
        "byok_gateway_attempts_total{provider=\"openai\",outcome=\"success\"} 1",
        "byok_gateway_fallbacks_total 1",
        "byok_gateway_latency_seconds_count{provider=\"openai\"} 1",
        "byok_circuits{provider=\"openai\",state=\"open\"} 0",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    assert!(!metrics.contains("alice"), "no user ids in metrics");
    let forbidden = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
}

async fn cheapest_fails_then_the_next_answers_and_usage_is_recorded_once(db: TestDb) {
    let mock = MockServer::start().await;
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = app.create_user("alice").await;
    let (gemini, openai) = (gemini_key("alice"), openai_key("alice"));
    assert_eq!(
        app.save_key(&token, "alice", "gemini", key_body(&gemini))
            .await
            .status(),
        201
    );
    assert_eq!(
        app.save_key(&token, "alice", "openai", key_body(&openai))
            .await
            .status(),
        201
    );
    // Gemini flash-lite is always the cheapest general model; it fails with a 500.
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash-lite:generateContent"))
        .and(header("x-goog-api-key", gemini.as_str()))
        .respond_with(ResponseTemplate::new(500).set_body_json(
            json!({"error": {"code": 500, "message": "internal", "status": "INTERNAL"}}),
        ))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {openai}").as_str()))
        .and(body_partial_json(json!({"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]})))
        .respond_with(openai_answer("Hello!"))
        .expect(1)
        .mount(&mock)
        .await;

    let response = crate::gateway_chat(&app, &token, &hello(false)).await;
    let headers = response.headers().clone();
    let (status, answer) = body(response).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello!");
    assert_eq!(answer["usage"]["prompt_tokens"], 1000);
    assert_eq!(headers["x-byok-provider"], "openai");
    // The model that answered, as OpenAI named it; priced by its catalog row.
    assert_eq!(headers["x-byok-model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(headers["x-byok-attempts"], "gemini,openai");
    // 600 x 0.15 + 400 x 0.075 + 500 x 0.60 per million = $0.00042
    assert_eq!(headers["x-byok-cost-usd"], "0.00042");
    assert_eq!(headers["x-byok-cost-source"], "exact");
    assert_eq!(answer["usage"]["cost"], serde_json::json!(0.00042));
    assert_eq!(answer["usage"]["cost_source"], "exact");

    let alice = byok_core::UserId::parse("alice").unwrap();
    let snapshot = app
        .service
        .health()
        .snapshot(&alice, std::time::Instant::now());
    assert_eq!(
        snapshot
            .get(byok_core::ProviderKind::Gemini)
            .error_rate_percent,
        100
    );
    assert_fallback_metrics(&app, &token).await;

    let store = app.service.store().clone();
    app.stop().await; // flushes the usage writer
    let from = byok_store::now() - chrono::Duration::hours(1);
    let to = byok_store::now() + chrono::Duration::hours(1);
    let records = store
        .run(move |c| byok_store::usage::list_for_user(c, &alice, from, to))
        .await
        .unwrap();
    assert_eq!(records.len(), 1, "usage is recorded once, for the success");
    let record = &records[0];
    assert_eq!(
        (record.provider, record.attempts, record.cost_micro_usd),
        (byok_core::ProviderKind::OpenAi, 2, Some(420))
    );
    assert_eq!(
        record.cost_picodollars,
        Some(420_000_000),
        "the exact cost is kept"
    );
}

async fn a_rejected_key_is_skipped_next_time_and_bad_requests_are_not_retried(db: TestDb) {
    let mock = MockServer::start().await;
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = app.create_user("alice").await;
    let (gemini, openai) = (gemini_key("bad"), openai_key("good"));
    app.save_key(&token, "alice", "gemini", key_body(&gemini))
        .await;
    app.save_key(&token, "alice", "openai", key_body(&openai))
        .await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash-lite:generateContent"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}})))
        .expect(1) // only the first request reaches Gemini
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(openai_answer("Hi"))
        .expect(2)
        .mount(&mock)
        .await;
    for expected in ["gemini,openai", "openai"] {
        let response = crate::gateway_chat(&app, &token, &hello(false)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-byok-attempts"], expected);
    }

    // A bad request (context too long) is answered at once, without fallback.
    let mock = MockServer::start().await;
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = app
        .service
        .operator()
        .issue_token(Some(&byok_core::UserId::parse("alice").unwrap()))
        .await
        .unwrap();
    let token = secrecy::ExposeSecret::expose_secret(&token.token).to_owned();
    // The rejected key was marked invalid in the store (so a restart
    // remembers it); a new key starts clean.
    let keys = app
        .client
        .get(app.url("/api/user/api-keys/alice/keys"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let keys = body(keys).await.1;
    let gemini_row = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["provider"] == "gemini")
        .unwrap()
        .clone();
    assert_eq!(gemini_row["last_test_status"], "invalid");
    app.save_key(&token, "alice", "gemini", key_body(&gemini_key("fresh")))
        .await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash-lite:generateContent"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"error": {"code": 400, "message": "too long", "status": "INVALID_ARGUMENT"}}),
        ))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(openai_answer("no"))
        .expect(0)
        .mount(&mock)
        .await;
    let (status, error) = body(crate::gateway_chat(&app, &token, &hello(false)).await).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["code"], "provider_bad_request");
    assert_eq!(error["error"]["attempts"][0]["provider"], "gemini");
}

fn parse_sse(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|frame| frame.strip_prefix("data: "))
        .map(|data| {
            if data == "[DONE]" {
                json!("[DONE]")
            } else {
                serde_json::from_str(data).unwrap()
            }
        })
        .collect()
}

async fn streams_are_translated_to_openai_chunks(db: TestDb) {
    let mock = MockServer::start().await;
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = app.create_user("alice").await;
    let anthropic = format!("sk-ant-api03-{}AA", "s".repeat(93));
    app.save_key(&token, "alice", "anthropic", key_body(&anthropic))
        .await;
    let fixture = std::fs::read_to_string(format!(
        "{}/../byok-providers/tests/fixtures/anthropic/stream.sse",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", anthropic.as_str()))
        .and(body_partial_json(
            json!({"stream": true, "system": "Be brief."}),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(fixture),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let response = crate::gateway_chat(&app, &token, &hello(true)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["x-byok-provider"], "anthropic");
    let frames = parse_sse(&response.text().await.unwrap());
    let text: String = frames
        .iter()
        .filter_map(|f| f["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello!");
    assert_eq!(frames[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(frames[0]["object"], "chat.completion.chunk");
    assert!(
        frames
            .iter()
            .any(|f| f["choices"][0]["finish_reason"] == "stop")
    );
    let usage = &frames[frames.len() - 2];
    assert_eq!(
        (
            usage["usage"]["prompt_tokens"].as_u64(),
            usage["usage"]["completion_tokens"].as_u64()
        ),
        (Some(14), Some(5))
    );
    assert_eq!(frames.last().unwrap(), &json!("[DONE]"));
}

async fn users_never_use_each_others_keys_under_concurrent_load(db: TestDb) {
    let mock = MockServer::start().await;
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let mut users = Vec::new();
    for name in ["alice", "bob"] {
        let token = app.create_user(name).await;
        let key = openai_key(name);
        app.save_key(&token, name, "openai", key_body(&key)).await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(header("authorization", format!("Bearer {key}").as_str()))
            .respond_with(openai_answer(name))
            .expect(20)
            .mount(&mock)
            .await;
        users.push((name, token));
    }
    let requests = users
        .iter()
        .flat_map(|(name, token)| (0..20).map(move |_| (*name, token.clone())));
    let answers = futures_util::future::join_all(requests.map(|(name, token)| {
        let app = &app;
        async move {
            let (status, answer) =
                body(crate::gateway_chat(app, &token, &hello(false)).await).await;
            (
                name,
                status,
                answer["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
    }))
    .await;
    for (name, status, content) in answers {
        assert_eq!(
            (status, content.as_str()),
            (200, name),
            "each answer comes from the caller's own key"
        );
    }
}

both_backends!(
    every_providers_stream_becomes_openai_chunks,
    a_rate_limited_provider_is_skipped_for_its_retry_delay
);

async fn every_providers_stream_becomes_openai_chunks(db: TestDb) {
    let fixtures = format!(
        "{}/../byok-providers/tests/fixtures",
        env!("CARGO_MANIFEST_DIR")
    );
    let cases = [
        (
            "openai",
            openai_key("s"),
            "/v1/chat/completions",
            "openai/stream.sse",
            "Hello!",
        ),
        (
            "deepseek",
            format!("sk-{}", "e".repeat(32)),
            "/chat/completions",
            "deepseek/stream.sse",
            "9.8",
        ),
        (
            "gemini",
            gemini_key("s"),
            "/v1beta/models/gemini-2.5-flash-lite:streamGenerateContent",
            "gemini/stream.sse",
            "Okay, let's high scores, etc.",
        ),
        (
            "azure_openai",
            "0123456789abcdef0123456789abcdef".to_owned(),
            "/openai/v1/chat/completions",
            "azure/stream.sse",
            "Hello!",
        ),
    ];
    for (provider, key, route, fixture, expected) in cases {
        let mock = MockServer::start().await;
        let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
        let user = format!("user-{provider}").replace('_', "-");
        let token = app.create_user(&user).await;
        let mut save = json!({"api_key": key});
        if provider == "azure_openai" {
            save = json!({"api_key": key, "endpoint": mock.uri(), "deployment": "gpt-4o-mini"});
        }
        assert_eq!(
            app.save_key(&token, &user, provider, save).await.status(),
            201,
            "{provider}"
        );
        let body = std::fs::read_to_string(format!("{fixtures}/{fixture}")).unwrap();
        Mock::given(method("POST"))
            .and(path(route))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("content-type", "text/event-stream")
                    .set_body_string(body),
            )
            .expect(1)
            .mount(&mock)
            .await;
        let response = crate::gateway_chat(&app, &token, &hello(true)).await;
        assert_eq!(response.status(), 200, "{provider}");
        assert_eq!(response.headers()["x-byok-provider"], provider);
        let frames = parse_sse(&response.text().await.unwrap());
        let text: String = frames
            .iter()
            .filter_map(|f| f["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, expected, "{provider}");
        assert!(
            frames
                .iter()
                .any(|f| f["choices"][0]["finish_reason"] == "stop"),
            "{provider}"
        );
        assert!(
            frames.iter().any(|f| f["usage"]["total_tokens"].is_u64()),
            "{provider}: a usage chunk"
        );
        assert_eq!(frames.last().unwrap(), &json!("[DONE]"), "{provider}");
    }
}

async fn a_rate_limited_provider_is_skipped_for_its_retry_delay(db: TestDb) {
    let mock = MockServer::start().await;
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = app.create_user("alice").await;
    app.save_key(&token, "alice", "gemini", key_body(&gemini_key("rl")))
        .await;
    app.save_key(&token, "alice", "openai", key_body(&openai_key("rl")))
        .await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash-lite:generateContent"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}]}})))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(openai_answer("Hi"))
        .expect(2)
        .mount(&mock)
        .await;
    let first = crate::gateway_chat(&app, &token, &hello(false)).await;
    assert_eq!(first.headers()["x-byok-attempts"], "gemini,openai");
    // Within the 30 s Gemini asked for, it is not called again.
    let second = crate::gateway_chat(&app, &token, &hello(false)).await;
    assert_eq!(second.headers()["x-byok-attempts"], "openai");
    let alice = byok_core::UserId::parse("alice").unwrap();
    let health = app
        .service
        .health()
        .snapshot(&alice, std::time::Instant::now());
    assert!(
        matches!(health.get(byok_core::ProviderKind::Gemini).circuit, byok_router::Circuit::Open { remaining_ms } if remaining_ms > 25_000)
    );
}

both_backends!(preferences_and_timeouts_shape_the_route);

async fn preferences_and_timeouts_shape_the_route(db: TestDb) {
    let mock = MockServer::start().await;
    let mut settings = providers(&mock);
    settings.request_timeout = std::time::Duration::from_millis(700);
    let app = TestApp::spawn_with_providers(&db, settings).await;
    let token = app.create_user("alice").await;
    app.save_key(&token, "alice", "gemini", key_body(&gemini_key("p")))
        .await;
    app.save_key(&token, "alice", "openai", key_body(&openai_key("p")))
        .await;
    // Gemini (the cheapest) is slow: it times out, and OpenAI answers.
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash-lite:generateContent"))
        .respond_with(ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(3)))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(openai_answer("Hi"))
        .expect(2)
        .mount(&mock)
        .await;
    let timed_out = crate::gateway_chat(&app, &token, &hello(false)).await;
    assert_eq!(timed_out.headers()["x-byok-attempts"], "gemini,openai");

    // Preferred first, whatever it costs; excluded never; over budget skipped.
    let preferred = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&token)
        .header("x-byok-prefer", "openai")
        .header("x-byok-exclude", "gemini")
        .json(&hello(false))
        .send()
        .await
        .unwrap();
    assert_eq!(preferred.headers()["x-byok-attempts"], "openai");
    let broke = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&token)
        .header("x-byok-max-cost-usd", "0.000001")
        .json(&hello(false))
        .send()
        .await
        .unwrap();
    let (status, error) = body(broke).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (503, Some("no_provider_available")),
        "{error}"
    );
    assert!(
        error["error"]["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().contains("over the maximum"))
    );
    let bad = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&token)
        .header("x-byok-prefer", "nobody")
        .json(&hello(false))
        .send()
        .await
        .unwrap();
    assert_eq!(body(bad).await.1["error"]["code"], "invalid_preference");
}

both_backends!(streams_fall_back_only_before_their_first_chunk);

async fn streams_fall_back_only_before_their_first_chunk(db: TestDb) {
    let fixtures = format!(
        "{}/../byok-providers/tests/fixtures",
        env!("CARGO_MANIFEST_DIR")
    );
    let sse = |file: &str| {
        ResponseTemplate::new(200)
            .insert_header("content-type", "text/event-stream")
            .set_body_string(std::fs::read_to_string(format!("{fixtures}/{file}")).unwrap())
    };
    let gemini_route = "/v1beta/models/gemini-2.5-flash-lite:streamGenerateContent";

    // Gemini (cheapest) sends nothing at all: fall back to OpenAI.
    let mock = MockServer::start().await;
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = app.create_user("alice").await;
    app.save_key(&token, "alice", "gemini", key_body(&gemini_key("st")))
        .await;
    app.save_key(&token, "alice", "openai", key_body(&openai_key("st")))
        .await;
    Mock::given(method("POST"))
        .and(path(gemini_route))
        .respond_with(ResponseTemplate::new(200).insert_header("content-type", "text/event-stream"))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(sse("openai/stream.sse"))
        .expect(1)
        .mount(&mock)
        .await;
    let response = crate::gateway_chat(&app, &token, &hello(true)).await;
    assert_eq!(response.headers()["x-byok-attempts"], "gemini,openai");
    let frames = parse_sse(&response.text().await.unwrap());
    assert_eq!(frames.last().unwrap(), &json!("[DONE]"));

    // Gemini sends its first chunk, then the connection ends: no fallback,
    // the client gets the text so far and an error event.
    let mock2 = MockServer::start().await;
    let app2 = TestApp::spawn_with_providers(&db, providers(&mock2)).await;
    let token2 = app2
        .service
        .operator()
        .issue_token(Some(&byok_core::UserId::parse("alice").unwrap()))
        .await
        .unwrap();
    let token2 = secrecy::ExposeSecret::expose_secret(&token2.token).to_owned();
    Mock::given(method("POST"))
        .and(path(gemini_route))
        .respond_with(sse("gemini/truncated.sse"))
        .expect(1)
        .mount(&mock2)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(sse("openai/stream.sse"))
        .expect(0)
        .mount(&mock2)
        .await;
    let response = crate::gateway_chat(&app2, &token2, &hello(true)).await;
    assert_eq!(response.headers()["x-byok-attempts"], "gemini");
    let frames = parse_sse(&response.text().await.unwrap());
    assert_eq!(frames[0]["choices"][0]["delta"]["content"], "Okay, let's");
    assert_eq!(
        frames.last().unwrap()["error"]["code"],
        "provider_stream_incomplete"
    );

    // Usage: the full OpenAI stream is recorded with its reported tokens;
    // the cut Gemini stream as partial, on estimated tokens, not as free.
    let store = app.service.store().clone();
    app.stop().await;
    app2.stop().await;
    let alice = byok_core::UserId::parse("alice").unwrap();
    let (from, to) = (
        byok_store::now() - chrono::Duration::hours(1),
        byok_store::now() + chrono::Duration::hours(1),
    );
    let records = store
        .run(move |c| byok_store::usage::list_for_user(c, &alice, from, to))
        .await
        .unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
    let full = records
        .iter()
        .find(|r| r.provider == byok_core::ProviderKind::OpenAi)
        .unwrap();
    assert_eq!(
        (full.input_tokens, full.output_tokens, full.outcome.as_str()),
        (19, 3, "success")
    );
    assert_eq!(full.cost_micro_usd, Some(5)); // 19 x 0.15 + 3 x 0.60 = 4.65 micro-dollars
    let cut = records
        .iter()
        .find(|r| r.provider == byok_core::ProviderKind::Gemini)
        .unwrap();
    assert_eq!(cut.outcome, "partial");
    assert!(cut.input_tokens > 0 && cut.output_tokens > 0, "{cut:?}");
}

/// Providers that echo the whole key in their refusals (a hostile mock: the
/// real ones mask it): neither the gateway's answers, streamed or not, nor its
/// reports, metrics or TRACE logs may carry the key.
async fn providers_echoing_the_key_never_put_it_in_logs_or_responses(db: TestDb) {
    let mock = MockServer::start().await;
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = app.create_user("alice").await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let gemini = format!("AIzaECHO{}", &tag[..31]);
    let openai = format!("sk-proj-ECHO{tag}");
    for (provider, key) in [("gemini", &gemini), ("openai", &openai)] {
        let saved = app.save_key(&token, "alice", provider, key_body(key)).await;
        assert_eq!(saved.status(), 201, "the sweep needs {provider} saved");
    }
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash-lite:generateContent"))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"error": {"code": 500, "message": format!("internal error for key {gemini}"), "status": "INTERNAL"}})))
        .expect(1..)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash-lite:streamGenerateContent"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {"code": 400, "message": format!("API key not valid: {gemini}"), "status": "INVALID_ARGUMENT"}})))
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {"message": format!("Incorrect API key provided: {openai}."), "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})))
        .expect(1..)
        .mount(&mock)
        .await;

    let mut responses = String::new();
    for stream in [false, true] {
        let response = crate::gateway_chat(&app, &token, &hello(stream)).await;
        assert!(
            !response.status().is_success(),
            "every provider refuses, so the call must fail"
        );
        std::fmt::Write::write_fmt(&mut responses, format_args!("{:?}", response.headers()))
            .unwrap();
        responses.push_str(&response.text().await.unwrap());
    }
    for route in ["keys", "status", "services", "usage"] {
        let response = app
            .client
            .get(app.url(&format!("/api/user/api-keys/alice/{route}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{route}");
        responses.push_str(&response.text().await.unwrap());
    }
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(byok_test_support::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    responses.push_str(&metrics.text().await.unwrap());
    app.stop().await;

    let logs = byok_test_support::captured_logs();
    assert!(
        logs.contains("/v1/chat/completions"),
        "the capture must see the gateway's request log"
    );
    let keys = [gemini, openai];
    let keys: Vec<&String> = keys.iter().collect();
    crate::leak::assert_absent(&logs, "logs", &keys);
    crate::leak::assert_absent(&responses, "a response", &keys);
}

/// A hostile request: route, content type, extra headers, body; the status
/// and code it must get.
type BadCase = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
    Vec<u8>,
    u16,
    &'static str,
);

/// Hostile or malformed gateway requests: each gets its own status and stable
/// code with a message, no provider is called, no usage is recorded, and the
/// stored key is untouched.
async fn bad_gateway_input_gets_a_clear_code_and_reaches_no_provider(db: TestDb) {
    let mock = MockServer::start().await;
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = app.create_user("alice").await;
    let saved = app
        .save_key(&token, "alice", "openai", key_body(&openai_key("bad")))
        .await;
    assert_eq!(saved.status(), 201);
    Mock::given(wiremock::matchers::any())
        .respond_with(openai_answer("never"))
        .expect(0)
        .mount(&mock)
        .await;

    let user = |content: Value| json!({"model": "auto", "messages": [{"role": "user", "content": content}]});
    let long_but_allowed = "x".repeat(100 * 1024);
    let cases: Vec<BadCase> = vec![
        ("chat/completions", "text/plain", vec![], b"{}".to_vec(), 415, "unsupported_media_type"),
        ("chat/completions", "application/json", vec![], br#"{"model": "auto", "messages": ["#.to_vec(), 400, "invalid_json"),
        ("chat/completions", "application/json", vec![], br#"{"model": "auto", "messages": [], "stream": "yes"}"#.to_vec(), 400, "invalid_json"),
        ("chat/completions", "application/json", vec![], json!({"model": "auto", "messages": []}).to_string().into_bytes(), 400, "no_messages"),
        ("chat/completions", "application/json", vec![], json!({"model": "auto", "messages": [{"role": "tool", "content": "x"}]}).to_string().into_bytes(), 400, "invalid_request"),
        ("chat/completions", "application/json", vec![], json!({"model": "auto", "messages": [{"role": "robot", "content": "x"}]}).to_string().into_bytes(), 400, "unsupported_role"),
        ("chat/completions", "application/json", vec![], json!({"model": "auto", "messages": [{"role": "assistant", "content": "x"}]}).to_string().into_bytes(), 400, "no_messages"),
        ("chat/completions", "application/json", vec![], json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "f"}, "allow": ["x"]}}).to_string().into_bytes(), 400, "unsupported_parameter"),
        ("chat/completions", "application/json", vec![], json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {}, "mystery": 1}}}).to_string().into_bytes(), 400, "unsupported_parameter"),
        ("chat/completions", "application/json", vec![], user(json!([{"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}])).to_string().into_bytes(), 400, "invalid_image_url"),
        ("chat/completions", "application/json", vec![], user(json!([{"type": "image_url", "image_url": {"url": "data:text/html;base64,PGgxPg=="}}])).to_string().into_bytes(), 400, "invalid_image_url"),
        ("chat/completions", "application/json", vec![], user(json!([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}])).to_string().into_bytes(), 400, "unsupported_parameter"),
        ("chat/completions", "application/json", vec![], json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "frobnicate": true}).to_string().into_bytes(), 400, "unsupported_parameter"),
        ("chat/completions", "application/json", vec![], json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "functions": [{"name": "f"}]}).to_string().into_bytes(), 400, "unsupported_parameter"),
        ("chat/completions", "application/json", vec![], json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "service_tier": "priority"}).to_string().into_bytes(), 400, "unsupported_parameter"),
        ("chat/completions", "application/json", vec![], json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "extreme"}).to_string().into_bytes(), 400, "invalid_request"),
        ("chat/completions", "application/json", vec![("x-byok-task", "not a task!")], user(json!("hi")).to_string().into_bytes(), 400, "invalid_task"),
        ("chat/completions", "application/json", vec![("x-byok-max-cost-usd", "a lot")], user(json!("hi")).to_string().into_bytes(), 400, "invalid_max_cost"),
        ("chat/completions", "application/json", vec![("x-byok-exclude", "openai,nobody")], user(json!("hi")).to_string().into_bytes(), 400, "invalid_preference"),
        // Over 16 KiB is fine here (the key routes' limit is not the gateway's):
        // the body is read, and the unknown model is what is refused.
        ("chat/completions", "application/json", vec![], json!({"model": "no-such-model", "messages": [{"role": "user", "content": long_but_allowed}]}).to_string().into_bytes(), 404, "model_not_found"),
        ("chat/completions", "application/json", vec![], vec![b' '; 4 * 1024 * 1024 + 1], 413, "payload_too_large"),
        ("embeddings", "application/json", vec![], br#"{"model": "auto", "input": 5}"#.to_vec(), 400, "unsupported_parameter"),
        ("embeddings", "application/json", vec![], br#"{"model": "auto", "input": "x", "encoding_format": "int8"}"#.to_vec(), 400, "invalid_request"),
        ("embeddings", "application/json", vec![("x-byok-exclude", "nobody")], br#"{"model": "auto", "input": "x"}"#.to_vec(), 400, "invalid_preference"),
        ("embeddings", "text/plain", vec![], b"hello".to_vec(), 415, "unsupported_media_type"),
    ];
    for (route, content_type, headers, payload, status, code) in cases {
        let mut request = app
            .client
            .post(app.url(&format!("/v1/{route}")))
            .bearer_auth(&token)
            .header("content-type", content_type);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let (got, error) = body(request.body(payload).send().await.unwrap()).await;
        assert_eq!(
            (got, error["error"]["code"].as_str()),
            (status, Some(code)),
            "{route}: {error}"
        );
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{code} needs a message: {error}"
        );
        if code == "payload_too_large" {
            assert!(
                error["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("4 MiB"),
                "{error}"
            );
        }
    }

    let keys = app
        .client
        .get(app.url("/api/user/api-keys/alice/keys"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (_, keys) = body(keys).await;
    assert_eq!(
        keys["keys"][0]["provider"], "openai",
        "the key is untouched: {keys}"
    );
    let store = app.service.store().clone();
    app.stop().await;
    let alice = byok_core::UserId::parse("alice").unwrap();
    let from = byok_store::now() - chrono::Duration::hours(1);
    let to = byok_store::now() + chrono::Duration::hours(1);
    let records = store
        .run(move |c| byok_store::usage::list_for_user(c, &alice, from, to))
        .await
        .unwrap();
    assert!(records.is_empty(), "a refused request records no usage");
}

/// A host application that mounts byok's routes without a gateway: `/v1`
/// answers `503 gateway_disabled` in OpenAI's shape; the key routes still work.
async fn a_host_without_the_gateway_answers_gateway_disabled(db: TestDb) {
    let app = TestApp::spawn(&db).await;
    let token = app.create_user("alice").await;
    let host = actix_web::test::init_service(actix_web::App::new().configure(byok_api::configure(
        byok_api::AppState::new(app.service.clone()),
    )))
    .await;
    for (method, route) in [
        (actix_web::http::Method::GET, "/v1/models"),
        (actix_web::http::Method::POST, "/v1/chat/completions"),
        (actix_web::http::Method::POST, "/v1/embeddings"),
    ] {
        let mut request = actix_web::test::TestRequest::default()
            .method(method)
            .uri(route)
            .insert_header(("authorization", format!("Bearer {token}")));
        if route == "/v1/chat/completions" {
            request = request.set_json(hello(false));
        } else if route == "/v1/embeddings" {
            request = request.set_json(json!({"model": "auto", "input": "hello"}));
        }
        let response = actix_web::test::call_service(&host, request.to_request()).await;
        assert_eq!(response.status(), 503, "{route}");
        let error: Value = actix_web::test::read_body_json(response).await;
        assert_eq!(
            error["error"]["code"], "gateway_disabled",
            "{route}: {error}"
        );
        assert_eq!(error["error"]["type"], "service_unavailable", "{error}");
    }
    let keys = actix_web::test::TestRequest::get()
        .uri("/api/user/api-keys/alice/keys")
        .insert_header(("authorization", format!("Bearer {token}")))
        .to_request();
    assert_eq!(
        actix_web::test::call_service(&host, keys).await.status(),
        200
    );
    app.stop().await;
}
