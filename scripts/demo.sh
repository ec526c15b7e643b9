#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine (as root): install what is
# needed, build, then run the demo: two simulated Xen hosts, each a pvmigd in
# its own network namespace joined by a veth pair, one guest doing I/O,
# migrated live over TLS 1.3 from host A to host B and back, with a report.
#
#   scripts/demo.sh [--memory 512M] [--keep]
#
# Without root or network namespaces it says so and uses loopback instead.
set -euo pipefail
cd "$(dirname "$0")/.."
MEM=512M KEEP=0
while [ $# -gt 0 ]; do
	case $1 in
	--memory) MEM=$2; shift 2 ;;
	--keep) KEEP=1; shift ;;
	*) echo "usage: $0 [--memory SIZE] [--keep]" >&2; exit 2 ;;
	esac
done
./scripts/install-deps.sh
./scripts/build.sh build >/dev/null
B=$PWD/build
PVMIG=$B/pvmig PVMIGD=$B/pvmigd

W=$(mktemp -d /tmp/pvmig-demo.XXXXXX)
NS_A=pvmig-demo-a-$$ NS_B=pvmig-demo-b-$$
PIDS=() NETNS=0
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ "$NETNS" = 1 ]; then
		ip netns del "$NS_A" 2>/dev/null || true
		ip netns del "$NS_B" 2>/dev/null || true
	fi
	if [ "$KEEP" = 1 ]; then echo "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
say() { printf '\n== %s\n' "$*"; }

say "Two hosts"
if [ "$(id -u)" = 0 ] && ip netns add "$NS_A" 2>/dev/null; then
	NETNS=1
	ip netns add "$NS_B"
	ip link add "va$$" netns "$NS_A" type veth peer name "vb$$" netns "$NS_B"
	ip -n "$NS_A" addr add 10.77.0.1/24 dev "va$$"
	ip -n "$NS_B" addr add 10.77.0.2/24 dev "vb$$"
	for ns in "$NS_A" "$NS_B"; do ip -n "$ns" link set lo up; done
	ip -n "$NS_A" link set "va$$" up
	ip -n "$NS_B" link set "vb$$" up
	ADDR_A=10.77.0.1 ADDR_B=10.77.0.2
	RUN_A=(ip netns exec "$NS_A") RUN_B=(ip netns exec "$NS_B")
	echo "host A: network namespace $NS_A, $ADDR_A; host B: $NS_B, $ADDR_B (veth pair)"
else
	ADDR_A=127.0.0.1 ADDR_B=127.0.0.1
	RUN_A=() RUN_B=()
	echo "no network namespaces here (needs root and iproute2): both hosts on loopback"
fi
PORT_A=8002 PORT_B=8003

"$PVMIG" tls-init "$W/tls" hosta hostb 2>/dev/null
for h in a b; do
	addr=$([ $h = a ] && echo "$ADDR_A" || echo "$ADDR_B")
	port=$([ $h = a ] && echo "$PORT_A" || echo "$PORT_B")
	mkdir -p "$W/$h"
	cat >"$W/$h.conf" <<EOC
# pvmigd.conf of demo host $h (see pvmigd.conf(5))
backend = sim
state-dir = $W/$h
listen = $addr
port = $port
tls-ca = $W/tls/ca.pem
tls-cert = $W/tls/host$h.pem
tls-key = $W/tls/host$h.key
EOC
done
"${RUN_A[@]}" "$PVMIGD" --config "$W/a.conf" --foreground 2>"$W/a.log" & PIDS+=($!)
"${RUN_B[@]}" "$PVMIGD" --config "$W/b.conf" --foreground 2>"$W/b.log" & PIDS+=($!)
for h in a b; do
	for _ in $(seq 100); do "$PVMIG" -H "$W/$h" info >/dev/null 2>&1 && break; sleep 0.05; done
	"$PVMIG" -H "$W/$h" info >/dev/null || { echo "pvmigd $h did not start:"; cat "$W/$h.log"; exit 1; }
done
echo "pvmigd A: $W/a (control socket), listening on $ADDR_A:$PORT_A"
echo "pvmigd B: $W/b (control socket), listening on $ADDR_B:$PORT_B"

