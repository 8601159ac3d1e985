//! Cost truth through the gateway: each answer is priced by the model that
//! answered, from the provider's own counts (exact), from byok's count when
//! the provider gave none (estimated), or not at all (unknown) — and says
//! which, in headers, bodies, usage records and the per-request log. Every
//! figure here is computed by hand from the catalog's published prices.

use byok_test_support::{TestApp, TestDb};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{body, gateway_chat, openai_key, providers};

const AZURE_KEY: &str = "0123456789abcdef0123456789abcdef";

async fn app_with(mock: &MockServer, db: &TestDb, provider: &str) -> (TestApp, String) {
    let app = TestApp::spawn_with_providers(db, providers(mock)).await;
    let token = app.create_user("alice").await;
    let key = match provider {
        "azure_openai" => {
            json!({"api_key": AZURE_KEY, "endpoint": mock.uri(), "deployment": "gpt-4o-mini", "embedding_deployment": "emb"})
        }
        "anthropic" => json!({"api_key": format!("sk-ant-api03-{}AA", "a".repeat(93))}),
        "gemini" => json!({"api_key": format!("AIza{}", "g".repeat(35))}),
        _ => json!({"api_key": openai_key("c")}),
    };
    assert_eq!(
        app.save_key(&token, "alice", provider, key).await.status(),
        201
    );
    (app, token)
}

fn hello() -> Value {
    json!({"model": "auto", "messages": [{"role": "user", "content": "hello world"}]})
}

