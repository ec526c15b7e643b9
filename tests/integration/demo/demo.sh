#!/usr/bin/env bash
# pvmig demo end to end: the JSON report of a small run (two migrations,
# error-free counters that went on, downtime measured), a failed migration
# reported as such, pvmigd missing, Ctrl-C halfway; each time nothing it
# started may be left (its pvmigd children by PID, its temp dir).
#   $1 = build dir
set -uo pipefail
B=$(cd "$1" && pwd)
PVMIG=$B/pvmig
. "$(dirname "$0")/../lib.sh"
command -v python3 >/dev/null || { echo "skip: python3 is needed"; exit 77; }
W=$(mktemp -d /tmp/pvmig-it-demo.XXXXXX)
trap 'rm -rf "$W"' EXIT
mkdir "$W/tmp"
left() { ls -A "$W/tmp"; } # what a run left in its TMPDIR

# 1. A small run: the report says two migrations, A->B then B->A, both
#    done, with a downtime; counters from A, B, A, error-free, I/O going on.
TMPDIR=$W/tmp "$PVMIG" demo --json --memory 64M >"$W/o1" 2>"$W/e1"; rc=$?
[ $rc -eq 0 ] && ok "pvmig demo --json --memory 64M exits 0" || bad "demo exit status $rc: $(cat "$W/e1")"
if python3 - "$W/o1" >"$W/c1" 2>&1 <<'EOP'
import json, sys
d = json.load(open(sys.argv[1]))
m, r = d["items"], d["result"]
assert r["status"] == 0 and "error" not in r, r
assert [x["direction"] for x in m] == ["A->B", "B->A"], m
for s in m:
    assert s["status"] == 0 and s["result"] == "done", s
    assert float(s["downtime_ms"]) > 0 and float(s["total_ms"]) >= float(s["downtime_ms"]), s
    assert int(s["rounds"]) >= 1 and int(s["pages_sent"]) + int(s["unpopulated_pages"]) >= 16384, s
    for k in ("compression_ratio", "throughput_mib_s", "dirty_rate_pages_s", "round_detail", "wire_bytes"):
        assert k in s, k
c = r["counters"]
assert [x["host"] for x in c] == ["A", "B", "A"], c
for x in c:
    assert x["state"] == "running", x
    for k in ("blk_verify_fail", "blk_io_errors", "net_dup", "net_ooo"):
        assert x[k] == 0, (x["host"], k, x[k])
for a, b in zip(c, c[1:]):
    assert b["blk_reads"] > a["blk_reads"], (a, b)
    assert b["net_received"] > a["net_received"], (a, b)
assert r["io_error_free"] is True, r
print("downtime %s / %s ms, blk reads %d, net received %d" % (m[0]["downtime_ms"],
      m[1]["downtime_ms"], c[2]["blk_reads"], c[2]["net_received"]))
EOP
then ok "JSON report: two migrations done, counters error-free and going on ($(cat "$W/c1"))"
else bad "JSON report: $(cat "$W/c1")"; fi
[ -z "$(left)" ] && ok "nothing left in TMPDIR" || bad "left behind: $(left)"

# 2. A migration that fails (fault injected into both pvmigd: the link cut
#    before UNPAUSE): exit status 1, a non-zero status, the failed migration's
#    result in the report, everything cleaned up.
TMPDIR=$W/tmp PVMIG_FAULT=src-cut-before-unpause "$PVMIG" demo --json --memory 64M >"$W/o2" 2>"$W/e2"; rc=$?
if [ $rc -eq 1 ] && python3 -c '
import json,sys
d=json.load(open(sys.argv[1])); m, r = d["items"], d["result"]
assert r["status"] != 0 and "aborted" in r["error"], r
assert len(m) == 1 and m[0]["direction"] == "A->B" and m[0]["result"] == "failed", m' "$W/o2"; then
	ok "failed migration: exit 1, ok false ($(grep -m1 'pvmig demo' "$W/e2" | cut -c1-120))"
else
	bad "failed migration: exit $rc, $(cat "$W/o2") $(cat "$W/e2")"
fi
[ -z "$(left)" ] && ok "nothing left after the failure" || bad "left behind after the failure: $(left)"

# 3. No pvmigd next to pvmig nor on PATH: a clear error, exit 1.
mkdir "$W/alone" && cp "$PVMIG" "$W/alone/"
PATH=/usr/bin:/bin TMPDIR=$W/tmp "$W/alone/pvmig" demo >/dev/null 2>"$W/e3"; rc=$?
[ $rc -eq 1 ] && grep -q "cannot find pvmigd" "$W/e3" && ok "no pvmigd: $(head -1 "$W/e3")" ||
	bad "no pvmigd: exit $rc, $(cat "$W/e3")"

# 4. Bad options: exit 2.
"$PVMIG" demo --frontend ancient >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && ok "bad --frontend refused (2)" || bad "bad --frontend: exit $rc"

# 5. Ctrl-C once both hosts run: exit 130, its pvmigd children gone, the
#    temp dir removed.
TMPDIR=$W/tmp "$PVMIG" demo --memory 64M >"$W/o5" 2>&1 & D=$!
for _ in $(seq 200); do grep -q "guest 'demo'" "$W/o5" && break; sleep 0.05; done
kids=$(ps -o pid= --ppid $D | tr -d ' ')
kill -INT $D; wait $D; rc=$?
alive=
for k in $kids; do kill -0 "$k" 2>/dev/null && alive="$alive $k"; done
[ $rc -eq 130 ] && [ -n "$kids" ] && [ -z "$alive" ] &&
	ok "Ctrl-C: exit 130, its pvmigd ($(echo $kids)) stopped" ||
	bad "Ctrl-C: exit $rc, children '$kids', still alive '$alive'"
[ -z "$(left)" ] && ok "nothing left after Ctrl-C" || bad "left behind after Ctrl-C: $(left)"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
