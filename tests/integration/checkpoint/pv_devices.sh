#!/usr/bin/env bash
# PV disk and network I/O across save/restore, both frontend generations:
# a guest with a disk and a NIC runs "dirty:16:2000:2000,blk:1000,net:1000"
# (checksummed block writes read back, numbered packets to an echo peer)
# and goes through
#   save      -> restore
#   save -c   -> restore (the original keeps running, checked, then goes)
#   checkpoint (continuous) -> restore of the newest epoch
# After each restore its own counters (xenstore data/workload/*) must keep
# moving with no verification failure, I/O error, duplicated or reordered
# packet; legacy loses no packet, modern at most 24 replies per restore
# (tests/integration/migrate/pv_devices.sh says why).
#
# The disk image is used in place, as with xl. For the cells where the
# guest runs on after the image is taken (-c, checkpoints) the disk must
# be as it was at the image's pause, as a real user would snapshot it: the
# guest is paused (pvmig pause) around the image that is restored, the disk
# copied then, and put back before the restore. The pause nests with the
# save's own, so the backends' drain and capture still run at the save.
#   $1 = build dir
#   $2 = the part to run: cycle (the guest above through the three cells),
#        matrix (idle and flat-out guests through the same cells), faults
#        (no answer, forced modes, a stuck disk, bad values, damaged
#        records, a taken domid), or all (the default). CTest runs the
#        three as separate tests, in parallel.
set -uo pipefail
PART=${2:-all}
case $PART in all|cycle|matrix|faults) ;; *) echo "unknown part '$PART'"; exit 2 ;; esac
want() { [ "$PART" = all ] || [ "$PART" = "$1" ]; }
B=$(cd "$1" && pwd)
PVMIG=$B/pvmig PVMIGD=$B/pvmigd
W=$(mktemp -d /tmp/pvm-it-ckpt-pv.XXXXXX)
S=$W/state
DPID= CPID= D2=
cleanup() {
	[ -n "$CPID" ] && kill "$CPID" 2>/dev/null
	[ -n "$D2" ] && kill "$D2" 2>/dev/null && wait "$D2" 2>/dev/null
	[ -n "$DPID" ] && kill "$DPID" 2>/dev/null
	[ -n "$CPID" ] && wait "$CPID" 2>/dev/null
	[ -n "$DPID" ] && wait "$DPID" 2>/dev/null
	[ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
. "$(dirname "$0")/../lib.sh"
P() { "$PVMIG" -H "$S" "$@"; }
command -v python3 >/dev/null || { echo "skip: python3 is needed"; exit 77; }
command -v xenstore-read >/dev/null || { echo "skip: xenstore-utils is needed to read the guest's counters"; exit 77; }

"$PVMIGD" --backend sim --state-dir "$S" --foreground >>"$W/pvmigd.log" 2>&1 &
DPID=$!
for _ in $(seq 100); do P info >/dev/null 2>&1 && break; sleep 0.05; done
P info >/dev/null 2>&1 || { echo "pvmigd did not come up:"; cat "$W/pvmigd.log"; exit 1; }

WL="dirty:16:2000:2000,blk:1000,net:1000"
# The one pvmigd here is host "state" for lib.sh's domid_of and counters.
# moving WHAT BEFORE AFTER: blk-reads and net-received went up
moving() {
	if [ "$(val blk-reads "$3")" -gt "$(val blk-reads "$2")" ] 2>/dev/null &&
	   [ "$(val net-received "$3")" -gt "$(val net-received "$2")" ] 2>/dev/null; then
		ok "$1: disk and network I/O go on"
	else
		bad "$1: I/O stalled: before $2 / after $3"
	fi
}
# clean WHAT BEFORE AFTER GEN [MAXLOST]
clean() {
	local e=0 lost max=${5:-24}
	for k in blk-verify-fail blk-io-errors net-dup net-ooo; do
		[ "$(val $k "$3")" = 0 ] || e=1
	done
	lost=$(( $(val net-lost "$3") - $(val net-lost "$2") )) || e=1
	if [ "$4" = legacy ]; then [ "$lost" = 0 ] || e=1; else [ "$lost" -le "$max" ] || e=1; fi
	[ $e = 0 ] && ok "$1: no I/O error, $lost packets lost ($3)" ||
		bad "$1: I/O errors (lost $lost): $3"
}
# runs_clean WHAT DOMAIN BEFORE GEN: I/O goes on from now (counters read
# 0.5 s apart from 1.5 s apart, so a stale publication cannot pass for
# progress) and nothing went wrong since BEFORE
runs_clean() {
	local r0 r1
	sleep 0.5
	r0=$(counters state $2)
	sleep 1.5
	r1=$(counters state $2)
	moving "$1" "$r0" "$r1"
	clean "$1" "$3" "$r1" $4
}
# ckpt_run DOMAIN DIR INTERVAL_MS STOPFILE: continuous checkpoints of
# DOMAIN through the control protocol (as pvmig checkpoint does), with no
# epoch limit, until STOPFILE exists: then it sends CANCEL (the job ends
# after the epoch it is in) and waits for the RESULT. Prints each record;
# exit 0 if the RESULT says status=0. (A fixed --epochs N raced the test's
# pause: under load all N were taken before it.)
ckpt_run() {
	python3 - "$S/control.sock" "$@" <<'PY'
import os, select, socket, struct, sys
sock, dom, d, iv, stop = sys.argv[1:]
req = {"cmd": "checkpoint", "domain": dom, "dir": d, "interval_ms": iv}
body = b"Q" + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in req.items())
s = socket.socket(socket.AF_UNIX); s.connect(sock)
s.sendall(struct.pack("<I", len(body)) + body)
buf, cancelled = b"", False
while True:
    if not cancelled and os.path.exists(stop):
        s.sendall(struct.pack("<I", 1) + b"C"); cancelled = True
    if not select.select([s], [], [], 0.1)[0]:
        continue
    data = s.recv(65536)
    if not data:
        sys.exit("pvmigd closed the connection without a result")
    buf += data
    while len(buf) >= 4 and len(buf) >= 4 + struct.unpack_from("<I", buf)[0]:
        n = struct.unpack_from("<I", buf)[0]; rec = buf[4:4 + n]; buf = buf[4 + n:]
        f = [x.decode() for x in rec[1:].split(b"\0")]
        kv = dict(zip(f[0::2], f[1::2]))
        print(rec[:1].decode(), " ".join(k + "=" + v for k, v in kv.items()), flush=True)
        if rec[:1] == b"R":
            sys.exit(0 if kv.get("status") == "0" else 1)
PY
}
# epoch_of DIR: the newest committed epoch in DIR's MANIFEST (empty: none)
epoch_of() { awk '$1 == "epoch" { print $2 }' "$1/MANIFEST" 2>/dev/null; }
# wait_epoch DIR N: until DIR holds epoch N or later (at most 120 s)
wait_epoch() {
	local e
	for _ in $(seq 1200); do
		e=$(epoch_of "$1"); [ -n "$e" ] && [ "$e" -ge "$2" ] && return 0
		sleep 0.1
	done
	return 1
}
# restored_ok WHAT OUTFILE: restore result says the 2 devices reconnected
restored_ok() {
	local d
	d=$(jfield "$2" devices)
	[ "$d" = "all 2 reconnected" ] && ok "$1: restore says '$d'" ||
		bad "$1: restore: devices '$d': $(cat "$2")"
}
create() { # NAME GEN
	truncate -s 32M "$W/$1.img"
	P create --name "$1" --memory 64M --vcpus 2 --disk "$W/$1.img" --nic \
		--frontend "$2" --workload "content:counter,$WL" >/dev/null 2>"$W/create.err" || {
		if grep -qiE "userfaultfd|PAGEMAP_SCAN|not supported" "$W/create.err"; then
			echo "SKIP: this kernel cannot run simulated guests"; exit 77
		fi
		bad "create $1: $(cat "$W/create.err")"; return 1; }
	sleep 1
}

want cycle && for gen in legacy modern; do
	g=$gen
	# ---- save -> restore ------------------------------------------------
	create $g $gen || continue
	osid=$(domid_of state $g)
	before=$(counters state $g)
	# A modern guest answers the suspend request; a legacy one does not
	# advertise it (docs/pvquiesce.md).
	want_susp=cooperative
	[ $gen = legacy ] && want_susp="non-cooperative: the guest does not advertise control/feature-suspend"
	if P save $g "$W/$g.pvm" --json >"$W/save.json" 2>"$W/save.err" &&
	   [ "$(jfield "$W/save.json" devices_quiesced)" = 2 ] &&
	   [ "$(jfield "$W/save.json" suspend)" = "$want_susp" ]; then
		ok "$gen save: suspend $want_susp, 2 devices quiesced"
	else
		bad "$gen save: $(cat "$W/save.json" "$W/save.err")"
	fi
	P verify "$W/$g.pvm" --json >"$W/v.json"
	cp "$W/v.json" "$W/$g-verify.json"
	python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))["result"]; assert v["sound"] and v["devices"]==2, v' "$W/v.json" 2>/dev/null &&
		ok "$gen: the file is sound with 2 PVMIG_DEVICE records" || bad "$gen verify: $(cat "$W/v.json")"
	P restore "$W/$g.pvm" --json >"$W/rest.json" 2>"$W/rest.err" || bad "$gen restore: $(cat "$W/rest.err")"
	restored_ok "$gen save->restore" "$W/rest.json"
	nsid=$(domid_of state $g)
	[ "$gen" = modern ] || { [ "$nsid" = "$osid" ] && ok "$gen: restored with its domid $osid" || bad "$gen: domid $osid became $nsid"; }
	runs_clean "$gen save->restore" $g "$before" $gen

	# ---- save -c -> restore -----------------------------------------------
	P pause $g >/dev/null
	before=$(counters state $g)
	P save -c $g "$W/${g}c.pvm" --json >"$W/save.json" 2>"$W/save.err" &&
		[ "$(jfield "$W/save.json" devices_quiesced)" = 2 ] &&
		[ "$(jfield "$W/save.json" guest)" = running ] &&
		[ "$(jfield "$W/save.json" suspend)" = "non-cooperative: the domain is paused" ] ||
		bad "$gen save -c: $(cat "$W/save.json" "$W/save.err")"
	cp "$W/$g.img" "$W/$g.img.at-save"
	P unpause $g >/dev/null
	# The backends were resumed in place: the original goes on unharmed
	# (not one packet lost: its rings were never dropped).
	runs_clean "$gen -c: the original" $g "$before" legacy
	P destroy $g >/dev/null
	cp "$W/$g.img.at-save" "$W/$g.img"
	P restore "$W/${g}c.pvm" --json >"$W/rest.json" 2>"$W/rest.err" || bad "$gen restore -c image: $(cat "$W/rest.err")"
	restored_ok "$gen -c->restore" "$W/rest.json"
	runs_clean "$gen -c->restore" $g "$before" $gen

	# ---- continuous checkpoints -> restore of the newest epoch ---------------
	rm -rf "$W/$g.dir"
	before=$(counters state $g)
	# The restored epoch must be one taken after the pause (the disk is
	# copied at the pause): the run goes on until two epochs after it
	# (the one in progress at the pause may hold the state just before).
	rm -f "$W/stop"
	ckpt_run $g "$W/$g.dir" 150 "$W/stop" >"$W/cp.out" 2>&1 &
	CPID=$!
	wait_epoch "$W/$g.dir" 3 || bad "$gen checkpoints: no epoch 3 within 120 s: $(cat "$W/cp.out")"
	runs_clean "$gen checkpoints: the original between epochs" $g "$before" legacy
	P pause $g >/dev/null
	m0=$(epoch_of "$W/$g.dir")
	before=$(counters state $g)
	cp "$W/$g.img" "$W/$g.img.at-save"
	wait_epoch "$W/$g.dir" $((m0 + 2)) || bad "$gen checkpoints: no epoch $((m0 + 2)) within 120 s of the pause"
	touch "$W/stop"
	wait $CPID; rc=$?; CPID=
	[ $rc = 0 ] && ok "$gen checkpoints: $(grep -c '^P phase=epoch' "$W/cp.out") epochs, cancelled once $((m0 + 2)) was committed, done" || bad "$gen checkpoint run: $(cat "$W/cp.out")"
	P destroy $g >/dev/null
	cp "$W/$g.img.at-save" "$W/$g.img"
	P restore "$W/$g.dir" --json >"$W/rest.json" 2>"$W/rest.err" || bad "$gen restore dir: $(cat "$W/rest.err")"
	ep=$(jfield "$W/rest.json" epoch)
	# The newest epoch was taken after the pause (the disk matches it).
	[ -n "$ep" ] && [ "$ep" != "?" ] && [ "$ep" -ge $((m0 + 2)) ] && [ "$ep" = "$(epoch_of "$W/$g.dir")" ] &&
		ok "$gen: restored the newest epoch ($ep; $m0 were committed when it was paused)" ||
		bad "$gen: restored epoch '$ep', not the newest ('$(epoch_of "$W/$g.dir")', at least $((m0 + 2)); $m0 when paused)"
	restored_ok "$gen checkpoint->restore" "$W/rest.json"
	runs_clean "$gen checkpoint->restore" $g "$before" $gen
	P destroy $g >/dev/null
