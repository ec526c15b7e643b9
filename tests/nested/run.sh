#!/bin/bash
# pvmig between two nested Xen 4.17 hosts (QEMU/TCG on this machine), with
# the project's own harness (tests/nested/harness/): images built from
# Debian's repositories into $PVMIG_NESTED_CACHE (default
# /var/tmp/pvmig-nested), hosts a and b joined by a link on 127.0.0.1, the
# PV test domU (vif + vbd, checked by domu-check after every step).
#
#   tests/nested/run.sh [--keep]      (root; --keep leaves both hosts up:
#                                      tests/nested/harness/hosts ssh a ...)
#   PVMIG_NESTED_ONLY=NAME run.sh     only steps_NAME.sh's steps once the
#                                      hosts and pvmigd are up (no PV domU,
#                                      no PV steps): for iterating on them
#
# Holds the nested-boot lock ($PVMIG_NESTED_LOCK, default
# /var/tmp/pvmig-nested.lock) for the whole run: one nested boot at a time
# on this machine. Prints PASS/FAIL and the time of every step, then the
# total; exit 0 iff no step failed. Not in CTest (minutes, root, QEMU).
# More steps come from tests/nested/steps_*.sh (see README.md).
set -uo pipefail

HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
. "$HERE/harness/env.sh"
if [ "${PVMIG_NESTED_LOCKED:-}" != 1 ]; then
	[ "$(id -u)" = 0 ] || { echo "run as root (QEMU, debootstrap, chroot)"; exit 2; }
	flock -n "$NX_LOCK" true 2>/dev/null || echo "waiting for $NX_LOCK (another nested run holds it)"
	PVMIG_NESTED_LOCKED=1 exec flock "$NX_LOCK" "$0" "$@"
fi

KEEP=0
[ "${1:-}" = --keep ] && KEEP=1
HOSTS=$HERE/harness/hosts
REPO=$(cd "$HERE/../.." && pwd)
BUILD=${PVMIG_BUILD:-build-nested}
DOMU=domu
SD=/tmp/pvmig                    # pvmigd's state dir in each dom0
BIN=/opt/pvmig                   # pvmig, pvmigd (and missing libraries) there
CONF=/etc/pvmig/pvmigd.conf
PVMIG="LD_LIBRARY_PATH=$BIN/lib $BIN/pvmig -H $SD"
LOGDIR=${PVMIG_NESTED_LOG:-$REPO/$BUILD/nested}
mkdir -p "$LOGDIR"
LOG="$LOGDIR/run-$(date +%Y%m%d-%H%M%S).log"
exec > >(tee "$LOG") 2>&1


PASSED=0 FAILED=0 SKIPPED=0 STARTED=() T0=$(date +%s)
declare -a SUMMARY

# step NAME FUNC: runs FUNC, prints and records PASS/FAIL with its duration
# (SKIP when FUNC returns 77: what it tests is not there to test; it says why).
step() {
	local name=$1 fn=$2 t rc=0 d
	t=$(date +%s.%N)
	echo "===== $name"
	"$fn" || rc=$?
	d=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
	if [ $rc = 77 ]; then
		SKIPPED=$((SKIPPED + 1)); SUMMARY+=("SKIP  $name (${d}s)")
		echo "SKIP  $name (${d}s)"
	elif [ $rc = 0 ]; then
		PASSED=$((PASSED + 1)); SUMMARY+=("PASS  $name (${d}s)")
		echo "PASS  $name (${d}s)"
	else
		FAILED=$((FAILED + 1)); SUMMARY+=("FAIL  $name (${d}s)")
		echo "FAIL  $name (${d}s)"
	fi
	return $rc
}
fail() { echo "  error: $*"; return 1; }
on() { "$HOSTS" ssh a "$@"; }         # a command in host a's dom0
on_b() { "$HOSTS" ssh b "$@"; }       # ... in host b's
on_h() { "$HOSTS" ssh "$@"; }         # on_h HOST CMD
ip_of() { case $1 in a) echo 192.168.100.1 ;; b) echo 192.168.100.2 ;; esac; }
# "Name ID Mem VCPUs State" of the domU from `xl list` in dom0 a (or $1), or "".
xl_row() { on_h "${1:-a}" "xl list $DOMU 2>/dev/null | awk 'NR==2{print \$1, \$2, \$3, \$4, \$5}'"; }
# The domU's tick counter, as HOST's dom0 reads it over HTTP ("" if none).
tick() { on_h "$1" "timeout 10 busybox wget -q -O- http://192.168.100.10/status" 2>/dev/null | awk '$1 == "DOMU-TICK" && $3 == "disk=ok" {print $2}'; }
# domu-check on HOST (default a), retried for up to 30 s while the guest's
# devices come back (after a restore or a move); its summary lines.
domu_ok() {
	local h=${1:-a} i
	for i in $(seq 15); do
		on_h "$h" "domu-check $DOMU" >/dev/null 2>&1 && { on_h "$h" "domu-check $DOMU" | grep -v '^  '; return 0; }
		sleep 2
	done
	on_h "$h" "domu-check $DOMU"; fail "domu-check fails on $h"
}
# Bytes dom0 HOST has sent on the inter-host link so far.
link_tx() { on_h "$1" 'cat /sys/class/net/$(cat /run/pvmig-link)/statistics/tx_bytes'; }

