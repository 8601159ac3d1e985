//! Every error is JSON with a stable code, and nothing is saved or echoed.

use byok_test_support::{TestApp, TestDb, both_backends};
use serde_json::json;

use crate::{body, key_body, openai_key};

both_backends!(bad_input_gets_a_clear_error_and_changes_nothing);

async fn bad_input_gets_a_clear_error_and_changes_nothing(db: TestDb) {
    let app = TestApp::spawn(&db).await;
    let token = app.create_user("alice").await;
    let kept = openai_key("kept");
    assert_eq!(
        app.save_key(&token, "alice", "openai", key_body(&kept))
            .await
            .status(),
        201
    );

    let canary = format!("sk-CANARY-{}", uuid::Uuid::new_v4().simple());
    let url = app.url("/api/user/api-keys/alice/keys/openai");
    let raw = |body: String, content_type: &'static str| {
        app.client
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let megabyte = format!("{{\"api_key\": \"{}\"}}", "k".repeat(1024 * 1024));
    let cases: Vec<(reqwest::Response, u16, &str)> = vec![
        (raw(megabyte, "application/json").await.unwrap(), 413, "payload_too_large"),
        (app.save_key(&token, "alice", "azure_openai", json!({ "api_key": "0123456789abcdef0123456789abcdef", "endpoint": "https://internal-res.openai.azure.com", "deployment": "d" })).await, 422, "invalid_endpoint"),
        (app.save_key(&token, "alice", "azure_openai", json!({ "api_key": "0123456789abcdef0123456789abcdef", "endpoint": "https://169.254.169.254", "deployment": "d" })).await, 422, "invalid_endpoint"),
        (raw(format!("{{\"api_key\": \"{canary}\""), "application/json").await.unwrap(), 400, "invalid_json"),
        (raw(format!("{{\"api_key\": \"{canary}\", \"user_id\": \"bob\"}}"), "application/json").await.unwrap(), 400, "invalid_json"),
        (raw(format!("{{\"api_key\": \"{canary}\", \"api_key\": \"{canary}x\"}}"), "application/json").await.unwrap(), 400, "invalid_json"),
        (raw(format!("{{\"api_key\": 12345, \"endpoint\": [\"{canary}\"]}}"), "application/json").await.unwrap(), 400, "invalid_json"),
        (raw(format!("{{\"key\": \"{canary}\"}}"), "application/json").await.unwrap(), 400, "invalid_json"),
        (raw(format!("{{\"api_key\": \"{canary}\"}}"), "text/plain").await.unwrap(), 415, "unsupported_media_type"),
        (raw(format!("{{\"api_key\": \"{}\"}}", "k".repeat(17 * 1024)), "application/json").await.unwrap(), 413, "payload_too_large"),
        (app.save_key(&token, "alice", "openai", json!({ "api_key": "" })).await, 422, "key_empty"),
        (app.save_key(&token, "alice", "openai", json!({ "api_key": "   \n" })).await, 422, "key_empty"),
        (app.save_key(&token, "alice", "openai", json!({ "api_key": format!("{canary} x") })).await, 422, "key_invalid_chars"),
        (app.save_key(&token, "alice", "openai", json!({ "api_key": format!("{canary}\u{0}") })).await, 422, "key_invalid_chars"),
        (app.save_key(&token, "alice", "openai", json!({ "api_key": format!("{canary}\u{200b}") })).await, 422, "key_invalid_chars"),
        (app.save_key(&token, "alice", "openai", json!({ "api_key": "k".repeat(513) })).await, 422, "key_too_long"),
        (app.save_key(&token, "alice", "openai", json!({ "api_key": "sk-p********abcd" })).await, 422, "key_is_masked"),
        (app.save_key(&token, "alice", "openai", json!({ "api_key": canary, "endpoint": "https://x.openai.azure.com" })).await, 422, "unexpected_field"),
        (app.save_key(&token, "alice", "azure_openai", json!({ "api_key": canary })).await, 422, "endpoint_required"),
        (app.save_key(&token, "alice", "azure_openai", json!({ "api_key": canary, "endpoint": "http://x.openai.azure.com", "deployment": "d" })).await, 422, "invalid_endpoint"),
        (app.save_key(&token, "alice", "OPENAI", key_body(&canary)).await, 404, "unknown_provider"),
        (app.save_key(&token, "alice", "openai%2F..%2Fadmin", key_body(&canary)).await, 404, "unknown_provider"),
        (app.save_key(&token, "alice", "openai%00", key_body(&canary)).await, 404, "unknown_provider"),
        (app.save_key(&token, "alice", &"p".repeat(5000), key_body(&canary)).await, 404, "unknown_provider"),
        (app.save_key(&token, "al%20ice", "openai", key_body(&canary)).await, 400, "invalid_user_id"),
        (app.save_key(&token, &"a".repeat(65), "openai", key_body(&canary)).await, 400, "invalid_user_id"),
        (app.client.get(app.url("/api/nope")).send().await.unwrap(), 404, "not_found"),
        (app.client.get(app.url("/nope")).send().await.unwrap(), 404, "not_found"),
        (app.client.put(&url).bearer_auth(&token).json(&key_body(&canary)).send().await.unwrap(), 405, "method_not_allowed"),
        (app.client.get(app.url("/api/user/api-keys/alice/audit?limit=lots")).bearer_auth(&token).send().await.unwrap(), 400, "invalid_query"),
    ];
    for (i, (response, status, code)) in cases.into_iter().enumerate() {
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let (got, body) = body(response).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "case {i}: {body}"
        );
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "case {i}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "case {i}"
        );
        assert!(
            !body.to_string().contains("CANARY"),
            "case {i} echoed the input: {body}"
        );
    }
    // The key saved before all this is untouched.
    assert_eq!(
        app.open_key("alice", byok_core::ProviderKind::OpenAi).await,
        kept
    );
    let logs = byok_test_support::captured_logs();
    assert!(!logs.contains(&canary), "a rejected key reached the logs");
}
