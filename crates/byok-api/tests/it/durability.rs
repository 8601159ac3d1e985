//! Strict usage durability: an `incomplete` record exists while a provider
//! is being called, the final record replaces it before the answer's last
//! byte, and an attempt that ends without an answer leaves nothing — on
//! SQLite and PostgreSQL.

use std::time::Duration;

use byok_test_support::{TestApp, TestDb, both_backends};
use serde_json::json;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{gateway_chat, openai_key, providers};

both_backends!(strict_usage_is_committed_before_the_answer_and_marks_calls_in_flight);

async fn records(app: &TestApp) -> Vec<byok_store::usage::UsageRecord> {
    let alice = byok_core::UserId::parse("alice").unwrap();
    let (from, to) = (
        byok_store::now() - chrono::Duration::hours(1),
        byok_store::now() + chrono::Duration::hours(1),
    );
    app.service
        .store()
        .run(move |c| byok_store::usage::list_for_user(c, &alice, from, to))
        .await
        .unwrap()
}

async fn strict_usage_is_committed_before_the_answer_and_marks_calls_in_flight(db: TestDb) {
    let mock = MockServer::start().await;
    // Gemini (the cheapest) fails; OpenAI answers after a moment.
    Mock::given(method("POST"))
        .and(path_regex(r"^/v1beta/models/[a-z0-9.-]+:generateContent$"))
        .respond_with(ResponseTemplate::new(500).set_body_json(
            json!({"error": {"code": 500, "message": "internal", "status": "INTERNAL"}}),
        ))
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_millis(800))
                .set_body_json(json!({
                    "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
                })),
        )
        .mount(&mock)
        .await;
    let app = TestApp::spawn_strict(&db, providers(&mock)).await;
    let token = app.create_user("alice").await;
    for (provider, key) in [
        (
            "gemini",
            json!({"api_key": format!("AIza{}", "g".repeat(35))}),
        ),
        ("openai", json!({"api_key": openai_key("d")})),
    ] {
        assert_eq!(
            app.save_key(&token, "alice", provider, key).await.status(),
            201
        );
    }
    let request = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
    let answer = gateway_chat(&app, &token, &request);
    let during = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        records(&app).await
    };
    let (response, during) = tokio::join!(answer, during);
    // While OpenAI was thinking: one incomplete record (the failed Gemini
    // attempt left none).
    assert_eq!(during.len(), 1, "{during:?}");
    assert_eq!(during[0].outcome, "incomplete");
    assert_eq!(during[0].provider, byok_core::ProviderKind::OpenAi);
    assert_eq!(during[0].cost_source, byok_core::CostSource::Unknown);
    assert_eq!(response.status(), 200);
    // As soon as the answer is here, its record is final — no writer flush.
    let after = records(&app).await;
    assert_eq!(
        after.len(),
        1,
        "the final record replaced the incomplete one"
    );
    assert_eq!(after[0].outcome, "success");
    assert_eq!(after[0].cost_source, byok_core::CostSource::Exact);
    // 100 x 0.15 + 10 x 0.60 per million
    assert_eq!(after[0].cost_picodollars, Some(21_000_000));
    assert_eq!(after[0].attempts, 2);
    app.stop().await;
}
