//! byok-store integration tests. Every test runs on SQLite and on PostgreSQL
//! (see `byok_test_support::both_backends!`).

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test on a bad fixture"
)]
#![expect(
    clippy::disallowed_methods,
    reason = "tests spawn their own concurrent writers"
)]

mod atomicity;
mod audit_trail;
mod budgets;
mod fixtures;
mod keys;
mod plaintext;
mod sqlite;
mod tokens_users;
mod usage;
