//! Two servers on one PostgreSQL database, each with its own caches: a
//! token revoked, a user disabled or a key deleted on one stops working on
//! the other within a second (the change is announced with NOTIFY).

use std::time::{Duration, Instant};

use byok_test_support::{ADMIN_TOKEN, TestApp, TestDb};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{key_body, openai_key, providers};

/// Polls `check` until it holds; returns how long that took.
async fn within_a_second(mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unreachable!("the change did not reach the other replica within a second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_on_one_replica_reach_the_others_caches_within_a_second() {
    let Some(db) = TestDb::postgres() else { return };
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
        })))
        .mount(&mock)
        .await;
    let one = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let two = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = one.create_user("alice").await;
    one.save_key(&token, "alice", "openai", key_body(&openai_key("r")))
        .await;
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    // Warm the second server's caches (token, keys).
    for _ in 0..3 {
        assert_eq!(crate::gateway_chat(&two, &token, &chat).await.status(), 200);
    }

    // A deleted key: the other server stops using it.
    let deleted = one
        .client
        .delete(one.url("/api/user/api-keys/alice/keys/openai"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    within_a_second(async || crate::gateway_chat(&two, &token, &chat).await.status() != 200).await;

    // A disabled user, then a revoked token: refused on the other server.
    let bob = one.create_user("bob").await;
    let keys = |app: &TestApp, token: &str, user: &str| {
        app.client
            .get(app.url(&format!("/api/user/api-keys/{user}/keys")))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(keys(&two, &bob, "bob").await.unwrap().status(), 200);
    let disabled = one
        .client
        .patch(one.url("/api/admin/users/bob"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 204);
    within_a_second(async || keys(&two, &bob, "bob").await.unwrap().status() == 401).await;

    assert_eq!(keys(&two, &token, "alice").await.unwrap().status(), 200);
    let token_id = token.split('_').nth(1).unwrap().to_owned();
    let revoked = one
        .client
        .delete(one.url(&format!("/api/admin/tokens/{token_id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    let took =
        within_a_second(async || keys(&two, &token, "alice").await.unwrap().status() == 401).await;
    eprintln!("revocation reached the other replica in {took:?}");
}