done

# ---- the rest of the matrix: idle, and flat-out block I/O -------------------
# Each generation, idle (no PV I/O at all) and heavy (blk:0,net:0: requests
# in flight at every instant, so at the pause too), through save->restore,
# save -c->restore and continuous checkpoints->restore. Idle: the devices
# come back and nothing is counted wrong; heavy: I/O goes on, clean. The
# -c and checkpoint images are taken with the guest paused around them (the
# disk is used in place; see the head of this file).
# check_cell WHAT DOMAIN BEFORE GEN LOAD
check_cell() {
	if [ "$5" = idle ]; then
		sleep 0.5
		clean "$1" "$3" "$(counters state $2)" $4
	else
		runs_clean "$1" $2 "$3" $4
	fi
}
want matrix && for gen in legacy modern; do
	for load in idle heavy; do
		g=$gen-$load
		WL_SAVE=$WL
		WL="dirty:16:2000:2000"
		[ $load = heavy ] && WL="blk:0,net:0"
		create $g $gen
		WL=$WL_SAVE
		# save -> restore
		before=$(counters state $g)
		P save $g "$W/$g.pvm" >/dev/null 2>"$W/save.err" || bad "$g save: $(cat "$W/save.err")"
		P restore "$W/$g.pvm" --json >"$W/rest.json" 2>"$W/rest.err" || bad "$g restore: $(cat "$W/rest.err")"
		restored_ok "$g save->restore" "$W/rest.json"
		check_cell "$g save->restore" $g "$before" $gen $load
		# save -c -> restore
		P pause $g >/dev/null
		before=$(counters state $g)
		P save -c $g "$W/${g}c.pvm" >/dev/null 2>"$W/save.err" || bad "$g save -c: $(cat "$W/save.err")"
		cp "$W/$g.img" "$W/$g.img.at-save"
		P destroy $g >/dev/null
		cp "$W/$g.img.at-save" "$W/$g.img"
		P restore "$W/${g}c.pvm" --json >"$W/rest.json" 2>"$W/rest.err" || bad "$g restore -c: $(cat "$W/rest.err")"
		restored_ok "$g -c->restore" "$W/rest.json"
		check_cell "$g -c->restore" $g "$before" $gen $load
		# continuous checkpoints -> restore of the newest epoch
		rm -rf "$W/$g.dir"
		rm -f "$W/stop"
		ckpt_run $g "$W/$g.dir" 100 "$W/stop" >"$W/cp.out" 2>&1 &
		CPID=$!
		wait_epoch "$W/$g.dir" 2 || bad "$g: no epoch 2 within 120 s: $(cat "$W/cp.out")"
		P pause $g >/dev/null
		m0=$(epoch_of "$W/$g.dir")
		before=$(counters state $g)
		cp "$W/$g.img" "$W/$g.img.at-save"
		wait_epoch "$W/$g.dir" $((m0 + 2)) || bad "$g: no epoch $((m0 + 2)) within 120 s of the pause"
		touch "$W/stop"
		wait $CPID; rc=$?; CPID=
		[ $rc = 0 ] || bad "$g checkpoint run: $(cat "$W/cp.out")"
		P destroy $g >/dev/null
		cp "$W/$g.img.at-save" "$W/$g.img"
		P restore "$W/$g.dir" --json >"$W/rest.json" 2>"$W/rest.err" || bad "$g restore dir: $(cat "$W/rest.err")"
		restored_ok "$g checkpoint->restore (epoch $(jfield "$W/rest.json" epoch))" "$W/rest.json"
		check_cell "$g checkpoint->restore" $g "$before" $gen $load
		P destroy $g >/dev/null
	done
