//! The router alone: plan a route for a made-up set of keys and health, and
//! print the explanation. No network, no database.
//!
//! Run with `cargo run -p byok-examples --example plan_route`.

#![expect(clippy::print_stdout, reason = "an example shows its results")]

use std::error::Error;
use std::time::{Duration, Instant};

use byok_core::{KeyStatus, ProviderKind, Usage, UserId};
use byok_router::{
    HealthTracker, KeyInfo, Outcome, Preferences, PriceCatalog, RoutePlanner, RouteRequest, Task,
};
use chrono::TimeZone as _;

fn main() -> Result<(), Box<dyn Error>> {
    let planner = RoutePlanner::new(PriceCatalog::builtin());
    let health = HealthTracker::default();
    let alice = UserId::parse("alice")?;
    let now = Instant::now();

    // Alice has four keys: one was rejected by its last test, and DeepSeek
    // failed three times in a row a few seconds ago.
    let keys = [
        KeyInfo {
            provider: ProviderKind::OpenAi,
            status: Some(KeyStatus::Valid),
        },
        KeyInfo {
            provider: ProviderKind::DeepSeek,
            status: Some(KeyStatus::Valid),
        },
        KeyInfo {
            provider: ProviderKind::Anthropic,
            status: None,
        },
        KeyInfo {
            provider: ProviderKind::Gemini,
            status: Some(KeyStatus::Invalid),
        },
    ];
    for _ in 0..3 {
        health.record(
            &alice,
            ProviderKind::DeepSeek,
            Outcome::Failure { retry_after: None },
            now,
        );
    }

    let monday_peak = chrono::Utc
        .with_ymd_and_hms(2026, 11, 23, 9, 0, 0)
        .single()
        .ok_or("a valid date")?;
    let preferences = Preferences::default();
    for task in ["general", "code", "reasoning"] {
        let task = Task::new(task)?;
        let plan = planner.plan(
            &RouteRequest {
                task: &task,
                model: None,
                keys: &keys,
                input_tokens: 2_000,
                max_output_tokens: 1_000,
                output_ceiling: false,
                preferences: &preferences,
                at: monday_peak,
                needs: &[],
                refused: &[],
            },
            &health.snapshot(&alice, now + Duration::from_secs(5)),
        );
        println!("task {task}:\n{}", plan.explain());
    }

    // What a finished request cost, from the usage the provider reported.
    let usage = Usage {
        input_tokens: 2_000,
        cached_input_tokens: 1_500,
        output_tokens: 800,
        reasoning_tokens: 300,
        ..Usage::default()
    };
    let cost = planner
        .catalog()
        .cost(ProviderKind::OpenAi, "gpt-4o-mini", &usage, monday_peak)?;
    println!("2,000 in (1,500 cached) and 800 out on openai:gpt-4o-mini cost {cost}");
    Ok(())
}
