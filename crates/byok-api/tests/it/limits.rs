//! Gateway rate limits: a user's requests per minute shared by two servers
//! on one database, a token's own limit, tokens per minute and concurrent
//! streams — refused with `429 rate_limited`, `Retry-After` and
//! `x-ratelimit-*` headers.

use std::sync::{Arc, Mutex};

use byok_test_support::{ADMIN_TOKEN, SpawnOptions, TestApp, TestDb, both_backends};
use chrono::Utc;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{body, key_body, openai_key, providers};

both_backends!(
    a_users_requests_per_minute_hold_across_two_servers,
    tokens_streams_and_token_limits_are_refused_by_name,
);

fn answer() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 100, "total_tokens": 105}
    }))
}

fn chat() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100})
}

/// A clock fixed in the middle of a minute, shared by both servers.
fn fixed_clock() -> byok_api::service::Clock {
    let now = Utc::now();
    let at = now - chrono::Duration::seconds(now.timestamp().rem_euclid(60))
        + chrono::Duration::seconds(30);
    let at = Arc::new(Mutex::new(at));
    Arc::new(move || *at.lock().unwrap())
}

async fn server(db: &TestDb, mock: &MockServer, clock: &byok_api::service::Clock) -> TestApp {
    TestApp::spawn_options(
        db,
        providers(mock),
        SpawnOptions {
            clock: Some(Arc::clone(clock)),
            ..SpawnOptions::default()
        },
    )
    .await
}

async fn a_users_requests_per_minute_hold_across_two_servers(db: TestDb) {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(answer())
        .mount(&mock)
        .await;
    let clock = fixed_clock();
    let one = server(&db, &mock, &clock).await;
    let two = server(&db, &mock, &clock).await;
    let token = one.create_user("alice").await;
    one.save_key(&token, "alice", "openai", key_body(&openai_key("r")))
        .await;
    let set = one
        .client
        .put(one.url("/api/admin/users/alice/limits"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"requests_per_minute": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 204);
    let (_, limits) = body(
        two.client
            .get(two.url("/api/admin/users/alice/limits"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(limits, json!({"requests_per_minute": 3}));
    let mut statuses = Vec::new();
    let mut refused = None;
    for i in 0..6 {
        let app = if i % 2 == 0 { &one } else { &two };
        let response = crate::gateway_chat(app, &token, &chat()).await;
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            refused = Some(response);
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    let refused = refused.unwrap();
    assert_eq!(refused.headers()["x-ratelimit-limit-requests"], "3");
    assert_eq!(refused.headers()["x-ratelimit-remaining-requests"], "0");
    assert_eq!(refused.headers()["retry-after"], "30");
    let (_, error) = body(refused).await;
    assert_eq!(
        (
            error["error"]["code"].as_str(),
            error["error"]["whose"].as_str()
        ),
        (Some("rate_limited"), Some("user"))
    );
    let bad = one
        .client
        .put(one.url("/api/admin/users/alice/limits"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"requests_per_minute": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let user_cannot = one
        .client
        .put(one.url("/api/admin/users/alice/limits"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(user_cannot.status(), 403);
}

async fn tokens_streams_and_token_limits_are_refused_by_name(db: TestDb) {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(answer().set_delay(std::time::Duration::from_millis(400)))
        .mount(&mock)
        .await;
    let app = Arc::new(
        TestApp::spawn_options(
            &db,
            providers(&mock),
            SpawnOptions {
                clock: Some(fixed_clock()),
                rate_limits: byok_api::limits::RateLimits {
                    requests_per_minute: None,
                    tokens_per_minute: Some(150),
                    concurrent_streams: Some(1),
                },
                ..SpawnOptions::default()
            },
        )
        .await,
    );
    let token = app.create_user("alice").await;
    app.save_key(&token, "alice", "openai", key_body(&openai_key("t")))
        .await;

    // One stream at a time: a second, while the first waits, is refused.
    let first = {
        let (app, token) = (Arc::clone(&app), token.clone());
        let mut streamed = chat();
        streamed["stream"] = json!(true);
        tokio::spawn(async move { crate::gateway_chat(&app, &token, &streamed).await.status() })
    };
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let mut streamed = chat();
    streamed["stream"] = json!(true);
    let second = crate::gateway_chat(&app, &token, &streamed).await;
    assert_eq!(second.status(), 429);
    assert_eq!(second.headers()["x-ratelimit-limit-streams"], "1");
    let _ = first.await.unwrap();

    // Tokens per minute: 105 tokens used of 150, then the next is refused
    // once the answer's tokens are counted.
    assert_eq!(
        crate::gateway_chat(&app, &token, &chat()).await.status(),
        200
    );
    let mut status = 200;
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let response = crate::gateway_chat(&app, &token, &chat()).await;
        status = response.status().as_u16();
        if status == 429 {
            assert_eq!(response.headers()["x-ratelimit-limit-tokens"], "150");
            break;
        }
    }
    assert_eq!(status, 429, "the minute's tokens are spent");

    // A token's own limit.
    let bob = app.create_user("bob").await;
    app.save_key(&bob, "bob", "openai", key_body(&openai_key("b")))
        .await;
    let (status, created) = body(
        app.client
            .post(app.url("/api/user/api-keys/bob/tokens"))
            .bearer_auth(&bob)
            .json(&json!({"label": "cron", "requests_per_minute": 1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let cron = created["token"].as_str().unwrap().to_owned();
    assert_eq!(
        crate::gateway_chat(&app, &cron, &chat()).await.status(),
        200
    );
    let (status, error) = body(crate::gateway_chat(&app, &cron, &chat()).await).await;
    assert_eq!(
        (status, error["error"]["whose"].as_str()),
        (429, Some("token"))
    );
    assert_eq!(
        crate::gateway_chat(&app, &bob, &chat()).await.status(),
        200,
        "bob's other token is not limited by it"
    );
}
