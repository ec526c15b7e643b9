#!/usr/bin/env bash
# Migration benchmark (issues 7, 18): pvmig against QEMU, on this machine,
# with guests whose memory holds the same content.
#
# Content (hv/sim/guest/content.h; docs/benchmarks.md): each setting runs
# twice, with `random` (incompressible) and `mixed` (pages drawn with the
# class shares and lz4 ratios measured from a booted guest's RAM) content.
# Both guests write whole pages of that content with one generator
# (hv/sim/guest/content.c, built into the simulated guest and into the QEMU
# guest's dirtier), pages of the working set identical page for page.
#
# pvmig: two pvmigd (simulated Xen hosts) on loopback, TLS 1.3 always; a
# 1 GiB, 2-vCPU guest with a PV disk and a PV NIC (workload blk:200,net:200,
# whose own counters say whether any I/O went wrong) and boot:$BOOT of the
# content populated at start (what QEMU's guest holds once its kernel has
# booted: 93.5 MiB of non-zero pages, measured from a pmemsave of it;
# random content there is conservative: QEMU sends its kernel's pages raw
# whatever they hold, as pvmig sends random ones), in three settings:
#   idle        no memory dirtying (only the disk/NIC workload)
#   50MiB/s     dirty:16:65536:6400   256 MiB set, 6400 pages/s per vCPU
#   200MiB/s    dirty:16:65536:25600  256 MiB set, 25600 pages/s per vCPU
# The working set is written once at start, then rewritten at the rate.
# Migrated A->B, B->A, ... --reps times (default 3): median total time and
# downtime, bytes on the wire, workload errors.
#
# QEMU: a 1 GiB, 2-vCPU guest running Debian's kernel with a busybox
# initramfs whose init runs tests/bench/migrate/dirtier.c (the same job:
# COUNT pages of CONTENT written at start, then rewritten at RATE per
# thread; it checks each page's checksum before rewriting it). The kernel
# and busybox are fetched with `apt-get download` and unpacked (dpkg -x),
# never installed, into $QEMU_CACHE (default /var/tmp/pvmig-bench-qemu).
# Loopback TCP, max-bandwidth raised, QEMU's default downtime target, once
# plain and once with tls-creds-x509, in the same run. /dev/kvm here is a
# nested implementation that cannot boot a stock kernel, so QEMU runs with
# -accel tcg -cpu qemu64. After each run the destination's serial log must
# keep its heartbeats with errors=0 and show no panic/Oops ("survived").
#
# Ends with, for SETTING in idle 50MiB/s 200MiB/s and CONTENT in random
# mixed (pvmig median / QEMU-plain median):
#   downtime ratio vs qemu-plain SETTING CONTENT: X
#   total ratio vs qemu-plain SETTING CONTENT: X
#   wire bytes ratio vs qemu-plain SETTING CONTENT: X
#   workload errors SETTING CONTENT: N          (pvmig's guest)
#   pvmig compression SETTING CONTENT: X        (page bytes / wire bytes)
# and the same ratios vs qemu-tls.
#
# Usage: tests/bench/migrate.sh [--reps N] [--qemu-reps N] [--no-qemu]
#        [--contents "random mixed"] [--settings "idle 50MiB/s 200MiB/s"]
#        [--boot SIZE] [--keep]
# A benchmark, not a test: it reports, it does not pass or fail.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
REPS=3 QREPS=3 QEMU=1 KEEP=0 BOOT=96M
CONTENTS="random mixed" SETTING_LIST="idle 50MiB/s 200MiB/s"
while [ $# -gt 0 ]; do
	case $1 in
	--reps) REPS=$2; shift 2 ;;
	--qemu-reps) QREPS=$2; shift 2 ;;
	--no-qemu) QEMU=0; shift ;;
	--contents) CONTENTS=$2; shift 2 ;;
	--settings) SETTING_LIST=$2; shift 2 ;;
	--boot) BOOT=$2; shift 2 ;;
	--keep) KEEP=1; shift ;;
	*) echo "usage: $0 [--reps N] [--qemu-reps N] [--no-qemu] [--contents \"random mixed\"] [--settings \"idle 50MiB/s 200MiB/s\"] [--boot SIZE] [--keep]" >&2; exit 2 ;;
	esac
