//! Google Gemini.

use std::time::Duration;

use byok_core::{ChatChunk, EmbeddingRequest, FinishReason, ProviderKind};
use byok_providers::{Credentials, ProviderError};
use serde_json::json;
use wiremock::matchers::{
    body_partial_json, header, method, path, query_param, query_param_is_missing,
};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{adapter, collect, fixture, hello, key, no_settings, sse, text_of};

const KEY: &str = "AIzaSyTESTKEY_0123456789abcdefghijklmno";

async fn verify_with(response: ResponseTemplate) -> Result<(), ProviderError> {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1beta/models"))
        .and(query_param("pageSize", "1"))
        .and(query_param_is_missing("key"))
        .and(header("x-goog-api-key", KEY))
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    let (key, settings) = (key(KEY), no_settings());
    adapter(&server, ProviderKind::Gemini)
        .verify_key(Credentials {
            key: &key,
            settings: &settings,
        })
        .await
}

fn google_error(code: u16, status: &str, details: &serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(code).set_body_json(json!({"error": {"code": code, "message": "message text", "status": status, "details": details}}))
}

#[tokio::test]
async fn verify_classifies_every_outcome() {
    assert_eq!(KEY.len(), 39);
    let ok = json!({"models": [{"name": "models/gemini-2.5-flash", "version": "001", "displayName": "Gemini 2.5 Flash", "thinking": true}], "nextPageToken": "x"});
    assert!(
        verify_with(ResponseTemplate::new(200).set_body_json(ok))
            .await
            .is_ok()
    );
    let invalid = verify_with(google_error(400, "INVALID_ARGUMENT", &json!([
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}},
        {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": "API key not valid. Please pass a valid API key."}
    ]))).await;
    assert!(
        matches!(invalid, Err(ProviderError::InvalidKey { .. })),
        "{invalid:?}"
    );
    let leaked = verify_with(google_error(403, "PERMISSION_DENIED", &json!([]))).await;
    assert!(
        matches!(leaked, Err(ProviderError::InvalidKey { .. })),
        "{leaked:?}"
    );
    let limited = verify_with(google_error(429, "RESOURCE_EXHAUSTED", &json!([
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "m", "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "36s"}
    ]))).await.unwrap_err();
    assert!(matches!(limited, ProviderError::RateLimited { .. }));
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(36)));
    let daily = verify_with(google_error(429, "RESOURCE_EXHAUSTED", &json!([
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "m", "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}
    ]))).await;
    assert!(
        matches!(daily, Err(ProviderError::NoCredit { .. })),
        "{daily:?}"
    );
    let overloaded = verify_with(google_error(503, "UNAVAILABLE", &json!([]))).await;
    assert!(
        matches!(
            overloaded,
            Err(ProviderError::Unavailable { status: 503, .. })
        ),
        "{overloaded:?}"
    );
}

