#!/usr/bin/env bash
# The load benchmark: the same load straight at a local mock provider and
# through byok (release build, SQLite, one stored OpenAI key), with oha
# (`cargo install oha`). Prints p50/p99 latency and throughput for each, and
# byok's added latency. Runs byok once per usage durability mode.
#
#   scripts/load-bench.sh                 # 10 s per run
#   BENCH_SECS=30 BENCH_MODES=batched scripts/load-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${BENCH_SECS:-10}
modes=${BENCH_MODES:-"batched strict"}
mock_addr=127.0.0.1:18181
byok_port=18182
admin=load-bench-admin-token-$(date +%s%N)
target=${CARGO_TARGET_DIR:-target}

command -v oha >/dev/null || { echo "oha is needed: cargo install oha" >&2; exit 1; }
cargo build -q --release -p byok-server
cargo build -q --release -p byok-examples --example load_mock

dir=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

wait_for() { for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "not up: $1" >&2; exit 1; }

"$target/release/examples/load_mock" "$mock_addr" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null -X POST "http://$mock_addr/v1/chat/completions" && break; sleep 0.1; done

body='{"model":"auto","messages":[{"role":"user","content":"hi"}]}'
# One oha run; prints "p50_ms p99_ms rps success_rate".
load() {
    local url=$1 token=$2; shift 2
    oha --no-tui --output-format json -z "${secs}s" "$@" -m POST \
        -H "content-type: application/json" -H "authorization: Bearer $token" \
        -d "$body" "$url" |
        python3 -c 'import json,sys; r=json.load(sys.stdin); p=r["latencyPercentiles"]; s=r["summary"]; print("{:.3f} {:.3f} {:.0f} {:.4f}".format(p["p50"]*1000, p["p99"]*1000, s["requestsPerSec"], s["successRate"]))'
}

loads=("-c 1" "-c 50" "-c 10 -q 100" "-c 50 -q 1000")
declare -A direct
for l in "${loads[@]}"; do
    # shellcheck disable=SC2086
    direct[$l]=$(load "http://$mock_addr/v1/chat/completions" none $l)
done

printf '%-9s %-16s %28s %28s %10s\n' mode load "direct p50/p99 ms, req/s" "byok p50/p99 ms, req/s" "added p50"
for mode in $modes; do
    data="$dir/data-$mode"
    BYOK_BIND=127.0.0.1:$byok_port BYOK_DATA_DIR=$data BYOK_ADMIN_TOKEN=$admin BYOK_LOG=warn \
    BYOK_USAGE_DURABILITY=$mode BYOK_OPENAI_BASE_URL=http://$mock_addr/v1 \
        "$target/release/byok-server" >"$dir/server-$mode.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_for "http://127.0.0.1:$byok_port/readyz"
    token=$(curl -fsS -X POST "http://127.0.0.1:$byok_port/api/admin/users" \
        -H "authorization: Bearer $admin" -H "content-type: application/json" \
        -d '{"user_id":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    curl -fsS -o /dev/null -X POST "http://127.0.0.1:$byok_port/api/user/api-keys/bench/keys/openai" \
        -H "authorization: Bearer $token" -H "content-type: application/json" \
        -d '{"api_key":"sk-proj-loadbench0123456789abcdefghijklmnopqrstuv"}'
    for l in "${loads[@]}"; do
        # shellcheck disable=SC2086
        via=$(load "http://127.0.0.1:$byok_port/v1/chat/completions" "$token" $l)
        read -r d50 d99 drps dok <<<"${direct[$l]}"
        read -r b50 b99 brps bok <<<"$via"
        [[ $bok == 1.0000 ]] || echo "warning: only $bok of byok's answers succeeded ($mode, $l)" >&2
        printf '%-9s %-16s %28s %28s %10s\n' "$mode" "$l" "$d50/$d99, $drps" "$b50/$b99, $brps" \
            "$(python3 -c "print(f'{$b50-$d50:.3f}')")"
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
done
