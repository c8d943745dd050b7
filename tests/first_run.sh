#!/usr/bin/env bash
# The first run on a new machine: `genie prepare` with a new, empty Prefect home while every core is busy, as on a
# slow laptop. Prefect's temporary server migrates a new database longer than its start-up wait allows; genie
# migrates it first (tests: make test-first-run).
set -euo pipefail
project=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
burners=()
cleanup() { kill "${burners[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq "$(nproc)"); do python3 -c 'while True: pass' & burners+=($!); done
cp "$project/params.yaml" "$work/"
cd "$work"
env -u PREFECT_API_URL PREFECT_HOME="$work/prefect-home" "$project/.venv/bin/genie" prepare 2>&1 | tee "$work/out.log"
grep -q "preparing Prefect's database (first run only)" "$work/out.log"
echo "first run: genie prepare with a new Prefect home on busy cores succeeded"
