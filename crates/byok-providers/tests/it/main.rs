//! byok-providers against local mock servers that reproduce providers.md.
//! Every mock declares `.expect(n)`, so a test cannot pass without the call.

#![expect(
    clippy::unreadable_literal,
    clippy::type_complexity,
    reason = "fixtures copy the providers' JSON; case tables"
)]
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test on a bad fixture"
)]

mod anthropic;
mod azure;
mod deepseek;
mod fidelity;
mod gemini;
mod openai;
mod redirects;

use std::collections::BTreeMap;
use std::time::Duration;

use byok_core::{ApiKey, ChatChunk, ChatMessage, ChatRequest, ProviderKind, Role};
use byok_providers::{
    ChatProvider, ChatStream, HttpClients, ProviderError, ProviderSet, ProviderSettings,
};
use futures_util::StreamExt as _;
use url::Url;
use wiremock::MockServer;

/// Clients whose fixed providers all point at `server`.
pub(crate) fn clients(server: &MockServer) -> HttpClients {
    let base = Url::parse(&server.uri()).unwrap();
    HttpClients::new(ProviderSettings {
        openai_base_url: base.join("/v1").unwrap(),
        deepseek_base_url: base.clone(),
        anthropic_base_url: base.clone(),
        gemini_base_url: base,
        allow_private_endpoints: true,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(800),
        stream_idle_timeout: Duration::from_secs(2),
        max_response_bytes: 64 * 1024,
        pool_max_idle_per_host: 4,
    })
    .unwrap()
}

pub(crate) fn adapter(
    server: &MockServer,
    provider: ProviderKind,
) -> std::sync::Arc<dyn ChatProvider> {
    ProviderSet::new(&clients(server))
        .get(provider)
        .unwrap()
        .clone()
}

pub(crate) fn key(raw: &str) -> ApiKey {
    ApiKey::parse(raw).unwrap()
}

pub(crate) fn no_settings() -> BTreeMap<String, String> {
    BTreeMap::new()
}

pub(crate) fn hello(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.to_owned(),
        system: Some("You are terse.".to_owned()),
        messages: vec![ChatMessage::text(Role::User, "Say hello.")],
        temperature: Some(0.2),
        max_output_tokens: Some(64),
        ..ChatRequest::default()
    }
}

pub(crate) fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

pub(crate) fn sse(body: String) -> wiremock::ResponseTemplate {
    wiremock::ResponseTemplate::new(200)
        .insert_header("content-type", "text/event-stream")
        .set_body_string(body)
}

/// Every item of a stream, errors included.
pub(crate) async fn collect(stream: ChatStream) -> Vec<Result<ChatChunk, ProviderError>> {
    stream.collect().await
}

pub(crate) fn text_of(items: &[Result<ChatChunk, ProviderError>]) -> String {
    items
        .iter()
        .filter_map(|i| match i {
            Ok(ChatChunk::Text(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

/// No error message or `Debug` output may contain the key.
pub(crate) fn assert_no_key(error: &ProviderError, key: &str) {
    let text = format!("{error} {error:?}");
    assert!(!text.contains(key), "the key leaked: {text}");
    assert!(
        !text.contains("http://") && !text.contains("/v1"),
        "the URL leaked: {text}"
    );
}
