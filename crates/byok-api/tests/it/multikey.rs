//! Several keys per provider: management routes, failover from key to key
//! before another provider, rotation with overlap under traffic, and the
//! migration that turned each existing key into its provider's first key.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use byok_core::{ApiKey, ProviderKind, UserId};
use byok_test_support::{SpawnOptions, TestApp, TestDb, both_backends};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::{body, key_body, openai_key, providers};

both_backends!(
    a_provider_holds_several_keys_each_addressed_by_its_id,
    a_failing_key_moves_to_the_next_key_before_another_provider,
    rotation_with_overlap_fails_no_request,
    existing_keys_become_first_keys_and_are_bound_to_their_ids,
    a_keys_settings_change_without_the_key,
);

async fn a_keys_settings_change_without_the_key(db: TestDb) {
    let app = TestApp::spawn(&db).await;
    let token = app.create_user("alice").await;
    let secret = "0123456789abcdef0123456789abcdef";
    let (status, saved) = body(
        app.save_key(
            &token,
            "alice",
            "azure_openai",
            json!({"api_key": secret, "endpoint": "https://res1.openai.azure.com", "deployment": "chat1"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{saved}");
    let id = saved["id"].as_str().unwrap().to_owned();
    let (status, changed) = patch(
        &app,
        &token,
        "azure_openai",
        &id,
        json!({"deployment": "chat2", "embedding_deployment": "embed1", "api_version": "2024-10-21"}),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["settings"]["deployment"], "chat2");
    assert_eq!(changed["settings"]["embedding_deployment"], "embed1");
    assert_eq!(
        changed["settings"]["endpoint"], "https://res1.openai.azure.com",
        "kept"
    );
    assert_eq!(changed["masked_key"], saved["masked_key"]);
    assert_eq!(
        app.open_key_by_id("alice", &id).await,
        secret,
        "the key itself is untouched"
    );
    let (status, error) = patch(
        &app,
        &token,
        "azure_openai",
        &id,
        json!({"endpoint": "http://res1.example.com"}),
    )
    .await;
    assert_eq!(status, 422, "{error}");
    let (status, error) = patch(&app, &token, "openai", &id, json!({"deployment": "x"})).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (404, Some("key_not_found"))
    );
}

fn anthropic_key() -> String {
    format!("sk-ant-api03-{}AA", "k".repeat(93))
}

fn openai_answer(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    }))
}

fn hello() -> Value {
    json!({"model": "auto", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16})
}

