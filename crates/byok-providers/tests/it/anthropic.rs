//! Anthropic.

use std::time::Duration;

use byok_core::{ChatChunk, EmbeddingRequest, FinishReason, ProviderKind};
use byok_providers::{Credentials, ProviderError};
use serde_json::json;
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{adapter, assert_no_key, collect, fixture, hello, key, no_settings, sse, text_of};

const KEY: &str = "sk-ant-api03-TESTKEYabcdefghijklmnopqrstuvwxyz0123456789AA";

async fn verify_with(response: ResponseTemplate) -> Result<(), ProviderError> {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(query_param("limit", "1"))
        .and(header("x-api-key", KEY))
        .and(header("anthropic-version", "2023-06-01"))
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    let (key, settings) = (key(KEY), no_settings());
    adapter(&server, ProviderKind::Anthropic)
        .verify_key(Credentials {
            key: &key,
            settings: &settings,
        })
        .await
}

fn error(kind: &str, message: &str) -> serde_json::Value {
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011CVXyZ123abc"})
}

#[tokio::test]
async fn verify_classifies_every_outcome() {
    let ok = json!({"data": [{"type": "model", "id": "claude-sonnet-4-6", "display_name": "Claude Sonnet 4.6", "created_at": "2026-02-17T00:00:00Z"}], "has_more": false});
    assert!(
        verify_with(ResponseTemplate::new(200).set_body_json(ok))
            .await
            .is_ok()
    );
    let bad = verify_with(
        ResponseTemplate::new(401)
            .set_body_json(error("authentication_error", "invalid x-api-key")),
    )
    .await;
    assert!(
        matches!(bad, Err(ProviderError::InvalidKey { .. })),
        "{bad:?}"
    );
    let overloaded = verify_with(
        ResponseTemplate::new(529).set_body_json(error("overloaded_error", "Overloaded")),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(overloaded, ProviderError::Unavailable { status: 529, .. })
            && overloaded.is_retryable()
    );
    let limited = verify_with(
        ResponseTemplate::new(429)
            .insert_header("retry-after", "30")
            .set_body_json(error(
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
            )),
    )
    .await
    .unwrap_err();
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(30)));
    let broke = verify_with(ResponseTemplate::new(400).set_body_json(error(
        "invalid_request_error",
        "Your credit balance is too low to access the Anthropic API.",
    )))
    .await;
    assert!(
        matches!(broke, Err(ProviderError::NoCredit { .. })),
        "{broke:?}"
    );
    let billing =
        verify_with(ResponseTemplate::new(402).set_body_json(error("billing_error", "billing")))
            .await;
    assert!(
        matches!(billing, Err(ProviderError::NoCredit { .. })),
        "{billing:?}"
    );
    assert_no_key(&overloaded, KEY);
}

#[tokio::test]
async fn chat_puts_the_system_prompt_on_top_and_counts_cache_as_input() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", KEY))
        .and(body_partial_json(json!({
            "model": "claude-sonnet-4-6", "max_tokens": 64, "system": "You are terse.",
            "messages": [{"role": "user", "content": "Say hello."}]
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
            "content": [{"type": "text", "text": "Hello!"}], "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 14, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1000,
                      "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 0}, "output_tokens": 5, "service_tier": "standard", "inference_geo": "us"}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let (key, settings) = (key(KEY), no_settings());
    let answer = adapter(&server, ProviderKind::Anthropic)
        .chat(
            Credentials {
                key: &key,
                settings: &settings,
            },
            &hello("claude-sonnet-4-6"),
        )
        .await
        .unwrap();
    assert_eq!(answer.text(), "Hello!");
    assert_eq!(answer.choices[0].finish_reason.unwrap(), FinishReason::Stop);
    let u = answer.usage.unwrap();
    assert_eq!(
        (
            u.input_tokens,
            u.cached_input_tokens,
            u.cache_write_tokens,
            u.output_tokens
        ),
        (1114, 1000, 100, 5)
    );
}

async fn stream_of(file: &str) -> Vec<Result<ChatChunk, ProviderError>> {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(body_partial_json(json!({"stream": true})))
        .respond_with(sse(fixture(file)))
        .expect(1)
        .mount(&server)
        .await;
    let (key, settings) = (key(KEY), no_settings());
    let stream = adapter(&server, ProviderKind::Anthropic)
        .chat_stream(
            Credentials {
                key: &key,
                settings: &settings,
            },
            &hello("claude-sonnet-4-6"),
        )
        .await
        .unwrap();
    collect(stream).await
}

#[tokio::test]
async fn streams_use_named_events_and_cumulative_usage() {
    let items = stream_of("anthropic/stream.sse").await;
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    assert_eq!(text_of(&items), "Hello!");
    assert!(
        items
            .iter()
            .any(|i| matches!(i, Ok(ChatChunk::Finish(FinishReason::Stop))))
    );
    assert!(
        matches!(items.last(), Some(Ok(ChatChunk::Usage(u))) if u.input_tokens == 14 && u.output_tokens == 5)
    );

    let failed = stream_of("anthropic/error.sse").await;
    assert_eq!(text_of(&failed), "Hel");
    // Anthropic's overload, said as such (before the first piece, the
    // gateway tries another provider on it).
    assert!(
        matches!(
            failed.last(),
            Some(Err(ProviderError::Unavailable { status: 529, .. }))
        ),
        "{failed:?}"
    );

    let cut = fixture("anthropic/stream.sse").replace(
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n",
        "",
    );
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(sse(cut))
        .expect(1)
        .mount(&server)
        .await;
    let (key, settings) = (key(KEY), no_settings());
    let stream = adapter(&server, ProviderKind::Anthropic)
        .chat_stream(
            Credentials {
                key: &key,
                settings: &settings,
            },
            &hello("claude-sonnet-4-6"),
        )
        .await
        .unwrap();
    let items = collect(stream).await;
    assert!(
        matches!(
            items.last(),
            Some(Err(ProviderError::IncompleteStream { .. }))
        ),
        "{items:?}"
    );
}

#[tokio::test]
async fn no_embeddings() {
    let server = MockServer::start().await;
    let (key, settings) = (key(KEY), no_settings());
    let error = adapter(&server, ProviderKind::Anthropic)
        .embed(
            Credentials {
                key: &key,
                settings: &settings,
            },
            &EmbeddingRequest::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Unsupported { .. }));
}

#[tokio::test]
async fn workspace_keys_send_their_workspace_and_say_when_it_is_missing() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header("anthropic-workspace-id", "wrkspc_01AbCdEf99"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"type": "error", "error": {"type": "invalid_request_error",
            "message": "anthropic-workspace-id is required when authenticating with an identity-linked API key"}})))
        .expect(1)
        .mount(&server)
        .await;
    let key = key(KEY);
    let with = std::collections::BTreeMap::from([(
        "workspace_id".to_owned(),
        "wrkspc_01AbCdEf99".to_owned(),
    )]);
    let anthropic = adapter(&server, ProviderKind::Anthropic);
    anthropic
        .verify_key(Credentials {
            key: &key,
            settings: &with,
        })
        .await
        .unwrap();
    let without = no_settings();
    let error = anthropic
        .verify_key(Credentials {
            key: &key,
            settings: &without,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ProviderError::KeyConfiguration {
                problem: byok_providers::KeyProblem::WorkspaceRequired,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.code(), "provider_workspace_required");
    assert!(error.to_string().contains("workspace id"));
    assert!(error.is_auth_failure(), "skipped until its settings change");
}
