//! Scoped, expiring user tokens; service tokens acting for users; operator
//! routes over users and tokens; browser access (CORS, framing).

use std::sync::{Arc, Mutex};

use byok_test_support::{ADMIN_TOKEN, SpawnOptions, TestApp, TestDb, both_backends};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{body, key_body, openai_key, providers};

both_backends!(
    users_create_scoped_tokens_that_are_refused_outside_their_scope,
    an_expired_token_is_refused_like_an_unknown_one,
    a_service_token_acts_for_the_users_it_names_and_never_as_admin,
    operators_list_disable_and_delete_users,
    browser_access_is_off_unless_the_operator_names_origins,
);

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    url: &str,
    token: &str,
    payload: Option<Value>,
) -> (u16, Value) {
    let mut request = app.client.request(method, app.url(url)).bearer_auth(token);
    if let Some(payload) = payload {
        request = request.json(&payload);
    }
    body(request.send().await.unwrap()).await
}

async fn create_token(app: &TestApp, token: &str, user: &str, payload: Value) -> (u16, Value) {
    send(
        app,
        reqwest::Method::POST,
        &format!("/api/user/api-keys/{user}/tokens"),
        token,
        Some(payload),
    )
    .await
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8})
}

fn openai_answer() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    }))
}

#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn users_create_scoped_tokens_that_are_refused_outside_their_scope(db: TestDb) {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(openai_answer())
        .mount(&mock)
        .await;
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let full = app.create_user("alice").await;
    let bob = app.create_user("bob").await;
    app.save_key(&full, "alice", "openai", key_body(&openai_key("a")))
        .await;
    app.save_key(
        &full,
        "alice",
        "gemini",
        json!({"api_key": format!("AIza{:_<35}", "g")}),
    )
    .await;

    // A gateway-only token for one model.
    let (status, created) = create_token(
        &app,
        &full,
        "alice",
        json!({"label": "IDE", "doors": ["gateway"], "providers": ["openai"], "models": ["gpt-4o-mini"]}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let ide = created["token"].as_str().unwrap().to_owned();
    let ide_id = created["id"].as_str().unwrap().to_owned();
    assert!(ide.starts_with("byok_"));
    assert_eq!(created["scope"]["doors"], json!(["gateway"]));

    let response = crate::gateway_chat(&app, &ide, &chat("gpt-4o-mini")).await;
    assert_eq!(response.status(), 200);
    let (status, error) = body(crate::gateway_chat(&app, &ide, &chat("gpt-4o")).await).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (403, Some("model_not_allowed")),
        "{error}"
    );
    let (status, error) =
        body(crate::gateway_chat(&app, &ide, &chat("gemini-2.5-flash-lite")).await).await;
    assert_eq!(status, 403, "{error}");
    let (_, openai_only) = create_token(
        &app,
        &full,
        "alice",
        json!({"label": "openai only", "providers": ["openai"]}),
    )
    .await;
    let openai_only = openai_only["token"].as_str().unwrap().to_owned();
    let (status, error) =
        body(crate::gateway_chat(&app, &openai_only, &chat("gemini-2.5-flash-lite")).await).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (403, Some("provider_not_allowed")),
        "{error}"
    );
    let response = crate::gateway_chat(&app, &openai_only, &chat("auto")).await;
    assert_eq!(response.headers()["x-byok-provider"], "openai");
    // `auto` routes only to what the token may use (never Gemini, though cheaper).
    let response = crate::gateway_chat(&app, &ide, &chat("auto")).await;
    assert_eq!(response.headers()["x-byok-provider"], "openai");
    // Other doors are closed to it, and it cannot mint or list tokens.
    let (status, error) = send(
        &app,
        reqwest::Method::GET,
        "/api/user/api-keys/alice/keys",
        &ide,
        None,
    )
    .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (403, Some("token_door_not_allowed"))
    );
    let (status, _) = create_token(&app, &ide, "alice", json!({"label": "escalate"})).await;
    assert_eq!(status, 403);

    // A read-only reports token: lists, never writes.
    let (_, created) = create_token(
        &app,
        &full,
        "alice",
        json!({"label": "dashboard", "doors": ["reports"]}),
    )
    .await;
    let reports = created["token"].as_str().unwrap().to_owned();
    let (status, _) = send(
        &app,
        reqwest::Method::GET,
        "/api/user/api-keys/alice/usage",
        &reports,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(
        &app,
        reqwest::Method::DELETE,
        "/api/user/api-keys/alice/keys/openai",
        &reports,
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = body(crate::gateway_chat(&app, &reports, &chat("auto")).await).await;
    assert_eq!(status, 403);

    // Bad scopes are refused by name; user tokens cannot name users.
    for (payload, code) in [
        (json!({"doors": []}), "invalid_scope"),
        (json!({"label": "x".repeat(65)}), "invalid_label"),
        (
            json!({"expires_at": "2001-01-01T00:00:00Z"}),
            "invalid_expiry",
        ),
    ] {
        let (status, error) = create_token(&app, &full, "alice", payload.clone()).await;
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (422, Some(code)),
            "{payload}"
        );
    }
    let (status, _) = create_token(&app, &full, "alice", json!({"doors": ["admin"]})).await;
    assert_eq!(status, 400, "an unknown door is malformed input");
    let (status, _) = create_token(&app, &full, "alice", json!({"users": ["bob"]})).await;
    assert_eq!(status, 400, "user tokens cannot name users");
    let (status, _) = create_token(&app, &bob, "alice", json!({})).await;
    assert_eq!(status, 404, "bob cannot mint alice's tokens");

    // The list shows metadata, last use and the token's own usage; never a secret.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, listed) = send(
        &app,
        reqwest::Method::GET,
        "/api/user/api-keys/alice/tokens",
        &full,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let text = listed.to_string();
    assert!(!text.contains(&ide) && !text.contains(&reports) && !text.contains(&full));
    let ide_row = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == ide_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (ide_row["label"].as_str(), ide_row["status"].as_str()),
        (Some("IDE"), Some("active"))
    );
    assert!(ide_row["last_used_at"].is_string(), "{ide_row}");

    // Revoked: refused exactly like an unknown token.
    let (status, _) = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/user/api-keys/alice/tokens/{ide_id}"),
        &full,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let revoked = body(crate::gateway_chat(&app, &ide, &chat("gpt-4o-mini")).await).await;
    let unknown = body(
        crate::gateway_chat(
            &app,
            "byok_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            &chat("gpt-4o-mini"),
        )
        .await,
    )
    .await;
    assert_eq!(revoked, unknown);
    let (status, _) = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/user/api-keys/bob/tokens/{ide_id}"),
        &bob,
        None,
    )
    .await;
    assert_eq!(status, 404, "bob cannot revoke alice's tokens");

    // Usage is recorded per token.
    let store = app.service.store().clone();
    app.stop().await;
    let alice = byok_core::UserId::parse("alice").unwrap();
    let totals = store
        .run(move |c| byok_store::usage::totals_by_token(c, &alice))
        .await
        .unwrap();
    assert_eq!(totals.get(&ide_id).map(|u| u.requests), Some(2));
    assert!(
        totals.get(&ide_id).is_some_and(|u| u.picodollars > 0),
        "{totals:?}"
    );
}

