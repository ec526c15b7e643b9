#!/usr/bin/env bash
# `pvmig tunnel` between two pvmigd services on loopback, without Xen: the
# destination's tunnel-command is peer.py, which checksums what it gets and
# answers with its own bytes, in a request/reply exchange shaped like xl's
# migration protocol (client.py drives pvmig tunnel as xl does).
#   $1 = build dir (pvmig, pvmigd)
set -uo pipefail
B=$(cd "$1" && pwd)
D=$(cd "$(dirname "$0")" && pwd)
PVMIG=$B/pvmig PVMIGD=$B/pvmigd
W=$(mktemp -d /tmp/pvmig-it-tunnel.XXXXXX)
. "$D/../lib.sh"
cleanup() {
	stop_hosts
	# peer.py processes pvmigd started and lost track of (never expected)
	for f in "$W"/peer.*; do
		[ -f "$f" ] || continue
		for p in $(awk '{print $2}' "$f"); do kill "$p" 2>/dev/null; done
	done
	rm -rf "$W"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT

command -v python3 >/dev/null || { echo "skip: python3 is needed (the test's peer)"; exit 77; }
"$PVMIG" tls-init "$W/certs" hosta,127.0.0.1 hostb,127.0.0.1 >/dev/null 2>&1 || exit 1
"$PVMIG" tls-init "$W/other" hosta,127.0.0.1 >/dev/null 2>&1 || exit 1

# conf NAME CERTDIR CERTNAME: writes $W/NAME.conf, a client's (no listener)
conf() {
	printf 'state-dir = %s\ntls-ca = %s/ca.pem\ntls-cert = %s/%s.pem\ntls-key = %s/%s.key\n' \
		"$W/$1" "$2" "$2" "$3" "$2" "$3" >"$W/$1.conf"
}
PVMIGD_OPTS=(-v)
CERT[b]=$W/certs/hostb CERT[c]=$W/certs/hostb
# the tunnel right is never implied (it runs a command): granted by name
ALLOW[b]='hosta:all' ALLOW[c]='hosta:tunnel+query'
# pvmigd b runs peer.py for each tunnel; c has no tunnel-command
start_b() { start_host b "tunnel-command = python3 $D/peer.py $W/peer.b"; }
# tunnel CONF TARGET N EXIT BACK: client.py through pvmig tunnel; its line on stdout
tunnel() {
	python3 "$D/client.py" "$3" "$4" "$5" -- "$PVMIG" tunnel --config "$W/$1.conf" --stats "$2" 2>"$W/err"
}
# still_running MARKERFILE: the pids peer.py wrote that are still alive
still_running() { for p in $(awk '{print $2}' "$1" 2>/dev/null); do kill -0 "$p" 2>/dev/null && echo "$p"; done; }

conf a "$W/certs" hosta
conf bad "$W/other" hosta
start_b
start_host c 'tunnel-command = '
PB=${PORT[b]} PC=${PORT[c]}

# 1. Bytes intact both ways: 8 MiB + 1234 in pieces of odd sizes, 1 MiB back.
out=$(tunnel a "127.0.0.1:$PB" $((8 * 1048576 + 1234)) 0 1048576)
rc=$?
echo "  $out"; echo "  $(cat "$W/err")"
if [ $rc = 0 ] && [ "$(val sent_intact "$out")" = True ] && [ "$(val back_intact "$out")" = True ] &&
   [ "$(val rc "$out")" = 0 ] && [ "$(val eof "$out")" = True ]; then
	ok "8 MiB through the tunnel and 1 MiB back, checksums equal, exit 0"
else
	bad "tunnel exchange: $out $(cat "$W/err")"
fi
# The stream is compressible: lz4 must have shrunk it on the wire.
st=$(grep -o 'sent [0-9]* bytes as [0-9]* on the wire' "$W/err")
set -- $st
if [ -n "$st" ] && [ "$2" -ge $((8 * 1048576 + 1234)) ] && [ "$5" -lt "$2" ]; then
	ok "compressed on the wire: $2 bytes as $5"
else
	bad "no compression seen: '$st'"
fi

# 2. The remote command's exit status comes back as ours.
out=$(tunnel a "127.0.0.1:$PB" 100000 3 10)
echo "  $out"
if [ "$(val rc "$out")" = 3 ] && grep -q "exited with status 3" "$W/err"; then
	ok "remote exit status 3 -> pvmig tunnel exits 3 and says so"
else
	bad "exit status: $out $(cat "$W/err")"
fi

# 3. A client whose certificate another CA signed: no tunnel, no command.
n0=$(wc -l <"$W/peer.b")
out=$(tunnel bad "127.0.0.1:$PB" 1000 0 10)
echo "  $out"; echo "  $(tail -n 3 "$W/err")"
if [ "$(val rc "$out")" = 1 ] && [ "$(val stage "$out")" = start ] &&
   grep -q "cannot open a channel to pvmigd on 127.0.0.1:$PB" "$W/err" &&
   grep -q "pvmig tunnel: sent 0 bytes as 0 on the wire" "$W/err" &&
   [ "$(wc -l <"$W/peer.b")" = "$n0" ]; then
	ok "wrong certificate: refused with a clear message (and zero counts), the command never ran"
else
	bad "bad certificate: $out $(cat "$W/err")"
fi

# 3b. Named by a host name, the peer's certificate must carry it (b's says
# hostb, not localhost).
out=$(tunnel a "localhost:$PB" 1000 0 10)
echo "  $out"; echo "  $(head -n 1 "$W/err")"
if [ "$(val rc "$out")" = 1 ] && grep -q "peer certificate is for 'hostb', expected 'localhost'" "$W/err" &&
   [ "$(wc -l <"$W/peer.b")" = "$n0" ]; then
	ok "a host name not in the peer's certificate: refused, the command never ran"
else
	bad "host name check: $out $(cat "$W/err")"
fi

# 4. A pvmigd that runs no tunnels says so.
out=$(tunnel a "127.0.0.1:$PC" 1000 0 10)
echo "  $out"; echo "  $(cat "$W/err")"
if [ "$(val rc "$out")" = 1 ] && grep -q "refused the tunnel: .*tunnel-command is empty" "$W/err"; then
	ok "peer refuses (tunnel-command empty): exit 1 with its reason"
else
	bad "refusal: $out $(cat "$W/err")"
fi

# 5. The destination dies mid-stream: the tunnel ends at once with an error
# and closes xl's pipe; the command pvmigd ran does not outlive it.
: >"$W/peer.b"
python3 "$D/client.py" $((400 * 1048576)) 0 10 -- "$PVMIG" tunnel --config "$W/a.conf" "127.0.0.1:$PB" \
	>"$W/cut.out" 2>"$W/cut.err" &
CL=$!
# client.py builds its 400 MiB in Python before it starts pvmig tunnel: more
# than 10 s under load (the destination was then killed before the tunnel
# began, and the client saw "Connection refused"). Wait up to 60 s.
for _ in $(seq 600); do [ -s "$W/peer.b" ] && break; sleep 0.1; done
sleep 0.5
kill_host b
t0=$(date +%s)
wait "$CL"
out=$(cat "$W/cut.out")
echo "  $out"; echo "  $(cat "$W/cut.err")"
if [ "$(val rc "$out")" = 1 ] && [ "$(val stage "$out")" != done ] &&
   grep -q "pvmig tunnel: the tunnel to 127.0.0.1:$PB broke" "$W/cut.err" &&
   [ $(($(date +%s) - t0)) -lt 20 ]; then
	ok "destination killed mid-stream: pvmig tunnel exits 1 and says the tunnel broke"
else
	bad "cut: $out $(cat "$W/cut.err")"
fi
for _ in $(seq 50); do [ -z "$(still_running "$W/peer.b")" ] && break; sleep 0.2; done
[ -z "$(still_running "$W/peer.b")" ] && ok "and the orphaned command ended (its stdin closed)" ||
	bad "the tunnel-command still runs after its pvmigd died"

# 6. The client dies mid-stream: pvmigd ends the command and says so.
start_b
: >"$W/peer.b"
"$PVMIG" tunnel --config "$W/a.conf" "127.0.0.1:$PB" \
	< <(echo "LEN 100000000000 EXIT 0 BACK 1"; head -c 2000000000 /dev/zero) >/dev/null 2>"$W/k.err" &
TP=$!
for _ in $(seq 600); do [ -s "$W/peer.b" ] && break; sleep 0.1; done
sleep 0.5
kill -9 "$TP"; wait "$TP" 2>/dev/null
for _ in $(seq 100); do [ -z "$(still_running "$W/peer.b")" ] && break; sleep 0.2; done
sleep 0.5
if [ -s "$W/peer.b" ] && [ -z "$(still_running "$W/peer.b")" ] && grep -q "ended before the command did" "$W/b.log"; then
	ok "client killed mid-stream: pvmigd closes the command's pipes, it ends, the log says why"
else
	bad "client killed: peer $(cat "$W/peer.b") still running '$(still_running "$W/peer.b")'; $(grep tunnel "$W/b.log" | tail -n 3)"
fi
kill -0 "${PID[b]}" 2>/dev/null && ok "pvmigd b still serves" || bad "pvmigd b died"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
