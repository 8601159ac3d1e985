//! Moving keys between byok installs: a user's keys exported under a
//! passphrase (opened, then sealed with Argon2id and AES-256-GCM) and
//! imported into another server's database for another user, with their
//! labels, settings and switches; audited; refused to scoped tokens.

use byok_api::RequestContext;
use byok_core::UserId;
use byok_test_support::{TestApp, TestDb};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::body;

#[tokio::test]
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn keys_move_to_another_install_under_a_passphrase() {
    let settings = || byok_providers::ProviderSettings {
        allow_private_endpoints: true,
        ..byok_providers::ProviderSettings::default()
    };
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_providers(&db, settings()).await;
    let token = app.create_user("alice").await;
    let openai = "sk-proj-EXPORTKEY0123456789abcdefghijklmnop";
    let azure = "0123456789abcdef0123456789abcdef";
    assert_eq!(
        app.save_key(
            &token,
            "alice",
            "openai",
            json!({"api_key": openai, "label": "personal"})
        )
        .await
        .status(),
        201
    );
    let (status, saved) = body(
        app.save_key(
            &token,
            "alice",
            "azure_openai",
            json!({"api_key": azure, "endpoint": "https://127.0.0.1:9",
                   "deployment": "chat1", "api_version": "v1"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{saved}");
    let azure_id = saved["id"].as_str().unwrap().to_owned();
    let off = app
        .client
        .patch(app.url(&format!(
            "/api/user/api-keys/alice/keys/azure_openai/{azure_id}"
        )))
        .bearer_auth(&token)
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 200);

    let alice = UserId::parse("alice").unwrap();
    let ctx = RequestContext::default();
    let principal = app.service.lookup(Some(&token)).await.unwrap().unwrap();
    let exported = app
        .service
        .export_keys(&principal, &alice, &ctx)
        .await
        .unwrap();
    assert_eq!(exported.len(), 2);
    let passphrase = SecretString::from("a long export passphrase".to_owned());
    let file = byok_vault::seal_export(&exported, &passphrase).unwrap();
    assert!(
        !file.contains(openai) && !file.contains(azure),
        "no key in the file"
    );
    let wrong = SecretString::from("another long passphrase".to_owned());
    assert!(byok_vault::open_export(&file, &wrong).is_err());

    // Another server, another database, another user.
    let other_db = TestDb::sqlite();
    let other = TestApp::spawn_with_providers(&other_db, settings()).await;
    let bob_token = other.create_user("bob").await;
    let bob = UserId::parse("bob").unwrap();
    let bob_principal = other
        .service
        .lookup(Some(&bob_token))
        .await
        .unwrap()
        .unwrap();
    let opened = byok_vault::open_export(&file, &passphrase).unwrap();
    let added = other
        .service
        .import_keys(&bob_principal, &bob, opened, &ctx)
        .await
        .unwrap();
    assert_eq!(added, 2);
    let (status, listed) = body(
        other
            .client
            .get(other.url("/api/user/api-keys/bob/keys"))
            .bearer_auth(&bob_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let find = |provider: &str| {
        keys.iter()
            .find(|k| k["provider"] == provider)
            .unwrap()
            .clone()
    };
    let (moved_openai, moved_azure): (Value, Value) = (find("openai"), find("azure_openai"));
    assert_eq!(moved_openai["label"], "personal");
    assert_eq!(moved_azure["enabled"], false);
    assert_eq!(moved_azure["settings"]["deployment"], "chat1");
    assert_eq!(
        other
            .open_key_by_id("bob", moved_openai["id"].as_str().unwrap())
            .await,
        openai
    );
    assert_eq!(
        other
            .open_key_by_id("bob", moved_azure["id"].as_str().unwrap())
            .await,
        azure
    );

    // All or nothing: an export whose second key byok refuses adds none.
    let mut refused = byok_vault::open_export(&file, &passphrase).unwrap();
    for key in &mut refused {
        if key.provider == byok_core::ProviderKind::AzureOpenAi {
            key.settings
                .insert("endpoint".to_owned(), "http://not-https.example".to_owned());
        }
    }
    refused.sort_by_key(|k| k.provider == byok_core::ProviderKind::AzureOpenAi);
    let carol_token = other.create_user("carol").await;
    let carol = UserId::parse("carol").unwrap();
    let carol_principal = other
        .service
        .lookup(Some(&carol_token))
        .await
        .unwrap()
        .unwrap();
    assert!(
        other
            .service
            .import_keys(&carol_principal, &carol, refused, &ctx)
            .await
            .is_err()
    );
    let (_, listed) = body(
        other
            .client
            .get(other.url("/api/user/api-keys/carol/keys"))
            .bearer_auth(&carol_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        listed["keys"],
        json!([]),
        "nothing stays from a failed import"
    );

    // The export is in alice's trail.
    let (_, trail) = body(
        app.client
            .get(app.url("/api/user/api-keys/alice/audit"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        trail["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "key.export"),
        "{trail}"
    );

    // A scoped token may not export.
    let (status, created) = body(
        app.client
            .post(app.url("/api/user/api-keys/alice/tokens"))
            .bearer_auth(&token)
            .json(&json!({"label": "ci", "doors": ["keys"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let scoped = app
        .service
        .lookup(Some(created["token"].as_str().unwrap()))
        .await
        .unwrap()
        .unwrap();
    let refused = app
        .service
        .export_keys(&scoped, &alice, &ctx)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "token_scope_too_narrow");
}
