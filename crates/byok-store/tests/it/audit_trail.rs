//! The audit trail: one event per change, newest first, per user, paginated.

use byok_core::ProviderKind;
use byok_store::audit::{self, Actor, AuditAction, AuditOutcome, NewAuditEvent};
use byok_store::{keys, now};
use byok_test_support::{TestDb, both_backends};

use crate::fixtures::{create_user, event, put_key, vault};

both_backends!(
    events_are_recorded_newest_first_and_paginated,
    events_are_per_user,
    the_chain_finds_an_edited_an_inserted_and_a_deleted_event
);

async fn the_chain_finds_an_edited_an_inserted_and_a_deleted_event(db: TestDb) {
    use diesel::connection::SimpleConnection as _;
    #[derive(diesel::QueryableByName)]
    struct IdRow {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    let store = db.store().await;
    for i in 0..6 {
        store
            .run(move |c| {
                let e =
                    NewAuditEvent::new(Actor::System, AuditAction::KeyTest, AuditOutcome::Success)
                        .detail(if i % 2 == 0 { "even" } else { "odd" });
                audit::append(c, &e, now())
            })
            .await
            .unwrap();
    }
    let intact = store.run(audit::verify_chain).await.unwrap();
    assert_eq!((intact.checked, intact.first_broken), (6, None));
    assert_eq!(intact.head.as_ref().map(String::len), Some(64));
    let ids: Vec<i64> = store
        .run(|c| {
            use diesel::RunQueryDsl as _;
            diesel::sql_query("SELECT id FROM audit_events ORDER BY id")
                .load::<IdRow>(c)
                .map_err(byok_store::StoreError::Database)
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let sql = |sql: String| {
        store.run(move |c| {
            c.batch_execute(&sql)
                .map_err(byok_store::StoreError::Database)
        })
    };
    // Edited: that event breaks.
    sql(format!(
        "UPDATE audit_events SET detail = 'forged' WHERE id = {}",
        ids[2]
    ))
    .await
    .unwrap();
    assert_eq!(
        store.run(audit::verify_chain).await.unwrap().first_broken,
        Some(ids[2])
    );
    sql(format!(
        "UPDATE audit_events SET detail = 'even' WHERE id = {}",
        ids[2]
    ))
    .await
    .unwrap();
    assert_eq!(
        store.run(audit::verify_chain).await.unwrap().first_broken,
        None
    );
    // Deleted: the event after the hole breaks.
    sql(format!("DELETE FROM audit_events WHERE id = {}", ids[3]))
        .await
        .unwrap();
    assert_eq!(
        store.run(audit::verify_chain).await.unwrap().first_broken,
        Some(ids[4])
    );
}

async fn events_are_recorded_newest_first_and_paginated(db: TestDb) {
    let store = db.store().await;
    let vault = vault();
    let alice = create_user(&store, "alice").await;
    put_key(
        &store,
        &vault,
        &alice,
        ProviderKind::OpenAi,
        "sk-proj-first-000000000000000000",
    )
    .await
    .unwrap();
    put_key(
        &store,
        &vault,
        &alice,
        ProviderKind::OpenAi,
        "sk-proj-second-00000000000000000",
    )
    .await
    .unwrap();
    let a = alice.clone();
    store
        .run(move |c| {
            let mut e = event(&a).provider(ProviderKind::OpenAi);
            e.action = AuditAction::KeyDelete;
            keys::delete(c, &a, ProviderKind::OpenAi, &e, now())
        })
        .await
        .unwrap();
    let a = alice.clone();
    store
        .run(move |c| {
            let denied = NewAuditEvent::new(
                Actor::Anonymous,
                AuditAction::AuthFailure,
                AuditOutcome::Denied,
            )
            .user(&a)
            .detail("invalid_token");
            audit::append(c, &denied, now())
        })
        .await
        .unwrap();

    let a = alice.clone();
    let all = store
        .run(move |c| audit::list_for_user(c, &a, None, 100))
        .await
        .unwrap();
    let actions: Vec<_> = all.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [
            AuditAction::AuthFailure,
            AuditAction::KeyDelete,
            AuditAction::KeyReplace,
            AuditAction::KeyCreate,
            AuditAction::UserCreate,
        ]
    );
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let denied = &all[0];
    assert_eq!(denied.outcome, AuditOutcome::Denied);
    assert_eq!(denied.detail.as_deref(), Some("invalid_token"));
    assert_eq!(denied.actor().unwrap(), Actor::Anonymous);
    let replace = &all[2];
    assert_eq!(replace.provider, Some(ProviderKind::OpenAi));
    assert_eq!(replace.request_id.as_deref(), Some("req-1"));
    assert_eq!(replace.actor().unwrap(), Actor::User(alice.clone()));

    // Pages of two, following the last id, cover the trail exactly once.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let a = alice.clone();
        let page = store
            .run(move |c| audit::list_for_user(c, &a, before, 2))
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        before = page.last().map(|e| e.id);
        seen.extend(page);
    }
    assert_eq!(seen, all);
}

async fn events_are_per_user(db: TestDb) {
    let store = db.store().await;
    let vault = vault();
    let alice = create_user(&store, "alice").await;
    let bob = create_user(&store, "bob").await;
    put_key(
        &store,
        &vault,
        &bob,
        ProviderKind::Gemini,
        "AIzaSyBOBBOBBOBBOBBOBBOBBOBBOBBOBBOBBOB",
    )
    .await
    .unwrap();
    let a = alice.clone();
    let trail = store
        .run(move |c| audit::list_for_user(c, &a, None, 100))
        .await
        .unwrap();
    assert_eq!(trail.len(), 1);
    assert!(trail.iter().all(|e| e.user_id.as_ref() == Some(&alice)));
}
