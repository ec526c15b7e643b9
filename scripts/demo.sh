#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine (as root): install what is
# needed, build, and run pvmig's main demonstration.
#
# Until live migration between two simulated hosts exists (issue 7), the
# main job is the transport benchmark: a 1 GiB synthetic guest memory image
# moved over TLS 1.3 + lz4 by pvmig's transport, side by side with
# lz4 | socat OPENSSL and lz4 | ssh, with a report.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh build
exec tests/bench/transport.sh "$@"
