//! Azure OpenAI, including the server-side request forgery guard.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use byok_core::{ChatChunk, FinishReason, ProviderKind};
use byok_providers::endpoint::Lookup;
use byok_providers::{
    BadRequestKind, ChatProvider, Credentials, HttpClients, ProviderError, ProviderSet,
    ProviderSettings,
};
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{adapter, collect, fixture, hello, key, sse, text_of};

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn settings(endpoint: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("endpoint".to_owned(), endpoint.to_owned()),
        ("deployment".to_owned(), "gpt-4o".to_owned()),
        ("embedding_deployment".to_owned(), "embed-small".to_owned()),
    ])
}

#[tokio::test]
async fn verify_and_chat_use_the_deployment_path_api_version_and_api_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/openai/models"))
        .and(query_param("api-version", "2024-10-21"))
        .and(header("api-key", KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": [{"id": "gpt-4o", "status": "succeeded", "capabilities": {"chat_completion": true}}]})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/openai/deployments/gpt-4o/chat/completions"))
        .and(query_param("api-version", "2024-10-21"))
        .and(header("api-key", KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-Cq9Zz", "object": "chat.completion", "created": 1764201600, "model": "gpt-4o-2024-11-20",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {"hate": {"filtered": false, "severity": "safe"}}}],
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null, "message": {"role": "assistant", "content": "Hello!", "refusal": null, "annotations": []},
                         "content_filter_results": {"hate": {"filtered": false, "severity": "safe"}}}],
            "usage": {"prompt_tokens": 19, "completion_tokens": 3, "total_tokens": 22}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let (key, settings) = (key(KEY), settings(&server.uri()));
    let azure = adapter(&server, ProviderKind::AzureOpenAi);
    azure
        .verify_key(Credentials {
            key: &key,
            settings: &settings,
        })
        .await
        .unwrap();
    let answer = azure
        .chat(
            Credentials {
                key: &key,
                settings: &settings,
            },
            &hello("ignored"),
        )
        .await
        .unwrap();
    assert_eq!(
        (answer.text(), answer.model.as_str()),
        ("Hello!", "gpt-4o-2024-11-20")
    );
}

#[tokio::test]
async fn errors_use_string_codes_and_retry_after_ms() {
    let cases = [
        (ResponseTemplate::new(401).set_body_json(json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint."}})), "invalid"),
        (ResponseTemplate::new(404).set_body_json(json!({"error": {"code": "DeploymentNotFound", "message": "The API deployment for this resource does not exist."}})), "deployment"),
        (ResponseTemplate::new(429).insert_header("retry-after", "6").insert_header("retry-after-ms", "6500").set_body_json(json!({"error": {"code": "429", "message": "Requests ... Please retry after 6 seconds."}})), "limited"),
        (ResponseTemplate::new(400).set_body_json(json!({"error": {"message": "filtered", "type": null, "param": "prompt", "code": "content_filter", "status": 400, "innererror": {"code": "ResponsibleAIPolicyViolation"}}})), "filter"),
    ];
    for (response, expected) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/openai/deployments/gpt-4o/chat/completions"))
            .respond_with(response)
            .expect(1)
            .mount(&server)
            .await;
        let (key, settings) = (key(KEY), settings(&server.uri()));
        let error = adapter(&server, ProviderKind::AzureOpenAi)
            .chat(
                Credentials {
                    key: &key,
                    settings: &settings,
                },
                &hello("x"),
            )
            .await
            .unwrap_err();
        let ok = match expected {
            "invalid" => matches!(error, ProviderError::InvalidKey { .. }),
            "deployment" => matches!(
                error,
                ProviderError::BadRequest {
                    kind: BadRequestKind::UnknownDeployment,
                    ..
                }
            ),
            "limited" => error.retry_after() == Some(Duration::from_millis(6500)),
            _ => matches!(
                error,
                ProviderError::BadRequest {
                    kind: BadRequestKind::ContentFilter,
                    ..
                }
            ),
        };
        assert!(ok, "{expected}: {error:?}");
    }
}

#[tokio::test]
async fn streams_skip_the_empty_first_chunk_and_filter_only_chunks() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/openai/deployments/gpt-4o/chat/completions"))
        .respond_with(sse(fixture("azure/stream.sse")))
        .expect(1)
        .mount(&server)
        .await;
    let (key, settings) = (key(KEY), settings(&server.uri()));
    let stream = adapter(&server, ProviderKind::AzureOpenAi)
        .chat_stream(
            Credentials {
                key: &key,
                settings: &settings,
            },
            &hello("x"),
        )
        .await
        .unwrap();
    let items = collect(stream).await;
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    assert_eq!(text_of(&items), "Hello!");
    assert!(
        items
            .iter()
            .any(|i| matches!(i, Ok(ChatChunk::Finish(FinishReason::Stop))))
    );
    assert!(matches!(items.last(), Some(Ok(ChatChunk::Usage(u))) if u.cached_input_tokens == 8));
}

/// A fixed DNS table, so address rules are tested without real DNS.
struct Table(Vec<IpAddr>);

impl Lookup for Table {
    fn lookup(
        &self,
        _host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        let addresses = self.0.clone();
        Box::pin(async move { Ok(addresses) })
    }
}

