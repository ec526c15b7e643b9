#!/usr/bin/env bash
# Save/restore/checkpoint benchmark (a benchmark, not a test: it asserts
# nothing about time). Through a real pvmigd (simulated host) and pvmig:
#   1. a 1 GiB guest whose dirty workload has touched a 256 MiB working set
#      is saved (cold) and restored, to a raw and to an lz4 file
#   2. continuous checkpoints of a 1 GiB guest dirtying 20 MiB/s (5120
#      pages/s) at a 100 ms interval: per-epoch pause time and bytes
#   3. peers on the same disk in the same run: cp of the raw file (plain
#      and followed by sync), and lz4 -1 of it
# Prints save and restore GiB/s of guest memory, file sizes, pause
# percentiles, and the peers' figures.
#
#   (the dirty workload paces each vCPU with nanosleep, so the rate it
#   reaches is below the one asked; the measured rate is printed)
#
# Usage: tests/bench/checkpoint.sh [--build DIR] [--dir DIR] [--seconds N]
#   --build DIR   build dir with pvmig, pvmigd, pvmig-simguest (default build)
#   --dir DIR     where files go (default a new dir under /var/tmp)
#   --seconds N   continuous checkpoint duration (default 10)
set -euo pipefail
cd "$(dirname "$0")/../.."

BUILD=build OUT= SECS=10
while [ $# -gt 0 ]; do
	case $1 in
	--build) BUILD=$2; shift 2 ;;
	--dir) OUT=$2; shift 2 ;;
	--seconds) SECS=$2; shift 2 ;;
	*) sed -n '2,/^set/p' "$0" | sed 's/^# \{0,1\}//;/^set/d' >&2; exit 2 ;;
	esac
done
[ -x "$BUILD/pvmig" ] || ./scripts/build.sh "$BUILD" >/dev/null
B=$(cd "$BUILD" && pwd)
OUT=${OUT:-$(mktemp -d /var/tmp/pvm-bench-ckpt.XXXXXX)}
mkdir -p "$OUT"
S=$OUT/state DPID=
cleanup() { [ -n "$DPID" ] && kill "$DPID" 2>/dev/null; wait 2>/dev/null; rm -rf "$OUT"; }
trap cleanup EXIT
P() { "$B/pvmig" -H "$S" "$@"; }
json() { sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" "$1"; }
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l; }
gibs() { echo "scale=3; $1 / $2" | bc -l; } # GiB, seconds

"$B/pvmigd" --backend sim --state-dir "$S" --foreground >"$OUT/pvmigd.log" 2>&1 &
DPID=$!
for _ in $(seq 100); do P info >/dev/null 2>&1 && break; sleep 0.05; done

echo "pvmig checkpoint benchmark — $(uname -r), $(nproc) CPUs, files in $OUT ($(df -h --output=source "$OUT" | tail -1))"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the host skews every figure)"
echo

# ---- 1. save / restore ------------------------------------------------------
P create --name bench --memory 1G --vcpus 1 --workload content:counter,dirty:16:65536 >/dev/null
sleep 2 # flat out: the 256 MiB working set is written many times over
for fmt in raw lz4; do
	f=$OUT/bench.pvm; [ $fmt = lz4 ] && f=$OUT/bench.pvm.lz4
	P save bench "$f" --json >"$OUT/save.json"
	P restore -p "$f" --json >"$OUT/restore.json"
	st=$(json "$OUT/save.json" total_ms) rt=$(json "$OUT/restore.json" total_ms)
	sz=$(stat -c %s "$f")
	printf "%-4s save    %6.3f GiB/s of guest memory (%s ms, paused %s ms), file %s MiB\n" \
		$fmt "$(gibs 1 "$(echo "$st / 1000" | bc -l)")" "$st" \
		"$(json "$OUT/save.json" pause_ms)" "$((sz >> 20))"
	printf "%-4s restore %6.3f GiB/s of guest memory (%s ms, checksums verified, left paused)\n" \
		$fmt "$(gibs 1 "$(echo "$rt / 1000" | bc -l)")" "$rt"
	P unpause bench >/dev/null
	sleep 1
done
RAW=$OUT/bench.pvm
RAWSZ=$(stat -c %s "$RAW")

# ---- 2. peers -------------------------------------------------------------------
sync
t0=$(now); cp "$RAW" "$OUT/copy"; t1=$(now); sync "$OUT/copy"; t2=$(now)
printf "peer cp       %6.3f GiB/s of file (%s MiB, page cache), %6.3f GiB/s with sync\n" \
	"$(gibs "$(echo "$RAWSZ / 2^30" | bc -l)" "$(secs "$t0" "$t1")")" "$((RAWSZ >> 20))" \
	"$(gibs "$(echo "$RAWSZ / 2^30" | bc -l)" "$(secs "$t0" "$t2")")"
rm -f "$OUT/copy"
if command -v lz4 >/dev/null; then
	t0=$(now); lz4 -1 -q -f "$RAW" "$OUT/copy.lz4"; sync "$OUT/copy.lz4"; t1=$(now)
	printf "peer lz4 -1   %6.3f GiB/s of file (to %s MiB, with sync)\n" \
		"$(gibs "$(echo "$RAWSZ / 2^30" | bc -l)" "$(secs "$t0" "$t1")")" \
		"$(($(stat -c %s "$OUT/copy.lz4") >> 20))"
	rm -f "$OUT/copy.lz4"
fi
P destroy bench >/dev/null
rm -f "$OUT"/bench.pvm*

# ---- 3. continuous checkpoints ---------------------------------------------------------
echo
P create --name cp --memory 1G --vcpus 2 --workload content:counter,dirty:16:65536:2560 >/dev/null
sleep 1
P checkpoint cp "$OUT/cp" --interval-ms 100 --duration-s "$SECS" >"$OUT/cp.out"
grep -E "^epoch 0:" "$OUT/cp.out" | sed 's/^/base (live save): /'
grep -E "^epoch [1-9]" "$OUT/cp.out" | awk '{ print $4, $6, $8 }' | sort -n >"$OUT/pauses"
n=$(wc -l <"$OUT/pauses")
pct() { awk -v p="$1" -v n="$n" 'NR == int((n - 1) * p) + 1 { print $1 }' "$OUT/pauses"; }
echo "continuous, 100 ms interval, guest asked to dirty 20 MiB/s (2 vCPUs x 2560 pages/s), $n epochs:"
echo "  pause ms: min $(pct 0) median $(pct 0.5) p90 $(pct 0.9) max $(pct 1)"
awk '{ pg += $2; mb += $3 } END { printf "  per epoch: %.0f pages (%.1f MiB/s dirtied), %.2f MiB written\n", pg / NR, pg / NR * 4096 / 0.1 / 1048576, mb / NR }' "$OUT/pauses"
tail -1 "$OUT/cp.out"
du -sh "$OUT/cp" | awk '{ print "  directory: " $1 }'
t0=$(now); P destroy cp >/dev/null; P restore -p "$OUT/cp" --json >"$OUT/restore.json"; t1=$(now)
echo "  restore of the newest epoch ($(json "$OUT/restore.json" files) files): $(json "$OUT/restore.json" total_ms) ms"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