#[tokio::test]
async fn chat_uses_system_instruction_and_counts_thoughts_as_output() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash:generateContent"))
        .and(header("x-goog-api-key", KEY))
        .and(query_param_is_missing("key"))
        .and(body_partial_json(json!({
            "systemInstruction": {"parts": [{"text": "You are terse."}]},
            "contents": [{"role": "user", "parts": [{"text": "Say hello."}]}],
            "generationConfig": {"maxOutputTokens": 64}
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": "thinking...", "thought": true}, {"text": "Bonjour !", "thoughtSignature": "abc"}]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 21, "candidatesTokenCount": 4, "totalTokenCount": 55, "thoughtsTokenCount": 30, "cachedContentTokenCount": 10},
            "modelVersion": "gemini-2.5-flash", "responseId": "IZI2"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let (key, settings) = (key(KEY), no_settings());
    let answer = adapter(&server, ProviderKind::Gemini)
        .chat(
            Credentials {
                key: &key,
                settings: &settings,
            },
            &hello("gemini-2.5-flash"),
        )
        .await
        .unwrap();
    assert_eq!(answer.text(), "Bonjour !");
    let u = answer.usage.unwrap();
    assert_eq!(
        (
            u.input_tokens,
            u.cached_input_tokens,
            u.output_tokens,
            u.reasoning_tokens
        ),
        (21, 10, 34, 30)
    );
}

#[tokio::test]
async fn a_blocked_prompt_is_a_bad_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash:generateContent"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []}}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let (key, settings) = (key(KEY), no_settings());
    let error = adapter(&server, ProviderKind::Gemini)
        .chat(
            Credentials {
                key: &key,
                settings: &settings,
            },
            &hello("gemini-2.5-flash"),
        )
        .await
        .unwrap_err();
    assert!(!error.is_retryable(), "{error:?}");
}

#[tokio::test]
async fn streams_take_usage_from_the_last_chunk_and_need_a_finish_reason() {
    for (file, complete) in [("gemini/stream.sse", true), ("gemini/truncated.sse", false)] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            ))
            .and(query_param("alt", "sse"))
            .and(header("x-goog-api-key", KEY))
            .respond_with(sse(fixture(file)))
            .expect(1)
            .mount(&server)
            .await;
        let (key, settings) = (key(KEY), no_settings());
        let stream = adapter(&server, ProviderKind::Gemini)
            .chat_stream(
                Credentials {
                    key: &key,
                    settings: &settings,
                },
                &hello("gemini-2.5-flash"),
            )
            .await
            .unwrap();
        let items = collect(stream).await;
        if complete {
            assert!(items.iter().all(Result::is_ok), "{items:?}");
            assert_eq!(text_of(&items), "Okay, let's high scores, etc.");
            assert!(
                items
                    .iter()
                    .any(|i| matches!(i, Ok(ChatChunk::Finish(FinishReason::Stop))))
            );
            // 4 + 5947 + 2042 = 7993: thinking tokens are output, outside candidatesTokenCount.
            assert!(
                matches!(items.last(), Some(Ok(ChatChunk::Usage(u))) if u.input_tokens == 4 && u.output_tokens == 5947 + 2042 && u.reasoning_tokens == 2042)
            );
        } else {
            assert!(
                matches!(
                    items.last(),
                    Some(Err(ProviderError::IncompleteStream { .. }))
                ),
                "{items:?}"
            );
        }
    }
}

#[tokio::test]
async fn embeddings_use_batch_embed_contents() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(
            "/v1beta/models/gemini-embedding-001:batchEmbedContents",
        ))
        .and(header("x-goog-api-key", KEY))
        .and(body_partial_json(json!({"requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}}
        ]})))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3, 0.4]}]}),
            ),
        )
        .expect(1)
        .mount(&server)
        .await;
    let (key, settings) = (key(KEY), no_settings());
    let request = EmbeddingRequest {
        model: "gemini-embedding-001".into(),
        inputs: vec!["a".into(), "b".into()],
        ..Default::default()
    };
    let out = adapter(&server, ProviderKind::Gemini)
        .embed(
            Credentials {
                key: &key,
                settings: &settings,
            },
            &request,
        )
        .await
        .unwrap();
    assert_eq!(out.vectors, vec![vec![0.1, 0.2], vec![0.3, 0.4]]);
    assert_eq!(out.input_tokens, None);
}

#[tokio::test]
async fn key_settings_are_not_bad_keys() {
    let info = |reason: &str| {
        json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com", "consumer": "projects/123"}}])
    };
    for (status, grpc, reason, problem, code) in [
        (
            401,
            "UNAUTHENTICATED",
            "ACCESS_TOKEN_TYPE_UNSUPPORTED",
            byok_providers::KeyProblem::KeyKindRetired,
            "provider_key_kind_retired",
        ),
        (
            403,
            "PERMISSION_DENIED",
            "API_KEY_SERVICE_BLOCKED",
            byok_providers::KeyProblem::KeyRestricted,
            "provider_key_restricted",
        ),
        (
            403,
            "PERMISSION_DENIED",
            "API_KEY_HTTP_REFERRER_BLOCKED",
            byok_providers::KeyProblem::KeyRestricted,
            "provider_key_restricted",
        ),
        (
            403,
            "PERMISSION_DENIED",
            "SERVICE_DISABLED",
            byok_providers::KeyProblem::ProjectSetting,
            "provider_project_setting",
        ),
    ] {
        let error = verify_with(google_error(status, grpc, &info(reason)))
            .await
            .unwrap_err();
        assert!(
            matches!(error, ProviderError::KeyConfiguration { problem: p, .. } if p == problem),
            "{reason}: {error:?}"
        );
        assert_eq!(error.code(), code);
        assert_eq!(error.key_status(), byok_core::KeyStatus::Misconfigured);
        let message = error.to_string();
        assert!(
            message.contains("https://"),
            "the fix has its console link: {message}"
        );
        crate::assert_no_key(&error, KEY);
    }
}
