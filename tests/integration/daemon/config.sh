#!/usr/bin/env bash
# pvmigd --version, --check-config and the checks pvmigd makes at start:
# the exact message and exit status for each bad file, a good file
# accepted, and a start refused for what --check-config refuses.
#   $1 = build dir
set -uo pipefail
B=$(cd "$1" && pwd)
PVMIG=$B/pvmig PVMIGD=$B/pvmigd
. "$(dirname "$0")/../lib.sh"
W=$(mktemp -d /tmp/pvmig-it-config.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$W"' EXIT
"$PVMIG" tls-init "$W/certs" hosta hostb >/dev/null 2>&1 || { echo "FAIL: tls-init"; exit 1; }

# expect WHAT STATUS 'STDERR' CMD...: CMD exits STATUS and prints exactly
# STDERR on stderr (one line, compared whole; a starting pvmigd's leading
# time stamp, "2026-12-08T01:02:03.456Z ", checked and taken off first).
STAMP='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z '
expect() {
	local what=$1 want_rc=$2 want_err=$3; shift 3
	"$@" >"$W/out" 2>"$W/err"; local rc=$?
	if [ "${STAMPED:-}" ]; then
		grep -Eq "$STAMP" "$W/err" || bad "$what: no time stamp in '$(cat "$W/err")'"
		sed -Ei "s/$STAMP//" "$W/err"
	fi
	if [ $rc -eq "$want_rc" ] && [ "$(cat "$W/err")" = "$want_err" ]; then
		ok "$what (exit $rc${want_err:+: $want_err})"
	else
		bad "$what: exit $rc (want $want_rc), stderr '$(cat "$W/err")', want '$want_err'"
	fi
}
# conf NAME [LINE...]: $W/NAME.conf with a state dir, a listener and the
# three TLS files of hosta, then each LINE (a later key wins).
conf() {
	local n=$1; shift
	{
		printf 'state-dir = %s\nlisten = 127.0.0.1\nport = 0\n' "$W/st"
		printf 'tls-ca = %s\ntls-cert = %s\ntls-key = %s\n' "$W/certs/ca.pem" "$W/certs/hosta.pem" "$W/certs/hosta.key"
		local l; for l in "$@"; do echo "$l"; done
		echo "allow-peers = hostb, ops:all"
	} >"$W/$n.conf"
}

# 1. --version: one line, the version CMake gives both programs; pvmig's
#    and pvmigd's agree, and so does a running pvmigd's answer to info.
v1=$("$PVMIGD" --version) v2=$("$PVMIG" --version)
[[ $v1 =~ ^pvmigd\ [0-9]+\.[0-9]+\.[0-9]+$ ]] && [ "${v1#pvmigd }" = "${v2#pvmig }" ] &&
	ok "versions: '$v1', '$v2'" || bad "versions: '$v1', '$v2'"

# 2. A good file: exit 0, nothing on stderr, one line on stdout, nothing
#    started (no state dir made).
conf good
expect "good config accepted" 0 "" "$PVMIGD" --check-config --config "$W/good.conf"
grep -qx "$W/good.conf: ok (backend sim, state-dir $W/st, listening on 127.0.0.1 port 0, allow-peers hostb:migrate-in+query,ops:migrate-in+tunnel+query, TLS files checked)" "$W/out" &&
	ok "good config: $(cat "$W/out")" || bad "good config said '$(cat "$W/out")'"
[ ! -e "$W/st" ] && ok "--check-config started nothing" || bad "--check-config made $W/st"

# 3. Syntax errors (exit 2, FILE:LINE from the parser).
conf unknown "colour = blue"
expect "unknown key" 2 "pvmigd: error: $W/unknown.conf:7: unknown key 'colour' (see pvmigd.conf(5))" \
	"$PVMIGD" --check-config --config "$W/unknown.conf"
conf badval "streams = 99"
expect "value out of range" 2 "pvmigd: error: $W/badval.conf:7: bad value '99' for 'streams'" \
	"$PVMIGD" --check-config --config "$W/badval.conf"
conf noeq "listen 0.0.0.0"
expect "line without =" 2 "pvmigd: error: $W/noeq.conf:7: expected 'key = value', got 'listen 0.0.0.0'" \
	"$PVMIGD" --check-config --config "$W/noeq.conf"
expect "missing file" 2 "pvmigd: cannot read $W/none.conf: No such file or directory" \
	"$PVMIGD" --check-config --config "$W/none.conf"

# 4. The TLS files (exit 1, FILE:LINE of the key that names the file).
conf hostca "tls-ca = $W/certs/hostb.pem"
expect "host certificate as tls-ca" 1 "pvmigd: error: $W/hostca.conf:7: tls-ca $W/certs/hostb.pem: not a CA certificate: certificate 1 (/O=pvmig/CN=hostb) has no basicConstraints CA:TRUE (a host certificate? tls-ca is the ca.pem of pvmig tls-init)" \
	"$PVMIGD" --check-config --config "$W/hostca.conf"
conf mismatch "tls-key = $W/certs/hostb.key"
expect "key of another certificate" 1 "pvmigd: error: $W/mismatch.conf:7: tls-key $W/certs/hostb.key: does not match the certificate $W/certs/hosta.pem" \
	"$PVMIGD" --check-config --config "$W/mismatch.conf"
conf nokey "tls-key = $W/certs/nokey.key"
expect "missing key file" 1 "pvmigd: error: $W/nokey.conf:7: tls-key $W/certs/nokey.key: cannot read it: No such file or directory" \
	"$PVMIGD" --check-config --config "$W/nokey.conf"
conf nocert "tls-cert = $W/certs/hosta.key"
expect "key as tls-cert" 1 "pvmigd: error: $W/nocert.conf:7: tls-cert $W/certs/hosta.key: holds no PEM certificate" \
	"$PVMIGD" --check-config --config "$W/nocert.conf"
conf partial "tls-key ="
expect "TLS half configured" 1 "pvmigd: error: $W/partial.conf:4: tls-key missing: tls-ca, tls-cert and tls-key go together" \
	"$PVMIGD" --check-config --config "$W/partial.conf"
printf 'state-dir = %s\nlisten = 127.0.0.1\n' "$W/st" >"$W/notls.conf"
expect "listener without TLS" 1 "pvmigd: error: $W/notls.conf:2: listen = 127.0.0.1 needs tls-ca, tls-cert and tls-key (make them with pvmig tls-init)" \
	"$PVMIGD" --check-config --config "$W/notls.conf"

# 4b. Authorization is never a default: a listener without allow-peers is
#     refused, naming the key; the storage roots must be directories; a
#     tls-crl must hold a CRL.
grep -v '^allow-peers' "$W/good.conf" >"$W/nopeers.conf"
expect "listener without allow-peers" 1 "pvmigd: error: $W/nopeers.conf:2: listen = 127.0.0.1 needs allow-peers: name the peers that may send guests here (allow-peers = hosta,hostb), or say allow-peers = * to trust every certificate of tls-ca" \
	"$PVMIGD" --check-config --config "$W/nopeers.conf"
conf badroot "storage-roots = $W/nodir"
expect "storage root not a directory" 1 "pvmigd: error: $W/badroot.conf:7: storage-roots: $W/nodir is not a directory" \
	"$PVMIGD" --check-config --config "$W/badroot.conf"
conf badcrl "tls-crl = $W/certs/hosta.pem"
expect "tls-crl without a CRL" 1 "pvmigd: error: $W/badcrl.conf:7: tls-crl $W/certs/hosta.pem: holds no PEM certificate revocation list (pvmig tls-revoke makes one)" \
	"$PVMIGD" --check-config --config "$W/badcrl.conf"
conf badpeer "allow-peers = hosta:root"
expect "unknown right" 2 "pvmigd: error: $W/badpeer.conf:7: bad value 'hosta:root' for 'allow-peers'" \
	"$PVMIGD" --check-config --config "$W/badpeer.conf"

# 5. Relative paths are read against the current directory, as at start.
(cd "$W" && printf 'state-dir = st\ntls-ca = certs/hostb.pem\ntls-cert = certs/hosta.pem\ntls-key = certs/hosta.key\n' >rel.conf)
expect "relative tls-ca made absolute" 1 "pvmigd: error: rel.conf:2: tls-ca $W/certs/hostb.pem: not a CA certificate: certificate 1 (/O=pvmig/CN=hostb) has no basicConstraints CA:TRUE (a host certificate? tls-ca is the ca.pem of pvmig tls-init)" \
	bash -c "cd '$W' && exec '$PVMIGD' --check-config --config rel.conf"

# 6. The state dir: pvmigd makes one level, not two; a file is not a dir.
conf deep "state-dir = $W/a/b"
expect "state-dir two levels down" 1 "pvmigd: error: $W/deep.conf:7: state-dir $W/a/b does not exist, nor its parent $W/a (pvmigd makes one level)" \
	"$PVMIGD" --check-config --config "$W/deep.conf"
: >"$W/file"
expect "state-dir is a file" 1 "pvmigd: error: --state-dir: state-dir $W/file is not a directory" \
	"$PVMIGD" --check-config --config "$W/good.conf" --state-dir "$W/file"

# 7. At start, the same checks refuse before anything is bound, with the
#    same message and status, in the foreground and detached (the parent
#    reports the child's verdict), and nothing is left in the state dir.
STAMPED=1
expect "start refused: host certificate as tls-ca" 1 "pvmigd: error: $W/hostca.conf:7: tls-ca $W/certs/hostb.pem: not a CA certificate: certificate 1 (/O=pvmig/CN=hostb) has no basicConstraints CA:TRUE (a host certificate? tls-ca is the ca.pem of pvmig tls-init)" \
	timeout 20 "$PVMIGD" --config "$W/hostca.conf" --foreground
expect "start refused: missing key" 1 "pvmigd: error: $W/nokey.conf:7: tls-key $W/certs/nokey.key: cannot read it: No such file or directory" \
	timeout 20 "$PVMIGD" --config "$W/nokey.conf"
expect "start refused: no allow-peers" 1 "pvmigd: error: $W/nopeers.conf:2: listen = 127.0.0.1 needs allow-peers: name the peers that may send guests here (allow-peers = hosta,hostb), or say allow-peers = * to trust every certificate of tls-ca" \
	timeout 20 "$PVMIGD" --config "$W/nopeers.conf" --foreground
STAMPED=
[ ! -e "$W/st" ] && ok "refused starts left no state dir" || bad "a refused start made $W/st: $(ls -A "$W/st")"
# ...and a good file starts (a pvmigd that answers info with the version).
"$PVMIGD" --config "$W/good.conf" --foreground 2>"$W/good.log" & P=$!
for _ in $(seq 100); do "$PVMIG" -H "$W/st" info >/dev/null 2>&1 && break; sleep 0.05; done
iv=$("$PVMIG" -H "$W/st" info --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["version"])' 2>/dev/null)
[ "$iv" = "${v1#pvmigd }" ] && ok "a running pvmigd says version $iv" || bad "pvmig info version '$iv', log: $(cat "$W/good.log")"
kill -TERM $P; wait $P

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
