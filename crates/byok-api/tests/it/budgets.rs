//! Budgets that hold: routes, reservations under concurrency and across two
//! servers on one database, settlement of streams cut short and failed
//! attempts, day roll-over, soft budgets, the operator's ceiling — and a
//! provider's own 429 passed on with its wait.

use std::sync::{Arc, Mutex};

use byok_core::UserId;
use byok_test_support::{SpawnOptions, TestApp, TestDb, both_backends};
use chrono::{Duration, Utc};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{body, key_body, openai_key, providers};

both_backends!(
    budgets_are_managed_and_reported,
    a_hard_budget_holds_under_concurrent_requests_on_two_servers,
    failed_attempts_and_streams_cut_short_settle_their_reservations,
    a_daily_budget_resets_at_the_next_day,
    a_soft_budget_serves_and_flags,
    the_operator_ceiling_caps_every_user,
    a_providers_rate_limit_is_passed_on_with_its_wait,
    a_tokens_own_budget_caps_only_that_token,
);

async fn a_tokens_own_budget_caps_only_that_token(db: TestDb) {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(answer())
        .mount(&mock)
        .await;
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = alice_with_openai(&app).await;
    let (status, created) = body(
        app.client
            .post(app.url("/api/user/api-keys/alice/tokens"))
            .bearer_auth(&token)
            .json(&json!({"label": "script"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    let script = created["token"].as_str().unwrap().to_owned();
    let script_id = created["id"].as_str().unwrap().to_owned();
    // Room for one answer, for the script's token only.
    let limit = format!("0.{:012}", COST_PICO * 3 / 2);
    let (status, budget_view) = budget(
        &app,
        &token,
        "alice",
        json!({"period": "month", "token_id": script_id, "limit_usd": limit}),
    )
    .await;
    assert_eq!(status, 201, "{budget_view}");
    assert_eq!(budget_view["token_id"], script_id.as_str());
    let (status, error) = budget(
        &app,
        &token,
        "alice",
        json!({"period": "day", "token_id": "0000000000000000", "limit_usd": "1"}),
    )
    .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (404, Some("token_not_found"))
    );
    assert_eq!(
        crate::gateway_chat(&app, &script, &chat()).await.status(),
        200
    );
    let (status, refused) = body(crate::gateway_chat(&app, &script, &chat()).await).await;
    assert_eq!(status, 402, "{refused}");
    assert_eq!(refused["error"]["budget"]["token_id"], script_id.as_str());
    // The user's other token is not capped by it.
    assert_eq!(
        crate::gateway_chat(&app, &token, &chat()).await.status(),
        200
    );
}

/// gpt-4o-mini: $0.15 in, $0.60 out per million tokens. 5 in + 100 out =
/// 60.75 micro-dollars; the reservation (input estimate + 100 out) is at
/// least that.
fn answer() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 100, "total_tokens": 105}
    }))
}

const COST_PICO: i64 = 60_750_000;

fn chat() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100})
}