done

if want faults; then
# The taken-domid case at the end needs a legacy guest's file with the
# first domid of a host: made here when the cycle part did not run.
if [ ! -f "$W/legacy-verify.json" ]; then
	create legacy legacy
	P save legacy "$W/legacy.pvm" >/dev/null 2>"$W/save.err" || bad "save legacy: $(cat "$W/save.err")"
	P verify "$W/legacy.pvm" --json >"$W/legacy-verify.json"
	P destroy legacy >/dev/null 2>&1
fi
# ---- a modern guest that advertises suspend but never answers (noack) ------
# The request is withdrawn after --suspend-timeout and the guest quiesced
# from the backend side; it runs on, clean. (A legacy guest, which never
# answers either, does not advertise the feature: see the saves above.)
WL_SAVE=$WL
WL="$WL,noack"
create mute modern
WL=$WL_SAVE
before=$(counters state mute)
P save -c mute "$W/mute.pvm" --suspend-timeout 200 --json >"$W/save.json" 2>"$W/save.err"
msid=$(domid_of state mute)
shut=$(XENSTORED_PATH=$S/xenstore.sock xenstore-read /local/domain/$msid/control/shutdown 2>&1)
if [ "$(jfield "$W/save.json" suspend)" = "non-cooperative: no acknowledgement within 200 ms (request withdrawn)" ] &&
   [ "$(jfield "$W/save.json" devices_quiesced)" = 2 ] && [ -z "$shut" ]; then
	ok "modern guest without an answer: suspend '$(jfield "$W/save.json" suspend)', control/shutdown cleared, saved"
