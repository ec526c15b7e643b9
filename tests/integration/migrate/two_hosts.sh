#!/usr/bin/env bash
# Two real pvmigd services (simulated hosts) on loopback, migrating guests
# between them over TLS, and failing halfway in the ways production does.
# Invariant checked every time: the guest runs on exactly one host.
#   $1 = build dir (pvmig, pvmigd, pvmig-simguest)
set -uo pipefail
B=$(cd "$1" && pwd)
PVMIG=$B/pvmig PVMIGD=$B/pvmigd
W=$(mktemp -d /tmp/pvmig-it-mig.XXXXXX)
. "$(dirname "$0")/../lib.sh"
cleanup() {
	stop_hosts
	rm -rf "$W"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT

command -v python3 >/dev/null || { echo "skip: python3 is needed to read --json"; exit 77; }
"$PVMIG" tls-init "$W/other" hostb,127.0.0.1 2>/dev/null || exit 1

start_hosts a b
PA=${PORT[a]} PB=${PORT[b]}

# 1. Live migration A -> B, memory verified on both ends.
"$PVMIG" -H "$W/a" create --name g1 --memory 64M --vcpus 2 --workload content:counter,dirty:16:4000:20000 >/dev/null || bad "create g1"
out=$("$PVMIG" -H "$W/a" migrate g1 "127.0.0.1:$PB" --verify-memory --json 2>"$W/err")
rc=$?
if [ $rc -eq 0 ] && python3 -c '
import json,sys
r=json.loads(sys.argv[1])["result"]
assert r["status"]==0 and r["result"]=="done", r
assert r["memory"]=="identical on both hosts", r
assert float(r["downtime_ms"])>0 and int(r["pages_sent"])+int(r["unpopulated_pages"])>=16384, r' "$out"; then
	ok "live migration A->B with verified memory"
else
	bad "live migration A->B: rc $rc $out $(cat "$W/err")"
fi
expect_state a g1 absent "source copy is gone after the hand-over"
expect_state b g1 running "guest runs on the destination"

# 2. Cold migration back B -> A.
if "$PVMIG" -H "$W/b" migrate g1 "127.0.0.1:$PA" --cold --verify-memory >/dev/null 2>"$W/err"; then
	ok "cold migration B->A"
else
	bad "cold migration B->A: $(cat "$W/err")"
fi
expect_state a g1 running "guest back on A"
expect_state b g1 absent "and only there"

# 2b. Several migrations at once, both directions.
"$PVMIG" -H "$W/a" create --name c1 --memory 32M --workload content:counter,dirty:16:2000:5000 >/dev/null
"$PVMIG" -H "$W/a" create --name c2 --memory 32M --workload content:counter,dirty:16:2000:5000 >/dev/null
"$PVMIG" -H "$W/b" create --name c3 --memory 32M --workload content:counter,dirty:16:2000:5000 >/dev/null
"$PVMIG" -H "$W/a" migrate c1 "127.0.0.1:$PB" --verify-memory >/dev/null 2>"$W/c1.err" & C1=$!
"$PVMIG" -H "$W/a" migrate c2 "127.0.0.1:$PB" --verify-memory >/dev/null 2>"$W/c2.err" & C2=$!
"$PVMIG" -H "$W/b" migrate c3 "127.0.0.1:$PA" --verify-memory >/dev/null 2>"$W/c3.err" & C3=$!
wait $C1 && wait $C2 && wait $C3 && ok "three concurrent migrations (two A->B, one B->A)" ||
	bad "concurrent migrations: $(cat "$W/c1.err" "$W/c2.err" "$W/c3.err")"
expect_state b c1 running "c1 on B"
expect_state b c2 running "c2 on B"
expect_state a c3 running "c3 on A"
for g in c1 c2; do "$PVMIG" -H "$W/b" destroy $g >/dev/null; done
"$PVMIG" -H "$W/a" destroy c3 >/dev/null

# 2c. pvmig migrate --cancel from another terminal, mid-round.
"$PVMIG" -H "$W/a" create --name slow --memory 64M --workload content:counter,dirty:16:8000 >/dev/null
"$PVMIG" -H "$W/a" migrate slow "127.0.0.1:$PB" --bandwidth 4 --no-compress >/dev/null 2>"$W/cancel.err" & CP=$!
for _ in $(seq 200); do [ "$(state b slow)" != absent ] && break; sleep 0.02; done
"$PVMIG" -H "$W/a" migrate --cancel slow >/dev/null 2>"$W/cancel2.err" || bad "--cancel refused: $(cat "$W/cancel2.err")"
wait $CP; rc=$?
[ $rc -ne 0 ] && grep -q cancelled "$W/cancel.err" && ok "cancelled migration reports it: $(head -1 "$W/cancel.err")" ||
	bad "cancel: rc $rc $(cat "$W/cancel.err")"
expect_state a slow running "cancelled guest runs on the source"
for _ in $(seq 100); do [ "$(state b slow)" = absent ] && break; sleep 0.05; done
expect_state b slow absent "and nowhere else"
"$PVMIG" -H "$W/a" migrate --cancel slow 2>"$W/cancel3.err" && bad "cancel with no migration succeeded" ||
	ok "cancel with nothing running: $(head -1 "$W/cancel3.err")"
"$PVMIG" -H "$W/a" destroy slow >/dev/null

# 3. Destination unreachable.
if "$PVMIG" -H "$W/a" migrate g1 127.0.0.1:1 2>"$W/err"; then
	bad "migration to a closed port succeeded"
else
	grep -q "cannot reach pvmigd" "$W/err" && ok "unreachable destination: $(head -1 "$W/err")" ||
		bad "unclear error for an unreachable destination: $(cat "$W/err")"
fi
expect_state a g1 running "guest still runs on the source"

# 4. A destination whose certificate comes from another CA.
CERT[c]=$W/other/hostb
start_host c
PC=${PORT[c]}
if "$PVMIG" -H "$W/a" migrate g1 "127.0.0.1:$PC" 2>"$W/err"; then
	bad "migration to a host of another CA succeeded"
else
	ok "destination of another CA refused: $(head -1 "$W/err")"
fi
expect_state a g1 running "guest still runs on the source"
expect_state c g1 absent "nothing reached the foreign host"
stop_host c

# 5. Name already taken on the destination.
"$PVMIG" -H "$W/b" create --name g1 --memory 32M --workload content:counter >/dev/null
if "$PVMIG" -H "$W/a" migrate g1 "127.0.0.1:$PB" 2>"$W/err"; then
	bad "migration onto a taken name succeeded"
else
	grep -q "already exists" "$W/err" && ok "name taken on the destination: $(head -1 "$W/err")" ||
		bad "unclear error for a taken name: $(cat "$W/err")"
fi
expect_state a g1 running "guest still runs on the source"
"$PVMIG" -H "$W/b" destroy g1 >/dev/null

# 6. Destination killed mid-migration: the source resumes the guest.
"$PVMIG" -H "$W/a" create --name big --memory 256M --workload content:counter,dirty:16:60000 >/dev/null
# 8 MiB/s of random pages: round 0 alone takes over 10 s, the kill lands in it.
"$PVMIG" -H "$W/a" migrate big "127.0.0.1:$PB" --bandwidth 8 --no-compress >"$W/out6" 2>"$W/err6" &
MPID=$!
for _ in $(seq 200); do [ "$(state b big)" != absent ] && break; sleep 0.02; done
sleep 0.3
kill_host b
wait $MPID; rc=$?
if [ $rc -ne 0 ] && grep -qE "round 0 failed|lost the destination|reset|closed" "$W/err6"; then
	ok "source reports the lost destination: $(head -1 "$W/err6")"
else
	bad "killed destination: rc $rc, $(cat "$W/err6" "$W/out6")"
fi
expect_state a big running "guest resumed on the source"
start_host b

# 7. Source killed mid-migration: the destination drops its partial copy.
"$PVMIG" -H "$W/a" migrate big "127.0.0.1:$PB" --bandwidth 8 --no-compress >"$W/out7" 2>&1 &
MPID=$!
for _ in $(seq 200); do [ "$(state b big)" != absent ] && break; sleep 0.02; done
[ "$(state b big)" = paused ] && ok "destination holds a paused copy while receiving" || bad "destination copy not seen (state $(state b big))"
kill_host a
wait $MPID 2>/dev/null
for _ in $(seq 100); do [ "$(state b big)" = absent ] && break; sleep 0.05; done
expect_state b big absent "destination destroyed its partial copy"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