async fn budget(app: &TestApp, token: &str, user: &str, payload: Value) -> (u16, Value) {
    body(
        app.client
            .post(app.url(&format!("/api/user/api-keys/{user}/budgets")))
            .bearer_auth(token)
            .json(&payload)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn spend(app: &TestApp, user: &str) -> (i64, i64) {
    spend_in(app.service.store(), user).await
}

async fn spend_in(store: &byok_store::Store, user: &str) -> (i64, i64) {
    let user = UserId::parse(user).unwrap();
    let at = byok_store::now();
    let states = store
        .run(move |c| byok_store::budgets::states(c, &user, None, at))
        .await
        .unwrap();
    (states[0].spent, states[0].reserved)
}

async fn alice_with_openai(app: &TestApp) -> String {
    let token = app.create_user("alice").await;
    assert_eq!(
        app.save_key(&token, "alice", "openai", key_body(&openai_key("b")))
            .await
            .status(),
        201
    );
    token
}

#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn budgets_are_managed_and_reported(db: TestDb) {
    let app = TestApp::spawn(&db).await;
    let token = alice_with_openai(&app).await;
    let (status, created) = budget(
        &app,
        &token,
        "alice",
        json!({"period": "month", "limit_usd": "5", "time_zone": "Europe/Paris"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (
            created["limit_usd"].as_str(),
            created["hard"].as_bool(),
            created["spent_usd"].as_str()
        ),
        (Some("5"), Some(true), Some("0"))
    );
    let id = created["id"].as_str().unwrap().to_owned();
    for (payload, code) in [
        (
            json!({"period": "month", "limit_usd": "1"}),
            "budget_exists",
        ),
        (
            json!({"period": "day", "limit_usd": "1", "time_zone": "Mars/Olympus"}),
            "invalid_time_zone",
        ),
        (json!({"period": "day", "limit_usd": "-1"}), "invalid_limit"),
    ] {
        let (status, error) = budget(&app, &token, "alice", payload.clone()).await;
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (422, Some(code)),
            "{payload}"
        );
    }
    let (status, _) = budget(
        &app,
        &token,
        "alice",
        json!({"period": "week", "limit_usd": "1"}),
    )
    .await;
    assert_eq!(status, 400, "an unknown period is malformed");
    let (status, daily) = budget(
        &app,
        &token,
        "alice",
        json!({"period": "day", "provider": "openai", "limit_usd": "0.5", "hard": false}),
    )
    .await;
    assert_eq!((status, daily["provider"].as_str()), (201, Some("openai")));

    let url = app.url(&format!("/api/user/api-keys/alice/budgets/{id}"));
    let (status, changed) = body(
        app.client
            .put(&url)
            .bearer_auth(&token)
            .json(&json!({"limit_usd": "7.25"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, changed["limit_usd"].as_str()), (200, Some("7.25")));
    assert_eq!(
        changed["time_zone"], "UTC",
        "a change states its time zone again"
    );

    let (status, listed) = body(
        app.client
            .get(app.url("/api/user/api-keys/alice/status"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listed["budgets"].as_array().unwrap().len(), 2);
    let bob = app.create_user("bob").await;
    let foreign = app
        .client
        .delete(&url)
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 404);
    assert_eq!(
        app.client
            .delete(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        app.client
            .delete(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let alice = UserId::parse("alice").unwrap();
    let events = app
        .service
        .store()
        .run(move |c| byok_store::audit::list_for_user_since(c, &alice, None, None, 50))
        .await
        .unwrap();
    for action in [
        byok_store::audit::AuditAction::BudgetCreate,
        byok_store::audit::AuditAction::BudgetUpdate,
        byok_store::audit::AuditAction::BudgetDelete,
    ] {
        assert!(events.iter().any(|e| e.action == action), "{action}");
    }
}

async fn a_hard_budget_holds_under_concurrent_requests_on_two_servers(db: TestDb) {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(answer().set_delay(std::time::Duration::from_millis(30)))
        .mount(&mock)
        .await;
    let one = Arc::new(TestApp::spawn_with_providers(&db, providers(&mock)).await);
    let two = Arc::new(TestApp::spawn_with_providers(&db, providers(&mock)).await);
    let token = alice_with_openai(&one).await;
    // Room for ten answers, and a little.
    let limit = COST_PICO * 10 + COST_PICO / 2;
    let (status, _) = budget(
        &one,
        &token,
        "alice",
        json!({"period": "month", "limit_usd": format!("0.{:012}", limit)}),
    )
    .await;
    assert_eq!(status, 201);

    let mut calls = Vec::new();
    for i in 0..40 {
        let app = Arc::clone(if i % 2 == 0 { &one } else { &two });
        let token = token.clone();
        calls.push(tokio::spawn(async move {
            body(crate::gateway_chat(&app, &token, &chat()).await).await
        }));
    }
    let mut served = 0;
    for call in calls {
        let (status, answer) = call.await.unwrap();
        match status {
            200 => served += 1,
            402 => {
                assert_eq!(answer["error"]["code"], "budget_exceeded", "{answer}");
                assert_eq!(answer["error"]["budget"]["period"], "month");
                assert!(answer["error"]["budget"]["resets_at"].is_string());
            }
            other => unreachable!("only 200 and 402 are expected, got {other}: {answer}"),
        }
    }
    let store = one.service.store().clone();
    // Both writers flush: every reservation settles.
    Arc::into_inner(one).unwrap().stop().await;
    Arc::into_inner(two).unwrap().stop().await;
    let (spent, reserved) = spend_in(&store, "alice").await;
    assert_eq!(reserved, 0, "every reservation settled");
    assert_eq!(
        spent,
        COST_PICO * served,
        "spend is the exact sum of the answers"
    );
    assert!(
        spent <= limit,
        "never over a hard budget: {spent} > {limit}"
    );
    assert!(
        served >= 8,
        "the budget's room was used: only {served} served"
    );
}

async fn failed_attempts_and_streams_cut_short_settle_their_reservations(db: TestDb) {
    let mock = MockServer::start().await;
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = alice_with_openai(&app).await;
    budget(
        &app,
        &token,
        "alice",
        json!({"period": "day", "limit_usd": "1"}),
    )
    .await;
    // A provider error: nothing is spent, nothing stays reserved.
    let failing = Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"error": {"message": "boom", "type": "server_error"}})),
        )
        .mount_as_scoped(&mock)
        .await;
    let (status, _) = body(crate::gateway_chat(&app, &token, &chat()).await).await;
    assert_eq!(status, 502);
    assert_eq!(spend(&app, "alice").await, (0, 0));
    drop(failing);

    // A stream cut off before its usage chunk: its estimate is charged.
    let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "partial answer"}, "finish_reason": null}]});
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(format!("data: {chunk}\n\n")),
        )
        .mount(&mock)
        .await;
    let mut streamed = chat();
    streamed["stream"] = json!(true);
    let response = crate::gateway_chat(&app, &token, &streamed).await;
    assert_eq!(response.status(), 200);
    let _ = response.text().await;
    let store = app.service.store().clone();
    let now = app.service.now();
    app.stop().await;
    let alice = UserId::parse("alice").unwrap();
    let settled = store
        .run(move |c| byok_store::budgets::states(c, &alice, None, now))
        .await
        .unwrap();
    assert_eq!(
        settled[0].reserved, 0,
        "the cut stream settled its reservation"
    );
    assert!(settled[0].spent > 0, "and its estimate was charged");
}

