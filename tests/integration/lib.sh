# Shared by the integration test scripts (sourced, not run): the pass/fail
# tally, a free loopback port, and reading one field of "k=v k=v" text.
# A script ends with: echo "$passes passed, $fails failed"; [ "$fails" -eq 0 ]
fails=0 passes=0
ok() { echo "ok: $*"; passes=$((passes + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
port_of() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
val() { sed -E "s/.*$1=([^ ]*).*/\\1/" <<<"$2"; }

# ---- pvmigd hosts (simulated Xen hosts) ----------------------------------
# For the scripts that run two or more pvmigd. The caller sets W (its
# scratch directory), PVMIG and PVMIGD before calling; host NAME keeps its
# state in $W/NAME, its config in $W/NAME.conf and its log in $W/NAME.log.
# Optional, per host, set before start_host (unset: the default):
#   PORT[NAME]    its TLS port (default: a free loopback port, then kept)
#   LISTEN[NAME]  its listen address (default 127.0.0.1)
#   CERT[NAME]    its certificate, without .pem/.key (default
#                 $W/certs/hostNAME); the CA is ca.pem beside it
#   WRAP[NAME]    a command prefix pvmigd runs under ("ip netns exec NS")
#   ALLOW[NAME]   its allow-peers (default *: every certificate of the CA)
#   ROOTS[NAME]   its storage-roots (default $W, where the tests' disks are;
#                 - for none)
# and PVMIGD_OPTS, an array of extra pvmigd options for every host.
# Each running host's pvmigd PID is in PID[NAME]; the caller's EXIT trap
# calls stop_hosts (by PID, never by name).
declare -A PID PORT CERT LISTEN WRAP ALLOW ROOTS
PVMIGD_OPTS=()
# start_host NAME [CONF-LINE...]: writes $W/NAME.conf (state-dir, listen,
# port, tls-*, then each CONF-LINE as given: "key = value"), starts
# `pvmigd --foreground` and waits until `pvmig info` answers; exits the
# script with pvmigd's log if it never does. Environment assignments before
# the call reach pvmigd: PVMIG_FAULT=... start_host a.
start_host() {
	local h=$1 line; shift
	[ -n "${PORT[$h]:-}" ] || PORT[$h]=$(port_of)
	local cert=${CERT[$h]:-$W/certs/host$h}
	mkdir -p "$W/$h"
	{
		printf 'state-dir = %s\nlisten = %s\nport = %s\n' "$W/$h" "${LISTEN[$h]:-127.0.0.1}" "${PORT[$h]}"
		printf 'tls-ca = %s\ntls-cert = %s.pem\ntls-key = %s.key\n' "$(dirname "$cert")/ca.pem" "$cert" "$cert"
		printf 'allow-peers = %s\n' "${ALLOW[$h]:-*}"
		[ "${ROOTS[$h]:-}" = - ] || printf 'storage-roots = %s\n' "${ROOTS[$h]:-$W}"
		for line in "$@"; do echo "$line"; done
	} >"$W/$h.conf"
	# shellcheck disable=SC2086 # WRAP is a command prefix, split on purpose
	${WRAP[$h]:-} "$PVMIGD" --config "$W/$h.conf" --foreground "${PVMIGD_OPTS[@]}" 2>>"$W/$h.log" &
	PID[$h]=$!
	for _ in $(seq 100); do "$PVMIG" -H "$W/$h" info >/dev/null 2>&1 && return 0; sleep 0.05; done
	echo "pvmigd $h did not start:"; cat "$W/$h.log"; exit 1
}
# start_hosts [NAME...] (default: a b): certificates for hosta, hostb and
# each hostNAME in $W/certs unless made already (each with the address
# 127.0.0.1, which migrations name as their target), then start_host each.
start_hosts() {
	[ $# -gt 0 ] || set -- a b
	local h names=(hosta,127.0.0.1 hostb,127.0.0.1)
	if [ ! -f "$W/certs/ca.pem" ]; then
		for h in "$@"; do [[ " ${names[*]} " == *" host$h,"* ]] || names+=("host$h,127.0.0.1"); done
		"$PVMIG" tls-init "$W/certs" "${names[@]}" >/dev/null 2>&1 || { echo "pvmig tls-init failed"; exit 1; }
	fi
	for h in "$@"; do start_host "$h"; done
}
# stop_host NAME [SIGNAL]: signal its pvmigd (TERM), wait for it to end;
# kill_host NAME: the same with KILL. No-ops for a host not running.
stop_host() {
	[ -n "${PID[$1]:-}" ] || return 0
	kill -"${2:-TERM}" "${PID[$1]}" 2>/dev/null || true
	wait "${PID[$1]}" 2>/dev/null || true
	unset "PID[$1]"
}
kill_host() { stop_host "$1" KILL; }
# stop_hosts: every running host (for the EXIT trap), all signalled first
# and then all waited for, so that they shut down side by side.
stop_hosts() {
	local h
	for h in "${!PID[@]}"; do kill "${PID[$h]}" 2>/dev/null || true; done
	for h in "${!PID[@]}"; do wait "${PID[$h]}" 2>/dev/null || true; done
	PID=()
}
# state HOST DOMAIN -> DOMAIN's state on HOST (running, paused, ...),
# "absent", or "no-host" when HOST's pvmigd does not answer
state() {
	"$PVMIG" -H "$W/$1" list --json 2>/dev/null | python3 -c '
import json,sys
try: d=json.load(sys.stdin)
except Exception: print("no-host"); sys.exit()
n=sys.argv[1]
print(next((i["state"] for i in d["items"] if i["name"]==n), "absent"))' "$2"
}
# expect_state HOST DOMAIN STATE WHAT: ok WHAT if DOMAIN is STATE on HOST
expect_state() {
	local s; s=$(state "$1" "$2")
	[ "$s" = "$3" ] && ok "$4 ($1: $2 $s)" || bad "$4: on $1 '$2' is '$s', expected '$3'"
}
# domid_of HOST DOMAIN -> its domid there (status 1 when it has none)
domid_of() { "$PVMIG" -H "$W/$1" status "$2" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["domid"])' 2>/dev/null; }
# jfield FILE KEY: KEY of the result in a --json answer saved in FILE ("?" if absent)
jfield() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["result"].get(sys.argv[2],"?"))' "$1" "$2" 2>/dev/null; }
# counters HOST DOMAIN -> "key=value ..." of the simulated guest's workload
# counters (xenstore data/workload/*; "?" for one it cannot read)
counters() {
	local domid k
	domid=$(domid_of "$1" "$2") || return 1
	for k in blk-writes blk-reads blk-verify-fail blk-io-errors net-sent net-received net-lost net-dup net-ooo; do
		printf '%s=%s ' "$k" "$(XENSTORED_PATH=$W/$1/xenstore.sock xenstore-read "/local/domain/$domid/data/workload/$k" 2>/dev/null || echo '?')"
	done
}