async fn an_expired_token_is_refused_like_an_unknown_one(db: TestDb) {
    let now = Arc::new(Mutex::new(Utc::now()));
    let clock = {
        let now = Arc::clone(&now);
        Arc::new(move || *now.lock().unwrap()) as byok_api::service::Clock
    };
    let app = TestApp::spawn_options(
        &db,
        byok_providers::ProviderSettings::default(),
        SpawnOptions {
            clock: Some(clock),
            ..SpawnOptions::default()
        },
    )
    .await;
    let full = app.create_user("alice").await;
    let expires: DateTime<Utc> = *now.lock().unwrap() + Duration::hours(1);
    let (status, created) = create_token(
        &app,
        &full,
        "alice",
        json!({"label": "CI", "expires_at": expires.to_rfc3339()}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let ci = created["token"].as_str().unwrap().to_owned();
    let whoami = |token: String| {
        let app = &app;
        async move {
            send(
                app,
                reqwest::Method::GET,
                "/api/user/api-keys/alice/keys",
                &token,
                None,
            )
            .await
        }
    };
    assert_eq!(whoami(ci.clone()).await.0, 200);
    *now.lock().unwrap() += Duration::minutes(59);
    assert_eq!(whoami(ci.clone()).await.0, 200);
    *now.lock().unwrap() += Duration::minutes(1);
    let after_expiry = whoami(ci.clone()).await;
    let unknown =
        whoami("byok_0123456789abcdef_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB".into()).await;
    assert_eq!(after_expiry.0, 401);
    assert_eq!(after_expiry, unknown);
    let (_, listed) = send(
        &app,
        reqwest::Method::GET,
        "/api/user/api-keys/alice/tokens",
        &full,
        None,
    )
    .await;
    assert!(
        listed["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["label"] == "CI" && t["status"] == "expired"),
        "{listed}"
    );
}

#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn a_service_token_acts_for_the_users_it_names_and_never_as_admin(db: TestDb) {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(openai_answer())
        .mount(&mock)
        .await;
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    for user in ["app-alice", "app-bob", "carol"] {
        app.create_user(user).await;
    }
    let (status, created) = send(
        &app,
        reqwest::Method::POST,
        "/api/admin/service-tokens",
        ADMIN_TOKEN,
        Some(json!({"label": "web app", "user_prefix": "app-"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let service = created["token"].as_str().unwrap().to_owned();
    let service_id = created["id"].as_str().unwrap().to_owned();
    let acting = |user: &'static str, method: reqwest::Method, url: &str| {
        app.client
            .request(method, app.url(url))
            .bearer_auth(&service)
            .header("X-BYOK-User", user)
    };

    // Saves a key and calls the gateway for its signed-in user.
    let saved = acting(
        "app-alice",
        reqwest::Method::POST,
        "/api/user/api-keys/app-alice/keys/openai",
    )
    .json(&key_body(&openai_key("svc")))
    .send()
    .await
    .unwrap();
    assert_eq!(saved.status(), 201);
    let answer = acting("app-alice", reqwest::Method::POST, "/v1/chat/completions")
        .json(&chat("auto"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let whoami = acting("app-alice", reqwest::Method::GET, "/api/user/whoami")
        .send()
        .await
        .unwrap();
    assert_eq!(body(whoami).await.1["user_id"], "app-alice");

    // Not for another user than the one it names, nor outside its users.
    let other = acting(
        "app-alice",
        reqwest::Method::GET,
        "/api/user/api-keys/app-bob/keys",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(other.status(), 404);
    let (status, error) = body(
        acting(
            "carol",
            reqwest::Method::GET,
            "/api/user/api-keys/carol/keys",
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (403, Some("user_not_allowed"))
    );
    // Never on admin routes, even naming a user.
    let admin = acting("app-alice", reqwest::Method::POST, "/api/admin/users")
        .json(&json!({"user_id": "mallory"}))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 403);
    // Without X-BYOK-User it is nobody.
    let (status, error) = send(
        &app,
        reqwest::Method::GET,
        "/api/user/api-keys/app-alice/keys",
        &service,
        None,
    )
    .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("service_token_needs_user"))
    );
    // A user token cannot name another user.
    let alice_token = app.create_user("plain").await;
    let named = app
        .client
        .get(app.url("/api/user/api-keys/plain/keys"))
        .bearer_auth(&alice_token)
        .header("X-BYOK-User", "app-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(named.status(), 400);

    // Audited under the service token and the user.
    let alice = byok_core::UserId::parse("app-alice").unwrap();
    let events = app
        .service
        .store()
        .run(move |c| byok_store::audit::list_for_user_since(c, &alice, None, None, 50))
        .await
        .unwrap();
    let key_create = events
        .iter()
        .find(|e| e.action == byok_store::audit::AuditAction::KeyCreate)
        .unwrap();
    assert_eq!(
        serde_json::to_value(key_create).unwrap()["actor"],
        format!("service:{service_id}")
    );

    // Listed for the operator, then revoked: refused everywhere.
    let (_, listed) = send(
        &app,
        reqwest::Method::GET,
        "/api/admin/service-tokens",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(listed["tokens"][0]["label"], "web app");
    assert!(!listed.to_string().contains(&service));
    let (status, _) = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/admin/tokens/{service_id}"),
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let revoked = acting("app-alice", reqwest::Method::POST, "/v1/chat/completions")
        .json(&chat("auto"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 401);
}

#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn operators_list_disable_and_delete_users(db: TestDb) {
    let app = TestApp::spawn(&db).await;
    let mut tokens = Vec::new();
    for user in ["team_a.1", "team_a.2", "teamxa", "zed"] {
        tokens.push(app.create_user(user).await);
    }
    let (status, page) = send(
        &app,
        reqwest::Method::GET,
        "/api/admin/users?prefix=team_a&limit=1",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["users"][0]["id"], "team_a.1");
    let next = page["next_after"].as_str().unwrap().to_owned();
    let (_, page) = send(
        &app,
        reqwest::Method::GET,
        &format!("/api/admin/users?prefix=team_a&limit=1&after={next}"),
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(page["users"][0]["id"], "team_a.2", "`_` is not a wildcard");
    let (_, page) = send(
        &app,
        reqwest::Method::GET,
        "/api/admin/users?prefix=team_a&limit=1&after=team_a.2",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(page["users"], json!([]));
    let (status, _) = send(
        &app,
        reqwest::Method::GET,
        "/api/admin/users",
        &tokens[0],
        None,
    )
    .await;
    assert_eq!(status, 403);

    // A user's tokens, metadata only.
    let (status, listed) = send(
        &app,
        reqwest::Method::GET,
        "/api/admin/users/zed/tokens",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(
        (status, listed["tokens"].as_array().unwrap().len()),
        (200, 1)
    );
    assert!(!listed.to_string().contains(&tokens[3]));

    // Disabled: refused like an unknown token; enabled again: back.
    let keys = "/api/user/api-keys/zed/keys";
    let (status, _) = send(
        &app,
        reqwest::Method::PATCH,
        "/api/admin/users/zed",
        ADMIN_TOKEN,
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        send(&app, reqwest::Method::GET, keys, &tokens[3], None)
            .await
            .0,
        401
    );
    send(
        &app,
        reqwest::Method::PATCH,
        "/api/admin/users/zed",
        ADMIN_TOKEN,
        Some(json!({"disabled": false})),
    )
    .await;
    assert_eq!(
        send(&app, reqwest::Method::GET, keys, &tokens[3], None)
            .await
            .0,
        200
    );

    // Deleted with its keys: rows gone (crypto-shredded), and the trail says so.
    app.save_key(&tokens[3], "zed", "openai", key_body(&openai_key("z")))
        .await;
    let (status, _) = send(
        &app,
        reqwest::Method::DELETE,
        "/api/admin/users/zed",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let zed = byok_core::UserId::parse("zed").unwrap();
    let z = zed.clone();
    let (keys_left, events) = app
        .service
        .store()
        .run(move |c| {
            Ok((
                byok_store::keys::list_for_user(c, &z)?,
                byok_store::audit::list_for_user_since(c, &z, None, None, 50)?,
            ))
        })
        .await
        .unwrap();
    assert!(keys_left.is_empty());
    let deleted = events
        .iter()
        .find(|e| e.action == byok_store::audit::AuditAction::UserDelete)
        .unwrap();
    assert_eq!(
        serde_json::to_value(deleted).unwrap()["detail"],
        "keys_shredded:1"
    );
}

#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn browser_access_is_off_unless_the_operator_names_origins(db: TestDb) {
    let preflight = |app: &TestApp, origin: &str| {
        app.client
            .request(
                reqwest::Method::OPTIONS,
                app.url("/api/user/api-keys/alice/keys"),
            )
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "authorization")
            .send()
    };
    // Off by default: refused preflight, page never framed.
    let app = TestApp::spawn(&db).await;
    let refused = preflight(&app, "https://app.example.com").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let page = app.client.get(app.url("/settings")).send().await.unwrap();
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    app.stop().await;

    let app = TestApp::spawn_options(
        &db,
        byok_providers::ProviderSettings::default(),
        SpawnOptions {
            browser_access: byok_api::cors::BrowserAccess::new(
                vec!["https://app.example.com".into()],
                vec!["https://portal.example.com".into()],
            ),
            ..SpawnOptions::default()
        },
    )
    .await;
    let token = app.create_user("alice").await;
    let allowed = preflight(&app, "https://app.example.com").await.unwrap();
    assert_eq!(allowed.status(), 204);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(
        allowed
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    assert!(
        allowed.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    assert_eq!(
        preflight(&app, "https://evil.example.com")
            .await
            .unwrap()
            .status(),
        403
    );
    let listed = app
        .client
        .get(app.url("/api/user/api-keys/alice/keys"))
        .bearer_auth(&token)
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(
        listed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let other = app
        .client
        .get(app.url("/api/user/api-keys/alice/keys"))
        .bearer_auth(&token)
        .header("Origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    // Admin routes never answer browsers of other origins.
    let admin = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/admin/users"))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert!(admin.headers().get("access-control-allow-origin").is_none());
    let page = app.client.get(app.url("/settings")).send().await.unwrap();
    assert!(page.headers().get("x-frame-options").is_none());
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors https://portal.example.com")
    );
}
