//! Saving, listing, replacing and deleting keys over HTTP.

use byok_core::ProviderKind;
use byok_test_support::{TestApp, TestDb, both_backends};
use serde_json::json;

use crate::{body, key_body, openai_key};

both_backends!(
    save_list_replace_delete,
    azure_settings_are_saved_and_listed,
    providers_are_listed_without_a_token
);

async fn save_list_replace_delete(db: TestDb) {
    let app = TestApp::spawn(&db).await;
    let token = app.create_user("alice").await;
    let first = openai_key("first");

    let response = app
        .save_key(&token, "alice", "openai", key_body(&format!("  {first}\n")))
        .await;
    let (status, saved) = body(response).await;
    assert_eq!(status, 201);
    assert_eq!(saved["provider"], "openai");
    let masked = saved["masked_key"].as_str().unwrap();
    assert_eq!(masked, format!("sk-p********{}", &first[first.len() - 4..]));
    assert!(
        !saved.to_string().contains(&first[8..]),
        "the response must not carry the key"
    );
    assert_eq!(
        app.open_key("alice", ProviderKind::OpenAi).await,
        first,
        "trimmed and stored"
    );

    let second = openai_key("second");
    let (status, replaced) = body(
        app.save_key(&token, "alice", "openai", key_body(&second))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(replaced["created_at"], saved["created_at"]);
    assert_eq!(app.open_key("alice", ProviderKind::OpenAi).await, second);

    let list = app
        .client
        .get(app.url("/api/user/api-keys/alice/keys"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, list) = body(list).await;
    assert_eq!(status, 200);
    assert_eq!(list["keys"].as_array().unwrap().len(), 1);
    assert_eq!(list["keys"][0]["masked_key"], replaced["masked_key"]);
    assert_eq!(list["keys"][0]["last_test_status"], serde_json::Value::Null);
    assert!(!list.to_string().contains(&second[8..]));

    let delete = |app: &TestApp| {
        app.client
            .delete(app.url("/api/user/api-keys/alice/keys/openai"))
            .bearer_auth(&token)
            .send()
    };
    let (status, empty) = body(delete(&app).await.unwrap()).await;
    assert_eq!((status, empty), (204, serde_json::Value::Null));
    let (status, gone) = body(delete(&app).await.unwrap()).await;
    assert_eq!(status, 404);
    assert_eq!(gone["error"]["code"], "key_not_found");
    let list = app
        .client
        .get(app.url("/api/user/api-keys/alice/keys"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(body(list).await.1["keys"], json!([]));
}

async fn azure_settings_are_saved_and_listed(db: TestDb) {
    let app = TestApp::spawn(&db).await;
    let token = app.create_user("alice").await;
    let request = json!({
        "api_key": "0123456789abcdef0123456789abcdef",
        "endpoint": "https://My-Resource.openai.azure.com/",
        "deployment": "gpt-4o-mini",
        "api_version": "2024-10-21",
    });
    let (status, saved) = body(app.save_key(&token, "alice", "azure_openai", request).await).await;
    assert_eq!(status, 201, "{saved}");
    assert_eq!(
        saved["settings"]["endpoint"],
        "https://my-resource.openai.azure.com"
    );
    assert_eq!(saved["settings"]["deployment"], "gpt-4o-mini");
    assert_eq!(saved["masked_key"], "0123********cdef");
}

async fn providers_are_listed_without_a_token(db: TestDb) {
    let app = TestApp::spawn(&db).await;
    let response = app
        .client
        .get(app.url("/api/user/api-keys/providers"))
        .send()
        .await
        .unwrap();
    let (status, list) = body(response).await;
    assert_eq!(status, 200);
    let ids: Vec<_> = list["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["openai", "deepseek", "anthropic", "gemini", "azure_openai"]
    );
    let azure = &list["providers"][4];
    let fields: Vec<_> = azure["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "api_key",
            "endpoint",
            "deployment",
            "api_version",
            "embedding_deployment"
        ]
    );
    assert!(
        list["providers"][0]["key_format_hint"]
            .as_str()
            .unwrap()
            .contains("sk-proj-")
    );
}
