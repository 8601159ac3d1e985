//! The OpenAPI document is generated from the code, committed as
//! `docs/openapi.json`, and every path in it is really routed.

use byok_test_support::{TestApp, TestDb};
use serde_json::Value;

fn committed_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_matches_the_committed_copy_and_every_path_is_routed() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&db).await;
    let response = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let served: Value = response.json().await.unwrap();
    assert!(served["openapi"].as_str().unwrap().starts_with("3."));

    let pretty = serde_json::to_string_pretty(&served).unwrap() + "\n";
    let committed = std::fs::read_to_string(committed_path()).unwrap_or_default();
    if std::env::var_os("BYOK_UPDATE_OPENAPI").is_some() {
        std::fs::write(committed_path(), &pretty).unwrap();
    } else {
        assert!(
            committed == pretty,
            "docs/openapi.json is out of date; run `BYOK_UPDATE_OPENAPI=1 cargo test -p byok-api openapi` and commit it"
        );
    }

    // Every documented path and method reaches a handler: not the generic
    // "no such route" 404, not 405.
    let paths = served["paths"].as_object().unwrap();
    assert!(paths.len() >= 11, "{} paths", paths.len());
    for (path, methods) in paths {
        let concrete = path
            .replace("{user_id}", "alice")
            .replace("{provider}", "openai")
            .replace("{token_id}", "0000000000000000");
        for method in methods.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = app
                .client
                .request(method.clone(), app.url(&concrete))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_ne!(status, 405, "{method} {path}");
            assert_ne!(
                body["error"]["code"], "not_found",
                "{method} {path} is documented but not routed"
            );
        }
    }
}
