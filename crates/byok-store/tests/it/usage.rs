//! Usage records: batches are all-or-nothing and read back by time range.

use byok_core::ProviderKind;
use byok_store::usage::{self, UsageRecord};
use byok_test_support::{TestDb, both_backends};
use chrono::Duration;

use crate::fixtures::user;

both_backends!(
    usage_batches_round_trip_by_time_range,
    the_request_log_pages_newest_first
);

fn record(who: &str, minutes_ago: i64, cost: Option<i64>) -> UsageRecord {
    UsageRecord {
        user_id: user(who),
        provider: ProviderKind::DeepSeek,
        model: "deepseek-chat".to_owned(),
        task: "general".to_owned(),
        input_tokens: 1200,
        cached_input_tokens: 200,
        cache_write_tokens: 100,
        cache_write_1h_tokens: 40,
        output_tokens: 300,
        reasoning_tokens: 0,
        cost_micro_usd: cost,
        cost_picodollars: None,
        cost_source: if cost.is_some() {
            byok_core::CostSource::Estimated
        } else {
            byok_core::CostSource::Unknown
        },
        door: "chat".to_owned(),
        record_key: None,
        token_id: None,
        reservation_id: None,
        rate_subjects: Vec::new(),
        budgeted: false,
        attempts: 2,
        latency_ms: 840,
        outcome: "success".to_owned(),
        request_id: Some(format!("req-{minutes_ago}")),
        created_at: byok_store::now() - Duration::minutes(minutes_ago),
    }
}

async fn usage_batches_round_trip_by_time_range(db: TestDb) {
    let store = db.store().await;
    let batch = vec![
        record("alice", 30, Some(1234)),
        record("alice", 10, None),
        record("bob", 10, Some(5)),
    ];
    let expected = batch.clone();
    store
        .run(move |c| usage::insert_batch(c, &batch))
        .await
        .unwrap();

    let from = byok_store::now() - Duration::hours(1);
    let to = byok_store::now() + Duration::seconds(1);
    let alice = user("alice");
    let rows = store
        .run(move |c| usage::list_for_user(c, &alice, from, to))
        .await
        .unwrap();
    assert_eq!(rows, expected[..2]);

    let alice = user("alice");
    let narrow_from = byok_store::now() - Duration::minutes(20);
    let rows = store
        .run(move |c| usage::list_for_user(c, &alice, narrow_from, to))
        .await
        .unwrap();
    assert_eq!(rows, expected[1..2]);
}

async fn the_request_log_pages_newest_first(db: TestDb) {
    let store = db.store().await;
    let batch: Vec<UsageRecord> = (0..5)
        .map(|i| record("alice", 50 - i * 10, Some(i)))
        .chain([record("bob", 5, None)])
        .collect();
    store
        .run(move |c| usage::insert_batch(c, &batch))
        .await
        .unwrap();
    let alice = user("alice");
    let (from, to) = (
        byok_store::now() - Duration::hours(1),
        byok_store::now() + Duration::minutes(1),
    );
    let a = alice.clone();
    let first = store
        .run(move |c| usage::page_for_user(c, &a, from, to, None, 2))
        .await
        .unwrap();
    assert_eq!(
        first
            .iter()
            .map(|(_, r)| r.cost_micro_usd)
            .collect::<Vec<_>>(),
        [Some(4), Some(3)],
        "newest first"
    );
    let before = first.last().map(|(id, _)| *id);
    let a = alice.clone();
    let rest = store
        .run(move |c| usage::page_for_user(c, &a, from, to, before, 10))
        .await
        .unwrap();
    assert_eq!(
        rest.iter()
            .map(|(_, r)| r.cost_micro_usd)
            .collect::<Vec<_>>(),
        [Some(2), Some(1), Some(0)]
    );
    assert!(rest.iter().all(|(_, r)| r.user_id == alice), "only alice's");
    let (_, one) = &rest[0];
    assert_eq!(
        (
            one.cache_write_tokens,
            one.cache_write_1h_tokens,
            one.cost_source,
            one.door.as_str()
        ),
        (100, 40, byok_core::CostSource::Estimated, "chat")
    );
}

/// A PostgreSQL server that accepts connections and never answers: opening
/// the store fails within its connect timeout instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_postgres_server_fails_fast() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let holder = std::thread::spawn(move || {
        // Accept and hold the sockets open, saying nothing.
        let mut held = Vec::new();
        for socket in listener.incoming().take(4) {
            held.push(socket);
        }
        std::thread::sleep(std::time::Duration::from_secs(30));
        drop(held);
    });
    let mut config = byok_store::StoreConfig::new(format!("postgres://byok@{address}/byok"));
    config.connect_timeout = std::time::Duration::from_secs(1);
    config.connection_timeout = std::time::Duration::from_secs(2);
    let started = std::time::Instant::now();
    let opened = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        byok_store::Store::connect(config),
    )
    .await
    .expect("bounded by the connect timeout, not hanging");
    assert!(opened.is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    drop(holder);
}
