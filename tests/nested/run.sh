#!/bin/bash
# pvmig on a real Xen 4.17 hypervisor: one nested QEMU/TCG host (host A of the
# nested-xen lab) running Xen 4.17 with a Debian 12 dom0 and the lab's PV domU.
#
#   tests/nested/run.sh [--keep]      (as root; --keep leaves host A running)
#
# Uses the lab's own scripts, from $NESTED_XEN_LAB (default
# /work/shared/lab/nested-xen): build-images.sh (cached in /var/tmp/nested-xen)
# and nxlab (start/wait/ssh/scp-to/stop). Builds pvmig into $PVMIG_BUILD
# (default build-nested), copies pvmig and pvmigd (and any shared library
# dom0 lacks) to dom0's /opt/pvmig, creates the domU with `xl create`, runs
# pvmigd --backend xen and checks every pvmig answer against `xl list`.
# Prints PASS/FAIL per step, ends with "N passed, N failed"; exit 0 iff none
# failed. Not in CTest: it takes minutes. See tests/nested/README.md.
set -uo pipefail

KEEP=0
[ "${1:-}" = --keep ] && KEEP=1
LAB=${NESTED_XEN_LAB:-/work/shared/lab/nested-xen}
NX="$LAB/nxlab"
REPO=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
BUILD=${PVMIG_BUILD:-build-nested}
DOMU=nxdomu
SD=/tmp/pvmig                    # pvmigd's state dir in dom0
BIN=/opt/pvmig                   # where pvmig/pvmigd go in dom0
PVMIG="LD_LIBRARY_PATH=$BIN/lib $BIN/pvmig -H $SD"
LOGDIR=${PVMIG_NESTED_LOG:-$REPO/$BUILD/nested}
mkdir -p "$LOGDIR"
LOG="$LOGDIR/run-$(date +%Y%m%d-%H%M%S).log"
exec > >(tee "$LOG") 2>&1

[ "$(id -u)" = 0 ] || { echo "run as root (the lab's scripts need it)"; exit 2; }
[ -x "$NX" ] || { echo "no nested-xen lab at $LAB (set NESTED_XEN_LAB)"; exit 2; }
command -v jq >/dev/null || { echo "needs jq"; exit 2; }

PASSED=0 FAILED=0 STARTED_A=0 T0=$(date +%s)
declare -a SUMMARY

# step NAME FUNC: runs FUNC, prints and records PASS/FAIL with its duration.
step() {
	local name=$1 fn=$2 t rc=0 d
	t=$(date +%s.%N)
	echo "===== $name"
	"$fn" || rc=$?
	d=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
	if [ $rc = 0 ]; then
		PASSED=$((PASSED + 1)); SUMMARY+=("PASS  $name (${d}s)")
		echo "PASS  $name (${d}s)"
	else
		FAILED=$((FAILED + 1)); SUMMARY+=("FAIL  $name (${d}s)")
		echo "FAIL  $name (${d}s)"
	fi
	return $rc
}
fail() { echo "  error: $*"; return 1; }
on() { "$NX" ssh a "$@"; }            # a command in host A's dom0
# "Name ID Mem VCPUs State" of the domU from `xl list` in dom0, or "".
xl_row() { on "xl list $DOMU 2>/dev/null | awk 'NR==2{print \$1, \$2, \$3, \$4, \$5}'"; }

# ---- steps -------------------------------------------------------------------

s_images() { "$LAB/build-images.sh"; }
s_build() { (cd "$REPO" && ./scripts/build.sh "$BUILD") && [ -x "$REPO/$BUILD/pvmigd" ]; }

s_boot() {
	if "$NX" status | grep -q '^a: running'; then
		fail "host A is already running (not started by this run; stop it first: $NX stop a)"
		return 1
	fi
	STARTED_A=1
	"$NX" start a && "$NX" wait a 300
}

