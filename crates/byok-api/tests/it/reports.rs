//! Routing, status and usage reports.

use byok_core::{ProviderKind, UserId};
use byok_store::usage::UsageRecord;
use byok_test_support::{TestApp, TestDb, both_backends};

use crate::{body, key_body, openai_key};
use serde_json::json;

both_backends!(
    the_usage_report_matches_a_hand_computed_figure,
    services_and_status_reflect_keys_and_health
);

fn record(
    provider: ProviderKind,
    model: &str,
    task: &str,
    tokens: (i64, i64, i64),
    cost_micro: i64,
) -> UsageRecord {
    UsageRecord {
        user_id: UserId::parse("alice").unwrap(),
        provider,
        model: model.to_owned(),
        task: task.to_owned(),
        input_tokens: tokens.0,
        cached_input_tokens: tokens.1,
        cache_write_tokens: 0,
        cache_write_1h_tokens: 0,
        output_tokens: tokens.2,
        reasoning_tokens: 0,
        cost_micro_usd: Some(cost_micro),
        cost_picodollars: None,
        cost_source: byok_core::CostSource::Exact,
        door: "chat".to_owned(),
        record_key: None,
        token_id: None,
        reservation_id: None,
        rate_subjects: Vec::new(),
        budgeted: false,
        attempts: 1,
        latency_ms: 100,
        outcome: "success".to_owned(),
        request_id: None,
        created_at: byok_store::now(),
    }
}

async fn the_usage_report_matches_a_hand_computed_figure(db: TestDb) {
    let app = TestApp::spawn(&db).await;
    let token = app.create_user("alice").await;
    let records = vec![
        record(
            ProviderKind::OpenAi,
            "gpt-4o-mini",
            "general",
            (1_000, 400, 500),
            420,
        ),
        record(
            ProviderKind::DeepSeek,
            "deepseek-flash",
            "code",
            (2_000, 0, 1_000),
            1_800,
        ),
    ];
    app.service
        .store()
        .run(move |c| byok_store::usage::insert_batch(c, &records))
        .await
        .unwrap();

    let response = app
        .client
        .get(app.url("/api/user/api-keys/alice/usage"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, report) = body(response).await;
    assert_eq!(status, 200, "{report}");
    // Baseline openai:gpt-5.4 ($2.50 in, $0.25 cached, $15 out per 1M):
    //   600 x 2.50 + 400 x 0.25 + 500 x 15 = 9,100 micro-dollars; 2,000 x 2.50 + 1,000 x 15 = 20,000.
    // Actual 420 + 1,800 = 2,220. Savings 26,880 of 29,100 = 92.37 %.
    assert_eq!(report["baseline_model"], "openai:gpt-5.4");
    assert_eq!(report["total"]["requests"], 2);
    assert_eq!(report["total"]["cost_usd"], "0.00222");
    assert_eq!(report["total"]["baseline_cost_usd"], "0.0291");
    assert_eq!(report["savings_usd"], "0.02688");
    assert_eq!(report["savings_percent"], "92.3");
    assert_eq!(report["by_provider"].as_array().unwrap().len(), 2);
    assert_eq!(report["by_model"][0]["model"], "gpt-4o-mini");
    assert_eq!(report["by_day"][0]["requests"], 1);

    // An empty period, and a bad one.
    let empty = app
        .client
        .get(app.url("/api/user/api-keys/alice/usage?from=2020-01-01&to=2020-02-01"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (_, empty) = body(empty).await;
    assert_eq!(
        (
            empty["total"]["requests"].as_u64(),
            empty["savings_percent"].as_str()
        ),
        (Some(0), Some("0.0"))
    );
    let bad = app
        .client
        .get(app.url("/api/user/api-keys/alice/usage?from=yesterday"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(body(bad).await.1["error"]["code"], "invalid_time");
}

async fn services_and_status_reflect_keys_and_health(db: TestDb) {
    let app = TestApp::spawn(&db).await;
    let token = app.create_user("alice").await;
    app.save_key(&token, "alice", "openai", key_body(&openai_key("s")))
        .await;
    let saved: serde_json::Value = app
        .save_key(
            &token,
            "alice",
            "gemini",
            key_body(&format!("AIza{}", "s".repeat(35))),
        )
        .await
        .json()
        .await
        .unwrap();
    let gemini_key = saved["id"].as_str().unwrap().to_owned();
    let alice = UserId::parse("alice").unwrap();
    for _ in 0..3 {
        app.service.health().record_key(
            &alice,
            ProviderKind::Gemini,
            &gemini_key,
            byok_router::Outcome::Failure { retry_after: None },
            std::time::Instant::now(),
        );
    }

    let (status, services) = body(
        app.client
            .get(app.url("/api/user/api-keys/alice/services"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{services}");
    let general = services["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == "general")
        .unwrap();
    assert_eq!(general["chain"][0]["provider"], "openai");
    assert_eq!(general["chain"][0]["input_usd_per_million"], "0.15");
    assert_eq!(
        general["chain"][0]["capabilities"],
        json!([
            "tools",
            "parallel_tools",
            "vision",
            "json_object",
            "json_schema"
        ])
    );
    assert!(general["skipped"].as_array().unwrap().iter().any(|s| {
        s.as_str()
            .unwrap()
            .starts_with("gemini:gemini-2.5-flash-lite skipped: recent failures")
    }));

    let (status, report) = body(
        app.client
            .get(app.url("/api/user/api-keys/alice/status"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["configured"].as_u64(), report["working"].as_u64()),
        (Some(2), Some(1))
    );
    let gemini = report["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "gemini")
        .unwrap();
    assert_eq!(gemini["circuit"]["state"], "open");
    assert_eq!(gemini["error_rate_percent"], 100);
    assert_eq!(report["spend_this_month_usd"], "0");

    // Another user's reports are the same 404 as a missing user's.
    let bob = app.create_user("bob").await;
    let other = app
        .client
        .get(app.url("/api/user/api-keys/alice/status"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(body(other).await.0, 404);
}
