#!/usr/bin/env bash
# A guest that dirties memory far faster than a bandwidth-limited link
# (--bandwidth) carries, migrated between two pvmigd on loopback under each
# --no-converge choice:
#   throttle  its vCPUs are slowed step by step until pre-copy converges;
#             the throttle is lifted afterwards (also when cancelled)
#   stop      three rounds without progress, then the rest is copied paused
#   continue  pre-copy goes on until --max-time-s, then stops anyway
# Every outcome says why it stopped; the guest ends running on one host.
#   $1 = build dir (pvmig, pvmigd, pvmig-simguest)
set -uo pipefail
B=$(cd "$1" && pwd)
PVMIG=$B/pvmig PVMIGD=$B/pvmigd
W=$(mktemp -d /tmp/pvmig-it-noconv.XXXXXX)
. "$(dirname "$0")/../lib.sh"
cleanup() {
	stop_hosts
	rm -rf "$W"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT

command -v python3 >/dev/null || { echo "skip: python3 is needed to read --json"; exit 77; }
# The simulated guest's process (a child of its host's pvmigd) is stopped
# ('T') for part of each duty-cycle period while throttled: sample it.
# Prints "stopped" if any of 400 samples (0.5 ms apart) was.
guest_stopped() { # HOST
	python3 - "${PID[$1]}" <<'EOP'
import os, sys, time
ppid = sys.argv[1]
kids = open(f"/proc/{ppid}/task/{ppid}/children").read().split()
for t in os.listdir(f"/proc/{ppid}/task"):
    try:
        kids += open(f"/proc/{ppid}/task/{t}/children").read().split()
    except OSError:
        pass
seen = False
for _ in range(400):
    for k in set(kids):
        try:
            st = open(f"/proc/{k}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        seen |= st == "T"
    time.sleep(0.0005)
print("stopped" if seen else "running")
EOP
}

start_hosts a b
PA=${PORT[a]} PB=${PORT[b]}

# 1024 pages (4 MiB) rewritten at up to 20000 pages/s per vCPU; the link
# carries 4 MiB/s (1024 pages/s) uncompressed: no round ever ends clean.
WL=dirty:16:1024:20000
LINK=(--bandwidth 4 --no-compress --downtime-ms 100)

# field JSON KEY
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])["result"].get(sys.argv[2], ""))' "$1" "$2" 2>/dev/null; }

# 1. throttle (the default): converges with the vCPUs slowed.
"$PVMIG" -H "$W/a" create --name hot --memory 32M --vcpus 2 --workload "content:counter,$WL" >/dev/null || bad "create hot"
out=$("$PVMIG" -H "$W/a" migrate hot "127.0.0.1:$PB" "${LINK[@]}" --json 2>"$W/err")
rc=$?
if [ $rc -eq 0 ] && python3 -c '
import json,sys
r=json.loads(sys.argv[1])["result"]
assert r["result"]=="done", r
t=[int(x) for x in r["throttle_per_round"].split(",")]
assert t[0]==0 and t==sorted(t) and max(t)>=20, t
assert int(r["throttle_max_pct"])==max(max(t), int(r["throttle_max_pct"])), r
assert r["converged"]=="yes", r' "$out"; then
	ok "throttle: converged, vCPUs throttled per round $(field "$out" throttle_per_round) ($(field "$out" stop_reason))"
else
	bad "throttle: rc $rc $out $(cat "$W/err")"
fi
[ "$(state b hot)" = running ] && [ "$(state a hot)" = absent ] && ok "throttle: the guest runs on B only" ||
	bad "throttle: on A '$(state a hot)', on B '$(state b hot)'"
[ "$(guest_stopped b)" = running ] && ok "throttle: the guest on B is not throttled" ||
	bad "throttle: the guest on B is still being stopped"

# 2. stop: three rounds without progress, then stop-and-copy anyway.
out=$("$PVMIG" -H "$W/b" migrate hot "127.0.0.1:$PA" "${LINK[@]}" --no-converge stop --json 2>"$W/err")
rc=$?
if [ $rc -eq 0 ] && python3 -c '
import json,sys
r=json.loads(sys.argv[1])["result"]
assert r["result"]=="done" and r["converged"]=="no", r
assert "stopped shrinking" in r["stop_reason"], r
assert int(r["throttle_max_pct"])==0, r
assert int(r["rounds"])>=4, r' "$out"; then
	ok "stop: stopped anyway after $(field "$out" rounds) rounds ($(field "$out" stop_reason)), downtime $(field "$out" downtime_ms) ms"
else
	bad "stop: rc $rc $out $(cat "$W/err")"
fi
[ "$(state a hot)" = running ] && [ "$(state b hot)" = absent ] && ok "stop: the guest runs on A only" ||
	bad "stop: on A '$(state a hot)', on B '$(state b hot)'"

# 3. continue: until the time limit, then stop anyway.
out=$("$PVMIG" -H "$W/a" migrate hot "127.0.0.1:$PB" "${LINK[@]}" --no-converge continue --max-time-s 5 --json 2>"$W/err")
rc=$?
if [ $rc -eq 0 ] && python3 -c '
import json,sys
r=json.loads(sys.argv[1])["result"]
assert r["result"]=="done" and r["converged"]=="no", r
assert "time limit" in r["stop_reason"], r
assert int(r["throttle_max_pct"])==0, r' "$out"; then
	ok "continue: stopped at the time limit after $(field "$out" rounds) rounds ($(field "$out" stop_reason))"
else
	bad "continue: rc $rc $out $(cat "$W/err")"
fi
[ "$(state b hot)" = running ] && [ "$(state a hot)" = absent ] && ok "continue: the guest runs on B only" ||
	bad "continue: on A '$(state a hot)', on B '$(state b hot)'"

# 4. A throttled migration cancelled: the guest stays on B, unthrottled.
: >"$W/b.log.mark"
"$PVMIG" -H "$W/b" migrate hot "127.0.0.1:$PA" "${LINK[@]}" --max-rounds 1000 >/dev/null 2>"$W/err4" &
MPID=$!
for _ in $(seq 600); do grep -q "throttled to" "$W/b.log" && break; sleep 0.05; done
if grep -q "throttled to" "$W/b.log"; then
	[ "$(guest_stopped b)" = stopped ] && ok "cancel: the guest was being throttled" ||
		bad "cancel: throttled per the log, but never seen stopped"
	"$PVMIG" -H "$W/b" migrate --cancel hot >/dev/null 2>&1
	wait $MPID; rc=$?
	[ $rc -ne 0 ] && grep -q cancelled "$W/err4" && ok "cancel: the migration says cancelled" ||
		bad "cancel: rc $rc $(cat "$W/err4")"
	[ "$(state b hot)" = running ] && ok "cancel: the guest keeps running on B" ||
		bad "cancel: on B '$(state b hot)'"
	[ "$(guest_stopped b)" = running ] && ok "cancel: the throttle was lifted" ||
		bad "cancel: the guest on B is still throttled"
else
	kill "$MPID" 2>/dev/null; wait "$MPID" 2>/dev/null
	bad "cancel: the migration never throttled the guest: $(tail -3 "$W/b.log")"
fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
