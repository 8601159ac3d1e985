//! Admin routes: users and tokens.

use byok_test_support::{ADMIN_TOKEN, TestApp, TestDb, both_backends};
use serde_json::json;

use crate::{body, key_body};

both_backends!(users_are_created_once_and_deleted_with_their_keys);

/// A usage record for `user`, straight into the store.
async fn spend(app: &TestApp, user: &str) {
    let spent = byok_store::usage::UsageRecord {
        user_id: byok_core::UserId::parse(user).unwrap(),
        provider: byok_core::ProviderKind::Gemini,
        model: "gemini-2.5-flash-lite".to_owned(),
        task: "general".to_owned(),
        input_tokens: 1000,
        cached_input_tokens: 0,
        cache_write_tokens: 0,
        cache_write_1h_tokens: 0,
        output_tokens: 100,
        reasoning_tokens: 0,
        cost_micro_usd: Some(140),
        cost_picodollars: Some(140_000_000),
        cost_source: byok_core::CostSource::Exact,
        door: "chat".to_owned(),
        record_key: None,
        token_id: None,
        reservation_id: None,
        rate_subjects: Vec::new(),
        budgeted: false,
        attempts: 1,
        latency_ms: 10,
        outcome: "success".to_owned(),
        request_id: None,
        created_at: byok_store::now(),
    };
    app.service
        .store()
        .run(move |c| byok_store::usage::insert_batch(c, &[spent]))
        .await
        .unwrap();
}

async fn users_are_created_once_and_deleted_with_their_keys(db: TestDb) {
    let app = TestApp::spawn(&db).await;
    let create = || {
        app.client
            .post(app.url("/api/admin/users"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"user_id": "alice"}))
            .send()
    };
    let (status, created) = body(create().await.unwrap()).await;
    assert_eq!(status, 201);
    assert_eq!(created["user_id"], "alice");
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("byok_") && token.len() >= 60);
    assert_eq!(body(create().await.unwrap()).await.0, 409);
    let bad = app
        .client
        .post(app.url("/api/admin/users"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"user_id": "al ice"}));
    assert_eq!(
        body(bad.send().await.unwrap()).await.1["error"]["code"],
        "invalid_user_id"
    );

    assert_eq!(
        app.save_key(
            &token,
            "alice",
            "gemini",
            key_body(&format!("AIza{}", "g".repeat(35)))
        )
        .await
        .status(),
        201
    );
    // Alice has spent something.
    spend(&app, "alice").await;
    let delete = app
        .client
        .delete(app.url("/api/admin/users/alice"))
        .bearer_auth(ADMIN_TOKEN);
    assert_eq!(delete.send().await.unwrap().status(), 204);
    // Her token is gone with her; her keys are gone; deleting again is 404.
    let listed = app
        .client
        .get(app.url("/api/user/api-keys/alice/keys"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 401);
    let again = app
        .client
        .delete(app.url("/api/admin/users/alice"))
        .bearer_auth(ADMIN_TOKEN);
    assert_eq!(again.send().await.unwrap().status(), 404);
    let alice = byok_core::UserId::parse("alice").unwrap();
    let left = app
        .service
        .store()
        .run(move |c| byok_store::keys::list_for_user(c, &alice))
        .await
        .unwrap();
    assert!(left.is_empty(), "the sealed key row is gone");
    // The audit trail stays: read it straight from the store.
    let alice = byok_core::UserId::parse("alice").unwrap();
    let events = app
        .service
        .store()
        .run(move |c| byok_store::audit::list_for_user(c, &alice, None, 100))
        .await
        .unwrap();
    let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["user.delete", "key.create", "token.issue", "user.create"]
    );
    assert!(
        events.iter().all(|e| e.request_id.is_some()),
        "every HTTP event has a request id"
    );
    // A new alice starts at zero: her usage went with her predecessor.
    let (status, created) = body(create().await.unwrap()).await;
    assert_eq!(status, 201);
    let new_token = created["token"].as_str().unwrap().to_owned();
    let (status, usage) = body(
        app.client
            .get(app.url("/api/user/api-keys/alice/usage"))
            .bearer_auth(&new_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["total"]["requests"], 0, "{usage}");
}