say "Two guests on host A, each with a PV disk and a PV NIC doing I/O"
# Workload: dirty memory on 2 vCPUs (dirty:FIRST:COUNT:RATE pages/s per vCPU),
# checksummed block writes read back (blk:N/s), numbered packets to an echo
# peer (net:N/s). "modern" frontends re-handshake on resume like Linux;
# "legacy" ones never do, like the early Windows PV drivers.
for gen in modern legacy; do
	truncate -s 64M "$W/$gen-disk.img"
	"$PVMIG" -H "$W/a" create --name "$gen" --memory "$MEM" --vcpus 2 \
		--disk "$W/$gen-disk.img" --nic --frontend "$gen" \
		--workload dirty:16:32768:10000,blk:500,net:500
done
sleep 2
"$PVMIG" -H "$W/a" list
counters() { # HOST NAME
	local id
	id=$("$PVMIG" -H "$W/$1" status "$2" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["domid"])')
	XENSTORED_PATH=$W/$1/xenstore.sock xenstore-ls "/local/domain/$id/data/workload" |
		tr -d '"' | awk '{printf "%s=%s ", $1, $3}'
}
for gen in modern legacy; do echo "$gen on A: $(counters a $gen)"; done

say "Live migration A -> B over TLS 1.3 (pvmig migrate NAME $ADDR_B:$PORT_B)"
for gen in modern legacy; do
	"$PVMIG" -H "$W/a" migrate "$gen" "$ADDR_B:$PORT_B" --json >"$W/ab-$gen.json" 2>"$W/ab.err" ||
		{ cat "$W/ab.err"; exit 1; }
	echo "$gen:"
	python3 - "$W/ab-$gen.json" <<'EOP'
import json, sys
r = json.load(open(sys.argv[1]))["result"]
rows = [("total time", "total_ms", "ms"), ("downtime (paused)", "downtime_ms", "ms"),
        ("pre-copy rounds", "rounds", ""), ("per round", "round_detail", ""),
        ("stop-and-copy pages", "final_pages", ""), ("pages sent", "pages_sent", ""),
        ("zero pages (no data)", "zero_pages", ""), ("bytes on the wire", "wire_bytes", ""),
        ("compression ratio", "compression_ratio", ""), ("throughput", "throughput_mib_s", "MiB/s"),
        ("stopped because", "stop_reason", ""), ("PV devices quiesced", "devices_quiesced", ""),
        ("drain time", "quiesce_ms", "ms"), ("PV devices", "devices", "")]
for label, key, unit in rows:
    if key in r:
        print(f"  {label:<22} {r[key]} {unit}".rstrip())
EOP
done
echo "host A:"; "$PVMIG" -H "$W/a" list
echo "host B:"; "$PVMIG" -H "$W/b" list
sleep 2
for gen in modern legacy; do echo "$gen on B: $(counters b $gen)"; done

say "And back B -> A, with every page's SHA-256 compared on both hosts while paused"
for gen in modern legacy; do
	"$PVMIG" -H "$W/b" migrate "$gen" "$ADDR_A:$PORT_A" --verify-memory --json >"$W/ba-$gen.json" 2>"$W/ba.err" ||
		{ cat "$W/ba.err"; exit 1; }
	python3 - "$W/ba-$gen.json" "$gen" <<'EOP'
import json, sys
r = json.load(open(sys.argv[1]))["result"]
print(f"  {sys.argv[2]:<8} memory {r.get('memory', '?')}, devices: {r.get('devices', '-')}, "
      f"downtime {r['downtime_ms']} ms (includes hashing all memory twice)")
EOP
done
sleep 2
for gen in modern legacy; do echo "$gen on A: $(counters a $gen)"; done

say "Report"
python3 - "$W" <<'EOP'
import json, sys
w = sys.argv[1]
for gen in ("modern", "legacy"):
    ab = json.load(open(f"{w}/ab-{gen}.json"))["result"]
    ba = json.load(open(f"{w}/ba-{gen}.json"))["result"]
    print(f"{gen:<7} A->B: downtime {ab['downtime_ms']} ms, total {ab['total_ms']} ms, {ab['rounds']} rounds, "
          f"{int(ab['wire_bytes'])/1048576:.1f} MiB on the wire (x{ab['compression_ratio']}), devices: {ab.get('devices')}; "
          f"B->A: memory {ba.get('memory')}")
EOP
echo "The guests' own counters above (blk-verify-fail, blk-io-errors, net-lost, net-dup,"
echo "net-ooo) say whether any I/O was lost: legacy keeps its rings and loses nothing; a"
echo "modern frontend, like Linux netfront, drops the replies left in its old rx ring."
echo "Logs: $W/a.log $W/b.log (use --keep to keep them)"