# ---- hosts -------------------------------------------------------------------

s_images() { "$HERE/harness/build-images.sh"; }
s_build() { (cd "$REPO" && ./scripts/build.sh "$BUILD") && [ -x "$REPO/$BUILD/pvmigd" ]; }

s_boot() {
	local h
	for h in a b; do
		if "$HOSTS" status | grep -q "^$h: running"; then
			fail "host $h already runs (not started by this run: $HOSTS stop $h)"
			return 1
		fi
	done
	for h in a b; do
		"$HOSTS" start "$h" || return 1
		STARTED+=("$h")
	done
	"$HOSTS" wait a b -t 300
}

# pvmig and pvmigd (and whatever shared library dom0 lacks), a test CA and
# each host's certificate, pvmigd.conf; on both hosts.
copy_to() {
	local h=$1 f missing lib path
	on_h "$h" "rm -rf $BIN && mkdir -p $BIN/lib /etc/pvmig" || return 1
	for f in pvmig pvmigd; do
		"$HOSTS" scp-to "$h" "$REPO/$BUILD/$f" "$BIN/$f" || return 1
	done
	missing=$(on_h "$h" "ldd $BIN/pvmig $BIN/pvmigd | awk '/not found/{print \$1}' | sort -u")
	for lib in $missing; do
		path=$(ldd "$REPO/$BUILD/pvmigd" "$REPO/$BUILD/pvmig" | awk -v l="$lib" '$1==l{print $3; exit}')
		[ -n "$path" ] || { fail "dom0 $h lacks $lib and this machine has none"; return 1; }
		echo "  $h: copying $path (dom0 lacks it)"
		"$HOSTS" scp-to "$h" "$path" "$BIN/lib/$lib" || return 1
	done
	for f in ca.pem "host$h.pem" "host$h.key"; do
		"$HOSTS" scp-to "$h" "$LOGDIR/certs/$f" "/etc/pvmig/$f" || return 1
	done
	on_h "$h" "printf '%s\n' 'backend = xen' 'state-dir = $SD' 'listen = $(ip_of "$h")' \
		'tls-ca = /etc/pvmig/ca.pem' 'tls-cert = /etc/pvmig/host$h.pem' 'tls-key = /etc/pvmig/host$h.key' \
		'allow-peers = hosta:all,hostb:all' 'timeout-ms = 5000' >$CONF
	    printf '#!/bin/sh\nLD_LIBRARY_PATH=$BIN/lib exec $BIN/pvmig \"\$@\"\n' >/usr/local/bin/pvmig
	    chmod 755 /usr/local/bin/pvmig; pvmig --version" | sed "s/^/  $h: /"
}
s_copy() {
	rm -rf "$LOGDIR/certs"
	"$REPO/$BUILD/pvmig" tls-init "$LOGDIR/certs" "hosta,$(ip_of a)" "hostb,$(ip_of b)" 2>/dev/null || return 1
	copy_to a && copy_to b
}

s_create() {
	on "xl create -q /etc/xen/$DOMU.cfg" || return 1
	# until its vif/vbd are connected and it answers ping and HTTP
	for _ in $(seq 20); do
		sleep 3
		on "domu-check $DOMU" >/dev/null 2>&1 && { on "domu-check $DOMU"; return 0; }
	done
	on "domu-check $DOMU"
}

