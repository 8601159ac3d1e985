//! byok-api integration tests: the real server on 127.0.0.1:0, against
//! SQLite and PostgreSQL.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test on a bad fixture"
)]
#![expect(
    clippy::disallowed_methods,
    reason = "the OpenAPI snapshot is refreshed by an environment switch"
)]

mod admin;
mod alerts;
mod auth;
mod bounds;
mod budgets;
mod costs;
mod disconnect;
mod durability;
mod errors;
mod export;
mod fidelity;
mod gateway;
mod isolation;
mod key_test;
mod keys;
mod leak;
mod lifecycle;
mod limits;
mod messages;
mod multikey;
mod openapi;
mod replicas;
mod reports;
mod responses;
mod sdk;
mod sdk_doors;
mod tokens;

use serde_json::{Value, json};

/// A well-formed OpenAI-style key that is unique per call.
pub(crate) fn openai_key(tag: &str) -> String {
    format!("sk-proj-{tag}-{}", uuid::Uuid::new_v4().simple())
}

pub(crate) fn key_body(key: &str) -> Value {
    json!({ "api_key": key })
}

pub(crate) async fn body(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

/// `POST /v1/chat/completions` with `token`.
pub(crate) async fn gateway_chat(
    app: &byok_test_support::TestApp,
    token: &str,
    request: &Value,
) -> reqwest::Response {
    app.client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(token)
        .json(request)
        .send()
        .await
        .unwrap()
}

/// Provider settings whose fixed providers all point at `mock` (OpenAI at
/// `/v1`), private addresses allowed for Azure endpoints on the mock.
pub(crate) fn providers(mock: &wiremock::MockServer) -> byok_providers::ProviderSettings {
    let base = url::Url::parse(&mock.uri()).unwrap();
    byok_providers::ProviderSettings {
        openai_base_url: base.join("/v1").unwrap(),
        deepseek_base_url: base.clone(),
        anthropic_base_url: base.clone(),
        gemini_base_url: base,
        allow_private_endpoints: true,
        request_timeout: std::time::Duration::from_secs(2),
        ..byok_providers::ProviderSettings::default()
    }
}

/// Whether `python3` can import `module`; when it cannot, a skip that is
/// loud, or a failure when `CI=true`.
pub(crate) fn python_has(module: &str) -> bool {
    use std::io::Write as _;
    let found = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "CI=true but python3 cannot import {module}; .ci/run installs it"
        );
        let _ = writeln!(
            std::io::stderr(),
            "\n## SKIPPING a Python SDK test: python3 -c 'import {module}' failed\n"
        );
    }
    found
}
