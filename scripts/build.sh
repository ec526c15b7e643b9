#!/usr/bin/env bash
# Builds pvmig into build/ (or $1) with warnings as errors.
# Extra arguments after the directory go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
if [ ! -f "$dir/CMakeCache.txt" ]; then
	cmake -S . -B "$dir" "${gen[@]}" "$@" >/dev/null
else
	cmake -S . -B "$dir" "$@" >/dev/null
fi
cmake --build "$dir" -j"$(nproc)"
