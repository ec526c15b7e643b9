# Save/restore steps on real Xen (x86 PV through libxenguest/libxl), and
# interoperability with xl and Xen's stream tools. Sourced by run.sh; each
# function is one step for its `step NAME FUNC` and uses the harness's
# helpers: on (a command in dom0), fail, xl_row, $PVMIG, $DOMU.
#
#   sr_checkpoint        pvmig save -c: the guest keeps running, devices fine
#   sr_verify_stream     Xen's verify-stream-v2 accepts that file (xl format)
#   sr_save_restore      pvmig save (the guest is gone) + pvmig restore
#   sr_live_restore      pvmig save --live + pvmig restore
#   sr_xl_restores_pvmig pvmig save + xl restore
#   sr_pvmig_restores_xl xl save + pvmig restore
# After every restore the lab's nx-domu-check (vif, vbd, ping, HTTP) must
# pass. Save files are removed after use: dom0's root is a 1 GiB tmpfs.

sr_guest_ok() { domu_ok a; }
sr_gone() { [ -z "$(xl_row)" ] || { fail "$DOMU still exists after a save without -c"; return 1; }; }
# pvmig save ARGS... ; prints the result line
sr_save() {
	local out
	out=$(on "$PVMIG save $DOMU $* --json" 2>&1) || { fail "pvmig save $*: $out"; return 1; }
	echo "  save: $(jq -c '.result | {pause_ms, rounds, stream_bytes, total_ms}' <<<"$out" 2>/dev/null || echo "$out")"
}
sr_restore() {
	local out
	out=$(on "$PVMIG restore $1 --json" 2>&1) || { fail "pvmig restore $1: $out"; on "grep -v 'debug: xen: ' /tmp/pvmigd.log | tail -n 8 | sed 's/^/  /'"; return 1; }
	echo "  restore: $(jq -c '.result | {domid, name, stream_bytes, total_ms}' <<<"$out" 2>/dev/null || echo "$out")"
}

sr_checkpoint() {
	local v
	on "rm -f /tmp/*.pvm /tmp/*.save"
	sr_save /tmp/c.pvm --checkpoint || return 1
	v=$(on "$PVMIG verify /tmp/c.pvm --json" 2>&1) || { fail "pvmig verify: $v"; return 1; }
	echo "  verify: $(jq -c '.result // . | {sound, pages, file_bytes}' <<<"$v" 2>/dev/null || echo "$v")"
	[ -n "$(xl_row)" ] || { fail "$DOMU is gone after save -c"; return 1; }
	on "grep -qa DOMU-TICK /tmp/c.pvm" || { fail "the guest's memory is not in the file"; return 1; }
	sr_guest_ok
}

# Xen's own verifier (in dom0, or here from xen-utils-4.17): accepts
# pvmig's file, and rejects the same file cut short (so it can fail).
sr_verify_stream() {
	local x=/usr/lib/xen-4.17 out rc=0 v
	v="PYTHONPATH=$x/lib/python $x/bin/verify-stream-v2 -f xl"
	if ! on "test -x $x/bin/verify-stream-v2"; then
		local here
		here=$(ls "$REPO"/build*/tests/unit/checkpoint/xen-utils/root$x/bin/verify-stream-v2 2>/dev/null | head -n 1)
		[ -n "$here" ] || { fail "no verify-stream-v2 in dom0 nor here"; return 1; }
		"$NX" scp-from a /tmp/c.pvm "$LOGDIR/c.pvm" >/dev/null || { fail "cannot copy the file here"; return 1; }
		out=$(PYTHONPATH=${here%/bin/verify-stream-v2}/lib/python "$here" -f xl -v -i "$LOGDIR/c.pvm" 2>&1) || rc=$?
		head -c 1000000 "$LOGDIR/c.pvm" >"$LOGDIR/t.pvm"
		PYTHONPATH=${here%/bin/verify-stream-v2}/lib/python "$here" -f xl -i "$LOGDIR/t.pvm" >/dev/null 2>&1 && rc=99
		rm -f "$LOGDIR/c.pvm" "$LOGDIR/t.pvm"
	else
		out=$(on "$v -v -i /tmp/c.pvm 2>&1") || rc=$?
		on "head -c 1000000 /tmp/c.pvm >/tmp/t.pvm; $v -i /tmp/t.pvm >/dev/null 2>&1; r=\$?; rm -f /tmp/t.pvm; [ \$r != 0 ]" || rc=99
	fi
	echo "$out" | grep -v '^ *$' | tail -n 3 | sed 's/^/  /'
	[ $rc != 99 ] || { fail "verify-stream-v2 accepts a cut file: the check cannot fail"; return 1; }
	[ $rc = 0 ] || fail "verify-stream-v2 rejects pvmig's file (rc=$rc)"
}

sr_save_restore() {
	on "rm -f /tmp/*.pvm /tmp/*.save"
	sr_save /tmp/x.pvm && sr_gone && sr_restore /tmp/x.pvm && sr_guest_ok
}
sr_live_restore() {
	on "rm -f /tmp/*.pvm /tmp/*.save"
	sr_save /tmp/l.pvm --live && sr_gone && sr_restore /tmp/l.pvm && sr_guest_ok
}
sr_xl_restores_pvmig() {
	local out
	on "rm -f /tmp/*.pvm /tmp/*.save"
	sr_save /tmp/x.pvm && sr_gone || return 1
	out=$(on "xl restore /tmp/x.pvm" 2>&1) || { echo "$out" | tail -n 8 | sed 's/^/  /'; fail "xl restore refuses pvmig's file"; return 1; }
	sr_guest_ok
}
sr_pvmig_restores_xl() {
	local out
	on "rm -f /tmp/*.pvm /tmp/*.save"
	out=$(on "xl save $DOMU /tmp/d.save" 2>&1) || { echo "$out" | tail -n 4; fail "xl save failed"; return 1; }
	sr_gone && sr_restore /tmp/d.save && sr_guest_ok
	local rc=$?
	on "rm -f /tmp/*.pvm /tmp/*.save"
	return $rc
}

# The steps, in order (run.sh calls this where they belong).
saverestore_steps() {
	step xen-save-checkpoint sr_checkpoint
	step xen-verify-stream-v2 sr_verify_stream
	step xen-save-restore sr_save_restore
	step xen-live-save-restore sr_live_restore
	step xl-restore-of-pvmig-file sr_xl_restores_pvmig
	step pvmig-restore-of-xl-file sr_pvmig_restores_xl
}
