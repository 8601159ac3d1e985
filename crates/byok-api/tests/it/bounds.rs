//! Every wait has a bound: a provider that never answers costs one attempt
//! limit before the next is tried, a stream that never starts its first-byte
//! limit, a stream that stalls its stall limit, and no request outlives its
//! deadline; one hanging provider cannot take every slot (the bulkhead).
//! The mocks hang for far longer than the limits, so each test fails if the
//! bound is not there.

use std::time::{Duration, Instant};

use byok_api::gateway::GatewayLimits;
use byok_test_support::{TestApp, TestDb};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{body, gateway_chat, openai_key, providers};

/// How long a hanging mock hangs: far beyond every limit below.
const HANG: Duration = Duration::from_secs(30);

fn limits() -> GatewayLimits {
    GatewayLimits {
        deadline: Duration::from_secs(20),
        attempt: Duration::from_millis(400),
        first_byte: Duration::from_millis(400),
        stall: Duration::from_millis(400),
        per_provider_concurrency: 8,
    }
}

fn openai_answer() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "from openai"}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    }))
}

/// A whole OpenAI stream: one chunk saying "streamed", then `[DONE]`.
fn openai_stream_answer() -> ResponseTemplate {
    let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "streamed"}, "finish_reason": "stop"}]});
    ResponseTemplate::new(200)
        .insert_header("content-type", "text/event-stream")
        .set_body_string(format!("data: {chunk}\n\ndata: [DONE]\n\n"))
}

/// Alice with Gemini (the cheapest, made to hang) and OpenAI (which answers).
async fn two_providers(mock: &MockServer, db: &TestDb, limits: GatewayLimits) -> (TestApp, String) {
    let app = TestApp::spawn_with_limits(db, providers(mock), limits).await;
    let token = app.create_user("alice").await;
    for (provider, key) in [
        (
            "gemini",
            json!({"api_key": format!("AIza{}", "g".repeat(35))}),
        ),
        ("openai", json!({"api_key": openai_key("b")})),
    ] {
        assert_eq!(
            app.save_key(&token, "alice", provider, key).await.status(),
            201
        );
    }
    (app, token)
}