else
	bad "modern guest without an answer: control/shutdown '$shut': $(cat "$W/save.json" "$W/save.err")"
fi
runs_clean "modern guest without an answer, after the save -c" mute "$before" legacy
P destroy mute >/dev/null
# Saved (not -c), the same guest never suspends, so it does not know it
# was saved: the file records a transparent reconnect (a cooperative one
# would leave its frontends on rings nobody serves), and the restore
# re-attaches its backends to its rings, with its domid: nothing lost.
WL="$WL,noack"
create mute modern
WL=$WL_SAVE
before=$(counters state mute)
if P save mute "$W/mute2.pvm" --suspend-timeout 200 --json >"$W/save.json" 2>"$W/save.err" &&
   P restore "$W/mute2.pvm" --json >"$W/rest.json" 2>"$W/rest.err"; then
	restored_ok "modern guest without an answer, save->restore" "$W/rest.json"
	runs_clean "modern guest without an answer, save->restore (transparent)" mute "$before" legacy
else
	bad "modern guest without an answer, save->restore: $(cat "$W/save.err" "$W/rest.err")"
fi
P destroy mute >/dev/null

# ---- forced modes ------------------------------------------------------------
# A modern guest saved with --pv-mode transparent (its records say so)
# restored with --pv-mode cooperative: fresh backends, reconnected, clean.
# A legacy guest (recorded transparent) restored with --pv-mode
# cooperative: its frontends never re-handshake, so its devices stay
# unconnected, and the restore says so naming each of them.
create forced modern
P save forced "$W/forced.pvm" --pv-mode transparent >/dev/null 2>"$W/save.err" || bad "save --pv-mode transparent: $(cat "$W/save.err")"
if P restore "$W/forced.pvm" --pv-mode cooperative --json >"$W/rest.json" 2>"$W/rest.err"; then
	restored_ok "modern guest recorded transparent, restored --pv-mode cooperative" "$W/rest.json"
	sleep 0.3
	runs_clean "modern guest restored --pv-mode cooperative" forced "$(counters state forced)" modern
