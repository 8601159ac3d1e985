//! DeepSeek.

use byok_core::{ChatChunk, EmbeddingRequest, ProviderKind};
use byok_providers::{Credentials, ProviderError};
use serde_json::json;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{adapter, collect, fixture, hello, key, no_settings, sse, text_of};

const KEY: &str = "sk-0123456789abcdef0123456789abcdef";

async fn verify_with(response: ResponseTemplate) -> Result<(), ProviderError> {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/user/balance"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    let (key, settings) = (key(KEY), no_settings());
    adapter(&server, ProviderKind::DeepSeek)
        .verify_key(Credentials {
            key: &key,
            settings: &settings,
        })
        .await
}

#[tokio::test]
async fn verify_uses_the_balance() {
    let balance = |available: bool| json!({"is_available": available, "balance_infos": [{"currency": "CNY", "total_balance": "110.00", "granted_balance": "10.00", "topped_up_balance": "100.00"}]});
    assert!(
        verify_with(ResponseTemplate::new(200).set_body_json(balance(true)))
            .await
            .is_ok()
    );
    let empty = verify_with(ResponseTemplate::new(200).set_body_json(balance(false))).await;
    assert!(
        matches!(empty, Err(ProviderError::NoCredit { .. })),
        "{empty:?}"
    );
    let broke = verify_with(ResponseTemplate::new(402).set_body_json(json!({"error":{"message":"Insufficient Balance","type":"unknown_error","param":null,"code":"invalid_request_error"}}))).await;
    assert!(
        matches!(broke, Err(ProviderError::NoCredit { .. })),
        "{broke:?}"
    );
    let bad = verify_with(ResponseTemplate::new(401).set_body_json(json!({"error":{"message":"Authentication Fails, Your api key: ****cdef is invalid","type":"authentication_error","param":null,"code":"invalid_request_error"}}))).await;
    assert!(
        matches!(bad, Err(ProviderError::InvalidKey { .. })),
        "{bad:?}"
    );
    let down = verify_with(ResponseTemplate::new(503).set_body_string("Server Overloaded")).await;
    assert!(
        matches!(down, Err(ProviderError::Unavailable { status: 503, .. })),
        "{down:?}"
    );
    let busy = verify_with(ResponseTemplate::new(429)).await;
    assert!(
        matches!(
            busy,
            Err(ProviderError::RateLimited {
                retry_after: None,
                ..
            })
        ),
        "{busy:?}"
    );
}

#[tokio::test]
async fn chat_skips_keep_alive_padding_and_counts_cache_hits() {
    let server = MockServer::start().await;
    let body = json!({
        "id": "930c60df-bf64-41c9-a88e-3ec75f81e00e", "object": "chat.completion", "created": 1764201600, "model": "deepseek-flash",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "9.8 is greater.", "reasoning_content": "Compare ..."}, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 18, "completion_tokens": 210, "total_tokens": 228, "prompt_tokens_details": {"cached_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 195}, "prompt_cache_hit_tokens": 12, "prompt_cache_miss_tokens": 6},
        "system_fingerprint": "fp_0a1b2c3d4e"
    });
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .and(body_partial_json(
            json!({"model": "deepseek-flash", "max_tokens": 64}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_string(format!("\n\n\n{body}")))
        .expect(1)
        .mount(&server)
        .await;
    let (key, settings) = (key(KEY), no_settings());
    let answer = adapter(&server, ProviderKind::DeepSeek)
        .chat(
            Credentials {
                key: &key,
                settings: &settings,
            },
            &hello("deepseek-flash"),
        )
        .await
        .unwrap();
    assert_eq!(answer.text(), "9.8 is greater.");
    assert_eq!(
        (
            answer.usage.unwrap().input_tokens,
            answer.usage.unwrap().cached_input_tokens
        ),
        (18, 12)
    );
    assert_eq!(
        (
            answer.usage.unwrap().output_tokens,
            answer.usage.unwrap().reasoning_tokens
        ),
        (210, 195)
    );
}

#[tokio::test]
async fn stream_with_keep_alives_and_reasoning() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(sse(fixture("deepseek/stream.sse")))
        .expect(1)
        .mount(&server)
        .await;
    let (key, settings) = (key(KEY), no_settings());
    let stream = adapter(&server, ProviderKind::DeepSeek)
        .chat_stream(
            Credentials {
                key: &key,
                settings: &settings,
            },
            &hello("deepseek-flash"),
        )
        .await
        .unwrap();
    let items = collect(stream).await;
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    assert_eq!(text_of(&items), "9.8");
    // The stream names its model first, then reasons.
    assert!(matches!(&items[0], Ok(ChatChunk::Model(m)) if m == "deepseek-flash"));
    assert!(matches!(&items[1], Ok(ChatChunk::Reasoning(r)) if r == "Compare"));
    assert!(
        items
            .iter()
            .any(|i| matches!(i, Ok(ChatChunk::Usage(u)) if u.reasoning_tokens == 195))
    );
}

#[tokio::test]
async fn no_embeddings() {
    let server = MockServer::start().await;
    let (key, settings) = (key(KEY), no_settings());
    let error = adapter(&server, ProviderKind::DeepSeek)
        .embed(
            Credentials {
                key: &key,
                settings: &settings,
            },
            &EmbeddingRequest::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        ProviderError::Unsupported {
            capability: "embeddings",
            ..
        }
    ));
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_retired_model_name_is_a_bad_request_and_a_cut_stream_is_incomplete() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(body_partial_json(json!({"model": "deepseek-chat"})))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {"message": "Model Not Exist", "type": "invalid_request_error", "param": null, "code": "invalid_request_error"}})))
        .expect(1)
        .mount(&server)
        .await;
    let cut = fixture("deepseek/stream.sse").replace("data: [DONE]", "");
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .and(body_partial_json(
            json!({"model": "deepseek-flash", "stream": true}),
        ))
        .respond_with(sse(cut))
        .expect(1)
        .mount(&server)
        .await;
    let (key, settings) = (key(KEY), no_settings());
    let adapter = adapter(&server, ProviderKind::DeepSeek);
    let error = adapter
        .chat(
            Credentials {
                key: &key,
                settings: &settings,
            },
            &hello("deepseek-chat"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::BadRequest { status: 400, .. }) && !error.is_retryable(),
        "{error:?}"
    );
    let stream = adapter
        .chat_stream(
            Credentials {
                key: &key,
                settings: &settings,
            },
            &hello("deepseek-flash"),
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
