#!/usr/bin/env bash
# Property-based fuzzing of byok's own API against its OpenAPI document
# (schemathesis): no generated request may get a 5xx, and every response's
# status, content type and body must be the documented ones. Starts a
# throwaway server on SQLite whose provider addresses point at a closed local
# port, so no provider is called.
#
#   scripts/api-fuzz.sh [path/to/byok-server]   (default: target/debug/byok-server)
set -euo pipefail
cd "$(dirname "$0")/.."
server=${1:-${CARGO_TARGET_DIR:-target}/debug/byok-server}
port=${BYOK_FUZZ_PORT:-18097}
token=fuzzing-admin-token-$(date +%s%N)
dir=$(mktemp -d)
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"; }

nowhere=http://127.0.0.1:9
BYOK_BIND=127.0.0.1:$port BYOK_DATA_DIR=$dir/data BYOK_ADMIN_TOKEN=$token BYOK_LOG=warn \
BYOK_OPENAI_BASE_URL=$nowhere BYOK_DEEPSEEK_BASE_URL=$nowhere \
BYOK_ANTHROPIC_BASE_URL=$nowhere BYOK_GEMINI_BASE_URL=$nowhere \
    "$server" >"$dir/server.log" 2>&1 &
pid=$!
trap cleanup EXIT
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$dir/server.log"; exit 1; }
    sleep 0.1
done

# A fixed seed keeps CI reproducible; raise BYOK_FUZZ_EXAMPLES locally to dig.
timeout 600 st run "http://127.0.0.1:$port/api/openapi.json" \
    -H "Authorization: Bearer $token" \
    --checks ${BYOK_FUZZ_CHECKS:-not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance} \
    --phases examples,fuzzing \
    --max-examples "${BYOK_FUZZ_EXAMPLES:-25}" \
    --seed "${BYOK_FUZZ_SEED:-1}" \
    --no-color