else
	bad "restore --pv-mode cooperative: $(cat "$W/rest.err")"
fi
P destroy forced >/dev/null
create forced legacy
P save forced "$W/forced.pvm" >/dev/null 2>"$W/save.err" || bad "save legacy: $(cat "$W/save.err")"
P restore "$W/forced.pvm" --pv-mode cooperative --json >"$W/rest.json" 2>"$W/rest.err"
d=$(jfield "$W/rest.json" devices)
[ "$d" = "vbd xvda (51712), vif 0 did not reconnect within 5000 ms" ] &&
	ok "legacy guest restored --pv-mode cooperative: '$d'" ||
	bad "legacy guest restored --pv-mode cooperative: devices '$d' $(cat "$W/rest.err")"
P destroy forced >/dev/null

# ---- a backend that never drains (a stuck disk) ------------------------------
# The fault knob of the simulated vbd backend: dom0's node pvmig-stall = 1
# in its directory makes it take a request and hang on it. The save must
# give up after the drain bound with an error naming the disk, leave no
# file, and leave the guest running with its devices connected; once the
# disk answers again its I/O goes on with nothing lost or failed. The
# bound: the default 2000 ms (legacy), --drain-timeout 300 (modern), and
# --drain-timeout 250 for a continuous checkpoint (its base save stops).
# stuck_case GEN MS COMMAND...: COMMAND (a pvmig subcommand on the guest
# stuck-GEN) must fail naming the disk and the bound MS, leaving the
# guest running, and no file at $W/stuck.pvm.
stuck_case() {
	local gen=$1 ms=$2 sid before knob; shift 2
	create stuck-$gen $gen
	sid=$(domid_of state stuck-$gen)
	before=$(counters state stuck-$gen)
	knob=/local/domain/0/backend/vbd/$sid/51712/pvmig-stall
	XENSTORED_PATH=$S/xenstore.sock xenstore-write $knob 1
	sleep 0.3
	if P "$@" >"$W/r.out" 2>&1; then
		bad "$gen: $1 with a stuck disk succeeded"
	elif grep -q "vbd xvda (51712) of domain $sid did not drain within $ms ms" "$W/r.out" &&
	     [ ! -e "$W/stuck.pvm" ] && P status stuck-$gen --json | grep -q '"state":"running"'; then
		ok "$gen: $1 with a stuck disk, bound $ms ms: $(head -1 "$W/r.out"); no file, the guest runs"
	else
		bad "$gen: $1 with a stuck disk, bound $ms ms: $(cat "$W/r.out"); $(P status stuck-$gen)"
	fi
	XENSTORED_PATH=$S/xenstore.sock xenstore-rm $knob
	runs_clean "$gen: stuck disk answering again" stuck-$gen "$before" legacy
	P destroy stuck-$gen >/dev/null
}
stuck_case legacy 2000 save stuck-legacy "$W/stuck.pvm"
stuck_case modern 300 save stuck-modern "$W/stuck.pvm" --drain-timeout 300
stuck_case legacy 250 checkpoint stuck-legacy "$W/stuck.d" --interval-ms 100 --epochs 2 --drain-timeout 250

