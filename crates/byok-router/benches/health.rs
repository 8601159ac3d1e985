//! The health tracker's per-request path with 1 and 100,000 users known:
//! admitting a key, recording its outcome and taking the snapshot the
//! planner needs. The cost must not grow with the number of users.

use std::hint::black_box;
use std::time::{Duration, Instant};

use byok_core::{ProviderKind, UserId};
use byok_router::{HealthTracker, Outcome};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn user(i: usize) -> UserId {
    UserId::parse(format!("user-{i}")).unwrap_or_else(|_| unreachable!())
}

fn health_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("health_per_request");
    for users in [1usize, 100_000] {
        let tracker = HealthTracker::default();
        let now = Instant::now();
        for i in 0..users {
            tracker.record_key(
                &user(i),
                ProviderKind::OpenAi,
                "key-1",
                Outcome::Success {
                    latency: Duration::from_millis(200),
                },
                now,
            );
        }
        let me = user(users / 2);
        let keys = [
            (ProviderKind::OpenAi, "key-1"),
            (ProviderKind::Anthropic, "key-2"),
        ];
        group.bench_with_input(BenchmarkId::from_parameter(users), &users, |b, _| {
            b.iter(|| {
                let snapshot = tracker.snapshot_keys(&me, keys, now);
                let admitted = tracker.admit_key(&me, ProviderKind::OpenAi, "key-1", now);
                tracker.record_key(
                    &me,
                    ProviderKind::OpenAi,
                    "key-1",
                    Outcome::Success {
                        latency: Duration::from_millis(200),
                    },
                    now,
                );
                black_box((snapshot, admitted))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, health_benches);
criterion_main!(benches);