async fn a_daily_budget_resets_at_the_next_day(db: TestDb) {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(answer())
        .mount(&mock)
        .await;
    let now = Arc::new(Mutex::new(Utc::now()));
    let clock = {
        let now = Arc::clone(&now);
        Arc::new(move || *now.lock().unwrap()) as byok_api::service::Clock
    };
    let app = TestApp::spawn_options(
        &db,
        providers(&mock),
        SpawnOptions {
            clock: Some(clock),
            ..SpawnOptions::default()
        },
    )
    .await;
    let token = alice_with_openai(&app).await;
    // Room for one answer a day.
    let limit = format!("0.{:012}", COST_PICO * 3 / 2);
    budget(
        &app,
        &token,
        "alice",
        json!({"period": "day", "limit_usd": limit}),
    )
    .await;
    assert_eq!(
        crate::gateway_chat(&app, &token, &chat()).await.status(),
        200
    );
    // Settled (the writer commits within its window), the day is spent.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, refused) = body(crate::gateway_chat(&app, &token, &chat()).await).await;
    assert_eq!(status, 402, "{refused}");
    let resets = refused["error"]["budget"]["resets_at"]
        .as_str()
        .unwrap()
        .to_owned();
    // The next day: room again.
    *now.lock().unwrap() += Duration::days(1);
    assert!(app.service.now().to_rfc3339() >= resets);
    assert_eq!(
        crate::gateway_chat(&app, &token, &chat()).await.status(),
        200
    );
}

async fn a_soft_budget_serves_and_flags(db: TestDb) {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(answer())
        .mount(&mock)
        .await;
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = alice_with_openai(&app).await;
    budget(
        &app,
        &token,
        "alice",
        json!({"period": "month", "provider": "openai", "limit_usd": "0.00001", "hard": false}),
    )
    .await;
    let response = crate::gateway_chat(&app, &token, &chat()).await;
    assert_eq!(response.status(), 200);
    let warning = response.headers()["x-byok-budget-warning"]
        .to_str()
        .unwrap();
    assert!(
        warning.starts_with("month openai budget $0.00001:"),
        "{warning}"
    );
}

async fn the_operator_ceiling_caps_every_user(db: TestDb) {
    let app = TestApp::spawn_options(
        &db,
        byok_providers::ProviderSettings::default(),
        SpawnOptions {
            budget_policy: byok_api::service::BudgetPolicy {
                default_monthly: Some(byok_router::Money::parse_usd("2").unwrap()),
                ceiling_monthly: Some(byok_router::Money::parse_usd("10").unwrap()),
            },
            ..SpawnOptions::default()
        },
    )
    .await;
    let token = app.create_user("alice").await;
    let (status, listed) = body(
        app.client
            .get(app.url("/api/user/api-keys/alice/budgets"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let monthly = &listed["budgets"][0];
    assert_eq!(
        (monthly["limit_usd"].as_str(), monthly["hard"].as_bool()),
        (Some("2"), Some(true))
    );
    let url = app.url(&format!(
        "/api/user/api-keys/alice/budgets/{}",
        monthly["id"].as_str().unwrap()
    ));
    let (status, error) = body(
        app.client
            .put(&url)
            .bearer_auth(&token)
            .json(&json!({"limit_usd": "11"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (422, Some("budget_above_ceiling"))
    );
    let (status, _) = body(
        app.client
            .put(&url)
            .bearer_auth(&token)
            .json(&json!({"limit_usd": "10"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, error) = body(
        app.client
            .delete(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (422, Some("budget_required"))
    );
}

async fn a_providers_rate_limit_is_passed_on_with_its_wait(db: TestDb) {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "7")
                .set_body_json(json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}})),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let app = TestApp::spawn_with_providers(&db, providers(&mock)).await;
    let token = alice_with_openai(&app).await;
    let response = crate::gateway_chat(&app, &token, &chat()).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let (_, error) = body(response).await;
    assert_eq!(error["error"]["code"], "rate_limited");
    // The provider said to wait: the next request is not sent, and is told
    // to wait the rest of it (not a 503 outage).
    let response = crate::gateway_chat(&app, &token, &chat()).await;
    assert_eq!(response.status(), 429);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=7).contains(&wait), "{wait}");
}
