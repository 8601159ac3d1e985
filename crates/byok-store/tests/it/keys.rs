//! Saving, replacing, listing, testing and deleting keys.

use byok_core::{KeyStatus, ProviderKind};
use byok_store::keys::{self, KeySettings, KeyTest, PutOutcome};
use byok_store::{StoreError, now};
use byok_test_support::{TestDb, both_backends};

use crate::fixtures::{create_user, event, open_key, put_key, put_key_with, vault};

const OPENAI: &str = "sk-proj-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1111";
const OPENAI_2: &str = "sk-proj-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2222";
const ANTHROPIC: &str = "sk-ant-api03-cccccccccccccccccccccccccccccccccccc3333";

both_backends!(
    put_creates_then_replaces_in_place,
    keys_are_isolated_per_user,
    saving_for_a_missing_user_is_not_found,
    delete_removes_the_row,
    test_results_are_recorded_and_reset_by_a_replace,
    settings_round_trip,
    rewrap_work_list_and_compare_and_set,
);

async fn put_creates_then_replaces_in_place(db: TestDb) {
    let store = db.store().await;
    let vault = vault();
    let alice = create_user(&store, "alice").await;

    assert_eq!(
        put_key(&store, &vault, &alice, ProviderKind::OpenAi, OPENAI)
            .await
            .unwrap(),
        PutOutcome::Created
    );
    let a = alice.clone();
    let first = store
        .run(move |c| keys::get(c, &a, ProviderKind::OpenAi))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.masked_key.as_str(), "sk-p********1111");
    assert_eq!(first.master_key_id, 1);
    assert_eq!(first.created_at, first.updated_at);

    assert_eq!(
        put_key(&store, &vault, &alice, ProviderKind::OpenAi, OPENAI_2)
            .await
            .unwrap(),
        PutOutcome::Replaced
    );
    let a = alice.clone();
    let second = store
        .run(move |c| keys::get(c, &a, ProviderKind::OpenAi))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.id, first.id, "a replace keeps the row");
    assert_eq!(second.created_at, first.created_at);
    assert!(second.updated_at >= first.updated_at);
    assert_eq!(second.masked_key.as_str(), "sk-p********2222");
    assert_eq!(
        open_key(&store, &vault, &alice, ProviderKind::OpenAi)
            .await
            .unwrap(),
        OPENAI_2
    );

    let a = alice.clone();
    let all = store
        .run(move |c| keys::list_for_user(c, &a))
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "one key per user and provider");
}

async fn keys_are_isolated_per_user(db: TestDb) {
    let store = db.store().await;
    let vault = vault();
    let users = [
        create_user(&store, "alice").await,
        create_user(&store, "bob").await,
        create_user(&store, "carol").await,
    ];
    for (i, user) in users.iter().enumerate() {
        for provider in ProviderKind::ALL {
            let raw = format!("key-{}-{}-{}", user, provider, "x".repeat(i + 10));
            put_key(&store, &vault, user, provider, &raw).await.unwrap();
        }
    }
    for user in &users {
        let u = user.clone();
        let listed = store
            .run(move |c| keys::list_for_user(c, &u))
            .await
            .unwrap();
        assert_eq!(listed.len(), 5);
        assert!(listed.iter().all(|k| &k.user_id == user));
        let mut providers: Vec<_> = listed.iter().map(|k| k.provider.as_str()).collect();
        let sorted = {
            let mut s = providers.clone();
            s.sort_unstable();
            s
        };
        assert_eq!(providers, sorted, "ordered by provider");
        providers.dedup();
        assert_eq!(providers.len(), 5);
        for provider in ProviderKind::ALL {
            let opened = open_key(&store, &vault, user, provider).await.unwrap();
            assert!(
                opened.starts_with(&format!("key-{user}-{provider}-")),
                "{opened}"
            );
        }
    }
}