# ---- --drain-timeout values out of range: refused by pvmig and by pvmigd ---
create bounds legacy
for v in 0 60001 abc "" -5 1.5; do
	for cmd in save checkpoint migrate; do
		case $cmd in
		save) args=(bounds "$W/b.pvm") ;;
		checkpoint) args=(bounds "$W/b.d" --interval-ms 100) ;;
		migrate) args=(bounds 127.0.0.1:1) ;;
		esac
		P $cmd "${args[@]}" --drain-timeout "$v" >/dev/null 2>"$W/e"; rc=$?
		[ $rc = 2 ] && grep -q "pvmig $cmd: --drain-timeout wants 1..60000 (ms), not '$v'" "$W/e" ||
			bad "pvmig $cmd --drain-timeout '$v': exit $rc, $(cat "$W/e")"
	done
done
ok "pvmig save/checkpoint/migrate refuse --drain-timeout 0, 60001, abc, '', -5, 1.5 (exit 2, naming the range)"
# The same request sent to pvmigd directly (the control protocol: a u32
# length, kind 'Q', key NUL value NUL ...), past pvmig's own check.
ctl() { # KEY=VALUE... -> the RESULT's fields, "key=value" per line
	python3 - "$S/control.sock" "$@" <<'PY'
import socket, struct, sys
body = b"Q" + b"".join(a.split("=", 1)[0].encode() + b"\0" + a.split("=", 1)[1].encode() + b"\0" for a in sys.argv[2:])
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(struct.pack("<I", len(body)) + body)
buf = b""
while True:
    d = s.recv(65536)
    if not d: break
    buf += d
    while len(buf) >= 4 and len(buf) >= 4 + struct.unpack_from("<I", buf)[0]:
        n = struct.unpack_from("<I", buf)[0]; rec = buf[4:4 + n]; buf = buf[4 + n:]
        if rec[:1] == b"R":
            f = rec[1:].split(b"\0")
            for k, v in zip(f[0::2], f[1::2]): print(k.decode() + "=" + v.decode())
            sys.exit(0)
PY
}
for v in 0 60001; do
	for req in "cmd=save path=$W/b.pvm" "cmd=checkpoint dir=$W/b.d interval_ms=100" "cmd=migrate target=127.0.0.1:1"; do
		# shellcheck disable=SC2086 # the fields, split on purpose
		out=$(ctl $req domain=bounds drain_timeout_ms=$v)
		grep -q "^error=--drain-timeout must be 1..60000 (ms), not '$v'" <<<"$out" && ! grep -q '^status=0$' <<<"$out" ||
			bad "pvmigd took ${req%% *} drain_timeout_ms=$v: $out"
	done
