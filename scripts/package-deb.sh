#!/usr/bin/env bash
# Builds the Debian package of pvmig into OUTDIR, then runs lintian on it.
#
#   scripts/package-deb.sh OUTDIR
#
# From a copy of the tracked files (no build directories), with debian/
# and debhelper: dpkg-buildpackage -b. debian/changelog is written here from
# the version in CMakeLists.txt (project(pvmig VERSION ...), the one
# version source). OUTDIR receives pvmig_VERSION_ARCH.deb, the .changes and
# .buildinfo, build.log and lintian.txt. Exit status: non-zero if the build
# fails or lintian reports an error (E:); its warnings are printed, and the
# ones that remain are explained in docs/packaging.md.
#
# DEB_BUILD_OPTIONS is passed on (nocheck skips the unit tests that
# debian/rules runs; parallel=N defaults to the number of cores).
# Needs: dpkg-dev, debhelper, lintian and the build dependencies
# (scripts/install-deps.sh installs them all).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: scripts/package-deb.sh OUTDIR" >&2; exit 2; }
cd "$(dirname "$0")/.."
src=$(pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
for t in dpkg-buildpackage dh lintian git; do
	command -v "$t" >/dev/null || { echo "package-deb: $t is missing (run scripts/install-deps.sh)" >&2; exit 1; }
done
version=$(sed -nE 's/^project\(pvmig VERSION ([0-9]+\.[0-9]+\.[0-9]+).*/\1/p' CMakeLists.txt)
[ -n "$version" ] || { echo "package-deb: no version in CMakeLists.txt" >&2; exit 1; }

work=$(mktemp -d /tmp/pvmig-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
tree=$work/pvmig-$version
mkdir -p "$tree"
# The tracked files as they are in the work tree (edits included).
git -C "$src" ls-files -z --cached | (cd "$src" && xargs -0 cp --parents -t "$tree" 2>/dev/null || true)
[ -f "$tree/debian/control" ] || { echo "package-deb: debian/ is not tracked by git" >&2; exit 1; }

# The changelog's date is the last commit's: SOURCE_DATE_EPOCH (and so the
# man pages' dates) follow the source, not the time of the build.
date=$(git -C "$src" log -1 --format=%cD 2>/dev/null || date -R)
cat >"$tree/debian/changelog" <<EOC
pvmig ($version) unstable; urgency=medium

  * pvmig $version, packaged from the source tree by scripts/package-deb.sh
    (commit $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)).

 -- pvmig maintainers <pvmig@example.org>  $date
EOC

opts=${DEB_BUILD_OPTIONS:-}
[[ $opts == *parallel=* ]] || opts="$opts parallel=$(nproc)"
echo "package-deb: building pvmig $version in $tree (DEB_BUILD_OPTIONS=${opts# })" >&2
if ! (cd "$tree" && DEB_BUILD_OPTIONS=${opts# } dpkg-buildpackage -b -uc -us) >"$out/build.log" 2>&1; then
	tail -30 "$out/build.log" >&2
	echo "package-deb: dpkg-buildpackage failed (whole log: $out/build.log)" >&2
	exit 1
fi
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
# Everything the .changes lists (debhelper also makes pvmig-dbgsym, which
# lintian needs beside it: without it lintian skipped the whole .changes).
for f in "$work"/pvmig*_"${version}"_"${arch}".*; do
	mv "$f" "$out/"
done
echo "package-deb: $out/pvmig_${version}_${arch}.deb" >&2

# lintian on the .changes (the .deb and the .buildinfo). Its exit status
# is non-zero for errors only (the default --fail-on error).
lrc=0
lintian --info --display-info "$out/pvmig_${version}_${arch}.changes" >"$out/lintian.txt" 2>&1 || lrc=$?
cat "$out/lintian.txt"
e=$(grep -c '^E: ' "$out/lintian.txt" || true)
w=$(grep -c '^W: ' "$out/lintian.txt" || true)
i=$(grep -c '^I: ' "$out/lintian.txt" || true)
if [ "$lrc" -ne 0 ] && [ "$e" -eq 0 ]; then
	echo "package-deb: lintian failed (exit $lrc) without reporting an error: see $out/lintian.txt" >&2
	exit 1
fi
echo "package-deb: lintian: $e errors, $w warnings, $i info (see docs/packaging.md)" >&2
[ "$lrc" -eq 0 ] && [ "$e" -eq 0 ]
