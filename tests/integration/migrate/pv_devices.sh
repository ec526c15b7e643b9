#!/usr/bin/env bash
# PV disk and network I/O across live migrations, both frontend
# generations: a guest of each runs a block workload (checksummed writes
# read back) and numbered packets to an echo peer, and is moved A->B->A
# three times with memory verified. Its own counters must show no
# verification failure, I/O error, lost, duplicated or reordered packet,
# and must keep moving after every move.
#   $1 = build dir
set -uo pipefail
B=$(cd "$1" && pwd)
PVMIG=$B/pvmig PVMIGD=$B/pvmigd
W=$(mktemp -d /tmp/pvmig-it-pv.XXXXXX)
. "$(dirname "$0")/../lib.sh"
cleanup() {
	stop_hosts
	[ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
command -v python3 >/dev/null || { echo "skip: python3 is needed"; exit 77; }
command -v xenstore-read >/dev/null || { echo "skip: xenstore-utils is needed to read the guest's counters"; exit 77; }
start_hosts a b

# check_clean WHAT BEFORE AFTER GEN
# Nothing may fail, repeat or reorder. Packets: none lost with the legacy
# frontend (its rings go on as they were). The modern frontend does what
# Linux netfront does on resume: it drops its old rings, and with them the
# echo replies that sat unconsumed in its rx ring at the pause; so it may
# lose at most one ring's worth of replies and tx frames in flight
# (VIF_NRX 16 + VIF_NTX 8 = 24) per NIC and move, and nothing else.
# check_clean WHAT BEFORE AFTER GEN [NICS]
check_clean() {
	local e=0 lost nics=${5:-1}
	for k in blk-verify-fail blk-io-errors net-dup net-ooo; do
		[ "$(val $k "$3")" = 0 ] || e=1
	done
	lost=$(( $(val net-lost "$3") - $(val net-lost "$2") ))
	if [ "$4" = legacy ]; then [ "$lost" = 0 ] || e=1; else [ "$lost" -le $((24 * nics)) ] || e=1; fi
	[ $e = 0 ] && ok "$1: no I/O error, $lost packets lost in this move ($3)" || bad "$1: I/O errors (lost $lost in this move): $3"
}

truncate -s 32M "$W/legacy.img" "$W/modern.img"

# A modern guest that advertises suspend but does not answer (noack), with
# flat-out I/O. It does not know it is moved, so its frontends keep their
# rings: a cooperative move (fresh backends) would leave its devices dead.
# Auto mode refuses before the pause, naming the cause, and the guest runs
# on here, clean; --pv-mode transparent moves it (same domid), its
# backends re-attached to its rings: nothing lost, nothing out of order.
# Run first, on empty hosts, so that its domid is free on both.
# (A simulated modern guest once re-handshook after any restore, which
# hid this and reordered 8 replies in 1 of 4 such moves.)
h1=a h2=b
truncate -s 32M "$W/mute.img"
"$PVMIG" -H "$W/$h1" create --name mute --memory 64M --disk "$W/mute.img" --nic \
	--frontend modern --workload "content:counter,blk:0,net:0,noack" >/dev/null || bad "create mute"
sleep 1
before=$(counters $h1 mute)
if "$PVMIG" -H "$W/$h1" migrate mute "127.0.0.1:${PORT[$h2]}" --suspend-timeout 100 >/dev/null 2>"$W/err"; then
	bad "mute: moved cooperatively though it never suspended"
elif grep -q "advertises control/feature-suspend but did not suspend (no acknowledgement within 100 ms (request withdrawn)): its PV frontends would not reconnect on the destination" "$W/err" &&
     "$PVMIG" -H "$W/$h1" status mute --json | grep -q '"state":"running"' &&
     ! "$PVMIG" -H "$W/$h2" status mute >/dev/null 2>&1; then
	ok "mute (auto): refused before the pause, runs on here: $(cat "$W/err")"
else
	bad "mute (auto): $(cat "$W/err"); here: $("$PVMIG" -H "$W/$h1" status mute 2>&1); there: $("$PVMIG" -H "$W/$h2" status mute 2>&1)"
fi
sleep 1
check_clean "mute after the refused move" "$before" "$(counters $h1 mute)" legacy
for round in 1 2; do
	before=$(counters $h1 mute)
	if "$PVMIG" -H "$W/$h1" migrate mute "127.0.0.1:${PORT[$h2]}" --suspend-timeout 100 --pv-mode transparent --json >"$W/out" 2>"$W/err"; then
		sleep 1.5
		after=$(counters $h2 mute)
		[ "$(val blk-reads "$after")" -gt "$(val blk-reads "$before")" ] 2>/dev/null &&
			ok "mute --pv-mode transparent, move $round: I/O goes on" || bad "mute move $round stalled: $before / $after"
		check_clean "mute --pv-mode transparent, move $round (suspend $(jfield "$W/out" suspend))" "$before" "$after" legacy
		t=$h1; h1=$h2; h2=$t
	else
		bad "mute --pv-mode transparent, move $round: $(cat "$W/err")"
		break
	fi
done
"$PVMIG" -H "$W/$h1" destroy mute >/dev/null 2>&1

# A transparent reconnect (legacy frontends) needs the guest's domid on the
# destination: with it taken there, the migration is refused before the
# guest is paused, and the guest runs on here. (Both hosts are empty: the
# first guest of each gets the same domid.)
"$PVMIG" -H "$W/b" create --name squatter --memory 16M --workload content:counter >/dev/null || bad "create squatter"
"$PVMIG" -H "$W/a" create --name lg --memory 64M --disk "$W/legacy.img" --nic --frontend legacy \
	--workload "content:counter,blk:1000,net:1000" >/dev/null || bad "create lg"
sleep 1
lgid=$(domid_of a lg)
sqid=$(domid_of b squatter)
before=$(counters a lg)
if [ "$lgid" != "$sqid" ]; then
	bad "legacy guest got domid $lgid, the squatter $sqid: cannot test a taken domid"
elif "$PVMIG" -H "$W/a" migrate lg "127.0.0.1:${PORT[b]}" --json >"$W/out" 2>"$W/err"; then
	bad "migration of a legacy guest onto a taken domid succeeded"
elif grep -q "needs its domid $lgid, and domid $lgid is taken on the destination" "$W/err" &&
     ! grep -q '"pause_ms"\|"downtime_ms"' "$W/out" &&
     "$PVMIG" -H "$W/a" status lg --json | grep -q '"state":"running"'; then
	sleep 1.5
	after=$(counters a lg)
	[ "$(val blk-reads "$after")" -gt "$(val blk-reads "$before")" ] 2>/dev/null &&
		ok "legacy guest, domid taken on the destination: refused before the pause ($(cat "$W/err")), runs on here" ||
		bad "legacy guest after the refused move: I/O stalled: $before / $after"
	check_clean "legacy guest after the refused move" "$before" "$after" legacy
else
	bad "legacy guest, domid taken: $(cat "$W/err" "$W/out")"
fi
"$PVMIG" -H "$W/a" destroy lg >/dev/null
"$PVMIG" -H "$W/b" destroy squatter >/dev/null
for gen in legacy modern; do
	"$PVMIG" -H "$W/a" create --name $gen --memory 64M --vcpus 2 \
		--disk "$W/$gen.img" --nic --frontend $gen \
		--workload "content:counter,dirty:16:4000:4000,blk:1000,net:1000" >/dev/null || bad "create $gen"
done
sleep 1
here=a there=b
for round in 1 2 3; do
	for gen in legacy modern; do
		before=$(counters $here $gen)
		out=$("$PVMIG" -H "$W/$here" migrate $gen "127.0.0.1:${PORT[$there]}" --verify-memory --json 2>"$W/err")
		if python3 -c '
import json,sys
r=json.loads(sys.argv[1])["result"]
assert r["result"]=="done" and r["memory"]=="identical on both hosts", r
assert r["devices"]=="all reconnected" and str(r["devices_quiesced"])=="2", r
# A modern guest answers the suspend request; a legacy one advertises no
# control/feature-suspend and is quiesced from the backend side alone.
want = "cooperative" if sys.argv[2] == "modern" else "non-cooperative: the guest does not advertise control/feature-suspend"
assert r["suspend"] == want, r
# ... and its devices reconnect as it allows (auto mode).
assert r["pv_mode"] == ("cooperative" if sys.argv[2] == "modern" else "transparent"), r' "$out" $gen 2>/dev/null; then
			ok "$gen: move $round $here->$there, memory identical, suspend $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["result"]["suspend"])' "$out"), 2 devices quiesced and reconnected"
		else
			bad "$gen: move $round $here->$there: $out $(cat "$W/err")"
			continue
		fi
		# The workload goes on where it was, on the other host.
		sleep 1.5
		after=$(counters $there $gen)
		if [ "$(val blk-reads "$after")" -gt "$(val blk-reads "$before")" ] 2>/dev/null &&
		   [ "$(val net-received "$after")" -gt "$(val net-received "$before")" ] 2>/dev/null; then
			ok "$gen: disk and network I/O continue after move $round"
		else
			bad "$gen: I/O stalled after move $round: before $before / after $after"
		fi
		check_clean "$gen after move $round" "$before" "$after" $gen
	done
	t=$here; here=$there; there=$t
done
# Heavy block and network I/O (flat out: requests are in flight at every
# instant, so at the pause too), with pvquiesce: still clean.
for gen in legacy modern; do
	truncate -s 32M "$W/heavy-$gen.img"
	"$PVMIG" -H "$W/$here" create --name heavy-$gen --memory 64M --disk "$W/heavy-$gen.img" --nic \
		--frontend $gen --workload "content:counter,blk:0,net:0" >/dev/null || bad "create heavy-$gen"
	sleep 1
	before=$(counters $here heavy-$gen)
	if "$PVMIG" -H "$W/$here" migrate heavy-$gen "127.0.0.1:${PORT[$there]}" --verify-memory --json >"$W/out" 2>"$W/err"; then
		sleep 1.5
		after=$(counters $there heavy-$gen)
		[ "$(val blk-reads "$after")" -gt "$(val blk-reads "$before")" ] 2>/dev/null &&
			ok "heavy-$gen: I/O goes on after the move" || bad "heavy-$gen stalled: $before / $after"
		check_clean "heavy-$gen (flat-out I/O, requests in flight at the pause; suspend $(jfield "$W/out" suspend), downtime $(jfield "$W/out" downtime_ms) ms)" "$before" "$after" $gen
		"$PVMIG" -H "$W/$there" destroy heavy-$gen >/dev/null
	else
		bad "heavy-$gen migration: $(cat "$W/err")"
	fi
done

# Idle guests (devices, no PV I/O): the devices come back, nothing counted
# wrong.
for gen in legacy modern; do
	truncate -s 8M "$W/idle-$gen.img"
	"$PVMIG" -H "$W/$here" create --name idle-$gen --memory 64M --disk "$W/idle-$gen.img" --nic \
		--frontend $gen --workload "content:counter,dirty:16:2000:2000" >/dev/null || bad "create idle-$gen"
	sleep 1
	out=$("$PVMIG" -H "$W/$here" migrate idle-$gen "127.0.0.1:${PORT[$there]}" --json 2>"$W/err")
	sleep 0.5
	after=$(counters $there idle-$gen)
	if python3 -c '
import json,sys
r=json.loads(sys.argv[1])["result"]
assert r["result"]=="done" and r["devices"]=="all reconnected", r' "$out" 2>/dev/null; then
		check_clean "idle-$gen: devices reconnected" "$after" "$after" $gen
	else
		bad "idle-$gen: $out $(cat "$W/err")"
	fi
	"$PVMIG" -H "$W/$there" destroy idle-$gen >/dev/null 2>&1
done

# A modern guest moved to a host where its domid is taken gets another
# one there, and with it new backend directories
# (/local/domain/0/backend/vbd/NEW/...): its frontends must find them on
# resume, as xenbus re-reads "backend" (they once kept the old path and
# sat in Initialising; the destination waited 10 s and left both devices
# dead).
truncate -s 8M "$W/renum.img"
"$PVMIG" -H "$W/$here" create --name renum --memory 64M --disk "$W/renum.img" --nic \
	--frontend modern --workload "content:counter,blk:200,net:200" >/dev/null || bad "create renum"
old=$(domid_of $here renum)
holds=()
for i in $(seq 1 16); do
	"$PVMIG" -H "$W/$there" list --json | python3 -c '
import json,sys
sys.exit(0 if any(str(d.get("domid"))==sys.argv[1] for d in json.load(sys.stdin)["items"]) else 1)' "$old" && break
	"$PVMIG" -H "$W/$there" create --name hold$i --memory 16M --workload content:counter,idle >/dev/null && holds+=(hold$i)
done
sleep 1
before=$(counters $here renum)
out=$("$PVMIG" -H "$W/$here" migrate renum "127.0.0.1:${PORT[$there]}" --json 2>"$W/err")
new=$(domid_of $there renum)
if python3 -c '
import json,sys
r=json.loads(sys.argv[1])["result"]
assert r["result"]=="done" and r["devices"]=="all reconnected", r' "$out" 2>/dev/null && [ -n "$new" ] && [ "$new" != "$old" ]; then
	sleep 1.5
	after=$(counters $there renum)
	[ "$(val blk-reads "$after")" -gt "$(val blk-reads "$before")" ] 2>/dev/null &&
		ok "modern guest renumbered $old -> $new on the destination: devices reconnected, I/O goes on" ||
		bad "renum stalled after becoming domain $new: $before / $after"
	check_clean "renum (new domid)" "$before" "$after" modern
else
	bad "renum (domid $old taken on the destination, now '$new'): $out $(cat "$W/err")"
fi
"$PVMIG" -H "$W/$there" destroy renum >/dev/null 2>&1
for h in "${holds[@]}"; do "$PVMIG" -H "$W/$there" destroy $h >/dev/null 2>&1; done

# 16 PV devices (8 disks + 8 NICs, the simulated host's limit), each
# generation, I/O on all of them: one move, everything reconnects, clean.
for gen in legacy modern; do
	args=()
	for i in 1 2 3 4 5 6 7 8; do truncate -s 4M "$W/m$gen$i.img"; args+=(--disk "$W/m$gen$i.img" --nic); done
	"$PVMIG" -H "$W/$here" create --name many-$gen --memory 64M "${args[@]}" --frontend $gen \
		--workload "content:counter,blk:200,net:200" >/dev/null || bad "create many-$gen"
	sleep 1.5
	before=$(counters $here many-$gen)
	out=$("$PVMIG" -H "$W/$here" migrate many-$gen "127.0.0.1:${PORT[$there]}" --json 2>"$W/err")
	if python3 -c '
import json,sys
r=json.loads(sys.argv[1])["result"]
assert r["result"]=="done" and r["devices"]=="all reconnected" and str(r["devices_quiesced"])=="16", r' "$out" 2>/dev/null; then
		sleep 1.5
		after=$(counters $there many-$gen)
		[ "$(val blk-reads "$after")" -gt "$(val blk-reads "$before")" ] 2>/dev/null &&
			ok "many-$gen: 16 devices quiesced and reconnected, I/O goes on" || bad "many-$gen stalled: $before / $after"
		check_clean "many-$gen (16 devices)" "$before" "$after" $gen 8
		"$PVMIG" -H "$W/$there" destroy many-$gen >/dev/null
	else
		bad "many-$gen: $out $(cat "$W/err")"
		"$PVMIG" -H "$W/$here" destroy many-$gen >/dev/null 2>&1
	fi
done

# A stuck disk (dom0's pvmig-stall = 1 in its backend directory: the
# backend takes a request and hangs on it) with --drain-timeout 300: the
# migration fails at the pause, naming the disk and the bound; the guest
# runs on here, nothing is left on the destination, and once the disk
# answers again its I/O goes on clean.
truncate -s 8M "$W/stuck.img"
"$PVMIG" -H "$W/$here" create --name stuck --memory 64M --disk "$W/stuck.img" --nic \
	--frontend modern --workload "content:counter,blk:500,net:500" >/dev/null || bad "create stuck"
sleep 1
sid=$(domid_of $here stuck)
before=$(counters $here stuck)
knob=/local/domain/0/backend/vbd/$sid/51712/pvmig-stall
XENSTORED_PATH=$W/$here/xenstore.sock xenstore-write $knob 1
sleep 0.3
if "$PVMIG" -H "$W/$here" migrate stuck "127.0.0.1:${PORT[$there]}" --drain-timeout 300 >"$W/out" 2>"$W/err"; then
	bad "migration with a stuck disk succeeded"
elif grep -q "vbd xvda (51712) of domain $sid did not drain within 300 ms" "$W/err" &&
     "$PVMIG" -H "$W/$here" status stuck --json | grep -q '"state":"running"'; then
	ok "stuck disk, --drain-timeout 300: $(head -1 "$W/err"); the guest runs here"
else
	bad "stuck disk, --drain-timeout 300: $(cat "$W/err" "$W/out"); $("$PVMIG" -H "$W/$here" status stuck)"
fi
for _ in $(seq 50); do "$PVMIG" -H "$W/$there" status stuck >/dev/null 2>&1 || break; sleep 0.1; done
"$PVMIG" -H "$W/$there" status stuck >/dev/null 2>&1 && bad "the destination kept a copy of stuck" ||
	ok "nothing of stuck left on the destination"
XENSTORED_PATH=$W/$here/xenstore.sock xenstore-rm $knob
sleep 1.5
after=$(counters $here stuck)
[ "$(val blk-reads "$after")" -gt "$(val blk-reads "$before")" ] 2>/dev/null &&
	ok "stuck: the disk answers again, I/O goes on" || bad "stuck: I/O stalled: $before / $after"
check_clean "stuck (no move)" "$before" "$after" legacy
"$PVMIG" -H "$W/$here" destroy stuck >/dev/null

# Without pvquiesce the seed problem shows: a legacy frontend, which never
# re-handshakes, is left without a working disk and network. Its block I/O
# runs flat out (blk:0) so that requests are in flight at the pause, as the
# issue asks; with an idle ring the fresh backend could pick it up by luck.
"$PVMIG" -H "$W/$here" create --name bare --memory 64M --disk "$W/legacy.img" --nic \
	--frontend legacy --workload "content:counter,blk:0,net:0" >/dev/null || bad "create bare"
sleep 1
out=$("$PVMIG" -H "$W/$here" migrate bare "127.0.0.1:${PORT[$there]}" --no-quiesce --json 2>"$W/err")
before=$(counters $there bare)
sleep 1.5
after=$(counters $there bare)
devs=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["result"].get("devices","?"))' "$out" 2>/dev/null)
# The failure shows one way or another: the disk stops, or reads come back
# wrong (the fresh backend starts the old ring at index 0), or I/O errors.
if [ "$(val blk-reads "$after")" = "$(val blk-reads "$before")" ] ||
   [ "$(val blk-verify-fail "$after")" -gt 0 ] || [ "$(val blk-io-errors "$after")" -gt 0 ]; then
	ok "legacy without pvquiesce fails as the seed problem says (devices: $devs; $after)"
else
	bad "legacy without pvquiesce kept working?! devices '$devs', before $before, after $after"
fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
