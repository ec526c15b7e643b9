#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine (as root): install what is
# needed, build, then run `pvmig demo`: two simulated Xen hosts (two pvmigd
# on loopback, a fresh test CA), one guest with a PV disk and a PV NIC doing
# verified I/O, migrated live over TLS 1.3 from host A to host B and back,
# and the report (each migration's statistics, the guest's I/O counters).
#
#   scripts/demo.sh                  both frontend generations, 512 MiB guests
#   scripts/demo.sh [OPTIONS...]     one run of pvmig demo OPTIONS (see
#                                    pvmig demo --help, e.g. --json)
#
# Exit status: that of pvmig demo (non-zero if a migration failed or the
# guest's I/O saw an error). Two hosts in network namespaces joined by a
# veth pair, and the fault cases, are tests/integration/netns/.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh build >/dev/null
if [ $# -gt 0 ]; then
	exec ./build/pvmig demo "$@"
fi
status=0
for gen in modern legacy; do
	printf '\n######## pvmig demo --memory 512M --frontend %s\n' "$gen"
	./build/pvmig demo --memory 512M --frontend "$gen" || status=1
done
exit $status
