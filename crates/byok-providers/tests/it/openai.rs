//! OpenAI.

use std::time::Duration;

use byok_core::{ChatChunk, EmbeddingRequest, FinishReason, ProviderKind};
use byok_providers::{BadRequestKind, Credentials, ProviderError};
use serde_json::json;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{adapter, assert_no_key, collect, fixture, hello, key, no_settings, sse, text_of};

const KEY: &str = "sk-proj-TESTKEY0123456789abcdefghijklmnopqrstuvwxyz";

async fn on_models(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(response)
        .expect(1)
        .mount(server)
        .await;
}

async fn verify(server: &MockServer) -> Result<(), ProviderError> {
    let key = key(KEY);
    let settings = no_settings();
    adapter(server, ProviderKind::OpenAi)
        .verify_key(Credentials {
            key: &key,
            settings: &settings,
        })
        .await
}

#[tokio::test]
async fn verify_classifies_every_outcome() {
    let list = json!({"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1721172741,"owned_by":"system","extra":"ignored"}]});
    let cases: Vec<(ResponseTemplate, fn(&Result<(), ProviderError>) -> bool)> = vec![
        (ResponseTemplate::new(200).set_body_json(list), |r| r.is_ok()),
        (
            ResponseTemplate::new(401).set_body_json(json!({"error":{"message":"Incorrect API key provided: sk-proj-...wxyz.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}})),
            |r| matches!(r, Err(ProviderError::InvalidKey { .. })),
        ),
        (
            ResponseTemplate::new(403).set_body_json(json!({"error":{"message":"You have insufficient permissions for this operation. Missing scopes: api.model.read.","type":"invalid_request_error","param":null,"code":null}})),
            |r| r.is_ok(),
        ),
        (
            ResponseTemplate::new(429)
                .insert_header("x-ratelimit-reset-requests", "1s")
                .insert_header("x-ratelimit-reset-tokens", "6m0s")
                .set_body_json(json!({"error":{"message":"Rate limit reached for gpt-4o-mini","type":"tokens","param":null,"code":"rate_limit_exceeded"}})),
            |r| matches!(r, Err(e @ ProviderError::RateLimited { .. }) if e.retry_after() == Some(Duration::from_secs(360)) && e.is_retryable()),
        ),
        (
            ResponseTemplate::new(429).set_body_json(json!({"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}})),
            |r| matches!(r, Err(ProviderError::NoCredit { .. })),
        ),
        (
            ResponseTemplate::new(503).set_body_json(json!({"error":{"message":"The engine is currently overloaded, please try again later","type":"server_error","param":null,"code":null}})),
            |r| matches!(r, Err(e @ ProviderError::Unavailable { status: 503, .. }) if e.is_retryable()),
        ),
        (ResponseTemplate::new(200).set_body_string("<html>not json</html>"), |r| matches!(r, Err(ProviderError::BadResponse { .. }))),
        (ResponseTemplate::new(403).set_body_string("<html>blocked by a proxy</html>"), |r| matches!(r, Err(ProviderError::BadResponse { .. }))),
        (ResponseTemplate::new(200).set_body_string("{\"object\":\"list\",\"data\":["), |r| matches!(r, Err(ProviderError::BadResponse { .. }))),
        (ResponseTemplate::new(200).set_body_string("x".repeat(100 * 1024)), |r| matches!(r, Err(ProviderError::BadResponse { .. }))),
        (ResponseTemplate::new(200).set_delay(Duration::from_secs(3)), |r| matches!(r, Err(e @ ProviderError::Timeout { .. }) if e.is_retryable())),
    ];
    for (i, (response, expected)) in cases.into_iter().enumerate() {
        let server = MockServer::start().await;
        on_models(&server, response).await;
        let result = verify(&server).await;
        assert!(expected(&result), "case {i}: {result:?}");
        if let Err(error) = &result {
            assert_no_key(error, KEY);
        }
    }
}

#[tokio::test]
async fn redirects_are_not_followed_and_the_other_host_sees_nothing() {
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&elsewhere)
        .await;
    on_models(
        &server,
        ResponseTemplate::new(302)
            .insert_header("location", format!("{}/steal", elsewhere.uri()).as_str()),
    )
    .await;
    let result = verify(&server).await;
    assert!(
        matches!(result, Err(ProviderError::Redirected { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn unreachable_servers_are_retryable_and_keep_no_url() {
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = byok_providers::ProviderSettings {
        openai_base_url: url::Url::parse(&format!("http://127.0.0.1:{port}/v1")).unwrap(),
        ..byok_providers::ProviderSettings::default()
    };
    let clients = byok_providers::HttpClients::new(settings).unwrap();
    let adapter = byok_providers::ProviderSet::new(&clients)
        .get(ProviderKind::OpenAi)
        .unwrap()
        .clone();
    let key = key(KEY);
    let settings = no_settings();
    let error = adapter
        .verify_key(Credentials {
            key: &key,
            settings: &settings,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert_no_key(&error, KEY);
}

#[tokio::test]
async fn chat_sends_the_normalised_request_and_reads_usage() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(body_partial_json(json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}],
            "max_completion_tokens": 64,
            "stream": false
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1764201600, "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!", "refusal": null, "annotations": []}, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 19, "completion_tokens": 13, "total_tokens": 32,
                      "prompt_tokens_details": {"cached_tokens": 7, "audio_tokens": 0, "cache_write_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 10, "audio_tokens": 0}},
            "service_tier": "default", "system_fingerprint": "fp_0123456789", "new_field": {"ignored": true}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let (key, settings) = (key(KEY), no_settings());
    let answer = adapter(&server, ProviderKind::OpenAi)
        .chat(
            Credentials {
                key: &key,
                settings: &settings,
            },
            &hello("gpt-4o-mini"),
        )
        .await
        .unwrap();
    assert_eq!(answer.text(), "Hello!");
    assert_eq!(answer.model, "gpt-4o-mini-2024-07-18");
    assert_eq!(answer.choices[0].finish_reason.unwrap(), FinishReason::Stop);
    assert_eq!(
        (
            answer.usage.unwrap().input_tokens,
            answer.usage.unwrap().cached_input_tokens
        ),
        (19, 7)
    );
    assert_eq!(
        (
            answer.usage.unwrap().output_tokens,
            answer.usage.unwrap().reasoning_tokens
        ),
        (13, 10)
    );
}

#[tokio::test]
async fn bad_requests_are_not_retryable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error":{"message":"The model 'gpt-99' does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}})))
        .expect(1)
        .mount(&server)
        .await;
    let (key, settings) = (key(KEY), no_settings());
    let error = adapter(&server, ProviderKind::OpenAi)
        .chat(
            Credentials {
                key: &key,
                settings: &settings,
            },
            &hello("gpt-99"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ProviderError::BadRequest {
                kind: BadRequestKind::UnknownModel,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn streams_decode_and_a_missing_done_is_an_error() {
    for (file, complete) in [("openai/stream.sse", true), ("openai/truncated.sse", false)] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(body_partial_json(
                json!({"stream": true, "stream_options": {"include_usage": true}}),
            ))
            .respond_with(sse(fixture(file)))
            .expect(1)
            .mount(&server)
            .await;
        let (key, settings) = (key(KEY), no_settings());
        let stream = adapter(&server, ProviderKind::OpenAi)
            .chat_stream(
                Credentials {
                    key: &key,
                    settings: &settings,
                },
                &hello("gpt-4o-mini"),
            )
            .await
            .unwrap();
        let items = collect(stream).await;
        assert_eq!(text_of(&items), "Hello!");
        assert!(
            items
                .iter()
                .any(|i| matches!(i, Ok(ChatChunk::Finish(FinishReason::Stop))))
        );
        if complete {
            assert!(items.iter().all(Result::is_ok), "{items:?}");
            assert!(
                matches!(items.last(), Some(Ok(ChatChunk::Usage(u))) if u.input_tokens == 19 && u.output_tokens == 3)
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
async fn embeddings() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(body_partial_json(json!({"model": "text-embedding-3-small", "input": ["a", "b"]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list", "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 1, "embedding": [0.5]}, {"object": "embedding", "index": 0, "embedding": [0.25]}],
            "usage": {"prompt_tokens": 5, "total_tokens": 5}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let (key, settings) = (key(KEY), no_settings());
    let request = EmbeddingRequest {
        model: "text-embedding-3-small".into(),
        inputs: vec!["a".into(), "b".into()],
        ..Default::default()
    };
    let out = adapter(&server, ProviderKind::OpenAi)
        .embed(
            Credentials {
                key: &key,
                settings: &settings,
            },
            &request,
        )
        .await
        .unwrap();
    assert_eq!(out.vectors, vec![vec![0.25], vec![0.5]], "in input order");
    assert_eq!(out.input_tokens, Some(5));
}

#[tokio::test]
async fn streams_are_capped_like_bodies() {
    let server = MockServer::start().await;
    let chunk = r#"data: {"choices":[{"index":0,"delta":{"content":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},"finish_reason":null}]}"#;
    let body = format!("{chunk}\n\n").repeat(1_000); // about 130 KiB, over the 64 KiB test cap
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(sse(body))
        .expect(1)
        .mount(&server)
        .await;
    let (key, settings) = (key(KEY), no_settings());
    let stream = adapter(&server, ProviderKind::OpenAi)
        .chat_stream(
            Credentials {
                key: &key,
                settings: &settings,
            },
            &hello("gpt-4o-mini"),
        )
        .await
        .unwrap();
    let items = collect(stream).await;
    assert!(
        matches!(items.last(), Some(Err(ProviderError::BadResponse { .. }))),
        "{:?}",
        items.last()
    );
    assert!(items.len() < 1_000);
}
