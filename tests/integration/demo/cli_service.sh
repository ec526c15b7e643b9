#!/usr/bin/env bash
# pvmig / pvmigd details, each once broken: the lock file left behind, a
# config's "log = syslog" silencing --foreground, "pvmig -v" alone, "pvmig
# help --help", --json of tls-init/help/verify (the one document shape),
# checkpoint --help hiding --verify-memory, and a migration to an IP
# address that did not check the destination's certificate against it.
#   $1 = build dir
set -uo pipefail
B=$(cd "$1" && pwd)
PVMIG=$B/pvmig PVMIGD=$B/pvmigd
. "$(dirname "$0")/../lib.sh"
command -v python3 >/dev/null || { echo "skip: python3 is needed"; exit 77; }
W=$(mktemp -d /tmp/pvmig-it-cli.XXXXXX)
cleanup() {
	stop_hosts
	[ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
jq_py() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); $1" "$2"; }
wait_up() { for _ in $(seq 100); do "$PVMIG" -H "$1" info >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }

# 1. pvmigd removes pvmigd.lock (and control.sock) on a clean exit; a
#    second pvmigd on the same dir is still refused while the first runs.
"$PVMIGD" --state-dir "$W/s1" --foreground 2>"$W/s1.log" & P=$!
wait_up "$W/s1" || bad "pvmigd did not start: $(cat "$W/s1.log")"
[ -e "$W/s1/pvmigd.lock" ] && ok "pvmigd.lock exists while pvmigd runs" || bad "no pvmigd.lock while running"
"$PVMIGD" --state-dir "$W/s1" --foreground 2>"$W/s1b.log"; rc=$?
[ $rc -ne 0 ] && grep -q "another pvmigd already serves" "$W/s1b.log" &&
	ok "a second pvmigd on the same dir is refused" || bad "second pvmigd: exit $rc $(cat "$W/s1b.log")"
kill -TERM $P; wait $P; rc=$?
left=$(ls -A "$W/s1" | grep -E "pvmigd.lock|control.sock")
[ $rc -eq 0 ] && [ -z "$left" ] && ok "clean exit removes pvmigd.lock and control.sock" ||
	bad "after SIGTERM: exit $rc, left: $left"
"$PVMIGD" --state-dir "$W/s1" --foreground 2>"$W/s1c.log" & P=$!
wait_up "$W/s1" && ok "a new pvmigd takes the dir again" || bad "restart: $(cat "$W/s1c.log")"
kill -TERM $P; wait $P

# 2. "log = syslog" in the config: --foreground still logs to stderr;
#    --log syslog sends it to syslog (nothing on stderr).
printf 'log = syslog\nstate-dir = %s\n' "$W/s2" >"$W/s2.conf"
"$PVMIGD" --config "$W/s2.conf" --foreground 2>"$W/s2.log" & P=$!
wait_up "$W/s2"; kill -TERM $P; wait $P
grep -q "serving" "$W/s2.log" && ok "--foreground logs to stderr despite log = syslog" ||
	bad "--foreground with log = syslog: stderr was '$(cat "$W/s2.log")'"
"$PVMIGD" --config "$W/s2.conf" --foreground --log syslog 2>"$W/s2b.log" & P=$!
wait_up "$W/s2"; kill -TERM $P; wait $P
grep -q "serving" "$W/s2b.log" && bad "--log syslog still wrote to stderr" || ok "--log syslog: nothing on stderr"
"$PVMIGD" --log nowhere >/dev/null 2>&1; [ $? -eq 2 ] && ok "--log nowhere refused (2)" || bad "--log nowhere accepted"

# 3. pvmig -v alone: an error saying what is missing, exit 2.
"$PVMIG" -v >/dev/null 2>"$W/e3"; rc=$?
[ $rc -eq 2 ] && grep -q "no COMMAND" "$W/e3" && ok "pvmig -v alone: $(head -1 "$W/e3")" ||
	bad "pvmig -v: exit $rc, $(cat "$W/e3")"

# 4. help: --help is its own help (0); --json lists every command.
"$PVMIG" help --help >"$W/o4" 2>&1; rc=$?
[ $rc -eq 0 ] && grep -q "usage: pvmig help" "$W/o4" && ok "pvmig help --help exits 0" ||
	bad "pvmig help --help: exit $rc, $(cat "$W/o4")"
"$PVMIG" help --json >"$W/o4j"; rc=$?
[ $rc -eq 0 ] && jq_py 'n=[i["name"] for i in d["items"]]; assert d["result"]["status"]==0 and {"demo","migrate","help","tls-init"} <= set(n), n' "$W/o4j" &&
	ok "pvmig help --json: the command table as items" || bad "help --json: $(cat "$W/o4j")"
"$PVMIG" help nosuch >/dev/null 2>&1; [ $? -eq 2 ] && ok "help of an unknown command: 2" || bad "help nosuch"

# 5. tls-init --json, with IP addresses; a bad address is an error in the
#    document.
"$PVMIG" tls-init "$W/ca" hosta,127.0.0.1 hostb,127.0.0.1,::1 --json >"$W/o5" 2>/dev/null; rc=$?
[ $rc -eq 0 ] && jq_py 'i=d["items"]; assert d["result"]["status"]==0 and [x["host"] for x in i]==["hosta","hostb"] and i[1]["ip"]=="127.0.0.1,::1", d' "$W/o5" &&
	ok "tls-init --json: items per host, result" || bad "tls-init --json: $rc $(cat "$W/o5")"
openssl x509 -in "$W/ca/hostb.pem" -noout -ext subjectAltName 2>/dev/null | grep -q "IP Address:127.0.0.1" &&
	ok "hostb.pem carries IP 127.0.0.1" || bad "no IP SAN in hostb.pem"
"$PVMIG" tls-init "$W/ca2" hostc,300.1.2.3 --json >"$W/o5b" 2>"$W/e5b"; rc=$?
[ $rc -eq 1 ] && jq_py 'r=d["result"]; assert r["status"]!=0 and "300.1.2.3" in r["error"], d' "$W/o5b" &&
	ok "tls-init of a bad address: $(head -1 "$W/e5b")" || bad "tls-init bad IP: $rc $(cat "$W/o5b" "$W/e5b")"

# 6. verify --json: the same document (items, result with status).
head -c 5000 /dev/urandom >"$W/junk.pvm"
"$PVMIG" verify "$W/junk.pvm" --json >"$W/o6"; rc=$?
[ $rc -eq 1 ] && jq_py 'r=d["result"]; assert isinstance(d["items"], list) and r["status"]!=0 and r["sound"] is False and r["error"], d' "$W/o6" &&
	ok "verify --json of junk: status, sound false, error" || bad "verify --json: $rc $(cat "$W/o6")"

# 7. checkpoint --help lists --verify-memory.
"$PVMIG" checkpoint --help | grep -q -- "--verify-memory" && ok "checkpoint --help lists --verify-memory" ||
	bad "checkpoint --help has no --verify-memory"

# 8. A migration to an IP address checks the destination's certificate
#    against it: B's certificate names 127.0.0.2 only -> refused, naming
#    the address; B with a certificate for 127.0.0.1 -> done.
"$PVMIG" tls-init "$W/ca" hostb2,127.0.0.2 2>/dev/null
host() { CERT[$1]=$W/ca/$2; start_host "$1" 'timeout-ms = 2000'; } # NAME CERT
host a hosta
host b hostb2
PB=${PORT[b]}
"$PVMIG" -H "$W/a" create --name g --memory 32M --workload content:counter >/dev/null || bad "create g"
if "$PVMIG" -H "$W/a" migrate g "127.0.0.1:$PB" 2>"$W/e8"; then
	bad "migration to 127.0.0.1 accepted a certificate for 127.0.0.2"
else
	grep -q "does not carry the address 127.0.0.1" "$W/a.log" && grep -q "does not name 127.0.0.1" "$W/e8" &&
		ok "certificate without the target address refused: $(grep -m1 'does not carry' "$W/a.log" | cut -c1-140)" ||
		bad "refused, but not for the address: $(cat "$W/e8")"
fi
[ "$("$PVMIG" -H "$W/a" status g --json | jq_py 'print(d["result"]["state"])' /dev/stdin)" = running ] &&
	ok "the guest still runs on A" || bad "g not running on A after the refusal"
stop_host b; rm -rf "${W:?}/b"
host b hostb
"$PVMIG" -H "$W/a" migrate g "127.0.0.1:$PB" >/dev/null 2>"$W/e8b" &&
	ok "certificate carrying 127.0.0.1: migrated" || bad "migration to the right certificate: $(cat "$W/e8b")"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