done
read -ra SETTINGS <<<"$SETTING_LIST"
read -ra CONTENT <<<"$CONTENTS"
declare -A WL=([idle]="blk:200,net:200"
	[50MiB/s]="dirty:16:65536:6400,blk:200,net:200"
	[200MiB/s]="dirty:16:65536:25600,blk:200,net:200")
# QEMU dirtier: pages, pages/s per thread (2 threads, as 2 vCPUs)
declare -A QWL=([idle]="0 0" [50MiB/s]="65536 6400" [200MiB/s]="65536 25600")
T_START=$(date +%s)

./scripts/build.sh build-bench >/dev/null 2>"${TMPDIR:-/tmp}/pvmig-bench-build.err" ||
	[ -x build-bench/pvmig ] || { cat "${TMPDIR:-/tmp}/pvmig-bench-build.err"; exit 1; }
PVMIG=$ROOT/build-bench/pvmig PVMIGD=$ROOT/build-bench/pvmigd
for t in python3 xenstore-read; do
	command -v $t >/dev/null || { echo "migrate.sh: needs $t (scripts/install-deps.sh)" >&2; exit 1; }
done

W=$(mktemp -d /tmp/pvmig-bench-migrate.XXXXXX)
. tests/integration/lib.sh
cleanup() {
	stop_hosts
	if [ "$KEEP" = 1 ]; then echo "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); $(date -u +%FT%TZ)"

# ---- pvmig ----------------------------------------------------------------
"$PVMIG" tls-init "$W/certs" hosta hostb >/dev/null 2>&1 || { echo "tls-init failed"; exit 1; }
for h in a b; do start_host $h 'backend = sim'; done


echo
echo "== pvmig: 2 pvmigd on 127.0.0.1:${PORT[a]} / :${PORT[b]}, TLS 1.3 + lz4, 1 GiB guest, 2 vCPUs,"
echo "   PV disk + PV NIC (modern frontend), boot:$BOOT populated, $REPS migrations per setting (A->B, B->A, ...)"
truncate -s 64M "$W/disk.img"
for c in "${CONTENT[@]}"; do
for s in "${SETTINGS[@]}"; do
	tag=${s//\//}-$c
	name=bench-$tag
	if ! "$PVMIG" -H "$W/a" create --name "$name" --memory 1G --vcpus 2 --disk "$W/disk.img" --nic \
		--workload "content:$c,boot:$BOOT,${WL[$s]}" >/dev/null 2>"$W/err"; then
		echo "$s $c: create failed: $(cat "$W/err")"; continue
	fi
	sleep 4 # boot content and working set written (about 0.5 s unloaded)
	here=a there=b
	for r in $(seq "$REPS"); do
		before=$(counters $here "$name")
		timeout 300 "$PVMIG" -H "$W/$here" migrate "$name" "127.0.0.1:${PORT[$there]}" --json \
			>"$W/pv-$tag-$r.json" 2>"$W/err" || echo "$s rep $r: migrate failed: $(cat "$W/err")"
		sleep 1.5
		after=$(counters $there "$name")
		echo "$before" >"$W/pv-$tag-$r.before"
		echo "$after" >"$W/pv-$tag-$r.after"
		python3 - "$W/pv-$tag-$r.json" "$s $c" "$r" "$before" "$after" <<'EOP'
import json, sys
path, s, r, before, after = sys.argv[1:]
kv = lambda t: dict(x.split("=", 1) for x in t.split())
b, a = kv(before), kv(after)
try:
    res = json.load(open(path))["result"]
except Exception:
    res = {}
errs = sum(int(a.get(k, "0")) if a.get(k, "?").isdigit() else 1
           for k in ("blk-verify-fail", "blk-io-errors", "net-dup", "net-ooo"))
moved = all(a.get(k, "?").isdigit() and b.get(k, "?").isdigit() and int(a[k]) > int(b[k])
            for k in ("blk-reads", "net-received"))
lost = (int(a["net-lost"]) - int(b["net-lost"])) if a.get("net-lost", "?").isdigit() and b.get("net-lost", "?").isdigit() else "?"
print(f"  {s:<16} rep {r}: {res.get('result', 'FAILED')}, total {res.get('total_ms')} ms, downtime {res.get('downtime_ms')} ms, "
      f"rounds {res.get('rounds')}, {int(res.get('wire_bytes', 0)) / 1048576:.1f} MiB on the wire "
      f"(compression {res.get('compression_ratio')}), throughput {res.get('throughput_mib_s')} MiB/s, "
      f"throttle max {res.get('throttle_max_pct')}%, "
      f"errors {errs}, lost packets this move {lost}, I/O goes on: {'yes' if moved else 'NO'}")
num = lambda x: None if x is None else float(x)
json.dump({"total_ms": num(res.get("total_ms")), "downtime_ms": num(res.get("downtime_ms")),
           "bytes": num(res.get("wire_bytes")), "compression": num(res.get("compression_ratio")),
           "ok": res.get("result") == "done",
           "errors": errs, "lost": lost, "moved": moved}, open(path + ".sum", "w"))
EOP
		t=$here; here=$there; there=$t
	done
	"$PVMIG" -H "$W/$here" destroy "$name" >/dev/null 2>&1
done
done

# ---- QEMU -----------------------------------------------------------------
QEMU_NOTE=""
QC=${QEMU_CACHE:-/var/tmp/pvmig-bench-qemu}
qemu_prepare() {
	if ! command -v qemu-system-x86_64 >/dev/null; then
		echo "   qemu-system-x86_64 missing: apt-get install qemu-system-x86 ..."
		DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends qemu-system-x86 >"$W/apt.log" 2>&1 ||
			{ QEMU_NOTE="qemu-system-x86 could not be installed ($(tail -1 "$W/apt.log"))"; return 1; }
	fi
	command -v gcc >/dev/null || { QEMU_NOTE="gcc is needed to build the dirtier"; return 1; }
	mkdir -p "$QC/deb"
	local kpkg kimg
	kimg=$(ls "$QC"/root/boot/vmlinuz-6.1.0-*-amd64 2>/dev/null | sort -V | tail -1)
	if [ -z "$kimg" ] || [ ! -x "$QC/root/bin/busybox" ]; then
		kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-6.1/ {print $2; exit}')
		[ -n "$kpkg" ] || kpkg=$(apt-cache search '^linux-image-6\.1\.0-[0-9]+-amd64$' | awk '{print $1}' | sort -V | tail -1)
		[ -n "$kpkg" ] || { QEMU_NOTE="no linux-image-6.1.0-*-amd64 in apt's lists (apt-get update?)"; return 1; }
		(cd "$QC/deb" && timeout 600 apt-get download "$kpkg" busybox-static >"$W/apt.log" 2>&1) ||
			{ QEMU_NOTE="apt-get download $kpkg busybox-static failed ($(tail -1 "$W/apt.log"))"; return 1; }
		for d in "$QC"/deb/*.deb; do dpkg -x "$d" "$QC/root" || { QEMU_NOTE="dpkg -x $d failed"; return 1; }; done
		kimg=$(ls "$QC"/root/boot/vmlinuz-6.1.0-*-amd64 2>/dev/null | sort -V | tail -1)
	fi
	[ -n "$kimg" ] || { QEMU_NOTE="no kernel image after unpacking"; return 1; }
	KERNEL=$kimg
	gcc -O2 -static -pthread -Wall -I. -o "$W/dirtier" tests/bench/migrate/dirtier.c hv/sim/guest/content.c 2>"$W/gcc.err" ||
		{ QEMU_NOTE="static build of the dirtier failed: $(head -3 "$W/gcc.err")"; return 1; }
	python3 tests/bench/migrate/qemu.py initramfs "$W/initrd.cpio" "$QC/root/bin/busybox" "$W/dirtier" ||
		{ QEMU_NOTE="initramfs build failed"; return 1; }
	# QEMU's TLS file names; server cert for "localhost" (tls-hostname).
	local d=$W/qtls
	mkdir -p "$d"
	(
		cd "$d" || exit 1
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
			-subj /CN=bench-ca -keyout ca-key.pem -out ca-cert.pem \
			-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
		for role in server client; do
			openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$([ $role = server ] && echo localhost || echo bench-client)" \
				-keyout $role-key.pem -out $role.csr
			printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=%s\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' \
				"$([ $role = server ] && echo serverAuth || echo clientAuth)" >$role.ext
			openssl x509 -req -in $role.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
				-extfile $role.ext -out $role-cert.pem
		done
	) >"$W/openssl.log" 2>&1 || { QEMU_NOTE="openssl failed: $(tail -2 "$W/openssl.log")"; return 1; }
	return 0
}

if [ "$QEMU" = 1 ]; then
	echo
	echo "== QEMU: preparing (kernel + busybox-static via apt-get download into $QC, dirtier, initramfs, TLS certs)"
	if qemu_prepare; then
		QVER=$(qemu-system-x86_64 --version | head -1)
		echo "   $QVER; kernel $(basename "$KERNEL") (Debian), busybox initramfs + static dirtier"
		echo "   NOTE: /dev/kvm here is a nested implementation that cannot boot a stock kernel:"
		echo "   QEMU runs with -accel tcg -cpu qemu64 (software emulation, MTTCG), 1 GiB, 2 vCPUs;"
		echo "   migration over tcp:127.0.0.1, max-bandwidth 100 GiB/s, default downtime-limit (300 ms)"
		if [ "$QREPS" -lt "$REPS" ]; then echo "   QEMU reps reduced to $QREPS per setting and mode (pvmig: $REPS)"; fi
		for c in "${CONTENT[@]}"; do
		for s in "${SETTINGS[@]}"; do
			tag=${s//\//}-$c
			read -r qcount qrate <<<"${QWL[$s]}"
			for mode in plain tls; do
				tlsarg=(); [ $mode = tls ] && tlsarg=(--tls "$W/qtls")
				for r in $(seq "$QREPS"); do
					timeout 600 python3 tests/bench/migrate/qemu.py run --kernel "$KERNEL" --initrd "$W/initrd.cpio" \
						--work "$W/q-$tag-$mode" --count "$qcount" --rate "$qrate" --content "$c" "${tlsarg[@]}" \
						>"$W/q-$tag-$mode-$r.json" 2>"$W/q.err" ||
						echo "{\"status\": \"runner failed: $(tail -1 "$W/q.err" | tr -d '"\\')\"}" >"$W/q-$tag-$mode-$r.json"
					python3 - "$W/q-$tag-$mode-$r.json" "$s $c" "$mode" "$r" <<'EOP'
import json, sys
r = json.load(open(sys.argv[1]))
s, mode, rep = sys.argv[2:]
line = f"  {s:<16} qemu-{mode:<5} rep {rep}: {r['status']}"
if r.get("status") == "completed":
    line += (f", total {r['total_ms']} ms, downtime {r['downtime_ms']} ms, {r['bytes'] / 1048576:.1f} MiB sent, "
             f"dirtier at {r.get('dirty_mib_s', '?')} MiB/s, "
             f"destination {'survived' if r.get('survived') else 'DID NOT SURVIVE'}")
    if not r.get("survived"):
        line += f" ({r.get('dst_status')}; {', '.join(r.get('dst_bad') or [])}; guest errors={r.get('errors')})"
print(line)
EOP
				done
			done
		done
		done
	else
		echo "   QEMU not measured: $QEMU_NOTE"
	fi
fi

# ---- report -----------------------------------------------------------------
echo
python3 - "$W" "$REPS" "$QREPS" "$QEMU" "$QEMU_NOTE" "${SETTINGS[*]}" "${CONTENT[*]}" <<'EOP'
import json, os, statistics, sys
w, reps, qreps, qemu, note = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
settings, contents = sys.argv[6].split(), sys.argv[7].split()
def load(p):
    try:
        return json.load(open(p))
    except Exception:
        return None
def med(xs):
    xs = [float(x) for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def fmt(x, nd=0):
    return "-" if x is None else f"{x:.{nd}f}"
def ratio(a, b):
    return f"{a / b:.3f}" if a is not None and b else "not measured"
lines, targets = [], []
print("== results (medians; MiB sent = median bytes on the wire per migration)")
for c in contents:
  for s in settings:
    tag = s.replace("/", "") + "-" + c
    pv = [load(f"{w}/pv-{tag}-{r}.json.sum") for r in range(1, reps + 1)]
    pv = [x for x in pv if x]
    ok = [x for x in pv if x["ok"]]
    row = {}
    perr = sum(x["errors"] for x in pv) if pv else None
    row["pvmig"] = (med([x["total_ms"] for x in ok]), med([x["downtime_ms"] for x in ok]),
                    med([x["bytes"] for x in ok]),
                    f"{len(ok)}/{reps} done, workload errors {fmt(perr)}, "
                    f"I/O went on after {sum(1 for x in pv if x['moved'])}/{len(pv)}, "
                    f"packets lost {sum(x['lost'] for x in pv if isinstance(x['lost'], int))}")
    comp = med([x.get("compression") for x in ok])
    for mode in ("plain", "tls"):
        q = [load(f"{w}/q-{tag}-{mode}-{r}.json") for r in range(1, qreps + 1)] if qemu == "1" else []
        q = [x for x in q if x]
        done = [x for x in q if x.get("status") == "completed"]
        if not q:
            row["qemu-" + mode] = (None, None, None, "not measured: " + (note or "--no-qemu"))
            continue
        row["qemu-" + mode] = (med([x["total_ms"] for x in done]), med([x["downtime_ms"] for x in done]),
                               med([x["bytes"] for x in done]),
                               f"{len(done)}/{len(q)} completed, destination survived "
                               f"{sum(1 for x in done if x.get('survived'))}/{len(q)}")
    print(f"\n{s} {c}:")
    print(f"  {'':<11} {'total ms':>9} {'downtime ms':>12} {'MiB sent':>9}  errors / survived")
    for k, (t, d, b, e) in row.items():
        print(f"  {k:<11} {fmt(t, 1):>9} {fmt(d, 1):>12} {fmt(None if b is None else b / 1048576, 1):>9}  {e}")
    pt, pd, pb = row["pvmig"][:3]
    for mode in ("plain", "tls"):
        qt, qd, qb = row["qemu-" + mode][:3]
        lines.append(f"downtime ratio vs qemu-{mode} {s} {c}: {ratio(pd, qd)}")
        lines.append(f"total ratio vs qemu-{mode} {s} {c}: {ratio(pt, qt)}")
        lines.append(f"wire bytes ratio vs qemu-{mode} {s} {c}: {ratio(pb, qb)}")
        if mode == "plain":
            rd, rt = ratio(pd, qd), ratio(pt, qt)
            targets.append((f"{s} {c}: downtime ratio vs qemu-plain <= 0.5", rd != "not measured" and float(rd) <= 0.5, rd))
            targets.append((f"{s} {c}: total ratio vs qemu-plain <= 1.0", rt != "not measured" and float(rt) <= 1.0, rt))
    lines.append(f"workload errors {s} {c}: {fmt(perr)}")
    lines.append(f"pvmig compression {s} {c}: {fmt(comp, 2)}")
    targets.append((f"{s} {c}: zero workload errors in every pvmig run", perr == 0 and len(pv) == reps, fmt(perr)))
print()
for l in lines:
    print(l)
print("\n== targets (issue 18: TLS always on for pvmig, against QEMU plain)")
for what, met, val in targets:
    print(f"  {'met    ' if met else 'NOT met'}  {what} (measured {val})")
EOP
echo
echo "pvmig errors = blk-verify-fail + blk-io-errors + net-dup + net-ooo from the guest's"
echo "xenstore counters (data/workload); lost packets are counted apart: the modern frontend,"
echo "like Linux netfront, drops the replies left in its old rx ring at resume."
echo "QEMU 'survived' = destination still running, heartbeats with errors=0, no panic/Oops/BUG in its serial log."
echo "elapsed: $(( $(date +%s) - T_START )) s"
