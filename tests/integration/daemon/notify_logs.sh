#!/usr/bin/env bash
# pvmigd under systemd's eyes, without systemd: the readiness datagram
# (Type=notify, sd_notify's protocol) arrives once control.sock answers and
# not before, with MAINPID, on a path and on an abstract socket; STOPPING=1
# on SIGTERM; NOTIFY_SOCKET not inherited by the guests it starts. And the
# stderr log: ISO 8601 UTC time stamps with milliseconds, except when
# stderr is the stream $JOURNAL_STREAM names (then sd-daemon "<N>"
# priorities and no stamp, the journal stamps lines itself).
#   $1 = build dir
set -uo pipefail
B=$(cd "$1" && pwd)
PVMIG=$B/pvmig PVMIGD=$B/pvmigd
. "$(dirname "$0")/../lib.sh"
command -v python3 >/dev/null || { echo "skip: python3 is needed"; exit 77; }
W=$(mktemp -d /tmp/pvmig-it-notify.XXXXXX)
P=
cleanup() {
	[ -n "$P" ] && { kill "$P" 2>/dev/null; wait "$P" 2>/dev/null; }
	[ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT

# listen ADDR OUT: a python3 notify socket at ADDR ('@name' = abstract)
# that, for each datagram, runs `pvmig -H $W/st info` once (no retry) and
# writes "DATAGRAM|info-exit-status" lines to OUT, until STOPPING=1 or 30 s.
listen() {
	python3 - "$1" "$2" "$PVMIG" "$W/st" <<'PY' &
import socket, subprocess, sys, time
addr, out, pvmig, st = sys.argv[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + addr[1:] if addr.startswith("@") else addr)
s.settimeout(30)
open(out + ".bound", "w").close()
with open(out, "w") as f:
    end = time.time() + 30
    while time.time() < end:
        try:
            msg = s.recv(4096).decode()
        except socket.timeout:
            break
        rc = subprocess.call([pvmig, "-H", st, "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        f.write(msg.replace("\n", ";") + "|" + str(rc) + "\n"); f.flush()
        if "STOPPING=1" in msg:
            break
PY
	LPID=$!
	for _ in $(seq 100); do [ -e "$2.bound" ] && return; sleep 0.05; done
	echo "FAIL: the notify listener did not start"; exit 1
}

# 1. A path socket: READY=1 once, after which info answers at once.
listen "$W/notify" "$W/n1"
NOTIFY_SOCKET=$W/notify "$PVMIGD" --state-dir "$W/st" --foreground 2>"$W/d1.log" & P=$!
for _ in $(seq 200); do grep -q READY "$W/n1" 2>/dev/null && break; sleep 0.05; done
r=$(grep READY "$W/n1")
[[ $r == "READY=1;STATUS=serving $W/st/control.sock (backend sim);MAINPID=$P|0" ]] &&
	ok "READY=1 with STATUS and MAINPID, control socket answering: $r" ||
	bad "readiness: '$r' (want READY=1;STATUS=serving $W/st/control.sock (backend sim);MAINPID=$P|0)"
# A guest pvmigd starts does not inherit NOTIFY_SOCKET.
"$PVMIG" -H "$W/st" create --name g --memory 16M >/dev/null 2>"$W/c.err" || bad "create: $(cat "$W/c.err")"
gp=$(pgrep -P "$P" | head -1)
if [ -z "$gp" ]; then bad "no guest process under pvmigd"
elif tr '\0' '\n' </proc/"$gp"/environ | grep -q '^NOTIFY_SOCKET='; then bad "guest $gp inherited NOTIFY_SOCKET"
else ok "guest $gp has no NOTIFY_SOCKET"; fi
kill -TERM "$P"; wait "$P"; rc=$?; P=
wait "$LPID"
[ "$(grep -c READY "$W/n1")" = 1 ] && ok "READY sent once" || bad "READY count: $(cat "$W/n1")"
grep -q "^STOPPING=1;" "$W/n1" && [ $rc -eq 0 ] && ok "STOPPING=1 on SIGTERM, exit 0" ||
	bad "stop: exit $rc, datagrams: $(cat "$W/n1")"

# 2. The stderr log of that run: every line stamped (ISO 8601, UTC, ms),
#    and the stamps are now.
STAMP='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z pvmigd: (error|warning|info|debug): '
n=$(wc -l <"$W/d1.log") s=$(grep -Ec "$STAMP" "$W/d1.log")
[ "$n" -gt 0 ] && [ "$n" = "$s" ] && ok "$s of $n log lines stamped: $(head -1 "$W/d1.log")" ||
	bad "stamps: $s of $n lines: $(cat "$W/d1.log")"
first=$(head -1 "$W/d1.log" | cut -c1-19)
age=$(( $(date -u +%s) - $(date -u -d "${first}Z" +%s 2>/dev/null || echo 0) ))
[ "$age" -ge 0 ] && [ "$age" -lt 60 ] && ok "first stamp is UTC and ${age}s old" ||
	bad "first stamp '$first' is ${age}s from now (UTC)"

# 3. An abstract socket ('@name'), as systemd may hand out.
listen "@pvmig-notify-$$" "$W/n2"
NOTIFY_SOCKET=@pvmig-notify-$$ "$PVMIGD" --state-dir "$W/st" --foreground 2>"$W/d2.log" & P=$!
for _ in $(seq 200); do grep -q READY "$W/n2" 2>/dev/null && break; sleep 0.05; done
grep -q "^READY=1;.*|0$" "$W/n2" && ok "abstract notify socket: $(head -1 "$W/n2")" ||
	bad "abstract socket: '$(cat "$W/n2")', log $(cat "$W/d2.log")"
kill -TERM "$P"; wait "$P"; P=; wait "$LPID"

# 4. stderr that is the journal's stream: "<N>LEVEL: MESSAGE", no stamp.
#    (JOURNAL_STREAM is DEV:INODE of the stream; a file stands in for it.)
: >"$W/d3.log"
JOURNAL_STREAM=$(stat -c '%d:%i' "$W/d3.log") "$PVMIGD" --state-dir "$W/st" --foreground 2>>"$W/d3.log" & P=$!
for _ in $(seq 100); do "$PVMIG" -H "$W/st" info >/dev/null 2>&1 && break; sleep 0.05; done
"$PVMIG" -H "$W/st" status nosuch >/dev/null 2>&1
kill -TERM "$P"; wait "$P"; P=
n=$(wc -l <"$W/d3.log") s=$(grep -Ec '^<[3467]>(error|warning|info|debug): ' "$W/d3.log")
[ "$n" -gt 0 ] && [ "$n" = "$s" ] && grep -q '^<6>info: serving ' "$W/d3.log" &&
	ok "journal stream: $s of $n lines '<N>LEVEL: ...': $(head -1 "$W/d3.log")" ||
	bad "journal format: $(cat "$W/d3.log")"
# ...but a JOURNAL_STREAM for another stream (stderr redirected): stamps.
JOURNAL_STREAM=$(stat -c '%d:%i' "$W/d3.log") "$PVMIGD" --state-dir "$W/st" --foreground 2>"$W/d4.log" & P=$!
for _ in $(seq 100); do "$PVMIG" -H "$W/st" info >/dev/null 2>&1 && break; sleep 0.05; done
kill -TERM "$P"; wait "$P"; P=
grep -Eq "$STAMP" "$W/d4.log" && ! grep -q '^<' "$W/d4.log" && ok "stderr redirected away from the journal: stamped" ||
	bad "redirected stderr: $(cat "$W/d4.log")"

# 5. pvmig, for a person at a terminal, is not stamped.
"$PVMIG" -H "$W/none" list 2>"$W/p.err" >/dev/null
grep -Eq '^[0-9]{4}-' "$W/p.err" && bad "pvmig's message is stamped: $(cat "$W/p.err")" || ok "pvmig not stamped: $(head -1 "$W/p.err")"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
