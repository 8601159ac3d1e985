//! One user's token never reaches another user's keys, and the API is no
//! oracle for who exists.

use byok_core::ProviderKind;
use byok_test_support::{ADMIN_TOKEN, TestApp, TestDb, both_backends};
use serde_json::Value;

use crate::{body, key_body, openai_key};

both_backends!(
    another_users_id_answers_exactly_like_a_missing_user,
    user_tokens_cannot_use_admin_routes
);

async fn another_users_id_answers_exactly_like_a_missing_user(db: TestDb) {
    let app = TestApp::spawn(&db).await;
    let alice = app.create_user("alice").await;
    let bob = app.create_user("bob").await;
    let alice_key = openai_key("alice");
    assert_eq!(
        app.save_key(&alice, "alice", "openai", key_body(&alice_key))
            .await
            .status(),
        201
    );
    let before = app
        .client
        .get(app.url("/api/user/api-keys/alice/keys"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    let before = body(before).await.1;

    for target in ["alice", "nobody"] {
        let base = format!("/api/user/api-keys/{target}");
        let attempts = vec![
            app.client
                .get(app.url(&format!("{base}/keys")))
                .bearer_auth(&bob),
            app.client
                .post(app.url(&format!("{base}/keys/openai")))
                .bearer_auth(&bob)
                .json(&key_body(&openai_key("bob"))),
            app.client
                .delete(app.url(&format!("{base}/keys/openai")))
                .bearer_auth(&bob),
            app.client
                .get(app.url(&format!("{base}/audit")))
                .bearer_auth(&bob),
        ];
        for attempt in attempts {
            let (status, body) = body(attempt.send().await.unwrap()).await;
            assert_eq!(status, 404, "{target}: {body}");
            assert_eq!(
                body,
                serde_json::json!({"error": {"code": "user_not_found", "message": "user not found"}})
            );
        }
    }
    // The admin sees the same for a user that does not exist.
    let admin_missing = app
        .client
        .get(app.url("/api/user/api-keys/nobody/keys"))
        .bearer_auth(ADMIN_TOKEN);
    assert_eq!(
        body(admin_missing.send().await.unwrap()).await.1["error"]["code"],
        "user_not_found"
    );

    // Alice's key is untouched, and a re-scoping query or body is ignored.
    let after = app
        .client
        .get(app.url("/api/user/api-keys/alice/keys"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(body(after).await.1, before);
    assert_eq!(app.open_key("alice", ProviderKind::OpenAi).await, alice_key);
    let rescoped = app
        .client
        .get(app.url("/api/user/api-keys/bob/keys?user_id=alice"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    let (status, rescoped) = body(rescoped).await;
    assert_eq!(
        (status, &rescoped["keys"]),
        (200, &Value::Array(vec![])),
        "the query is ignored: Bob's (empty) list"
    );
    let own = app
        .client
        .get(app.url("/api/user/api-keys/bob/keys"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(body(own).await.1["keys"], Value::Array(vec![]));

    // Bob's attempts are denials in his own trail; Alice's stays clean.
    assert_eq!(denials(&app, &bob, "bob").await, 8);
    assert_eq!(denials(&app, &alice, "alice").await, 0);
}

async fn denials(app: &TestApp, token: &str, user: &str) -> usize {
    let url = app.url(&format!("/api/user/api-keys/{user}/audit"));
    let audit = body(app.client.get(url).bearer_auth(token).send().await.unwrap())
        .await
        .1;
    audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "denied")
        .count()
}

async fn user_tokens_cannot_use_admin_routes(db: TestDb) {
    let app = TestApp::spawn(&db).await;
    let alice = app.create_user("alice").await;
    let attempts = vec![
        app.client
            .post(app.url("/api/admin/users"))
            .bearer_auth(&alice)
            .json(&serde_json::json!({"user_id": "mallory"})),
        app.client
            .delete(app.url("/api/admin/users/alice"))
            .bearer_auth(&alice),
        app.client
            .post(app.url("/api/admin/users/alice/tokens"))
            .bearer_auth(&alice),
        app.client
            .delete(app.url("/api/admin/tokens/0000000000000000"))
            .bearer_auth(&alice),
    ];
    for attempt in attempts {
        let (status, body) = body(attempt.send().await.unwrap()).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden"))
        );
    }
}