fn guarded(addresses: &[&str]) -> Arc<dyn ChatProvider> {
    let table = Table(addresses.iter().map(|a| a.parse().unwrap()).collect());
    let clients = HttpClients::with_lookup(
        ProviderSettings {
            connect_timeout: Duration::from_secs(1),
            ..ProviderSettings::default()
        },
        Arc::new(table),
    )
    .unwrap();
    ProviderSet::new(&clients)
        .get(ProviderKind::AzureOpenAi)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn hostile_endpoints_are_refused_before_any_connection() {
    let azure = guarded(&["20.42.1.1"]);
    let key = key(KEY);
    for endpoint in [
        "http://res.openai.azure.com",
        "https://127.0.0.1",
        "https://169.254.169.254",
        "https://[::1]",
        "https://x.openai.azure.com@evil.example",
        "https://x.openai.azure.com.evil.example",
        "https://rés.openai.azure.com",
        "https://x.openai.azure.com:8443",
    ] {
        let settings = settings(endpoint);
        let error = azure
            .verify_key(Credentials {
                key: &key,
                settings: &settings,
            })
            .await
            .unwrap_err();
        assert!(
            matches!(error, ProviderError::EndpointNotAllowed { .. }),
            "{endpoint}: {error:?}"
        );
    }
}

#[tokio::test]
async fn a_name_resolving_to_an_internal_address_is_refused_at_connect_time() {
    for internal in [
        &["10.0.0.5"][..],
        &["169.254.169.254"],
        &["fd00::1"],
        &["64:ff9b::a00:5"],
        &["20.42.1.1", "127.0.0.1"],
    ] {
        let azure = guarded(internal);
        let (key, settings) = (key(KEY), settings("https://res.openai.azure.com"));
        let error = azure
            .verify_key(Credentials {
                key: &key,
                settings: &settings,
            })
            .await
            .unwrap_err();
        assert!(
            matches!(error, ProviderError::EndpointNotAllowed { .. }),
            "{internal:?}: {error:?}"
        );
    }
}

#[tokio::test]
async fn saving_checks_that_the_endpoint_resolves_to_public_addresses() {
    let settings = ProviderSettings::default();
    let public = HttpClients::with_lookup(
        settings.clone(),
        Arc::new(Table(vec!["20.42.1.1".parse().unwrap()])),
    )
    .unwrap();
    let url = public
        .check_azure_endpoint("https://Res.openai.azure.com/")
        .await
        .unwrap();
    assert_eq!(url.as_str(), "https://res.openai.azure.com/");
    let internal = HttpClients::with_lookup(
        settings.clone(),
        Arc::new(Table(vec!["10.0.0.5".parse().unwrap()])),
    )
    .unwrap();
    assert!(matches!(
        internal
            .check_azure_endpoint("https://res.openai.azure.com")
            .await,
        Err(ProviderError::EndpointNotAllowed { .. })
    ));
    let nothing = HttpClients::with_lookup(settings, Arc::new(Table(vec![]))).unwrap();
    assert!(matches!(
        nothing
            .check_azure_endpoint("https://res.openai.azure.com")
            .await,
        Err(ProviderError::EndpointNotAllowed { .. })
    ));
}

#[tokio::test]
async fn a_truncated_stream_is_incomplete() {
    let server = MockServer::start().await;
    let cut = fixture("azure/stream.sse").replace("data: [DONE]", "");
    Mock::given(method("POST"))
        .and(path("/openai/deployments/gpt-4o/chat/completions"))
        .and(header("api-key", KEY))
        .respond_with(sse(cut))
        .expect(1)
        .mount(&server)
        .await;
    let (key, settings) = (key(KEY), settings(&server.uri()));
    let stream = adapter(&server, ProviderKind::AzureOpenAi)
        .chat_stream(
            Credentials {
                key: &key,
                settings: &settings,
            },
            &hello("x"),
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
async fn embeddings_use_the_embedding_deployment() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/openai/deployments/embed-small/embeddings"))
        .and(query_param("api-version", "2024-10-21"))
        .and(header("api-key", KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list", "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
            "usage": {"prompt_tokens": 2, "total_tokens": 2}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let (key, settings) = (key(KEY), settings(&server.uri()));
    let request = byok_core::EmbeddingRequest {
        model: "ignored".into(),
        inputs: vec!["hi".into()],
        ..Default::default()
    };
    let out = adapter(&server, ProviderKind::AzureOpenAi)
        .embed(
            Credentials {
                key: &key,
                settings: &settings,
            },
            &request,
        )
        .await
        .unwrap();
    assert_eq!(out.vectors, vec![vec![0.5, 0.25]]);
    assert_eq!(out.input_tokens, Some(2));
}

#[tokio::test]
async fn the_v1_api_names_the_deployment_in_the_body_and_takes_no_version() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/openai/v1/models"))
        .and(header("api-key", KEY))
        .and(wiremock::matchers::query_param_is_missing("api-version"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": []})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/openai/v1/chat/completions"))
        .and(wiremock::matchers::query_param_is_missing("api-version"))
        .and(wiremock::matchers::body_partial_json(json!({"model": "gpt-4o"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-11-20",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/openai/v1/embeddings"))
        .and(wiremock::matchers::body_partial_json(json!({"model": "embed-small"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list", "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}], "usage": {"prompt_tokens": 1, "total_tokens": 1}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let key = key(KEY);
    let mut settings = settings(&server.uri());
    settings.insert("api_version".to_owned(), "v1".to_owned());
    let azure = adapter(&server, ProviderKind::AzureOpenAi);
    let credentials = Credentials {
        key: &key,
        settings: &settings,
    };
    azure.verify_key(credentials).await.unwrap();
    let answer = azure.chat(credentials, &hello("ignored")).await.unwrap();
    assert_eq!(answer.model, "gpt-4o-2024-11-20");
    let embedded = azure
        .embed(
            credentials,
            &byok_core::EmbeddingRequest {
                model: "ignored".into(),
                inputs: vec!["hi".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(embedded.vectors, [vec![0.5]]);
}