async fn saving_for_a_missing_user_is_not_found(db: TestDb) {
    let store = db.store().await;
    let ghost = crate::fixtures::user("ghost");
    let err = put_key(&store, &vault(), &ghost, ProviderKind::OpenAi, OPENAI)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

async fn delete_removes_the_row(db: TestDb) {
    let store = db.store().await;
    let vault = vault();
    let alice = create_user(&store, "alice").await;
    put_key(&store, &vault, &alice, ProviderKind::Anthropic, ANTHROPIC)
        .await
        .unwrap();
    let a = alice.clone();
    let deleted = store
        .run(move |c| keys::delete(c, &a, ProviderKind::Anthropic, &event(&a), now()))
        .await
        .unwrap();
    assert!(deleted);
    assert!(
        open_key(&store, &vault, &alice, ProviderKind::Anthropic)
            .await
            .is_none()
    );
    let a = alice.clone();
    let again = store
        .run(move |c| keys::delete(c, &a, ProviderKind::Anthropic, &event(&a), now()))
        .await
        .unwrap();
    assert!(!again, "a second delete finds nothing");
}

async fn test_results_are_recorded_and_reset_by_a_replace(db: TestDb) {
    let store = db.store().await;
    let vault = vault();
    let alice = create_user(&store, "alice").await;
    put_key(&store, &vault, &alice, ProviderKind::OpenAi, OPENAI)
        .await
        .unwrap();
    let test = KeyTest {
        status: KeyStatus::RateLimited,
        at: now(),
        latency_ms: Some(321),
    };
    let (a, t) = (alice.clone(), test.clone());
    assert!(
        store
            .run(move |c| {
                let key = keys::get(c, &a, ProviderKind::OpenAi)?.unwrap();
                keys::record_test_if_unchanged(c, &key.id, &key.sealed_key, &t, &event(&a))
            })
            .await
            .unwrap()
    );
    let a = alice.clone();
    let stored = store
        .run(move |c| keys::get(c, &a, ProviderKind::OpenAi))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.last_test, Some(test));

    put_key(&store, &vault, &alice, ProviderKind::OpenAi, OPENAI_2)
        .await
        .unwrap();
    let a = alice.clone();
    let stored = store
        .run(move |c| keys::get(c, &a, ProviderKind::OpenAi))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.last_test, None, "a new key is untested");

    let (a, t) = (
        alice.clone(),
        KeyTest {
            status: KeyStatus::Valid,
            at: now(),
            latency_ms: None,
        },
    );
    assert!(
        !store
            .run(move |c| {
                keys::record_test_if_unchanged(c, "no-such-key", b"sealed", &t, &event(&a))
            })
            .await
            .unwrap()
    );
}

async fn settings_round_trip(db: TestDb) {
    let store = db.store().await;
    let vault = vault();
    let alice = create_user(&store, "alice").await;
    let settings = KeySettings::from([
        (
            "endpoint".to_owned(),
            "https://res.openai.azure.com".to_owned(),
        ),
        ("deployment".to_owned(), "gpt-4o-mini".to_owned()),
    ]);
    put_key_with(
        &store,
        &vault,
        &alice,
        ProviderKind::AzureOpenAi,
        "0123456789abcdef0123456789abcdef",
        settings.clone(),
    )
    .await
    .unwrap();
    let a = alice.clone();
    let stored = store
        .run(move |c| keys::get(c, &a, ProviderKind::AzureOpenAi))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.settings, settings);
}

async fn rewrap_work_list_and_compare_and_set(db: TestDb) {
    let store = db.store().await;
    let old = vault();
    let alice = create_user(&store, "alice").await;
    let bob = create_user(&store, "bob").await;
    put_key(&store, &old, &alice, ProviderKind::OpenAi, OPENAI)
        .await
        .unwrap();
    put_key(&store, &old, &bob, ProviderKind::OpenAi, OPENAI_2)
        .await
        .unwrap();

    let rotated = byok_vault::KeyVault::new(
        byok_vault::MasterKeyId::new(2),
        byok_vault::MasterKey::from_bytes([7; 32]),
    )
    .with_retired(
        byok_vault::MasterKeyId::new(1),
        byok_vault::MasterKey::from_bytes([42; 32]),
    )
    .unwrap();
    let todo = store
        .run(|c| keys::not_sealed_with(c, 2, None, 10))
        .await
        .unwrap();
    assert_eq!(todo.len(), 2);

    // Alice replaces her key between the listing and the swap: the swap must lose.
    let alice_row = todo.iter().find(|k| k.user_id == alice).unwrap().clone();
    put_key(&store, &rotated, &alice, ProviderKind::OpenAi, OPENAI_2)
        .await
        .unwrap();

    for row in todo {
        let sealed = byok_vault::SealedKey::from_bytes(row.sealed_key.clone());
        let resealed = rotated
            .reseal(
                &sealed,
                &byok_vault::Binding::for_key(&row.user_id, row.provider, &row.id),
            )
            .unwrap();
        let user = row.user_id.clone();
        let expect_swap = row.id != alice_row.id;
        let swapped = store
            .run(move |c| {
                keys::swap_sealed(
                    c,
                    &row.id,
                    &row.sealed_key,
                    resealed.as_bytes(),
                    2,
                    &event(&user),
                    now(),
                )
            })
            .await
            .unwrap();
        assert_eq!(swapped, expect_swap);
    }
    assert!(
        store
            .run(|c| keys::not_sealed_with(c, 2, None, 10))
            .await
            .unwrap()
            .is_empty()
    );
    // Both open with the new key alone, and Alice kept her newer key.
    let new_only = byok_vault::KeyVault::new(
        byok_vault::MasterKeyId::new(2),
        byok_vault::MasterKey::from_bytes([7; 32]),
    );
    assert_eq!(
        open_key(&store, &new_only, &alice, ProviderKind::OpenAi)
            .await
            .unwrap(),
        OPENAI_2
    );
    assert_eq!(
        open_key(&store, &new_only, &bob, ProviderKind::OpenAi)
            .await
            .unwrap(),
        OPENAI_2
    );
}
