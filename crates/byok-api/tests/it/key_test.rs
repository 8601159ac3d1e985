//! `POST …/keys/{provider}/test` end to end: the real server, mock providers.

use byok_test_support::{TestApp, TestDb, both_backends};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{body, key_body, openai_key, providers};

both_backends!(
    testing_stored_and_candidate_keys,
    test_results_by_provider_failure,
    tests_are_rate_limited_per_user
);

async fn test(
    app: &TestApp,
    token: &str,
    provider: &str,
    candidate: Option<Value>,
) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url(&format!("/api/user/api-keys/alice/keys/{provider}/test")))
        .bearer_auth(token);
    if let Some(candidate) = candidate {
        request = request.json(&candidate);
    }
    body(request.send().await.unwrap()).await
}

async fn testing_stored_and_candidate_keys(db: TestDb) {
    let mock = MockServer::start().await;
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = app.create_user("alice").await;
    let key = openai_key("tested");
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header("authorization", format!("Bearer {key}").as_str()))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": []})),
        )
        .expect(1)
        .mount(&mock)
        .await;

    let (status, missing) = test(&app, &token, "openai", None).await;
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (404, Some("key_not_found"))
    );

    assert_eq!(
        app.save_key(&token, "alice", "openai", key_body(&key))
            .await
            .status(),
        201
    );
    let (status, report) = test(&app, &token, "openai", None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["valid"].as_bool(), report["status"].as_str()),
        (Some(true), Some("valid"))
    );
    assert!(report["latency_ms"].is_u64() && report["checked_at"].is_string());
    let list = app
        .client
        .get(app.url("/api/user/api-keys/alice/keys"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let list = body(list).await.1;
    assert_eq!(list["keys"][0]["last_test_status"], "valid");
    assert_eq!(list["keys"][0]["last_tested_at"], report["checked_at"]);

    // A candidate Azure key, tested without saving it.
    let azure_key = "0123456789abcdef0123456789abcdef";
    Mock::given(method("GET"))
        .and(path("/openai/v1/models"))
        .and(header("api-key", azure_key))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": []})),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let candidate = json!({"api_key": azure_key, "endpoint": mock.uri(), "deployment": "gpt-4o"});
    let (status, report) = test(&app, &token, "azure_openai", Some(candidate)).await;
    assert_eq!(
        (status, report["status"].as_str()),
        (200, Some("valid")),
        "{report}"
    );
    let list = app
        .client
        .get(app.url("/api/user/api-keys/alice/keys"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        body(list).await.1["keys"].as_array().unwrap().len(),
        1,
        "a candidate is not saved"
    );

    // A malformed candidate never reaches a provider.
    let (status, bad) = test(&app, &token, "anthropic", Some(key_body(&key))).await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (422, Some("invalid_key_format"))
    );
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("anthropic keys")
    );

    let audit = app
        .client
        .get(app.url("/api/user/api-keys/alice/audit"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let audit = body(audit).await.1;
    let tests = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "key.test")
        .count();
    assert_eq!(tests, 2);
}

async fn test_results_by_provider_failure(db: TestDb) {
    let mock = MockServer::start().await;
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = app.create_user("alice").await;
    let anthropic = format!("sk-ant-api03-{}AA", "k".repeat(93));
    let deepseek = format!("sk-{}", "d".repeat(32));
    let gemini = format!("AIza{}", "g".repeat(35));
    let mounts = [
        ("/v1/models", ResponseTemplate::new(401).set_body_json(json!({"type": "error", "error": {"type": "authentication_error", "message": format!("invalid x-api-key {anthropic}")}}))),
        ("/user/balance", ResponseTemplate::new(402).set_body_json(json!({"error": {"message": "Insufficient Balance", "type": "unknown_error", "param": null, "code": "invalid_request_error"}}))),
        ("/v1beta/models", ResponseTemplate::new(429).set_body_json(json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED", "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "36s"}]}}))),
    ];
    let auth = [
        ("x-api-key", anthropic.clone()),
        ("authorization", format!("Bearer {deepseek}")),
        ("x-goog-api-key", gemini.clone()),
    ];
    for ((route, response), (name, value)) in mounts.into_iter().zip(auth) {
        Mock::given(path(route))
            .and(header(name, value.as_str()))
            .respond_with(response)
            .expect(1)
            .mount(&mock)
            .await;
    }
    let cases = [
        ("anthropic", &anthropic, "invalid"),
        ("deepseek", &deepseek, "no_credit"),
        ("gemini", &gemini, "rate_limited"),
    ];
    for (provider, key, expected) in cases {
        assert_eq!(
            app.save_key(&token, "alice", provider, key_body(key))
                .await
                .status(),
            201
        );
        let (status, report) = test(&app, &token, provider, None).await;
        assert_eq!(
            (status, report["status"].as_str(), report["valid"].as_bool()),
            (200, Some(expected), Some(false)),
            "{provider}: {report}"
        );
        assert!(
            !report.to_string().contains(&key[8..]),
            "the provider's echo of the key must not come back"
        );
    }
}

