//! Users and token hashes.

use byok_core::ProviderKind;
use byok_store::audit::{self, Actor, AuditAction, AuditOutcome, NewAuditEvent};
use byok_store::tokens::{self, NewToken, TokenRole};
use byok_store::{StoreError, keys, now, users};
use byok_test_support::{TestDb, both_backends};

use crate::fixtures::{create_user, put_key, user, vault};

both_backends!(
    user_ids_are_unique,
    tokens_store_hashes_and_revoke_once,
    a_user_token_needs_its_user,
    deleting_a_user_removes_keys_and_tokens_but_not_the_trail,
    data_survives_a_restart_and_migrations_run_once,
);

fn system(action: AuditAction) -> NewAuditEvent {
    NewAuditEvent::new(Actor::System, action, AuditOutcome::Success)
}

async fn user_ids_are_unique(db: TestDb) {
    let store = db.store().await;
    create_user(&store, "alice").await;
    let alice = user("alice");
    let err = store
        .run(move |c| users::create(c, &alice, &system(AuditAction::UserCreate), now()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    // Ids are case-sensitive: Alice is someone else.
    create_user(&store, "Alice").await;
}

async fn tokens_store_hashes_and_revoke_once(db: TestDb) {
    let store = db.store().await;
    let alice = create_user(&store, "alice").await;
    let a = alice.clone();
    store
        .run(move |c| {
            let event = system(AuditAction::TokenIssue);
            tokens::insert(
                c,
                &NewToken {
                    id: "tok_user",
                    role: TokenRole::User(a),
                    secret_hash: &[1; 32],
                    meta: byok_store::tokens::TokenMeta::default(),
                },
                &event,
                now(),
            )?;
            tokens::insert(
                c,
                &NewToken {
                    id: "tok_admin",
                    role: TokenRole::Admin,
                    secret_hash: &[2; 32],
                    meta: byok_store::tokens::TokenMeta::default(),
                },
                &event,
                now(),
            )
        })
        .await
        .unwrap();

    let found = store
        .run(|c| tokens::find(c, "tok_user"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.role, TokenRole::User(alice.clone()));
    assert_eq!(found.secret_hash, vec![1; 32]);
    assert_eq!(found.revoked_at, None);
    let admin = store
        .run(|c| tokens::find(c, "tok_admin"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(admin.role, TokenRole::Admin);
    assert!(
        store
            .run(|c| tokens::find(c, "tok_nope"))
            .await
            .unwrap()
            .is_none()
    );

    let dup = store
        .run(|c| {
            tokens::insert(
                c,
                &NewToken {
                    id: "tok_admin",
                    role: TokenRole::Admin,
                    secret_hash: &[3; 32],
                    meta: byok_store::tokens::TokenMeta::default(),
                },
                &system(AuditAction::TokenIssue),
                now(),
            )
        })
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict));

    assert!(
        store
            .run(|c| tokens::revoke(c, "tok_user", &system(AuditAction::TokenRevoke), now()))
            .await
            .unwrap()
    );
    assert!(
        !store
            .run(|c| tokens::revoke(c, "tok_user", &system(AuditAction::TokenRevoke), now()))
            .await
            .unwrap()
    );
    let revoked = store
        .run(|c| tokens::find(c, "tok_user"))
        .await
        .unwrap()
        .unwrap();
    assert!(revoked.revoked_at.is_some());
}

async fn a_user_token_needs_its_user(db: TestDb) {
    let store = db.store().await;
    let err = store
        .run(|c| {
            let ghost = user("ghost");
            tokens::insert(
                c,
                &NewToken {
                    id: "tok_x",
                    role: TokenRole::User(ghost),
                    secret_hash: &[1; 32],
                    meta: byok_store::tokens::TokenMeta::default(),
                },
                &system(AuditAction::TokenIssue),
                now(),
            )
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

async fn deleting_a_user_removes_keys_and_tokens_but_not_the_trail(db: TestDb) {
    let store = db.store().await;
    let vault = vault();
    let alice = create_user(&store, "alice").await;
    let bob = create_user(&store, "bob").await;
    for who in [&alice, &bob] {
        put_key(
            &store,
            &vault,
            who,
            ProviderKind::OpenAi,
            "sk-proj-to-be-deleted-000000000000",
        )
        .await
        .unwrap();
    }
    let a = alice.clone();
    store
        .run(move |c| {
            tokens::insert(
                c,
                &NewToken {
                    id: "tok_alice",
                    role: TokenRole::User(a),
                    secret_hash: &[1; 32],
                    meta: byok_store::tokens::TokenMeta::default(),
                },
                &system(AuditAction::TokenIssue),
                now(),
            )
        })
        .await
        .unwrap();

    let a = alice.clone();
    let deleted = store
        .run(move |c| users::delete(c, &a, &system(AuditAction::UserDelete).user(&a), now()))
        .await
        .unwrap();
    assert!(deleted);
    let a = alice.clone();
    assert!(
        store
            .run(move |c| users::find(c, &a))
            .await
            .unwrap()
            .is_none()
    );
    let a = alice.clone();
    assert!(
        store
            .run(move |c| keys::list_for_user(c, &a))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .run(|c| tokens::find(c, "tok_alice"))
            .await
            .unwrap()
            .is_none()
    );
    let a = alice.clone();
    let trail = store
        .run(move |c| audit::list_for_user(c, &a, None, 100))
        .await
        .unwrap();
    assert_eq!(trail.first().unwrap().action, AuditAction::UserDelete);
    assert!(trail.iter().any(|e| e.action == AuditAction::KeyCreate));
    // Bob is untouched.
    let b = bob.clone();
    assert_eq!(
        store
            .run(move |c| keys::list_for_user(c, &b))
            .await
            .unwrap()
            .len(),
        1
    );
    // Deleting again finds nobody.
    let a = alice.clone();
    assert!(
        !store
            .run(move |c| users::delete(c, &a, &system(AuditAction::UserDelete), now()))
            .await
            .unwrap()
    );
}

async fn data_survives_a_restart_and_migrations_run_once(db: TestDb) {
    let vault = vault();
    {
        let store = db.store().await;
        let alice = create_user(&store, "alice").await;
        put_key(
            &store,
            &vault,
            &alice,
            ProviderKind::Anthropic,
            "sk-ant-api03-survives-restart-0000",
        )
        .await
        .unwrap();
    }
    let store = db.store().await; // runs migrations again: must be a no-op
    store.ready().await.unwrap();
    let alice = user("alice");
    assert_eq!(
        crate::fixtures::open_key(&store, &vault, &alice, ProviderKind::Anthropic)
            .await
            .unwrap(),
        "sk-ant-api03-survives-restart-0000"
    );
}
