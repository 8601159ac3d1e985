//! The official OpenAI Python SDK, pointed at byok's `/v1` with a byok token
//! as its API key, works — streaming included. Needs `python3` with the
//! `openai` package (`.ci/run` installs it); skipped loudly elsewhere, and a
//! failure when `CI=true`.

use std::io::Write as _;
use std::process::Command;

use byok_test_support::{TestApp, TestDb};
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::key_body;

const SCRIPT: &str = r#"
import json, os, sys
from openai import OpenAI
client = OpenAI(base_url=os.environ["BYOK_URL"] + "/v1", api_key=os.environ["BYOK_TOKEN"], max_retries=0)
plain = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Say hello."}])
raw = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": "Say hello."}])
streamed = ""
usage = None
for chunk in client.chat.completions.create(model="auto", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "Say hello."}]):
    if chunk.choices and chunk.choices[0].delta.content:
        streamed += chunk.choices[0].delta.content
    if chunk.usage:
        usage = chunk.usage.total_tokens
models = [m.id for m in client.models.list()]
print(json.dumps({"plain": plain.choices[0].message.content, "provider": raw.headers.get("x-byok-provider"),
                  "streamed": streamed, "usage": usage, "models": models}))
"#;

fn python_with_openai() -> bool {
    Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_sdk_works_against_the_gateway() {
    if !python_with_openai() {
        #[expect(
            clippy::disallowed_methods,
            reason = "CI decides whether a skip is allowed"
        )]
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "CI=true but python3 with the openai package is missing; .ci/run installs it"
        );
        let _ = writeln!(
            std::io::stderr(),
            "\n## SKIPPING the OpenAI SDK test: python3 -c 'import openai' failed (pip install openai)\n"
        );
        return;
    }
    let mock = MockServer::start().await;
    let base = Url::parse(&mock.uri()).unwrap();
    let providers = byok_providers::ProviderSettings {
        anthropic_base_url: base,
        ..byok_providers::ProviderSettings::default()
    };
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_providers(&db, providers).await;
    let token = app.create_user("alice").await;
    let key = format!("sk-ant-api03-{}AA", "p".repeat(93));
    assert_eq!(
        app.save_key(&token, "alice", "anthropic", key_body(&key))
            .await
            .status(),
        201
    );
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", key.as_str()))
        .and(body_partial_json(json!({"stream": false})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": "Hello from Claude!"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 10, "output_tokens": 4}
        })))
        .expect(2)
        .mount(&mock)
        .await;
    let fixture = std::fs::read_to_string(format!(
        "{}/../byok-providers/tests/fixtures/anthropic/stream.sse",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(body_partial_json(json!({"stream": true})))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(fixture),
        )
        .expect(1)
        .mount(&mock)
        .await;

    let (url, token) = (app.base_url.clone(), token.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", SCRIPT])
            .env("BYOK_URL", url)
            .env("BYOK_TOKEN", token)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        output.status.success(),
        "the SDK failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["plain"], "Hello from Claude!");
    assert_eq!(result["provider"], "anthropic");
    assert_eq!(result["streamed"], "Hello!");
    assert_eq!(result["usage"], 19);
    assert!(
        result["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "claude-haiku-4-5")
    );
}