async fn tests_are_rate_limited_per_user(db: TestDb) {
    let mock = MockServer::start().await;
    let key = openai_key("rl");
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header("authorization", format!("Bearer {key}").as_str()))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": []})),
        )
        .expect(10)
        .mount(&mock)
        .await;
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let alice = app.create_user("alice").await;
    assert_eq!(
        app.save_key(&alice, "alice", "openai", key_body(&key))
            .await
            .status(),
        201
    );
    for i in 0..10 {
        assert_eq!(test(&app, &alice, "openai", None).await.0, 200, "test {i}");
    }
    let response = app
        .client
        .post(app.url("/api/user/api-keys/alice/keys/openai/test"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("retry-after").is_some());
    let (status, limited) = body(response).await;
    assert_eq!(
        (status, limited["error"]["code"].as_str()),
        (429, Some("too_many_tests"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retiring_key_kinds_warn_and_workspace_keys_carry_their_workspace() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1beta/models"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"models": []})))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header("anthropic-workspace-id", "wrkspc_01AbCdEf99"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})))
        .expect(1)
        .mount(&mock)
        .await;
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = app.create_user("alice").await;
    // A standard AIza key works, and the test says Google is retiring its kind.
    let standard = json!({"api_key": format!("AIza{}", "s".repeat(35))});
    let (status, report) = test(&app, &token, "gemini", Some(standard)).await;
    assert_eq!(
        (status, report["status"].as_str()),
        (200, Some("valid")),
        "{report}"
    );
    assert!(
        report["warnings"][0].as_str().unwrap().contains("AQ."),
        "{report}"
    );
    let auth_key = json!({"api_key": format!("AQ.{}", "a".repeat(40))});
    let (_, report) = test(&app, &token, "gemini", Some(auth_key)).await;
    assert_eq!(report["warnings"], json!([]));
    // An Anthropic key bound to a workspace keeps its workspace id.
    let anthropic = format!("sk-ant-api03-{}AA", "w".repeat(93));
    let bad = app
        .save_key(
            &token,
            "alice",
            "anthropic",
            json!({"api_key": anthropic, "workspace_id": "team-a"}),
        )
        .await;
    let (status, error) = body(bad).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (422, Some("invalid_workspace_id"))
    );
    let saved = app
        .save_key(
            &token,
            "alice",
            "anthropic",
            json!({"api_key": anthropic, "workspace_id": "wrkspc_01AbCdEf99"}),
        )
        .await;
    assert_eq!(saved.status(), 201);
    let (status, report) = test(&app, &token, "anthropic", None).await;
    assert_eq!(
        (status, report["status"].as_str()),
        (200, Some("valid")),
        "{report}"
    );
    app.stop().await;
}
