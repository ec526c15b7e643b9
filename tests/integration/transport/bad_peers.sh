#!/usr/bin/env bash
# Two real processes on loopback (the transport benchmark's sender and
# receiver) meet bad peers: each case must end with a non-zero exit status
# and a message naming the problem on the side(s) that can see it.
#   $1 = build dir (holds pvmig and pvm-bench-transport)
set -uo pipefail
B=$(cd "$1" && pwd)
BENCH=$B/pvm-bench-transport PVMIG=$B/pvmig
W=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$W"; }
trap cleanup EXIT
. "$(dirname "$0")/../lib.sh"

$PVMIG tls-init "$W/certs" src dst 2>/dev/null || { echo "tls-init failed"; exit 1; }
$PVMIG tls-init "$W/other" src dst 2>/dev/null || exit 1
$BENCH gen "$W/img" 64 || exit 1

start_recv() { # certdir -> sets RPID, PORT
	rm -f "$W/recv.out" "$W/recv.err"
	"$BENCH" recv 0 "$1" "$W/out" >"$W/recv.out" 2>"$W/recv.err" &
	RPID=$!; PIDS+=("$RPID")
	for _ in $(seq 100); do grep -q listening "$W/recv.out" 2>/dev/null && break; sleep 0.05; done
	PORT=$(awk '/listening/ {print $2}' "$W/recv.out")
}

# 1. A sender whose certificate comes from another CA.
start_recv "$W/certs"
cp "$W/certs/ca.pem" "$W/other/ca-main.pem"
# The sender trusts our CA (so it would accept the server) but holds a cert
# of another CA: build a cert dir mixing the two.
mkdir -p "$W/mix"; cp "$W/certs/ca.pem" "$W/mix/ca.pem"; cp "$W/other/src.pem" "$W/other/src.key" "$W/mix/"
if "$BENCH" send 127.0.0.1 "$PORT" "$W/mix" "$W/img" 2>"$W/send.err"; then
	bad "sender with a foreign certificate succeeded"
else
	ok "sender with a foreign certificate exits $?: $(tail -1 "$W/send.err")"
fi
sleep 0.3
grep -q "unable to get local issuer certificate" "$W/recv.err" &&
	ok "receiver logged: $(grep -m1 refused "$W/recv.err")" ||
	bad "receiver did not log why it refused: $(cat "$W/recv.err")"
kill "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null

# 2. A receiver killed mid-transfer: the sender reports it and exits non-zero.
start_recv "$W/certs"
"$BENCH" send 127.0.0.1 "$PORT" "$W/certs" "$W/img" --no-compress --pace-ms 10 >"$W/send.out" 2>"$W/send.err" &
SPID=$!; PIDS+=("$SPID")
sleep 0.2
kill -9 "$RPID"
wait "$SPID" 2>/dev/null; st=$?
if [ "$st" -ne 0 ] && grep -qiE "closed|reset|broken|failed" "$W/send.err"; then
	ok "sender, receiver killed: exit $st: $(tail -1 "$W/send.err")"
elif grep -q '"side":"send"' "$W/send.out"; then
	bad "the paced transfer finished before the kill landed"
else
	bad "sender, receiver killed: exit $st, stderr: $(cat "$W/send.err")"
fi

# 3. A sender killed mid-transfer: the receiver reports it and exits non-zero.
start_recv "$W/certs"
"$BENCH" send 127.0.0.1 "$PORT" "$W/certs" "$W/img" --no-compress --pace-ms 10 >/dev/null 2>&1 &
SPID=$!; PIDS+=("$SPID")
sleep 0.2
kill -9 "$SPID"
wait "$RPID" 2>/dev/null; st=$?
if [ "$st" -ne 0 ]; then
	ok "receiver, sender killed: exit $st: $(tail -1 "$W/recv.err")"
else
	bad "receiver, sender killed: exit 0"
fi

# 4. A plaintext client: refused, and the receiver keeps waiting for a real one.
start_recv "$W/certs"
printf 'PLAINTEXT HELLO\r\n\r\n' | timeout 5 socat -t 2 - TCP:127.0.0.1:"$PORT" >/dev/null 2>&1
sleep 0.3
grep -q "TLS handshake failed" "$W/recv.err" &&
	ok "plaintext client refused: $(grep -m1 refused "$W/recv.err")" ||
	bad "plaintext client: no refusal logged: $(cat "$W/recv.err")"
if "$BENCH" send 127.0.0.1 "$PORT" "$W/certs" "$W/img" >/dev/null 2>"$W/send.err" && wait "$RPID" && cmp -s "$W/img" "$W/out"; then
	ok "a real sender still gets through after the plaintext client"
else
	bad "the receiver did not survive the plaintext client: $(cat "$W/send.err" "$W/recv.err")"
fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
