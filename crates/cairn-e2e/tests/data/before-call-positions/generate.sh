#!/usr/bin/env bash
# Writes cairn.db, the data file tests/old_data.rs replays, with the cairn-fixture binary of
# commit a75275c (before call positions: its events have no "call"). Usage:
#   generate.sh <cairn-fixture built at a75275c> <output dir>
# It leaves three runs: old-failed (failed at gate#0, record#0 completed), old-parked
# (sleeping in sleep#0 after record#0, its process killed) and old-cut-off (block#0 in flight
# after record#0, its process killed), then folds the WAL into the file.
set -euo pipefail
fixture=$1
out=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export CAIRN_DATA_DIR=$work/data FIXTURE_LEDGER=$work/ledger FIXTURE_GO_FILE=$work/go \
    CAIRN_LEASE_TTL=1s

status() { "$fixture" runs list --json | python3 -c "
import json, sys
runs = [r for r in json.load(sys.stdin) if r['idempotencyKey'] == '$1']
print(runs[0]['status'] if runs else '')"; }

wait_then_kill() { # <pid> <key> <status> [<step> <step status>]
    for _ in $(seq 1 600); do
        if [ "$(status "$2")" = "$3" ]; then
            if [ $# -lt 4 ] || "$fixture" runs list --json | python3 -c "
import json, subprocess, sys
run = [r for r in json.load(sys.stdin) if r['idempotencyKey'] == '$2'][0]
detail = json.loads(subprocess.run(['$fixture', 'runs', 'get', run['runId'], '--json'],
                                   capture_output=True, check=True).stdout)
steps = {s['key']: s['status'] for s in detail['steps']}
sys.exit(0 if steps.get('$4') == '$5' else 1)"; then
                kill -9 "$1"
                wait "$1" 2>/dev/null || true
                return
            fi
        fi
        sleep 0.1
    done
    echo "timed out waiting for $2 to be $3" >&2
    exit 1
}

FIXTURE_FAIL=1 "$fixture" run gated --input '{"tag":"old-failed"}' \
    --idempotency-key old-failed >/dev/null 2>&1 || true
# Sleeps 2 s: killed as soon as it is parked.
"$fixture" run sleeper --input '{"tag":"old-parked"}' --idempotency-key old-parked \
    >/dev/null 2>&1 &
wait_then_kill $! old-parked sleeping
# No go file: block#0 waits until killed, once its start is recorded.
"$fixture" run crash-pipeline --input '{"tag":"old-cut-off"}' --idempotency-key old-cut-off \
    >/dev/null 2>&1 &
wait_then_kill $! old-cut-off running block#0 running

sqlite3 "$work/data/cairn.db" 'PRAGMA wal_checkpoint(TRUNCATE); VACUUM;' >/dev/null
mkdir -p "$out"
cp "$work/data/cairn.db" "$out/cairn.db"