# pvmigd on host $1 (default a) from $CONF, in the background.
start_pvmigd() {
	on_h "${1:-a}" "mkdir -p $SD; touch /tmp/pvmigd.log; n=\$(wc -l </tmp/pvmigd.log)
	    LD_LIBRARY_PATH=$BIN/lib nohup $BIN/pvmigd --config $CONF --foreground -v \
	    >>/tmp/pvmigd.log 2>&1 </dev/null & echo \$! >/tmp/pvmigd.pid
	    for i in \$(seq 50); do [ -S $SD/control.sock ] && break; sleep 0.2; done
	    tail -n +\$((n + 1)) /tmp/pvmigd.log | grep -v 'debug: xen: ' | sed 's/^/  /'; [ -S $SD/control.sock ]"
}
s_pvmigd() {
	on "rm -rf $SD; : >/tmp/pvmigd.log" && on_b "rm -rf $SD; : >/tmp/pvmigd.log" &&
		start_pvmigd a && start_pvmigd b
}

# ---- pvmig on host a (the domU runs there) -----------------------------------

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

# ---- xl migrate between the hosts: over ssh, and through pvmig tunnel ----------

# xl_migrate FROM TO HOW: `xl migrate` of the domU, timed in dom0 FROM, the
# bytes FROM sent on the link counted; HOW = ssh | tunnel. Sets MIG_MS,
# MIG_BYTES; passes if the domU left FROM and its checks pass on TO.
MIG_MS=0 MIG_BYTES=0
xl_migrate() {
	local from=$1 to=$2 how=$3 tx0 tx1 out rc=0 cmd t0 t1
	case $how in
	ssh) cmd="xl migrate $DOMU $(ip_of "$to")" ;;
	tunnel) cmd="xl migrate -s '' $DOMU 'pvmig tunnel --stats host$to'" ;;
	esac
	t0=$(tick "$from")
	tx0=$(link_tx "$from")
	out=$(on_h "$from" "t0=\$(date +%s%N); $cmd; rc=\$?; echo MIGRATE-MS \$(( (\$(date +%s%N) - t0) / 1000000 )); exit \$rc" 2>&1) || rc=$?
	tx1=$(link_tx "$from")
	echo "$out" | grep -E 'pvmig tunnel|Migration|migration sender: Target|MIGRATE-MS|rror' | sed 's/^/  /'
	MIG_MS=$(awk '/^MIGRATE-MS/{print $2}' <<<"$out")
	MIG_BYTES=$((tx1 - tx0))
	echo "  $how $from -> $to: ${MIG_MS} ms, $MIG_BYTES bytes sent on the link by $from"
	[ $rc = 0 ] || { fail "xl migrate ($how) failed: rc $rc"; return 1; }
	[ -z "$(xl_row "$from")" ] || { fail "$DOMU is still on $from"; return 1; }
	on_h "$to" "sleep 3; domu-check $DOMU" | grep -v '^  ' || return 1
	# the same guest, its disk loop still going (not a fresh boot)
	t1=$(tick "$to")
	echo "  tick before: $t0, after: $t1"
	[ -n "$t0" ] && [ -n "$t1" ] && [ "$t1" -gt "$t0" ] || fail "the domU's disk tick did not go on from $t0"
}
SSH_MS= SSH_BYTES= TUN_MS= TUN_BYTES=
s_xl_migrate_ssh() { xl_migrate a b ssh && SSH_MS=$MIG_MS SSH_BYTES=$MIG_BYTES; }
s_xl_migrate_tunnel() {
	xl_migrate b a tunnel || return 1
	TUN_MS=$MIG_MS TUN_BYTES=$MIG_BYTES
	on "grep -a 'tunnel from' /tmp/pvmigd.log | tail -n 2 | sed 's/^/  pvmigd a: /'"
}

