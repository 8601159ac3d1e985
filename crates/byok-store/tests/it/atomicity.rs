//! A failure between the statements of a write leaves the previous state
//! whole. The fault is injected by the database itself: a trigger makes the
//! audit insert (the last statement of every key write) fail.

use byok_core::ProviderKind;
use byok_store::keys;
use byok_store::{Backend, Store, now};
use byok_test_support::{TestDb, both_backends};
use diesel::RunQueryDsl;

use crate::fixtures::{create_user, event, open_key, put_key, vault};

const OLD: &str = "sk-proj-OLDKEY-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const NEW: &str = "sk-proj-NEWKEY-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

both_backends!(
    a_replace_that_fails_midway_keeps_the_old_key,
    a_create_that_fails_midway_stores_nothing,
    a_delete_that_fails_midway_keeps_the_key,
);

async fn inject_audit_fault(store: &Store, on: bool) {
    let sql: &[&str] = match (store.backend(), on) {
        (Backend::Sqlite, true) => &[
            "CREATE TRIGGER injected_fault BEFORE INSERT ON audit_events \
             BEGIN SELECT RAISE(ABORT, 'injected fault'); END",
        ],
        (Backend::Sqlite, false) => &["DROP TRIGGER injected_fault"],
        (Backend::Postgres, true) => &[
            "CREATE FUNCTION injected_fault() RETURNS trigger LANGUAGE plpgsql \
             AS $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$",
            "CREATE TRIGGER injected_fault BEFORE INSERT ON audit_events \
             FOR EACH ROW EXECUTE FUNCTION injected_fault()",
        ],
        (Backend::Postgres, false) => &["DROP TRIGGER injected_fault ON audit_events"],
    };
    store
        .run(move |conn| {
            for statement in sql {
                diesel::sql_query(*statement).execute(conn)?;
            }
            Ok(())
        })
        .await
        .unwrap();
}

async fn audit_count(store: &Store) -> i64 {
    use byok_store::audit;
    let alice = crate::fixtures::user("alice");
    store
        .run(move |c| audit::list_for_user(c, &alice, None, 1000))
        .await
        .unwrap()
        .len()
        .try_into()
        .unwrap()
}

async fn a_replace_that_fails_midway_keeps_the_old_key(db: TestDb) {
    let store = db.store().await;
    let vault = vault();
    let alice = create_user(&store, "alice").await;
    put_key(&store, &vault, &alice, ProviderKind::OpenAi, OLD)
        .await
        .unwrap();
    let events_before = audit_count(&store).await;

    inject_audit_fault(&store, true).await;
    // The row update succeeds, then the audit insert fails: all must roll back.
    assert!(
        put_key(&store, &vault, &alice, ProviderKind::OpenAi, NEW)
            .await
            .is_err()
    );
    inject_audit_fault(&store, false).await;

    assert_eq!(
        open_key(&store, &vault, &alice, ProviderKind::OpenAi)
            .await
            .unwrap(),
        OLD
    );
    let a = alice.clone();
    let stored = store
        .run(move |c| keys::get(c, &a, ProviderKind::OpenAi))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.masked_key.as_str(), "sk-p********aaaa");
    assert_eq!(audit_count(&store).await, events_before);

    // The connection that failed is healthy again: the next write works.
    put_key(&store, &vault, &alice, ProviderKind::OpenAi, NEW)
        .await
        .unwrap();
    assert_eq!(
        open_key(&store, &vault, &alice, ProviderKind::OpenAi)
            .await
            .unwrap(),
        NEW
    );
}

async fn a_create_that_fails_midway_stores_nothing(db: TestDb) {
    let store = db.store().await;
    let vault = vault();
    let alice = create_user(&store, "alice").await;
    inject_audit_fault(&store, true).await;
    assert!(
        put_key(&store, &vault, &alice, ProviderKind::Gemini, NEW)
            .await
            .is_err()
    );
    inject_audit_fault(&store, false).await;
    let a = alice.clone();
    assert!(
        store
            .run(move |c| keys::list_for_user(c, &a))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_delete_that_fails_midway_keeps_the_key(db: TestDb) {
    let store = db.store().await;
    let vault = vault();
    let alice = create_user(&store, "alice").await;
    put_key(&store, &vault, &alice, ProviderKind::DeepSeek, OLD)
        .await
        .unwrap();
    inject_audit_fault(&store, true).await;
    let a = alice.clone();
    assert!(
        store
            .run(move |c| keys::delete(c, &a, ProviderKind::DeepSeek, &event(&a), now()))
            .await
            .is_err()
    );
    inject_audit_fault(&store, false).await;
    assert_eq!(
        open_key(&store, &vault, &alice, ProviderKind::DeepSeek)
            .await
            .unwrap(),
        OLD
    );
}
