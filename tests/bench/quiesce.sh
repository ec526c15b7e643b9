#!/usr/bin/env bash
# Quiesce/reconnect benchmark: guests with 1, 4 and 16 PV devices (half
# disks, half NICs: 16 = 8 + 8, the simulated host's limit), both frontend
# generations, idle and under block + network I/O, migrated between two
# pvmigds on loopback REPS times each. Prints the medians of
#   susp_ms       suspend requested -> guest suspended (modern: it answers;
#                 legacy: not asked, it does not advertise suspend)
#   quiesce_ms    pause -> every backend drained and captured (source)
#   req->drained  susp_ms + quiesce_ms: suspend requested -> all drained
#   reconn_ms     destination unpause -> every device Connected (both ends)
#   res->io       destination unpause -> all Connected and every device
#                 completed a request (first_io_ms; "-" when idle)
#   added_ms      what quiesce + reconnect add to the guest's I/O downtime:
#                 quiesce_ms + res->io (idle: + reconn_ms)
#   downtime_ms   the guest's pause as the migration measures it
# Target (issue 6): quiesce + reconnect under 5 ms for 4 devices under I/O.
#   tests/bench/quiesce.sh [--reps N] [--devices "1 4 16"]
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=5
DEVS="1 4 16"
while [ $# -gt 1 ]; do
	case $1 in --reps) REPS=$2 ;; --devices) DEVS=$2 ;; *) echo "usage: $0 [--reps N] [--devices LIST]"; exit 2 ;; esac
	shift 2
done
[ -x build/pvmig ] || ./scripts/build.sh build >/dev/null
PVMIG=$PWD/build/pvmig PVMIGD=$PWD/build/pvmigd
W=$(mktemp -d /tmp/pvmig-bench-q.XXXXXX)
. tests/integration/lib.sh
cleanup() { stop_hosts; rm -rf "$W"; }
trap cleanup EXIT
start_hosts a b

printf "%-7s %-7s %-5s %8s %10s %12s %9s %8s %9s %11s\n" devices gen load susp_ms quiesce_ms "req->drained" reconn_ms "res->io" added_ms downtime_ms
for ndev in $DEVS; do
	for gen in legacy modern; do
		for load in idle io; do
			args=() nd=$(( (ndev + 1) / 2 )) nn=$(( ndev / 2 ))
			for i in $(seq 1 $nd); do truncate -s 4M "$W/d$i.img"; args+=(--disk "$W/d$i.img"); done
			for i in $(seq 1 $nn); do args+=(--nic); done
			wl=idle; [ $load = io ] && wl=blk:1000,net:1000
			"$PVMIG" -H "$W/a" create --name q --memory 64M "${args[@]}" --frontend $gen --workload content:counter,$wl >/dev/null
			sleep 0.5
			here=a there=b
			: >"$W/r"
			for r in $(seq "$REPS"); do
				"$PVMIG" -H "$W/$here" migrate q "127.0.0.1:${PORT[$there]}" --json >>"$W/r" 2>/dev/null || true
				echo >>"$W/r"
				t=$here; here=$there; there=$t
				sleep 0.3
			done
			"$PVMIG" -H "$W/$here" destroy q >/dev/null
			python3 - "$W/r" "$ndev" "$gen" "$load" <<'EOP'
import json, statistics, sys
rows = [json.loads(l)["result"] for l in open(sys.argv[1]) if l.strip()]
ok = [r for r in rows if r.get("result") == "done"]
def med(k):
    v = [float(r[k]) for r in ok if k in r]
    return statistics.median(v) if v else float("nan")
su, q, c, fio, d = (med(k) for k in ("suspend_ms", "quiesce_ms", "reconnect_ms", "first_io_ms", "downtime_ms"))
nan = float("nan")
added = q + (fio if fio == fio else c)
f = lambda v: f"{v:.2f}" if v == v else "-"
print(f"{sys.argv[2]:<7} {sys.argv[3]:<7} {sys.argv[4]:<5} {f(su):>8} {f(q):>10} {f(su + q):>12} {f(c):>9} {f(fio):>8} {f(added):>9} {f(d):>11}"
      + ("" if len(ok) == len(rows) else f"   ({len(rows) - len(ok)} of {len(rows)} moves failed)"))
EOP
		done
	done
done
echo "(medians of $REPS moves each; 64 MiB guests; loopback; this 2-core machine)"