done
ok "pvmigd refuses drain_timeout_ms 0 and 60001 for save, checkpoint and migrate, naming --drain-timeout"
P status bounds --json | grep -q '"state":"running"' && ok "and the guest runs on" || bad "bounds guest: $(P status bounds)"
P destroy bounds >/dev/null

# ---- damaged device state: a clear error naming the device, nothing left ---
# A legacy guest's file with its vbd's PVMIG_DEVICE record dropped, or its
# vif's record made inconsistent (a tx ring said to be a blk ring), the
# stream checksum recomputed so that only the device state is wrong.
tamper() { # IN OUT drop|corrupt
	python3 - "$@" <<'PY'
import hashlib, re, struct, sys
src, dst, how = sys.argv[1:]
f = bytearray(open(src, "rb").read())
start = 48 + struct.unpack_from("<I", f, 44)[0]   # after the xl header
s = f[start:]
# the CHECKSUM record (type 0x80706d06, 48 bytes), last in the libxc stream
c = s.rfind(struct.pack("<II", 0x80706d06, 48) + struct.pack("<II", 1, 32))
assert c > 0
if how == "drop":   # the vbd (devid 51712)
	m = list(re.finditer(re.escape(struct.pack("<I", 0x80706d03)) + b"(....)" +
			     re.escape(struct.pack("<II", 1, 51712)), s, re.S))[-1]
	ln = struct.unpack("<I", m.group(1))[0]
	end = m.start() + 8 + ((ln + 7) & ~7)
	del s[m.start():end]
	c -= end - m.start()
else:               # the vif (devid 0): its first ring's kind -> BLK
	m = list(re.finditer(re.escape(struct.pack("<I", 0x80706d03)) + b"(....)" +
			     re.escape(struct.pack("<II", 2, 0)), s, re.S))[-1]
	b = m.start() + 8
	fel, bel = struct.unpack_from("<HH", s, b + 24)
	ring = b + 32 + ((fel + bel + 7) & ~7)
	assert s[ring + 2] == 1, s[ring + 2]     # NET_TX
	s[ring + 2] = 0
struct.pack_into("<Q", s, c + 16, c)
s[c + 24:c + 56] = hashlib.sha256(bytes(s[:c])).digest()
open(dst, "wb").write(bytes(f[:start]) + bytes(s))
PY
}
create dmg legacy
P save dmg "$W/dmg.pvm" >/dev/null 2>&1 || bad "save dmg"
ndom=$(P list --json | grep -o '"domid"' | wc -l)
for how in drop corrupt; do
	if ! tamper "$W/dmg.pvm" "$W/dmg-$how.pvm" $how 2>"$W/tamper.err"; then
		bad "cannot make the $how file: $(cat "$W/tamper.err")"; continue
	fi
	want="no PVMIG_DEVICE record for vbd xvda"
	[ $how = corrupt ] && want="vif 0: its PVMIG_DEVICE record is corrupt"
	if P restore "$W/dmg-$how.pvm" >"$W/r.out" 2>&1; then
		bad "restore with a $how device record succeeded"
	elif grep -q "$want" "$W/r.out" && ! P status dmg >/dev/null 2>&1 &&
	     [ "$(P list --json | grep -o '"domid"' | wc -l)" = "$ndom" ]; then
		ok "device record $how: $(cat "$W/r.out"); no domain left"
	else
		bad "device record $how: $(cat "$W/r.out"); domains: $(P list)"
	fi