async fn hang_gemini(mock: &MockServer) {
    Mock::given(method("POST"))
        .and(path_regex(
            r"^/v1beta/models/[a-z0-9.-]+:(generateContent|streamGenerateContent)$",
        ))
        .respond_with(ResponseTemplate::new(200).set_delay(HANG))
        .mount(mock)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_never_answers_costs_one_attempt_limit() {
    let mock = MockServer::start().await;
    hang_gemini(&mock).await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(openai_answer())
        .mount(&mock)
        .await;
    let db = TestDb::sqlite();
    let (app, token) = two_providers(&mock, &db, limits()).await;
    let started = Instant::now();
    let response = gateway_chat(
        &app,
        &token,
        &json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert!(
        started.elapsed() < HANG / 2,
        "waited for the hanging provider"
    );
    assert_eq!(response.headers()["x-byok-attempts"], "gemini,openai");
    let (status, answer) = body(response).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["choices"][0]["message"]["content"], "from openai");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_never_starts_falls_back_at_its_first_byte_limit() {
    let mock = MockServer::start().await;
    hang_gemini(&mock).await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(openai_stream_answer())
        .mount(&mock)
        .await;
    let db = TestDb::sqlite();
    let (app, token) = two_providers(&mock, &db, limits()).await;
    let started = Instant::now();
    let response = gateway_chat(
        &app,
        &token,
        &json!({"model": "auto", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(response.headers()["x-byok-provider"], "openai");
    let text = response.text().await.unwrap();
    assert!(started.elapsed() < HANG / 2);
    assert!(
        text.contains("streamed") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    app.stop().await;
}

/// Requests still waiting past the first-byte limit count against the
/// provider's circuit: after three, it opens, and the next request goes
/// straight to the provider that answers (no 400 ms spent on the hung one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_byte_timeouts_open_the_circuit() {
    let mock = MockServer::start().await;
    hang_gemini(&mock).await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(wiremock::matchers::body_partial_json(
            json!({"stream": true}),
        ))
        .respond_with(openai_stream_answer())
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(openai_answer())
        .mount(&mock)
        .await;
    let db = TestDb::sqlite();
    let (app, token) = two_providers(&mock, &db, limits()).await;
    // Streams wait for the first byte; plain calls for the attempt limit.
    let stream =
        json!({"model": "auto", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let plain = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
    for (i, request) in [&stream, &plain, &stream].into_iter().enumerate() {
        let response = gateway_chat(&app, &token, request).await;
        assert_eq!(response.status(), 200, "request {i}");
        assert_eq!(
            response.headers()["x-byok-attempts"],
            "gemini,openai",
            "request {i}"
        );
    }
    let response = gateway_chat(&app, &token, &plain).await;
    assert_eq!(
        response.headers()["x-byok-attempts"],
        "openai",
        "the hung provider's circuit is open"
    );
    assert_eq!(response.status(), 200);
    app.stop().await;
}

/// A provider on loopback that sends a stream's first event and then says
/// nothing for [`HANG`].
async fn stalling_provider() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    #[expect(clippy::disallowed_methods, reason = "the test's own fake provider")]
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut head = vec![0_u8; 16 * 1024];
            let _ = socket.read(&mut head).await;
            let first = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": "partial"}, "finish_reason": null}]});
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\ndata: {first}\n\n"
            );
            let _ = socket.write_all(reply.as_bytes()).await;
            let _ = socket.flush().await;
            tokio::time::sleep(HANG).await;
        }
    });
    (format!("http://{address}/v1"), task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_stalls_ends_at_its_stall_limit_and_is_recorded() {
    let (base, provider) = stalling_provider().await;
    let mock = MockServer::start().await;
    let mut settings = providers(&mock);
    settings.openai_base_url = base.parse().unwrap();
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_limits(&db, settings, limits()).await;
    let token = app.create_user("alice").await;
    assert_eq!(
        app.save_key(
            &token,
            "alice",
            "openai",
            json!({"api_key": openai_key("s")})
        )
        .await
        .status(),
        201
    );
    let started = Instant::now();
    let response = gateway_chat(
        &app,
        &token,
        &json!({"model": "auto", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let text = response.text().await.unwrap();
    assert!(started.elapsed() < HANG / 2, "the stall was not bounded");
    assert!(text.contains("partial"), "{text}");
    let last: Value =
        serde_json::from_str(text.trim_end().rsplit("data: ").next().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "provider_timeout", "{text}");
    let store = app.service.store().clone();
    app.stop().await;
    provider.abort();
    let alice = byok_core::UserId::parse("alice").unwrap();
    let (from, to) = (
        byok_store::now() - chrono::Duration::hours(1),
        byok_store::now() + chrono::Duration::hours(1),
    );
    let records = store
        .run(move |c| byok_store::usage::list_for_user(c, &alice, from, to))
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, "partial");
    assert_eq!(records[0].cost_source, byok_core::CostSource::Estimated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_outlives_its_deadline() {
    let mock = MockServer::start().await;
    hang_gemini(&mock).await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(openai_answer().set_delay(HANG))
        .mount(&mock)
        .await;
    let db = TestDb::sqlite();
    let deadline = GatewayLimits {
        deadline: Duration::from_millis(600),
        attempt: Duration::from_secs(60),
        ..limits()
    };
    let (app, token) = two_providers(&mock, &db, deadline).await;
    let started = Instant::now();
    let (status, error) = body(
        gateway_chat(
            &app,
            &token,
            &json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await,
    )
    .await;
    assert!(started.elapsed() < HANG / 2);
    assert_eq!(status, 502, "{error}");
    let attempts = error["error"]["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["error"], "provider_timeout", "{error}");
    assert_eq!(
        attempts.last().unwrap()["error"],
        "deadline_exceeded",
        "{error}"
    );
    // The log line names what was tried and how it failed.
    let logs = byok_test_support::captured_logs();
    assert!(
        logs.lines().any(|l| l.contains("gateway request failed")
            && l.contains("gemini:gemini-2.5-flash-lite=provider_timeout")),
        "no log line naming the attempts"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hanging_provider_cannot_take_every_slot() {
    let mock = MockServer::start().await;
    // Gemini answers, but only after a second.
    Mock::given(method("POST"))
        .and(path_regex(r"^/v1beta/models/[a-z0-9.-]+:generateContent$"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(1))
                .set_body_json(json!({
                    "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [{"text": "slow"}]}}],
                    "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1}
                })),
        )
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(openai_answer())
        .mount(&mock)
        .await;
    let db = TestDb::sqlite();
    let one_slot = GatewayLimits {
        attempt: Duration::from_secs(10),
        per_provider_concurrency: 1,
        ..limits()
    };
    let (app, token) = two_providers(&mock, &db, one_slot).await;
    let request = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
    let slow = gateway_chat(&app, &token, &request);
    let quick = async {
        // Let the first request take Gemini's only slot.
        tokio::time::sleep(Duration::from_millis(300)).await;
        gateway_chat(&app, &token, &request).await
    };
    let (slow, quick) = tokio::join!(slow, quick);
    assert_eq!(slow.headers()["x-byok-provider"], "gemini");
    assert_eq!(quick.headers()["x-byok-provider"], "openai");
    assert_eq!(quick.headers()["x-byok-attempts"], "gemini,openai");
    app.stop().await;
}

/// A slow body is cut at the body read timeout (`408`), and one address
/// cannot hold more requests in flight than its cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_time_out_and_one_address_has_a_cap() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let service =
        byok_api::KeyService::new(store, std::sync::Arc::new(byok_test_support::test_vault()))
            .with_admin_token(&secrecy::SecretString::from(
                byok_test_support::ADMIN_TOKEN.to_owned(),
            ));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let started = byok_api::Application::new(service)
        .request_limits(Duration::from_millis(500), 2)
        .start(listener)
        .unwrap();
    let handle = started.server.handle();
    #[expect(clippy::disallowed_methods, reason = "the test runs its own server")]
    let server = tokio::spawn(started.server);
    // Headers promise 100 bytes of body; ten arrive, then nothing.
    let slow = || async {
        let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
        socket
            .write_all(
                format!("POST /api/admin/users HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"user_id\"", byok_test_support::ADMIN_TOKEN).as_bytes(),
            )
            .await
            .unwrap();
        socket
    };
    let held_a = slow().await;
    let held_b = slow().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Two slow bodies in flight: a third request from the same address waits its turn.
    let third = reqwest::get(format!("http://{address}/healthz"))
        .await
        .unwrap();
    assert_eq!(third.status(), 429);
    // The slow bodies are cut.
    let started_at = Instant::now();
    let mut answer = String::new();
    let mut socket = held_a;
    let _ = tokio::time::timeout(HANG, socket.read_to_string(&mut answer)).await;
    assert!(started_at.elapsed() < HANG / 2);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    drop(held_b);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let after = reqwest::get(format!("http://{address}/healthz"))
        .await
        .unwrap();
    assert_eq!(after.status(), 200, "slots are given back");
    handle.stop(true).await;
    server.abort();
}
