#!/usr/bin/env bash
# Caller-side cost of the Rust client (crates/helixobs/benches/create.rs): criterion's runs of
# the three cases, then the paired measurement (interleaved batches, per-round ratios) that the
# comparison uses; the load before and after. Results go to docs/benchmarks.md ("Rust client
# cost"). Usage: bash bench/rust-client-cost.sh [RUNS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs="${1:-3}"
cargo bench -p helixobs --bench create --no-run --locked >/dev/null 2>&1
for run in $(seq 1 "$runs"); do
    echo "run $run, load before: $(uptime)"
    cargo bench -p helixobs --bench create --locked -- --warm-up-time 1 --measurement-time 3 --noplot 2>/dev/null |
        grep -E '^(create_start_drop/|paired:)|time:'
done
echo "load after: $(uptime)"