# The link goes down 10 MB into an `xl migrate` through the tunnel and comes
# back 12 s later: the tunnel gives up (timeout-ms 5000 in pvmigd.conf),
# xl resumes the domU on a, and b keeps no copy.
s_tunnel_link_cut() {
	local out rc=0
	# down once 10 MB more went out on the link (at most 40 s from now)
	on "nohup sh -c 'l=\$(cat /run/pvmig-link); f=/sys/class/net/\$l/statistics/tx_bytes; b=\$(cat \$f)
	    for i in \$(seq 200); do [ \$((\$(cat \$f) - b)) -ge 10000000 ] && break; sleep 0.2; done
	    ip link set \$l down; sleep 12; ip link set \$l up' >/dev/null 2>&1 </dev/null &"
	out=$(on "xl migrate -s '' $DOMU 'pvmig tunnel hostb'" 2>&1) || rc=$?
	echo "$out" | grep -E 'pvmig tunnel|Migration|resum|rror' | sed 's/^/  /'
	[ $rc != 0 ] || { fail "xl migrate succeeded although the link was cut"; return 1; }
	grep -q "pvmig tunnel: the tunnel to hostb:8002 broke" <<<"$out" ||
		{ fail "pvmig tunnel did not say the tunnel broke"; return 1; }
	on 'l=$(cat /run/pvmig-link); for i in $(seq 30); do ip link show $l | grep -q "state UP" && break; sleep 1; done'
	local blog bytes
	on_b "for i in \$(seq 30); do xl list | grep -q $DOMU || break; sleep 1; done; xl list | sed 's/^/  b: /'"
	blog=$(on_b "grep -a 'tunnel from' /tmp/pvmigd.log | tail -n 2")
	echo "$blog" | sed 's/^/  pvmigd b: /'
	# b gave up because the link was gone, in the middle of the stream
	grep -qE 'ended before the command did: .*(peer silent|receive failed|send failed|closed|reset)' <<<"$blog" ||
		{ fail "pvmigd b did not end the tunnel for the lost link"; return 1; }
	bytes=$(sed -nE 's/.*: ([0-9]+) bytes in,.*/\1/p' <<<"$blog" | tail -n 1)
	[ "${bytes:-0}" -gt 1000000 ] || { fail "the link was cut before the stream got going (${bytes:-?} bytes)"; return 1; }
	[ -z "$(xl_row b)" ] || { fail "b still has a copy of $DOMU"; return 1; }
	[ -n "$(xl_row a)" ] || { fail "$DOMU is not on a any more"; return 1; }
	echo "  a: $(xl_row a)"
	on "sleep 3; domu-check $DOMU" | grep -v '^  '
}

# `pvmig migrate` a -> b -> a, live, with the domU's disk loop and HTTP
# answers going on. On Xen it is refused while hv/xen has no migration
# (docs/xen.md): then the step checks the refusal left the domU untouched
# on a and is reported as SKIP, not PASS.
pvmig_migrate() {  # FROM TO
	local from=$1 to=$2 out rc=0 t0 t1
	t0=$(tick "$from")
	out=$(on_h "$from" "$PVMIG migrate $DOMU host$to --json" 2>&1) || rc=$?
	if [ $rc != 0 ] && grep -qiE 'not supported|EOPNOTSUPP|not written yet|refused' <<<"$out"; then
		echo "  refused: $(tail -n 1 <<<"$out")"
		[ -n "$(xl_row "$from")" ] && [ -z "$(xl_row "$to")" ] || { fail "the refusal moved or lost $DOMU"; return 1; }
		on_h "$from" "domu-check $DOMU" | grep -v '^  ' || return 1
		echo "  pvmig migrate is not available on Xen yet; the guest is untouched on $from"
		return 77
	fi
	echo "  $(jq -c '.result | {result, total_ms, downtime_ms, wire_bytes, compression_ratio}' <<<"$out" 2>/dev/null || echo "$out")"
	[ $rc = 0 ] || { fail "pvmig migrate $from -> $to failed: rc $rc"; return 1; }
	[ -z "$(xl_row "$from")" ] && [ -n "$(xl_row "$to")" ] || { fail "$DOMU is not (only) on $to"; return 1; }
	on_h "$to" "sleep 3; domu-check $DOMU" | grep -v '^  ' || return 1
	t1=$(tick "$to")
	echo "  tick before: $t0, after: $t1"
	[ -n "$t0" ] && [ -n "$t1" ] && [ "$t1" -gt "$t0" ] || fail "the domU's disk tick did not go on from $t0"
}
s_pvmig_migrate_ab() { pvmig_migrate a b; }
s_pvmig_migrate_ba() { pvmig_migrate b a; }

# ---- the end -------------------------------------------------------------------

