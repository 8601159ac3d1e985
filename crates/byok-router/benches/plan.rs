//! Planning a route for a user with all five providers.

use std::hint::black_box;
use std::time::Instant;

use byok_core::{KeyStatus, ProviderKind, UserId};
use byok_router::{
    HealthTracker, KeyInfo, Outcome, Preferences, PriceCatalog, RoutePlanner, RouteRequest, Task,
};
use criterion::{Criterion, criterion_group, criterion_main};

fn plan_benches(c: &mut Criterion) {
    let planner = RoutePlanner::new(PriceCatalog::builtin());
    let keys: Vec<KeyInfo> = ProviderKind::ALL
        .iter()
        .map(|p| KeyInfo {
            provider: *p,
            status: Some(KeyStatus::Valid),
        })
        .collect();
    let tracker = HealthTracker::default();
    let user = UserId::parse("alice@example.com").unwrap_or_else(|_| unreachable!());
    let now = Instant::now();
    tracker.record(
        &user,
        ProviderKind::DeepSeek,
        Outcome::Success {
            latency: std::time::Duration::from_millis(300),
        },
        now,
    );
    let task = Task::general();
    let preferences = Preferences::default();
    let at = chrono::Utc::now();

    c.bench_function("plan_five_providers", |b| {
        let health = tracker.snapshot(&user, now);
        b.iter(|| {
            planner.plan(
                black_box(&RouteRequest {
                    task: &task,
                    model: None,
                    keys: &keys,
                    input_tokens: 1_200,
                    max_output_tokens: 800,
                    output_ceiling: false,
                    preferences: &preferences,
                    at,
                    needs: &[],
                    refused: &[],
                }),
                &health,
            )
        });
    });
    c.bench_function("snapshot_and_plan_five_providers", |b| {
        b.iter(|| {
            let health = tracker.snapshot(&user, now);
            planner.plan(
                black_box(&RouteRequest {
                    task: &task,
                    model: None,
                    keys: &keys,
                    input_tokens: 1_200,
                    max_output_tokens: 800,
                    output_ceiling: false,
                    preferences: &preferences,
                    at,
                    needs: &[],
                    refused: &[],
                }),
                &health,
            )
        });
    });
}

criterion_group!(benches, plan_benches);
criterion_main!(benches);