/// The user's usage records, after the writer has flushed.
async fn records(app: TestApp) -> Vec<byok_store::usage::UsageRecord> {
    let store = app.service.store().clone();
    app.stop().await;
    let from = byok_store::now() - chrono::Duration::hours(1);
    let to = byok_store::now() + chrono::Duration::hours(1);
    let alice = byok_core::UserId::parse("alice").unwrap();
    store
        .run(move |c| byok_store::usage::list_for_user(c, &alice, from, to))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_deployment_is_priced_by_the_model_it_runs() {
    let mock = MockServer::start().await;
    let deployment = "/openai/v1/chat/completions";
    // The deployment is named gpt-4o-mini but runs gpt-4o: 16x the price.
    Mock::given(method("POST"))
        .and(path(deployment))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-11-20",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100,
                      "prompt_tokens_details": {"cached_tokens": 200}}
        })))
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    // Then a model byok has no price for.
    Mock::given(method("POST"))
        .and(path(deployment))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-99-2027-01-01",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}
        })))
        .mount(&mock)
        .await;
    let db = TestDb::sqlite();
    let (app, token) = app_with(&mock, &db, "azure_openai").await;

    let response = gateway_chat(&app, &token, &hello()).await;
    let headers = response.headers().clone();
    let (status, answer) = body(response).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(headers["x-byok-model"], "gpt-4o-2024-11-20");
    // gpt-4o on Azure: 800 x 2.50 + 200 x 1.25 + 100 x 10.00 per million = $0.00325
    assert_eq!(headers["x-byok-cost-usd"], "0.00325");
    assert_eq!(headers["x-byok-cost-source"], "exact");

    let response = gateway_chat(&app, &token, &hello()).await;
    let headers = response.headers().clone();
    let (status, answer) = body(response).await;
    assert_eq!(status, 200);
    assert!(
        headers.get("x-byok-cost-usd").is_none(),
        "never another row's price"
    );
    assert_eq!(headers["x-byok-cost-source"], "unknown");
    assert_eq!(answer["usage"]["cost_source"], "unknown");
    assert!(answer["usage"].get("cost").is_none());

    let records = records(app).await;
    assert_eq!(records.len(), 2);
    assert_eq!(
        (
            records[0].model.as_str(),
            records[0].cost_picodollars,
            records[0].cost_source
        ),
        ("gpt-4o", Some(3_250_000_000), byok_core::CostSource::Exact)
    );
    assert_eq!(
        (
            records[1].model.as_str(),
            records[1].cost_picodollars,
            records[1].cost_source
        ),
        ("gpt-99-2027-01-01", None, byok_core::CostSource::Unknown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_stream_is_priced_by_the_model_its_chunks_name() {
    let mock = MockServer::start().await;
    let chunk = |model: &str, delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let body_text = [
        // Azure's first chunk names nothing.
        "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\"}\n\n".to_owned(),
        chunk("gpt-4o-2024-11-20", json!({"role": "assistant", "content": "Hel"}), Value::Null),
        chunk("gpt-4o-2024-11-20", json!({"content": "lo"}), json!("stop")),
        format!("data: {}\n\n", json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024-11-20",
            "choices": [], "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}})),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    Mock::given(method("POST"))
        .and(path("/openai/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(body_text),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let db = TestDb::sqlite();
    let (app, token) = app_with(&mock, &db, "azure_openai").await;
    let mut request = hello();
    request["stream"] = json!(true);
    request["stream_options"] = json!({"include_usage": true});
    let response = gateway_chat(&app, &token, &request).await;
    assert_eq!(response.headers()["x-byok-model"], "gpt-4o-2024-11-20");
    let text = response.text().await.unwrap();
    let usage = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|f| f["usage"].is_object())
        .unwrap();
    // 1,000 x 2.50 + 100 x 10.00 per million = $0.0035, in the stream's last usage chunk.
    assert_eq!(usage["usage"]["cost"], json!(0.0035), "{usage}");
    assert_eq!(usage["usage"]["cost_source"], "exact");
    assert_eq!(usage["model"], "gpt-4o-2024-11-20");
    let records = records(app).await;
    assert_eq!(
        (records[0].model.as_str(), records[0].cost_picodollars),
        ("gpt-4o", Some(3_500_000_000))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_usage_is_estimated_and_marked_never_zero() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hello world"}}]
        })))
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    // A stream cut short: no usage, no [DONE].
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(format!(
                    "data: {}\n\n",
                    json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hello world"}, "finish_reason": null}]})
                )),
        )
        .mount(&mock)
        .await;
    let db = TestDb::sqlite();
    let (app, token) = app_with(&mock, &db, "openai").await;
    let response = gateway_chat(&app, &token, &hello()).await;
    let headers = response.headers().clone();
    let (status, answer) = body(response).await;
    assert_eq!(status, 200, "{answer}");
    // "hello world" is 2 tokens for o200k_base, in and out:
    // 2 x 0.15 + 2 x 0.60 per million = $0.0000015.
    assert_eq!(headers["x-byok-cost-source"], "estimated");
    assert_eq!(headers["x-byok-cost-usd"], "0.0000015");
    assert_eq!(answer["usage"]["prompt_tokens"], 2);
    assert_eq!(answer["usage"]["cost_source"], "estimated");

    let mut request = hello();
    request["stream"] = json!(true);
    let streamed = gateway_chat(&app, &token, &request)
        .await
        .text()
        .await
        .unwrap();
    assert!(streamed.contains("hello world"), "{streamed}");
    let records = records(app).await;
    assert_eq!(records.len(), 2);
    for record in &records {
        assert_eq!(record.cost_source, byok_core::CostSource::Estimated);
        assert_eq!((record.input_tokens, record.output_tokens), (2, 2));
        assert_eq!(record.cost_picodollars, Some(1_500_000));
    }
    assert_eq!(records[1].outcome, "partial");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_cache_writes_are_billed_by_how_long_they_live() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "m", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 14, "cache_creation_input_tokens": 1000, "cache_read_input_tokens": 2000,
                      "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 600},
                      "output_tokens": 50}
        })))
        .expect(1)
        .mount(&mock)
        .await;
    let db = TestDb::sqlite();
    let (app, token) = app_with(&mock, &db, "anthropic").await;
    let response = gateway_chat(&app, &token, &hello()).await;
    // claude-haiku-4-5: 14 x 1.00 + 2,000 x 0.10 (reads) + 400 x 1.25 (5-minute
    // writes) + 600 x 2.00 (1-hour writes) + 50 x 5.00 per million = $0.002164.
    assert_eq!(response.headers()["x-byok-cost-usd"], "0.002164");
    let records = records(app).await;
    assert_eq!(
        (
            records[0].input_tokens,
            records[0].cached_input_tokens,
            records[0].cache_write_tokens,
            records[0].cache_write_1h_tokens
        ),
        (3014, 2000, 1000, 600)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_thoughts_are_output_and_its_embeddings_are_estimated() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/v1beta/models/gemini-2\.5-flash-lite:generateContent$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [{"text": "ok"}]}}],
            "usageMetadata": {"promptTokenCount": 1000, "cachedContentTokenCount": 400,
                              "candidatesTokenCount": 100, "thoughtsTokenCount": 50},
            "modelVersion": "gemini-2.5-flash-lite"
        })))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path(
            "/v1beta/models/gemini-embedding-001:batchEmbedContents",
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"embeddings": [{"values": [0.1]}]})),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let db = TestDb::sqlite();
    let (app, token) = app_with(&mock, &db, "gemini").await;
    let response = gateway_chat(&app, &token, &hello()).await;
    // 600 x 0.10 + 400 x 0.01 + (100 + 50) x 0.40 per million = $0.000124
    assert_eq!(response.headers()["x-byok-cost-usd"], "0.000124");
    assert_eq!(response.headers()["x-byok-cost-source"], "exact");
    let embedded = app
        .client
        .post(app.url("/v1/embeddings"))
        .bearer_auth(&token)
        .json(&json!({"model": "auto", "input": "abcdefgh"}))
        .send()
        .await
        .unwrap();
    // Gemini counts no embedding tokens: 8 bytes at four a token, estimated:
    // 2 x 0.15 per million = $0.0000003.
    assert_eq!(embedded.headers()["x-byok-cost-source"], "estimated");
    assert_eq!(embedded.headers()["x-byok-cost-usd"], "0.0000003");
    let records = records(app).await;
    assert_eq!(records[1].door, "embeddings");
    assert_eq!(records[1].cost_source, byok_core::CostSource::Estimated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_log_lists_each_request_with_its_cost_and_source() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
        })))
        .mount(&mock)
        .await;
    let db = TestDb::sqlite();
    let (app, token) = app_with(&mock, &db, "openai").await;
    for _ in 0..3 {
        assert_eq!(gateway_chat(&app, &token, &hello()).await.status(), 200);
    }
    let log = |query: String| {
        app.client
            .get(app.url(&format!("/api/user/api-keys/alice/requests{query}")))
            .bearer_auth(&token)
            .send()
    };
    // The writer batches: wait (bounded) until all three are written.
    let mut first = Value::Null;
    for _ in 0..50 {
        let (status, page) = body(log("?limit=2".to_owned()).await.unwrap()).await;
        assert_eq!(status, 200, "{page}");
        if page["next_before"].is_i64() {
            first = page;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let entries = first["requests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let entry = &entries[0];
    // 100 x 0.15 + 10 x 0.60 per million = $0.000021
    assert_eq!(entry["cost_usd"], "0.000021");
    assert_eq!(entry["cost_source"], "exact");
    assert_eq!(entry["door"], "chat");
    assert_eq!(entry["provider"], "openai");
    assert_eq!(entry["model"], "gpt-4o-mini");
    assert_eq!(
        (
            entry["input_tokens"].as_i64(),
            entry["output_tokens"].as_i64()
        ),
        (Some(100), Some(10))
    );
    assert!(
        entries[0]["id"].as_i64() > entries[1]["id"].as_i64(),
        "newest first"
    );
    let (_, rest) = body(
        log(format!("?limit=2&before={}", first["next_before"]))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(rest["requests"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next_before"], Value::Null);
    let (status, refused) = body(log("?limit=5000".to_owned()).await.unwrap()).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("invalid_limit"))
    );
    // Another user's log is not alice's to read.
    let bob = app.create_user("bob").await;
    let other = app
        .client
        .get(app.url("/api/user/api-keys/alice/requests"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    app.stop().await;
}