async fn list(app: &TestApp, token: &str, user: &str) -> Vec<Value> {
    let (status, keys) = body(
        app.client
            .get(app.url(&format!("/api/user/api-keys/{user}/keys")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{keys}");
    keys["keys"].as_array().unwrap().clone()
}

async fn add(app: &TestApp, token: &str, provider: &str, key: &Value) -> (u16, Value) {
    body(
        app.client
            .post(app.url(&format!("/api/user/api-keys/alice/keys/{provider}/add")))
            .bearer_auth(token)
            .json(key)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn patch(
    app: &TestApp,
    token: &str,
    provider: &str,
    id: &str,
    change: Value,
) -> (u16, Value) {
    body(
        app.client
            .patch(app.url(&format!("/api/user/api-keys/alice/keys/{provider}/{id}")))
            .bearer_auth(token)
            .json(&change)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn a_provider_holds_several_keys_each_addressed_by_its_id(db: TestDb) {
    let app = TestApp::spawn_options(
        &db,
        byok_providers::ProviderSettings::default(),
        SpawnOptions {
            max_keys_per_provider: Some(3),
            ..SpawnOptions::default()
        },
    )
    .await;
    let token = app.create_user("alice").await;
    let bob = app.create_user("bob").await;
    let (personal, team, third) = (
        openai_key("personal"),
        openai_key("team"),
        openai_key("third"),
    );

    // The seed's route saves the provider's default key, as before.
    let (status, first) = body(
        app.save_key(
            &token,
            "alice",
            "openai",
            json!({"api_key": personal, "label": "personal"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(
        (first["label"].as_str(), first["position"].as_i64()),
        (Some("personal"), Some(0))
    );
    let first_id = first["id"].as_str().unwrap().to_owned();

    // Another key is added last in order.
    let (status, second) = add(
        &app,
        &token,
        "openai",
        &json!({"api_key": team, "label": "team"}),
    )
    .await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["position"], 1);
    let second_id = second["id"].as_str().unwrap().to_owned();
    assert_ne!(first_id, second_id);

    let keys = list(&app, &token, "alice").await;
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["id"], first_id.as_str());
    assert_eq!(keys[1]["label"], "team");
    let listing = serde_json::to_string(&keys).unwrap();
    for secret in [&personal, &team] {
        assert!(!listing.contains(secret.as_str()), "keys are listed masked");
    }

    // Promote the team key; disable the personal one.
    let (status, promoted) =
        patch(&app, &token, "openai", &second_id, json!({"position": 0})).await;
    assert_eq!(
        (status, promoted["position"].as_i64()),
        (200, Some(0)),
        "{promoted}"
    );
    let (status, demoted) = patch(
        &app,
        &token,
        "openai",
        &first_id,
        json!({"position": 2, "enabled": false, "weight": 5}),
    )
    .await;
    assert_eq!(status, 200, "{demoted}");
    assert_eq!(
        (demoted["enabled"].as_bool(), demoted["weight"].as_i64()),
        (Some(false), Some(5))
    );
    let keys = list(&app, &token, "alice").await;
    assert_eq!(
        keys[0]["id"],
        second_id.as_str(),
        "the promoted key is first"
    );
    // The seed's POST now replaces the promoted (default) key, keeping its id and label.
    let (status, replaced) = body(
        app.save_key(&token, "alice", "openai", key_body(&openai_key("new")))
            .await,
    )
    .await;
    assert_eq!(
        (status, replaced["id"].as_str(), replaced["label"].as_str()),
        (200, Some(second_id.as_str()), Some("team"))
    );

    // Replace one key by id.
    let (status, put) = body(
        app.client
            .put(app.url(&format!("/api/user/api-keys/alice/keys/openai/{first_id}")))
            .bearer_auth(&token)
            .json(&json!({"api_key": third}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, put["id"].as_str()),
        (200, Some(first_id.as_str())),
        "{put}"
    );
    assert!(
        put["masked_key"]
            .as_str()
            .unwrap()
            .ends_with(&third[third.len() - 4..])
    );
    assert_eq!(app.open_key_by_id("alice", &first_id).await, third);

    // Refusals: a bad label or position, the cap, another user's key, an unknown id.
    let (status, error) = patch(
        &app,
        &token,
        "openai",
        &first_id,
        json!({"label": "x".repeat(65)}),
    )
    .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (422, Some("invalid_label"))
    );
    let (status, error) = patch(&app, &token, "openai", &first_id, json!({"position": -1})).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (422, Some("invalid_position"))
    );
    let (status, error) = patch(&app, &token, "openai", &first_id, json!({"colour": "red"})).await;
    assert_eq!(status, 400, "unknown fields are refused: {error}");
    let (status, _) = add(&app, &token, "openai", &key_body(&openai_key("3"))).await;
    assert_eq!(status, 201);
    let (status, error) = add(&app, &token, "openai", &key_body(&openai_key("4"))).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (422, Some("too_many_keys"))
    );
    let (status, error) = patch(&app, &token, "anthropic", &first_id, json!({"label": "x"})).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (404, Some("key_not_found")),
        "a key is found under its own provider only"
    );
    let bobs = app
        .client
        .patch(app.url(&format!("/api/user/api-keys/bob/keys/openai/{first_id}")))
        .bearer_auth(&bob)
        .json(&json!({"label": "mine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bobs.status(), 404, "bob cannot reach alice's key by its id");
    let (status, _) = patch(
        &app,
        &token,
        "openai",
        "0b4e1c8e-0000-4000-8000-000000000000",
        json!({"label": "x"}),
    )
    .await;
    assert_eq!(status, 404);

    // Delete one key by id: the others stay.
    let deleted = app
        .client
        .delete(app.url(&format!("/api/user/api-keys/alice/keys/openai/{first_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let keys = list(&app, &token, "alice").await;
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k["id"] != first_id.as_str()));
    // The seed's DELETE removes all of the provider's keys.
    let all = app
        .client
        .delete(app.url("/api/user/api-keys/alice/keys/openai"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(all.status(), 204);
    assert!(list(&app, &token, "alice").await.is_empty());
    let audit = app.service.store().clone();
    let alice = UserId::parse("alice").unwrap();
    let events = audit
        .run(move |c| byok_store::audit::list_for_user_since(c, &alice, None, None, 100))
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.action == byok_store::audit::AuditAction::KeyUpdate),
        "order and switch changes are audited"
    );
}

async fn a_failing_key_moves_to_the_next_key_before_another_provider(db: TestDb) {
    let mock = MockServer::start().await;
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = app.create_user("alice").await;
    let (rejected, limited, anthropic) = (
        openai_key("rejected"),
        openai_key("limited"),
        anthropic_key(),
    );
    app.save_key(&token, "alice", "openai", key_body(&rejected))
        .await;
    let (status, second) = add(&app, &token, "openai", &key_body(&limited)).await;
    assert_eq!(status, 201);
    let limited_id = second["id"].as_str().unwrap().to_owned();
    app.save_key(&token, "alice", "anthropic", key_body(&anthropic))
        .await;

    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {rejected}").as_str()))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}),
        ))
        .expect(1) // the second request skips the rejected key
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {limited}").as_str()))
        .respond_with(ResponseTemplate::new(429).set_body_json(
            json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}),
        ))
        .up_to_n_times(1)
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", anthropic.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
            "content": [{"type": "text", "text": "Hello from Claude"}],
            "stop_reason": "end_turn", "usage": {"input_tokens": 10, "output_tokens": 5}
        })))
        .expect(1)
        .mount(&mock)
        .await;

    // 401 on the first key, 429 on the second, then the next provider.
    let response = crate::gateway_chat(&app, &token, &hello()).await;
    let attempts = response.headers()["x-byok-attempts"]
        .to_str()
        .unwrap()
        .to_owned();
    let (status, answer) = body(response).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(attempts, "openai,openai,anthropic");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "Hello from Claude"
    );

    // The rejected key is marked in the store; the rate-limited key is not.
    let keys = list(&app, &token, "alice").await;
    let openai: Vec<&Value> = keys.iter().filter(|k| k["provider"] == "openai").collect();
    assert_eq!(openai[0]["last_test_status"], "invalid");
    assert_eq!(openai[1]["last_test_status"], Value::Null);

    // Next request: the rejected key is skipped, the second key answers.
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header(
            "authorization",
            format!("Bearer {limited}").as_str(),
        ))
        .respond_with(openai_answer("Hi from key 2"))
        .expect(1)
        .mount(&mock)
        .await;
    let response = crate::gateway_chat(&app, &token, &hello()).await;
    assert_eq!(response.headers()["x-byok-attempts"], "openai");
    let (status, answer) = body(response).await;
    assert_eq!(
        (status, answer["choices"][0]["message"]["content"].as_str()),
        (200, Some("Hi from key 2"))
    );

    // Health is per key: the second key is healthy, the first rejected.
    let alice = UserId::parse("alice").unwrap();
    let stored = list(&app, &token, "alice").await;
    let first_id = stored[1]["id"].as_str().unwrap().to_owned(); // anthropic sorts first
    let health = app.service.health().key_health(
        &alice,
        [
            (ProviderKind::OpenAi, first_id.as_str()),
            (ProviderKind::OpenAi, limited_id.as_str()),
        ],
        std::time::Instant::now(),
    );
    assert!(
        health[0].key_rejected && !health[1].key_rejected,
        "{health:?}"
    );
}

