//! Runnable examples of embedding byok's crates; see the `[[example]]`
//! entries of this package (`cargo run -p byok-examples --example NAME`).
