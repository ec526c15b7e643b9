#!/usr/bin/env bash
# The test command: installs what is missing, builds pvmig twice (plain with
# -Werror into build/, and with ASan+UBSan into build-asan/) and runs every
# test in both builds. Tests that cannot run here (no root, no network
# namespaces) are reported by CTest as skipped, with their reason.
# Ends with one line "N passed, N failed, N skipped" over both builds.
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh || exit 1

total_pass=0 total_fail=0 total_skip=0 status=0
run_build() {
	local dir=$1; shift
	echo "== build $dir ($*)"
	if ! ./scripts/build.sh "$dir" "$@"; then
		echo "build of $dir failed"
		total_fail=$((total_fail + 1)); status=1; return
	fi
	echo "== tests in $dir"
	local log; log=$(mktemp)
	(cd "$dir" && ctest --output-on-failure --timeout 600 -j2) 2>&1 | tee "$log"
	[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
	local line; line=$(grep -E 'tests passed, [0-9]+ tests failed out of' "$log" | tail -1)
	if [ -z "$line" ]; then
		echo "no CTest summary in $dir"; status=1; total_fail=$((total_fail + 1))
	else
		local failed total skipped
		failed=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"$line")
		total=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2/' <<<"$line")
		skipped=$(grep -cE '\*\*\*Skipped|Not Run' "$log" || true)
		total_fail=$((total_fail + failed))
		total_skip=$((total_skip + skipped))
		total_pass=$((total_pass + total - failed - skipped))
	fi
	rm -f "$log"
}

run_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPVM_WERROR=ON
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	run_build build-asan -DCMAKE_BUILD_TYPE=Debug -DPVM_SANITIZE=ON -DPVM_WERROR=ON

echo "${total_pass} passed, ${total_fail} failed, ${total_skip} skipped"
[ "$total_fail" -eq 0 ] || status=1
exit $status
