#!/usr/bin/env bash
# The hand-over failing at its three hard points (fault injection through
# PVMIG_FAULT, migrate/outcome.c): the link cut just before UNPAUSE, just
# after it, and the destination host dying right after READY. Each time the
# guest must be running on exactly one host, or — when nobody can know —
# paused on the source and said so, never running twice.
#   $1 = build dir
set -uo pipefail
B=$(cd "$1" && pwd)
PVMIG=$B/pvmig PVMIGD=$B/pvmigd
W=$(mktemp -d /tmp/pvmig-it-ho.XXXXXX)
. "$(dirname "$0")/../lib.sh"
cleanup() {
	stop_hosts
	[ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
command -v python3 >/dev/null || { echo "skip: python3 is needed"; exit 77; }
"$PVMIG" tls-init "$W/certs" hosta,127.0.0.1 hostb,127.0.0.1 2>/dev/null || exit 1
# host NAME [FAULT]: pvmigd NAME, with PVMIG_FAULT=FAULT; reset_host NAME
# stops it and drops its state, for the next case's fresh start.
host() { PVMIG_FAULT=${2:-} start_host "$1" 'timeout-ms = 2000'; }
reset_host() { stop_host "$1"; rm -rf "${W:?}/$1"; }
guest() { # on host a
	truncate -s 16M "$W/disk.img"
	"$PVMIG" -H "$W/a" create --name g --memory 64M --disk "$W/disk.img" --nic --frontend legacy \
		--workload "content:counter,dirty:16:1000:2000,blk:500,net:500" >/dev/null || bad "create"
	sleep 0.5
}

# 1. Link cut just before UNPAUSE: the destination never runs it; the
#    source asks, the destination fences the migration ("aborted": a late
#    UNPAUSE would now be refused), and the source resumes its copy.
host a src-cut-before-unpause; host b; guest
if "$PVMIG" -H "$W/a" migrate g "127.0.0.1:${PORT[b]}" 2>"$W/e1"; then
	bad "a hand-over cut before UNPAUSE reported success"
else
	grep -q "says 'aborted'" "$W/e1" && ok "cut before UNPAUSE: $(head -1 "$W/e1")" ||
		bad "cut before UNPAUSE: unexpected error: $(cat "$W/e1")"
fi
expect_state a g running "the source resumed its copy"
for _ in $(seq 60); do [ "$(state b g)" = absent ] && break; sleep 0.1; done
expect_state b g absent "the destination dropped its copy"
reset_host a; reset_host b

# 2. Link cut just after UNPAUSE. The UNPAUSE is on the wire; whether the
#    destination acts on it before the source's QUERY reaches it is a race
#    the protocol decides once (fencing): either it runs there and the
#    source, told "running", destroys its copy, or the QUERY came first,
#    fenced it "aborted", the late UNPAUSE is refused and the source resumes.
#    Both keep exactly one copy running, and the source must say which.
host a src-cut-after-unpause; host b; guest
if "$PVMIG" -H "$W/a" migrate g "127.0.0.1:${PORT[b]}" --json >"$W/o2" 2>"$W/e2"; then
	grep -q "confirmed by query" "$W/o2" && ok "cut after UNPAUSE: the destination ran it, the source learned it by asking" ||
		bad "cut after UNPAUSE: no query outcome in $(cat "$W/o2")"
	expect_state b g running "the destination runs it"
	expect_state a g absent "the source destroyed its paused copy"
else
	grep -q "says 'aborted'" "$W/e2" && ok "cut after UNPAUSE: the QUERY came first and fenced it: $(head -1 "$W/e2")" ||
		bad "cut after UNPAUSE: $(cat "$W/e2")"
	expect_state a g running "the source resumed its copy"
	for _ in $(seq 60); do [ "$(state b g)" = absent ] && break; sleep 0.1; done
	expect_state b g absent "the destination refused the late UNPAUSE and dropped its copy"
fi
reset_host a; reset_host b

# 3. The destination host dies right after READY: nobody can tell whether it
#    ran; the source keeps its copy PAUSED (never two running) and says so.
host a; host b dst-die-after-ready; guest
#    (Should the source see the connection closed before it sends UNPAUSE,
#    it resumes its copy at once instead: netns/two_namespaces.sh holds it
#    there to test that.)
if "$PVMIG" -H "$W/a" migrate g "127.0.0.1:${PORT[b]}" 2>"$W/e3"; then
	bad "a hand-over to a dead destination reported success"
elif grep -q "before UNPAUSE was sent" "$W/e3"; then
	ok "destination died after READY, seen before UNPAUSE: $(head -1 "$W/e3" | cut -c1-160)"
	expect_state a g running "the source resumed its copy"
else
	grep -q "outcome unknown" "$W/e3" && ok "destination died after READY: $(head -1 "$W/e3" | cut -c1-160)" ||
		bad "destination died after READY: unexpected error: $(cat "$W/e3")"
	expect_state a g paused "the source keeps its copy paused"
	wait "${PID[b]}" 2>/dev/null; unset "PID[b]"
	"$PVMIG" -H "$W/a" unpause g >/dev/null && expect_state a g running "the operator resumes it once the destination is known dead"
fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