# pvmig, pvmigd and whatever shared library dom0 does not have.
s_copy() {
	local f missing lib path
	on "rm -rf $BIN && mkdir -p $BIN/lib" || return 1
	for f in pvmig pvmigd; do
		"$NX" scp-to a "$REPO/$BUILD/$f" "$BIN/$f" || return 1
	done
	missing=$(on "ldd $BIN/pvmig $BIN/pvmigd | awk '/not found/{print \$1}' | sort -u")
	for lib in $missing; do
		path=$(ldd "$REPO/$BUILD/pvmigd" "$REPO/$BUILD/pvmig" |
		       awk -v l="$lib" '$1==l{print $3; exit}')
		[ -n "$path" ] || { fail "dom0 lacks $lib and this machine has none"; return 1; }
		echo "  copying $path (dom0 lacks it)"
		"$NX" scp-to a "$path" "$BIN/lib/$lib" || return 1
	done
	[ -n "$missing" ] || echo "  dom0 has every shared library pvmig and pvmigd need"
	missing=$(on "LD_LIBRARY_PATH=$BIN/lib ldd $BIN/pvmig $BIN/pvmigd | grep 'not found'")
	[ -z "$missing" ] || { fail "still missing: $missing"; return 1; }
	on "$PVMIG --version"
}

s_create() {
	on "xl create -q /etc/xen/$DOMU.cfg" || return 1
	# until its vif/vbd are connected and it answers ping and HTTP

	for _ in $(seq 20); do
		sleep 3
		on "nx-domu-check $DOMU" >/dev/null 2>&1 && { on "nx-domu-check $DOMU"; return 0; }
	done
	on "nx-domu-check $DOMU"
}

start_pvmigd() {
	on "rm -rf $SD; mkdir -p $SD; n=\$(wc -l </tmp/pvmigd.log)
	    LD_LIBRARY_PATH=$BIN/lib nohup $BIN/pvmigd --backend xen \
	    --state-dir $SD --foreground -v >>/tmp/pvmigd.log 2>&1 </dev/null & echo \$! >/tmp/pvmigd.pid
	    for i in \$(seq 50); do [ -S $SD/control.sock ] && break; sleep 0.2; done
	    tail -n +\$((n + 1)) /tmp/pvmigd.log | grep -v 'debug: xen: ' | sed 's/^/  /'; [ -S $SD/control.sock ]"
}
s_pvmigd() { on ": >/tmp/pvmigd.log" && start_pvmigd; }

s_list() {
	local js row
	js=$(on "$PVMIG list --json") || { fail "pvmig list: $js"; return 1; }
	row=$(xl_row)
	echo "  pvmig: $js"; echo "  xl:    $row"
	[ -n "$row" ] || { fail "xl list has no $DOMU"; return 1; }
	set -- $row
	# exactly one guest (dom0 excluded), the same as xl's
	[ "$(jq '.items | length' <<<"$js")" = 1 ] || { fail "pvmig lists $(jq '.items|length' <<<"$js") domains"; return 1; }
	[ "$(jq -r '.items[0] | "\(.name) \(.domid) \(.memory_mib) \(.vcpus)"' <<<"$js")" = "$1 $2 $3 $4" ] ||
		{ fail "pvmig list disagrees with xl list"; return 1; }
}

s_info() {
	local js
	js=$(on "$PVMIG info --json") || { fail "pvmig info: $js"; return 1; }
	echo "  $js"
	[ "$(jq -r '.result | "\(.backend) \(.state_dir)"' <<<"$js")" = "xen $SD" ]
}

# status --json of the domU against xl list; $1: expected state (running|paused)
check_status() {
	local js row xs want=$1
	js=$(on "$PVMIG status $DOMU --json") || { fail "pvmig status: $js"; return 1; }
	row=$(xl_row)
	echo "  pvmig: $(jq -c .result <<<"$js")"; echo "  xl:    $row"
	set -- $row
	[ "$(jq -r '.result | "\(.name) \(.domid) \(.memory_mib) \(.vcpus)"' <<<"$js")" = "$1 $2 $3 $4" ] ||
		{ fail "pvmig status disagrees with xl list"; return 1; }
	case "$5" in *p*) xs=paused;; *) xs=running;; esac
	[ "$xs" = "$want" ] || { fail "xl says $xs, expected $want"; return 1; }
	[ "$(jq -r .result.state <<<"$js")" = "$want" ] || { fail "pvmig says $(jq -r .result.state <<<"$js"), expected $want"; return 1; }
	[ "$(jq -r .result.logdirty <<<"$js")" = off ] || { fail "log-dirty is not off"; return 1; }
}
s_status() { check_status running; }

