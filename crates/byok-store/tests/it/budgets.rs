//! Budget reservations at the store level: all-or-nothing across budgets,
//! release once, and expiry of reservations nobody settles.

use byok_core::ProviderKind;
use byok_store::audit::{Actor, AuditAction, AuditOutcome, NewAuditEvent};
use byok_store::budgets::{self, NewBudget, Period, Reserved};
use byok_test_support::{TestDb, both_backends};
use chrono::Duration;

use crate::fixtures::create_user;

both_backends!(reservations_are_all_or_nothing_released_once_and_expire);

#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn reservations_are_all_or_nothing_released_once_and_expire(db: TestDb) {
    let store = db.store().await;
    let alice = create_user(&store, "alice").await;
    let now = byok_store::now();
    let a = alice.clone();
    store
        .run(move |c| {
            let event = NewAuditEvent::new(
                Actor::System,
                AuditAction::BudgetCreate,
                AuditOutcome::Success,
            );
            for (period, provider, limit) in [
                (Period::Month, None, 1_000),
                (Period::Day, Some(ProviderKind::OpenAi), 300),
            ] {
                budgets::create(
                    c,
                    &NewBudget {
                        user_id: &a,
                        period,
                        provider,
                        token_id: None,
                        limit_picodollars: limit,
                        hard: true,
                        time_zone: chrono_tz::UTC,
                    },
                    &event,
                    now,
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let reserve = |provider, amount, expires| {
        let (store, a) = (store.clone(), alice.clone());
        async move {
            store
                .run(move |c| budgets::reserve(c, (&a, None), provider, amount, now, expires))
                .await
                .unwrap()
        }
    };
    let later = now + Duration::minutes(10);
    // Gemini is covered by the monthly budget only.
    let Reserved::Held { id: first, .. } = reserve(ProviderKind::Gemini, 600, later).await else {
        panic!("room for 600 of 1000");
    };
    // OpenAI: the daily budget (300) refuses 400, and the monthly one is
    // left untouched by the refused request.
    let Reserved::Refused(state) = reserve(ProviderKind::OpenAi, 400, later).await else {
        panic!("the daily budget has room for 300 only");
    };
    assert_eq!(state.budget.period, Period::Day);
    let Reserved::Held { id: second, .. } = reserve(ProviderKind::OpenAi, 300, now).await else {
        panic!("300 fits both");
    };
    let totals = |store: byok_store::Store, a: byok_core::UserId| async move {
        let mut states = store
            .run(move |c| budgets::states(c, &a, None, now))
            .await
            .unwrap();
        states.sort_by_key(|s| s.budget.period.as_str());
        states
            .iter()
            .map(|s| (s.spent, s.reserved))
            .collect::<Vec<_>>()
    };
    // day first, then month
    assert_eq!(
        totals(store.clone(), alice.clone()).await,
        [(0, 300), (0, 900)]
    );
    let Reserved::Refused(_) = reserve(ProviderKind::Gemini, 101, later).await else {
        panic!("the month has 100 left");
    };
    // Releasing twice gives back once.
    for _ in 0..2 {
        let id = first.clone();
        store.run(move |c| budgets::release(c, &id)).await.unwrap();
    }
    assert_eq!(
        totals(store.clone(), alice.clone()).await,
        [(0, 300), (0, 300)]
    );
    // The second reservation expired (nobody settled it): released by the sweep.
    let expired = store
        .run(move |c| budgets::expire(c, now + Duration::seconds(1)))
        .await
        .unwrap();
    assert_eq!(expired, 1);
    assert_eq!(totals(store.clone(), alice.clone()).await, [(0, 0), (0, 0)]);
    // Settling after expiry charges the cost without releasing twice.
    let a = alice.clone();
    store
        .run(move |c| {
            budgets::settle(
                c,
                (&a, None),
                ProviderKind::OpenAi,
                Some(&second),
                Some(250),
                now,
            )
        })
        .await
        .unwrap();
    assert_eq!(
        totals(store.clone(), alice.clone()).await,
        [(250, 0), (250, 0)]
    );
}