s_pvmigd_stop() {
	local h rc=0
	for h in a b; do
		on_h "$h" "kill -TERM \$(cat /tmp/pvmigd.pid); for i in \$(seq 50); do kill -0 \$(cat /tmp/pvmigd.pid) 2>/dev/null || break; sleep 0.2; done
		    ! kill -0 \$(cat /tmp/pvmigd.pid) 2>/dev/null; rc=\$?
		    echo '  $h: pvmigd errors and warnings:'; grep -aE 'error|warn' /tmp/pvmigd.log | grep -v 'debug:' | sed 's/^/    /'
		    rm -f /tmp/*.pvm; exit \$rc" || rc=1
		"$HOSTS" scp-from "$h" /tmp/pvmigd.log "$LOGDIR/pvmigd-$h.log" >/dev/null 2>&1
	done
	return $rc
}

s_stop() {
	"$HOSTS" stop "${STARTED[@]}"
	STARTED=()
	! "$HOSTS" status | grep -q running
}

cleanup() {
	if [ ${#STARTED[@]} -gt 0 ] && [ $KEEP = 0 ]; then
		echo "(stopping hosts ${STARTED[*]})"
		"$HOSTS" stop "${STARTED[@]}"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# More steps: tests/nested/steps_NAME.sh defines step functions and
# NAME_steps, which runs them (`step STEP-NAME FUNCTION` each). They run
# after the xl migrate steps, with pvmigd on both hosts and the domU on a,
# and may use: on/on_b/on_h, fail, xl_row, tick, domu_ok, step, $PVMIG, $DOMU, $REPO,
# $LOGDIR, "$NX" (the host controller) and dom0's domu-check (also
# installed as nx-domu-check, the lab's name).
NX=$HOSTS
for f in "$HERE"/steps_*.sh; do
	[ -f "$f" ] && . "$f"
done

# ---- the run -------------------------------------------------------------------

step images s_images || exit 1
command -v jq >/dev/null || { echo "needs jq (apt-get install jq)"; exit 2; }
step build s_build || exit 1
step boot-hosts s_boot || exit 1
ONLY=${PVMIG_NESTED_ONLY:-}
if [ -n "$ONLY" ]; then
	if step copy-pvmig s_copy && step pvmigd-start s_pvmigd; then
		"${ONLY}_steps"
		step pvmigd-stop s_pvmigd_stop
	fi
elif step copy-pvmig s_copy && step xl-create-domu s_create && step pvmigd-start s_pvmigd; then
	step list s_list
	step info s_info
	step status s_status
	step pause s_pause
	step pause-nested s_pause_nested
	step unpause s_unpause
	step unpause-not-paused s_unpause_refused
	step status-unknown s_unknown
	step pvmigd-restart-keeps-guest s_pvmigd_restart
	[ -n "$(xl_row a)" ] && step xl-migrate-ssh-a-to-b s_xl_migrate_ssh &&
		step xl-migrate-tunnel-b-to-a s_xl_migrate_tunnel &&
		step tunnel-link-cut-stays-on-a s_tunnel_link_cut
	[ -n "$(xl_row a)" ] && step pvmig-migrate-a-to-b s_pvmig_migrate_ab &&
		step pvmig-migrate-b-to-a s_pvmig_migrate_ba
	# the steps of tests/nested/steps_*.sh, each file's NAME_steps in turn
	for f in "$HERE"/steps_*.sh; do
		n=${f##*/steps_}
		[ -n "$(xl_row a)" ] || { echo "(no domU on a: skipping ${n%.sh}_steps)"; break; }
		"${n%.sh}_steps"
	done
	step pvmigd-stop s_pvmigd_stop
fi
if [ $KEEP = 0 ]; then step stop-hosts s_stop; fi

echo
echo "===== SUMMARY ($(( $(date +%s) - T0 ))s; log $LOG)"
printf '  %s\n' "${SUMMARY[@]}"
if [ -n "$SSH_MS" ] && [ -n "$TUN_MS" ] && [ "$SSH_MS" -gt 0 ] && [ "$SSH_BYTES" -gt 0 ]; then
	echo "  xl migrate through pvmig tunnel vs over ssh: time $TUN_MS/$SSH_MS ms = $(awk -v a="$TUN_MS" -v b="$SSH_MS" 'BEGIN{printf "%.2f", a/b}'),"\
	     "link bytes $TUN_BYTES/$SSH_BYTES = $(awk -v a="$TUN_BYTES" -v b="$SSH_BYTES" 'BEGIN{printf "%.2f", a/b}')"
fi
echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
[ $FAILED = 0 ]