done
P restore "$W/dmg.pvm" --json >"$W/rest.json" 2>&1 && restored_ok "the undamaged file" "$W/rest.json" ||
	bad "the undamaged file: $(cat "$W/rest.json")"
P destroy dmg >/dev/null

# ---- a legacy guest's domid taken on the restoring host: refused up front ---
# (a second pvmigd whose first guest takes the domid the legacy guest had)
"$PVMIGD" --backend sim --state-dir "$W/s2" --foreground >>"$W/pvmigd2.log" 2>&1 &
D2=$!
for _ in $(seq 100); do "$PVMIG" -H "$W/s2" info >/dev/null 2>&1 && break; sleep 0.05; done
"$PVMIG" -H "$W/s2" create --name squatter --memory 16M --workload content:counter,dirty:16:64:100 >/dev/null 2>&1 ||
	bad "create the squatter"
sq=$("$PVMIG" -H "$W/s2" status squatter --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["domid"])')
lid=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["domid"])' <"$W/legacy-verify.json" 2>/dev/null)
if [ -n "$sq" ] && [ "$sq" = "$lid" ]; then
	n0=$("$PVMIG" -H "$W/s2" list --json | grep -o '"domid"' | wc -l)
	if "$PVMIG" -H "$W/s2" restore "$W/legacy.pvm" >"$W/r.out" 2>&1; then
		bad "legacy restore onto a taken domid succeeded"
	elif grep -q "need their saved domid $lid back, and domain 'squatter' has it" "$W/r.out" &&
	     [ "$("$PVMIG" -H "$W/s2" list --json | grep -o '"domid"' | wc -l)" = "$n0" ]; then
		ok "legacy domid taken: $(cat "$W/r.out")"
	else
		bad "legacy domid taken: $(cat "$W/r.out")"
	fi
else
	bad "the squatter got domid '$sq', the legacy guest had '$lid': cannot test a taken domid"
fi
kill $D2; wait $D2 2>/dev/null; D2=

fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
