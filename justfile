# byok developer recipes. CI (.ci/run) runs the same commands with plain cargo.

default:
    @just --list

# Format the code.
fmt:
    cargo fmt --all

# Format check and clippy with warnings as errors.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Every test, SQLite and PostgreSQL (postgres://postgres@127.0.0.1:5432/test, or TEST_DATABASE_URL).
test:
    cargo test --workspace

# Only the store's tests.
test-store:
    cargo test -p byok-store

# Fuzz byok's API from its OpenAPI document (schemathesis; `pip install schemathesis`).
fuzz-api:
    cargo build -p byok-server
    scripts/api-fuzz.sh

# Validate the OpenAPI document (`pip install openapi-spec-validator`).
openapi-validate:
    python3 scripts/openapi-validate.py docs/openapi.json

# API docs with warnings as errors.
doc:
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

# Build and run the examples.
examples:
    cargo run -p byok-examples --example vault_in_memory
    cargo run -p byok-examples --example store_embedded
    cargo run -p byok-examples --example embed_api -- --check

# Run the server on its defaults.
run:
    cargo run --release -p byok-server

# The load benchmark: direct vs through byok, with oha (`cargo install oha`).
load-bench:
    scripts/load-bench.sh

# Criterion benchmarks (figures go in docs/performance.md).
bench:
    cargo bench -p byok-vault --bench vault

# The same migration name in both backend trees.
new-migration name:
    #!/usr/bin/env bash
    set -euo pipefail
    ts=$(date -u +%Y-%m-%d-%H%M%S)
    for db in sqlite postgres; do
        dir="migrations/$db/${ts}_{{name}}"
        mkdir -p "$dir" && touch "$dir/up.sql" "$dir/down.sql"
    done

# What CI runs.
ci:
    bash .ci/run

# byok Desktop (Tauri; its own workspace). Debian: apt install libwebkit2gtk-4.1-dev
# libgtk-3-dev librsvg2-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev libdbus-1-dev.
desktop:
    cargo run --manifest-path bins/byok-desktop/Cargo.toml

# The desktop app's tests: its own code without a display, and the real window
# under Xvfb with a screenshot (apt install xvfb x11-apps dbus-daemon).
desktop-test:
    cargo fmt --manifest-path bins/byok-desktop/Cargo.toml --check
    cargo clippy --manifest-path bins/byok-desktop/Cargo.toml --all-targets --locked -- -D warnings
    cargo test --manifest-path bins/byok-desktop/Cargo.toml --locked
