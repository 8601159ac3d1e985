//! Health, restarts and master-key rotation.

use byok_api::service::MasterKeyCheckError;
use byok_core::ProviderKind;
use byok_test_support::{TestApp, TestDb, both_backends, test_vault};
use byok_vault::{KeyVault, MasterKey, MasterKeyId};

use crate::{body, key_body, openai_key};

both_backends!(
    health_and_readiness,
    keys_survive_a_restart,
    rotation_then_rewrap_then_retire,
    a_replica_with_another_master_key_under_the_same_id_is_refused,
    a_key_sealed_by_a_newer_replica_is_temporarily_unusable_not_bad
);

async fn a_key_sealed_by_a_newer_replica_is_temporarily_unusable_not_bad(db: TestDb) {
    // An old replica (master key 1 only) and one already rotated to key 2.
    let old = TestApp::spawn(&db).await;
    let new = TestApp::spawn_with(&db, vault_v2_with_v1_retired()).await;
    let token = new.create_user("bob").await;
    assert_eq!(
        new.save_key(&token, "bob", "openai", key_body(&openai_key("v2")))
            .await
            .status(),
        201
    );
    let tested = old
        .client
        .post(old.url("/api/user/api-keys/bob/keys/openai/test"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, error) = body(tested).await;
    assert_eq!(status, 503, "{error}");
    assert_eq!(error["error"]["code"], "key_temporarily_unusable");
    assert!(
        !error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("re-enter")
    );
    // The operator sees which master key id this replica lacks.
    let metrics = old
        .client
        .get(old.url("/metrics"))
        .bearer_auth(byok_test_support::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = "byok_key_open_failures_total{master_key_id=\"2\",missing_here=\"true\"} 1";
    assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    assert!(!metrics.contains("bob"), "no user ids in metrics");
    old.stop().await;
    new.stop().await;
}

async fn a_replica_with_another_master_key_under_the_same_id_is_refused(db: TestDb) {
    let store = db.store().await;
    let service = |key: [u8; 32]| {
        byok_api::KeyService::new(
            store.clone(),
            std::sync::Arc::new(KeyVault::new(
                MasterKeyId::new(1),
                MasterKey::from_bytes(key),
            )),
        )
    };
    // The first replica records what key id 1 means, even before any key is sealed.
    service([7; 32]).check_master_keys().await.unwrap();
    assert!(matches!(
        service([8; 32]).check_master_keys().await,
        Err(MasterKeyCheckError::Mismatch(1))
    ));
    service([7; 32]).check_master_keys().await.unwrap();
    let recorded = store
        .run(byok_store::keys::master_key_checks)
        .await
        .unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].1.len(), 32, "16 bytes of fingerprint, in hex");
    assert!(
        !recorded[0].1.contains("0707"),
        "the key's bytes are not in it"
    );
}

async fn health_and_readiness(db: TestDb) {
    let app = TestApp::spawn(&db).await;
    // A table requests need, unreadable: not ready, and it says why.
    let rename = |from: &'static str, to: &'static str| {
        app.service.store().run(move |c| {
            diesel::connection::SimpleConnection::batch_execute(
                c,
                &format!("ALTER TABLE {from} RENAME TO {to}"),
            )
            .map_err(byok_store::StoreError::Database)
        })
    };
    rename("api_tokens", "api_tokens_away").await.unwrap();
    let (status, not_ready) = body(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, 503, "{not_ready}");
    assert_eq!(not_ready["error"]["code"], "not_ready");
    assert!(
        not_ready["error"]["message"]
            .as_str()
            .unwrap()
            .contains("table"),
        "{not_ready}"
    );
    rename("api_tokens_away", "api_tokens").await.unwrap();
    let (status, health) = body(app.client.get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let ready = app
        .client
        .get(app.url("/readyz"))
        .header("x-request-id", "client-chosen-id")
        .send()
        .await
        .unwrap();
    // Always byok's own id, never the client's.
    let id = ready.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, "client-chosen-id");
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let (status, ready) = body(ready).await;
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")));
}

async fn keys_survive_a_restart(db: TestDb) {
    let key = openai_key("persist");
    {
        let app = TestApp::spawn(&db).await;
        let token = app.create_user("alice").await;
        assert_eq!(
            app.save_key(&token, "alice", "openai", key_body(&key))
                .await
                .status(),
            201
        );
        app.stop().await;
    }
    let app = TestApp::spawn(&db).await;
    assert_eq!(app.open_key("alice", ProviderKind::OpenAi).await, key);
}

fn vault_v2_with_v1_retired() -> KeyVault {
    KeyVault::new(MasterKeyId::new(2), MasterKey::from_bytes([7; 32]))
        .with_retired(MasterKeyId::new(1), MasterKey::from_bytes([42; 32]))
        .unwrap()
}

async fn rotation_then_rewrap_then_retire(db: TestDb) {
    let keys = [openai_key("one"), openai_key("two")];
    {
        let app = TestApp::spawn_with(&db, test_vault()).await;
        for (user, key) in ["alice", "bob"].iter().zip(&keys) {
            let token = app.create_user(user).await;
            assert_eq!(
                app.save_key(&token, user, "openai", key_body(key))
                    .await
                    .status(),
                201
            );
        }
        app.stop().await;
    }
    // Step 1: v2 active, v1 retired: old keys open, new saves use v2.
    let app = TestApp::spawn_with(&db, vault_v2_with_v1_retired()).await;
    assert_eq!(app.open_key("alice", ProviderKind::OpenAi).await, keys[0]);
    // Step 2: rewrap; running it twice is harmless.
    let report = app.service.operator().rewrap(1).await.unwrap();
    assert_eq!((report.rewrapped, report.failed), (2, 0));
    let again = app.service.operator().rewrap(1).await.unwrap();
    assert_eq!((again.rewrapped, again.skipped, again.failed), (0, 0, 0));
    app.stop().await;
    // Step 3: v1 removed: everything still opens with v2 alone.
    let app = TestApp::spawn_with(
        &db,
        KeyVault::new(MasterKeyId::new(2), MasterKey::from_bytes([7; 32])),
    )
    .await;
    assert_eq!(app.open_key("alice", ProviderKind::OpenAi).await, keys[0]);
    assert_eq!(app.open_key("bob", ProviderKind::OpenAi).await, keys[1]);
    app.stop().await;

    // A wrong key under a known id, or a missing id, stops start-up.
    let store = db.store().await;
    let wrong = byok_api::KeyService::new(
        store.clone(),
        std::sync::Arc::new(KeyVault::new(
            MasterKeyId::new(2),
            MasterKey::from_bytes([8; 32]),
        )),
    );
    // (Its key-check value tells it apart before any key is opened.)
    assert!(matches!(
        wrong.check_master_keys().await,
        Err(MasterKeyCheckError::Mismatch(2))
    ));
    let missing = byok_api::KeyService::new(store, std::sync::Arc::new(test_vault()));
    let err = missing.check_master_keys().await.unwrap_err();
    assert!(matches!(err, MasterKeyCheckError::Missing(2)));
    assert!(err.to_string().contains("BYOK_RETIRED_MASTER_KEYS"));
}
