//! Alerts: a budget crossing 50 % and a key refused by its provider reach
//! the operator's webhook, signed (checked by an independent verifier,
//! Python's hmac module), without any key or token; an alert raised while
//! the webhook is down is delivered after a restart.

use byok_test_support::{SpawnOptions, TestApp, TestDb, both_backends};
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{body, key_body, openai_key, providers};

both_backends!(
    budget_and_key_alerts_arrive_signed,
    an_alert_survives_a_restart_while_the_webhook_is_down,
    models_nearing_retirement_are_alerted_once_per_user
);

async fn models_nearing_retirement_are_alerted_once_per_user(db: TestDb) {
    use chrono::TimeZone as _;
    let (mock, webhook) = (MockServer::start().await, MockServer::start().await);
    Mock::given(method("POST"))
        .and(path("/hooks/byok"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&webhook)
        .await;
    let (providers, mut options) = options(&mock, &webhook);
    // The built-in catalog retires gpt-4o-mini and gpt-4.1-mini (in the
    // general and code routes) on 2027-01-14: 25 days after this clock.
    let at = chrono::Utc
        .with_ymd_and_hms(2026, 12, 20, 12, 0, 0)
        .unwrap();
    options.clock = Some(std::sync::Arc::new(move || at));
    let app = TestApp::spawn_options(&db, providers, options).await;
    let alice = app.create_user("alice").await;
    app.save_key(&alice, "alice", "openai", key_body(&openai_key("a")))
        .await;
    let bob = app.create_user("bob").await;
    app.save_key(
        &bob,
        "bob",
        "gemini",
        json!({"api_key": format!("AIza{}", "b".repeat(35))}),
    )
    .await;
    assert_eq!(app.gateway.retirement_alerts().await.unwrap(), 2);
    assert_eq!(app.gateway.retirement_alerts().await.unwrap(), 0, "once");
    let alerts = received(&webhook, "model.retiring").await;
    let mut models: Vec<(String, String)> = alerts
        .iter()
        .map(|(_, a)| {
            (
                a["user_id"].as_str().unwrap().to_owned(),
                a["model"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for _ in 0..20 {
        if models.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        models = received(&webhook, "model.retiring")
            .await
            .iter()
            .map(|(_, a)| {
                (
                    a["user_id"].as_str().unwrap().to_owned(),
                    a["model"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
    }
    models.sort();
    assert_eq!(
        models,
        [
            ("alice".to_owned(), "gpt-4.1-mini".to_owned()),
            ("alice".to_owned(), "gpt-4o-mini".to_owned()),
        ],
        "bob has no OpenAI key"
    );
    assert_eq!(alerts[0].1["retires_on"], "2027-01-14");
}

const SECRET: &str = "whsec-test-0123456789abcdef";

fn options(
    mock: &MockServer,
    webhook: &MockServer,
) -> (byok_providers::ProviderSettings, SpawnOptions) {
    let url = url::Url::parse(&format!("{}/hooks/byok", webhook.uri())).unwrap();
    (
        providers(mock),
        SpawnOptions {
            webhook: Some(byok_api::alerts::Webhook::new(
                url,
                SecretString::from(SECRET.to_owned()),
            )),
            ..SpawnOptions::default()
        },
    )
}

/// Verifies `X-BYOK-Signature` over `body` with Python's hmac module.
fn python_verifies(signature: &str, body: &str) -> bool {
    if !crate::python_has("hmac") {
        return true;
    }
    let script = "import hmac,hashlib,sys\n\
sig, body, secret = sys.argv[1], sys.argv[2], sys.argv[3]\n\
parts = dict(p.split('=', 1) for p in sig.split(','))\n\
mac = hmac.new(secret.encode(), (parts['t'] + '.' + body).encode(), hashlib.sha256).hexdigest()\n\
sys.exit(0 if hmac.compare_digest(mac, parts['v1']) else 1)\n";
    std::process::Command::new("python3")
        .args(["-c", script, signature, body, SECRET])
        .status()
        .is_ok_and(|s| s.success())
}

async fn received(webhook: &MockServer, event: &str) -> Vec<(String, Value)> {
    for _ in 0..60 {
        let found: Vec<(String, Value)> = webhook
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.headers.get("x-byok-event").is_some_and(|v| v == event))
            .map(|r| {
                let signature = r.headers["x-byok-signature"].to_str().unwrap().to_owned();
                let text = String::from_utf8(r.body.clone()).unwrap();
                assert!(
                    python_verifies(&signature, &text),
                    "bad signature on {text}"
                );
                (text.clone(), serde_json::from_str(&text).unwrap())
            })
            .collect();
        if !found.is_empty() {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Vec::new()
}

async fn budget_and_key_alerts_arrive_signed(db: TestDb) {
    let (mock, webhook) = (MockServer::start().await, MockServer::start().await);
    Mock::given(method("POST"))
        .and(path("/hooks/byok"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&webhook)
        .await;
    let (good, bad) = (openai_key("good"), openai_key("bad"));
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {good}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 100, "total_tokens": 105}
        })))
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {bad}").as_str()))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}),
        ))
        .mount(&mock)
        .await;
    let (providers, options) = options(&mock, &webhook);
    let app = TestApp::spawn_options(&db, providers, options).await;
    let token = app.create_user("alice").await;
    app.save_key(&token, "alice", "openai", key_body(&bad))
        .await;
    let (status, _) = body(
        app.client
            .post(app.url("/api/user/api-keys/alice/keys/openai/add"))
            .bearer_auth(&token)
            .json(&key_body(&good))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    // A budget one answer (60.75 micro-dollars) takes past 50 %.
    let (status, _) = body(
        app.client
            .post(app.url("/api/user/api-keys/alice/budgets"))
            .bearer_auth(&token)
            .json(&json!({"period": "month", "limit_usd": "0.0001"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100});
    let response = crate::gateway_chat(&app, &token, &chat).await;
    assert_eq!(response.status(), 200);

    let refused = received(&webhook, "key.refused").await;
    assert_eq!(refused.len(), 1, "one alert per refused key");
    assert_eq!(
        (
            refused[0].1["user_id"].as_str(),
            refused[0].1["status"].as_str()
        ),
        (Some("alice"), Some("invalid"))
    );
    let crossed = received(&webhook, "budget.crossed").await;
    assert_eq!(crossed.len(), 1);
    assert_eq!(crossed[0].1["percent"], 50);
    assert_eq!(crossed[0].1["spent_usd"], "0.00006075");
    for (text, _) in refused.iter().chain(&crossed) {
        for secret in [&good, &bad, &token] {
            assert!(!text.contains(secret.as_str()), "an alert carried a secret");
        }
    }
}

async fn an_alert_survives_a_restart_while_the_webhook_is_down(db: TestDb) {
    let (mock, down) = (MockServer::start().await, MockServer::start().await);
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&down)
        .await;
    let bad = openai_key("bad");
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}),
        ))
        .mount(&mock)
        .await;
    let (providers_down, options_down) = options(&mock, &down);
    let app = TestApp::spawn_options(&db, providers_down, options_down).await;
    let token = app.create_user("alice").await;
    app.save_key(&token, "alice", "openai", key_body(&bad))
        .await;
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    crate::gateway_chat(&app, &token, &chat).await;
    // The webhook refused it at least once.
    for _ in 0..50 {
        if !down
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!down.received_requests().await.unwrap().is_empty());
    app.stop().await;

    let up = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/byok"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&up)
        .await;
    let (providers_up, options_up) = options(&mock, &up);
    let _restarted = TestApp::spawn_options(&db, providers_up, options_up).await;
    let delivered = received(&up, "key.refused").await;
    assert_eq!(delivered.len(), 1, "delivered after the restart, once");
}
