//! No adapter follows a redirect: the other host never sees a request (and so
//! never sees `x-api-key`, `api-key` or `x-goog-api-key`).

use std::collections::BTreeMap;

use byok_core::ProviderKind;
use byok_providers::{Credentials, ProviderError};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{adapter, key};

#[tokio::test]
async fn every_provider_refuses_redirects() {
    let keys = [
        (
            ProviderKind::OpenAi,
            "sk-proj-REDIRECTKEY0123456789abcdefghijklmnop".to_owned(),
        ),
        (
            ProviderKind::DeepSeek,
            "sk-0123456789abcdef0123456789abcdef".to_owned(),
        ),
        (
            ProviderKind::Anthropic,
            format!("sk-ant-api03-{}AA", "r".repeat(93)),
        ),
        (ProviderKind::Gemini, format!("AIza{}", "r".repeat(35))),
        (
            ProviderKind::AzureOpenAi,
            "0123456789abcdef0123456789abcdef".to_owned(),
        ),
    ];
    for (provider, raw) in keys {
        let server = MockServer::start().await;
        let elsewhere = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200))
            .expect(0)
            .mount(&elsewhere)
            .await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(307)
                    .insert_header("location", format!("{}/collect", elsewhere.uri()).as_str()),
            )
            .expect(1)
            .mount(&server)
            .await;
        let key = key(&raw);
        let settings = BTreeMap::from([
            ("endpoint".to_owned(), server.uri()),
            ("deployment".to_owned(), "d".to_owned()),
        ]);
        let result = adapter(&server, provider)
            .verify_key(Credentials {
                key: &key,
                settings: &settings,
            })
            .await;
        assert!(
            matches!(result, Err(ProviderError::Redirected { .. })),
            "{provider}: {result:?}"
        );
    }
}
