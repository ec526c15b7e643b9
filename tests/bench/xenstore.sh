#!/usr/bin/env bash
# Benchmark of the simulated host's xenstore server: starts pvmigd
# --backend sim in a temporary state dir and prints the requests/s of a
# READ/WRITE mix from 8 concurrent libxenstore clients.
#   tests/bench/xenstore.sh [BUILD_DIR] [xs_bench options...]
# (default BUILD_DIR: build; e.g. --seconds 5 --read-pct 50)
set -euo pipefail
cd "$(dirname "$0")/../.."
bdir=${1:-build}
shift || true
for b in "$bdir/pvmigd" "$bdir/pvm-bench-xenstore"; do
	[ -x "$b" ] || { echo "missing $b: build first (./scripts/build.sh $bdir)"; exit 1; }
done
dir=$(mktemp -d /tmp/pvm-xs-bench.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
"$bdir/pvmigd" --backend sim --state-dir "$dir" --foreground 2>"$dir/log" &
pid=$!
for _ in $(seq 100); do [ -S "$dir/xenstore.sock" ] && break; sleep 0.05; done
[ -S "$dir/xenstore.sock" ] || { cat "$dir/log"; exit 1; }
XENSTORED_PATH=$dir/xenstore.sock "$bdir/pvm-bench-xenstore" --clients 8 "$@"
