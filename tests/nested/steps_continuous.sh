# Continuous checkpoints on real Xen: libxenguest's checkpointed stream
# cut into a checkpoint directory's epoch files (checkpoint/xen.c). Sourced
# by run.sh; each function is one step for its `step NAME FUNC`.
#
#   ck_run      pvmig checkpoint --epochs 3 --lz4 of the running domU:
#               4 epochs committed (the base and 3 deltas), the guest
#               keeps running with its vif and vbd fine
#   ck_restore  the domU is lost (xl destroy); pvmig restore DIR brings
#               back the newest epoch: its tick counter carries on from
#               where it was (not a reboot) and its checks pass
# The directory is removed after use: dom0's root is a 1 GiB tmpfs.

CK_T0=

ck_run() {
	local out e
	on "rm -rf /tmp/ck /tmp/ck.err"
	CK_T0=$(tick a)
	[ -n "$CK_T0" ] || { fail "no tick from the domU before the checkpoints"; return 1; }
	out=$(on "$PVMIG checkpoint $DOMU /tmp/ck --interval-ms 2000 --epochs 3 --lz4 --json 2>/tmp/ck.err")
	e=$?
	on "grep -h '\"epoch\"' /tmp/ck.err" | jq -c '{epoch, pause_ms, bytes, commit_ms}' 2>/dev/null | sed 's/^/  epoch: /'
	[ $e = 0 ] || { on "tail -n 5 /tmp/ck.err"; fail "pvmig checkpoint failed"; return 1; }
	echo "  result: $(jq -c '.result | {epochs, max_pause_ms, mean_pause_ms, bytes}' <<<"$out" 2>/dev/null || echo "$out")"
	[ "$(jq -r '.result.epochs' <<<"$out" 2>/dev/null)" = 3 ] || { fail "not 3 epochs"; return 1; }
	on "grep -qx 'epoch 3' /tmp/ck/MANIFEST" || { fail "MANIFEST does not name epoch 3"; return 1; }
	on "ls -l /tmp/ck | tail -n +2" | sed 's/^/  /'
	[ -n "$(xl_row)" ] || { fail "$DOMU is gone after the checkpoints"; return 1; }
	domu_ok a
}

ck_restore() {
	local out t rc=0
	[ -n "$CK_T0" ] || { echo "  no checkpoint directory from ck_run"; return 77; }
	on "xl destroy $DOMU" || { fail "xl destroy"; return 1; }
	[ -z "$(xl_row)" ] || { fail "$DOMU still exists"; return 1; }
	out=$(on "$PVMIG restore /tmp/ck --json" 2>&1) || {
		fail "pvmig restore /tmp/ck: $out"
		on "grep -v 'debug: xen: ' /tmp/pvmigd.log | tail -n 12 | sed 's/^/  /'"
		return 1
	}
	echo "  restore: $(jq -c '.result | {domid, name, epoch, files, stream_bytes, total_ms}' <<<"$out" 2>/dev/null || echo "$out")"
	[ "$(jq -r '.result.epoch' <<<"$out" 2>/dev/null)" = 3 ] || { fail "not epoch 3"; rc=1; }
	domu_ok a || rc=1
	t=$(tick a)
	echo "  tick before the checkpoints $CK_T0, after the restore $t"
	[ -n "$t" ] && [ "$t" -ge "$CK_T0" ] || { fail "the restored guest's counter ($t) is behind the one before the base ($CK_T0): not the checkpoint"; rc=1; }
	on "rm -rf /tmp/ck /tmp/ck.err"
	return $rc
}

continuous_steps() {
	step xen-continuous-checkpoint ck_run &&
		step xen-continuous-restore ck_restore
}