s_pause() { on "$PVMIG pause $DOMU" && check_status paused; }
# Xen counts toolstack pauses: two pauses need two unpauses.
s_pause_nested() {
	on "$PVMIG pause $DOMU" && on "$PVMIG unpause $DOMU" && check_status paused
}
s_unpause() {
	local t1 t2
	on "$PVMIG unpause $DOMU" && check_status running || return 1
	t1=$(on "timeout 10 busybox wget -q -O- http://192.168.100.10/status")
	sleep 3
	t2=$(on "timeout 10 busybox wget -q -O- http://192.168.100.10/status")
	echo "  guest: $t1 -> $t2"
	[ -n "$t2" ] && [ "$t1" != "$t2" ] || fail "the guest does not run on"
}
s_unpause_refused() {
	local out rc=0
	out=$(on "$PVMIG unpause $DOMU" 2>&1) || rc=$?
	echo "  rc=$rc: $out"
	[ $rc != 0 ] && grep -q "not paused" <<<"$out" && check_status running
}
s_unknown() {
	local out rc=0
	out=$(on "$PVMIG status no-such-guest" 2>&1) || rc=$?
	echo "  rc=$rc: $out"
	[ $rc != 0 ] && grep -q "no domain" <<<"$out"
}

# pvmigd's close must leave Xen's domains alone (they outlive the toolstack).
s_pvmigd_restart() {
	on "kill -TERM \$(cat /tmp/pvmigd.pid); for i in \$(seq 50); do kill -0 \$(cat /tmp/pvmigd.pid) 2>/dev/null || break; sleep 0.2; done
	    ! kill -0 \$(cat /tmp/pvmigd.pid) 2>/dev/null && [ ! -e $SD/control.sock ]" || { fail "pvmigd did not stop on SIGTERM"; return 1; }
	[ -n "$(xl_row)" ] || { fail "$DOMU is gone after pvmigd stopped"; return 1; }
	echo "  pvmigd stopped, $DOMU still runs: $(xl_row)"
	start_pvmigd && check_status running
}

s_pvmigd_stop() {
	on "kill -TERM \$(cat /tmp/pvmigd.pid); for i in \$(seq 50); do kill -0 \$(cat /tmp/pvmigd.pid) 2>/dev/null || break; sleep 0.2; done
	    ! kill -0 \$(cat /tmp/pvmigd.pid) 2>/dev/null; rc=\$?
	    echo '  pvmigd errors and warnings:'; grep -E 'error|warn' /tmp/pvmigd.log | grep -v 'debug:' | sed 's/^/    /'
	    rm -f /tmp/*.pvm; exit \$rc"
	"$NX" scp-from a /tmp/pvmigd.log "$LOGDIR/pvmigd.log" >/dev/null 2>&1 || true
}

s_stop() { "$NX" stop a && ! "$NX" status | grep -q '^a: running'; }

cleanup() {
	if [ $STARTED_A = 1 ] && [ $KEEP = 0 ] && "$NX" status | grep -q '^a: running'; then
		echo "(stopping host A)"; "$NX" stop a
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$REPO/tests/nested/steps_saverestore.sh"

# ---- the run -------------------------------------------------------------------

step images s_images || exit 1
step build s_build || exit 1
step boot-host-a s_boot || exit 1
if step copy-pvmig s_copy && step xl-create-domu s_create && step pvmigd-start s_pvmigd; then
	step list s_list
	step info s_info
	step status s_status
	step pause s_pause
	step pause-nested s_pause_nested
	step unpause s_unpause
	step unpause-not-paused s_unpause_refused
	step status-unknown s_unknown
	step pvmigd-restart-keeps-guest s_pvmigd_restart
	saverestore_steps   # tests/nested/steps_saverestore.sh
	step pvmigd-stop s_pvmigd_stop
fi
if [ $KEEP = 0 ]; then step stop-host-a s_stop; fi

echo
echo "===== SUMMARY ($(( $(date +%s) - T0 ))s; log $LOG)"
printf '  %s\n' "${SUMMARY[@]}"
echo "$PASSED passed, $FAILED failed"
[ $FAILED = 0 ]