/// Answers OpenAI chat calls: 200 for `new` always, and for `old` until it
/// is revoked at the provider (then 401).
struct RotatingProvider {
    old: String,
    new: String,
    old_revoked: Arc<AtomicBool>,
    calls_with_new: Arc<AtomicUsize>,
}

impl Respond for RotatingProvider {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let auth = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if auth == format!("Bearer {}", self.new) {
            self.calls_with_new.fetch_add(1, Ordering::SeqCst);
            return openai_answer("new");
        }
        if auth == format!("Bearer {}", self.old) && !self.old_revoked.load(Ordering::SeqCst) {
            return openai_answer("old");
        }
        ResponseTemplate::new(401).set_body_json(
            json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}),
        )
    }
}

#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn rotation_with_overlap_fails_no_request(db: TestDb) {
    let mock = MockServer::start().await;
    let app = Arc::new(TestApp::spawn_with_providers(&db, providers(&mock)).await);
    let token = app.create_user("alice").await;
    let (old, new) = (openai_key("old"), openai_key("new"));
    let (old_revoked, calls_with_new) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(RotatingProvider {
            old: old.clone(),
            new: new.clone(),
            old_revoked: Arc::clone(&old_revoked),
            calls_with_new: Arc::clone(&calls_with_new),
        })
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header("authorization", format!("Bearer {new}").as_str()))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": []})),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let (status, saved) = body(
        app.save_key(&token, "alice", "openai", key_body(&old))
            .await,
    )
    .await;
    assert_eq!(status, 201);
    let old_id = saved["id"].as_str().unwrap().to_owned();

    // Steady traffic: two clients in a loop for the whole rotation.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (app, token, stop) = (Arc::clone(&app), token.clone(), Arc::clone(&stop));
        clients.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let response = crate::gateway_chat(&app, &token, &hello()).await;
                statuses.push(response.status().as_u16());
            }
            statuses
        }));
    }
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(150));
    pause().await;
    // 1. add the new key as the next in order, 2. test it, 3. promote it,
    // 4. retire the old key (disable, revoke at the provider, delete).
    let (status, added) = add(&app, &token, "openai", &key_body(&new)).await;
    assert_eq!(status, 201);
    let new_id = added["id"].as_str().unwrap().to_owned();
    pause().await;
    let (status, report) = body(
        app.client
            .post(app.url(&format!(
                "/api/user/api-keys/alice/keys/openai/{new_id}/test"
            )))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, report["status"].as_str(), report["key_id"].as_str()),
        (200, Some("valid"), Some(new_id.as_str())),
        "{report}"
    );
    pause().await;
    assert_eq!(
        patch(&app, &token, "openai", &new_id, json!({"position": 0}))
            .await
            .0,
        200
    );
    assert_eq!(
        patch(
            &app,
            &token,
            "openai",
            &old_id,
            json!({"position": 1, "enabled": false})
        )
        .await
        .0,
        200
    );
    pause().await;
    old_revoked.store(true, Ordering::SeqCst);
    pause().await;
    let deleted = app
        .client
        .delete(app.url(&format!("/api/user/api-keys/alice/keys/openai/{old_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    pause().await;
    stop.store(true, Ordering::SeqCst);
    let mut statuses = Vec::new();
    for client in clients {
        statuses.extend(client.await.unwrap());
    }
    assert!(
        statuses.len() >= 10,
        "traffic ran throughout: {}",
        statuses.len()
    );
    assert!(
        statuses.iter().all(|s| *s == 200),
        "no request failed: {statuses:?}"
    );
    assert!(
        calls_with_new.load(Ordering::SeqCst) > 0,
        "the new key took over"
    );
}

#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn existing_keys_become_first_keys_and_are_bound_to_their_ids(db: TestDb) {
    use diesel::connection::SimpleConnection as _;
    use diesel::prelude::*;
    // The database as the previous release left it: migrations up to 6,
    // one key sealed the old way (bound to user and provider only).
    let vault = byok_test_support::test_vault();
    let alice = UserId::parse("alice").unwrap();
    let raw = openai_key("legacy");
    let sealed = vault
        .seal(
            &ApiKey::parse(&raw).unwrap(),
            &byok_vault::Binding::new(&alice, ProviderKind::OpenAi),
        )
        .unwrap();
    let mut conn = byok_store::DbConnection::establish(db.url()).unwrap();
    byok_store::migrate_through(&mut conn, "2026-11-30-000006").unwrap();
    let insert = "INSERT INTO users (id, created_at) VALUES ('alice', '2026-11-01 00:00:00');";
    let key_row = "INSERT INTO provider_keys (id, user_id, provider, sealed_key, master_key_id, masked_key, settings, created_at, updated_at) \
                   VALUES ('7d3f0a52-1c1e-4c8e-9f0e-2b1a5d6c7e8f', 'alice', 'openai', $1, 1, 'sk-p********abcd', '{}', '2026-11-01 00:00:00', '2026-11-01 00:00:00')";
    match &mut conn {
        byok_store::DbConnection::Sqlite(c) => {
            c.batch_execute(insert).unwrap();
            diesel::sql_query(key_row.replace("$1", "?"))
                .bind::<diesel::sql_types::Binary, _>(sealed.as_bytes())
                .execute(c)
                .unwrap();
        }
        byok_store::DbConnection::Postgres(c) => {
            c.batch_execute(insert).unwrap();
            diesel::sql_query(key_row)
                .bind::<diesel::sql_types::Binary, _>(sealed.as_bytes())
                .execute(c)
                .unwrap();
        }
    }
    drop(conn);

    // The new release migrates, keeps the key as the provider's first, and
    // binds it to its id at start-up.
    let app = TestApp::spawn(&db).await;
    let store = app.service.store().clone();
    let a = alice.clone();
    let stored = store
        .run(move |c| byok_store::keys::list_for_user(c, &a))
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    let key = &stored[0];
    assert_eq!(
        (key.id.as_str(), key.position, key.enabled),
        ("7d3f0a52-1c1e-4c8e-9f0e-2b1a5d6c7e8f", 0, true)
    );
    assert_eq!(key.binding_version, byok_store::keys::BINDING_KEY_ID);
    assert_eq!(app.open_key("alice", ProviderKind::OpenAi).await, raw);
    let blob = byok_vault::SealedKey::from_bytes(key.sealed_key.clone());
    assert!(
        vault
            .open(
                &blob,
                &byok_vault::Binding::new(&alice, ProviderKind::OpenAi)
            )
            .is_err(),
        "once bound, the key no longer opens without its id"
    );

    // A deleted key's row put back by SQL is not served.
    let token = app
        .service
        .operator()
        .issue_token(Some(&alice))
        .await
        .unwrap();
    let token = secrecy::ExposeSecret::expose_secret(&token.token).to_owned();
    let row = key.clone();
    let deleted = app
        .client
        .delete(
            app.url("/api/user/api-keys/alice/keys/openai/7d3f0a52-1c1e-4c8e-9f0e-2b1a5d6c7e8f"),
        )
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let restore = row.clone();
    store
        .run(move |c| {
            let new = byok_store::keys::NewProviderKey {
                id: &restore.id,
                user_id: &restore.user_id,
                provider: restore.provider,
                sealed_key: &restore.sealed_key,
                master_key_id: restore.master_key_id,
                masked_key: &restore.masked_key,
                settings: &restore.settings,
                label: None,
            };
            let event = byok_store::audit::NewAuditEvent::new(
                byok_store::audit::Actor::System,
                byok_store::audit::AuditAction::KeyCreate,
                byok_store::audit::AuditOutcome::Success,
            );
            byok_store::keys::put(c, &new, event, byok_store::now())
        })
        .await
        .unwrap();
    assert!(
        list(&app, &token, "alice").await.is_empty(),
        "the restored row is not listed"
    );
    let (status, _) = body(crate::gateway_chat(&app, &token, &hello()).await).await;
    assert_ne!(status, 200, "nor used");
}
