#!/usr/bin/env bash
# The Debian package as an administrator gets it: scripts/package-deb.sh
# builds it (lintian: no error), its contents are checked (both programs,
# the guest helper, the unit naming the installed pvmigd, the example
# config, three man pages with their title lines, the completion), then it
# is installed on this machine with dpkg, the installed programs run the
# demo (pvmig demo: two pvmigd, a guest migrated A->B->A), the installed
# man pages, unit and completion are used, and the package is purged,
# leaving none of its files. Root only; skips if pvmig is already
# installed here (an administrator's copy is not replaced by a test's).
#   $1 = build dir (unused: the package builds from the source tree)
set -uo pipefail
SRC=$(cd "$(dirname "$0")/../../.." && pwd)
. "$(dirname "$0")/../lib.sh"
[ "$(id -u)" = 0 ] || { echo "skip: installing a package needs root (uid $(id -u))"; exit 77; }
for t in dpkg-buildpackage dh lintian go-md2man; do
	command -v "$t" >/dev/null || { echo "skip: $t is missing (scripts/install-deps.sh installs it)"; exit 77; }
done
if dpkg-query -W -f='${Status}' pvmig 2>/dev/null | grep -q 'install ok installed'; then
	echo "skip: a pvmig package is already installed on this machine; not replacing it"; exit 77
fi
W=$(mktemp -d /tmp/pvmig-it-pkg.XXXXXX)
installed=
cleanup() {
	[ -n "$installed" ] && dpkg --purge pvmig >/dev/null 2>&1
	[ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
t0=$(date +%s)

# 1. Build (the unit tests run in the test command already: nocheck).
DEB_BUILD_OPTIONS=nocheck "$SRC/scripts/package-deb.sh" "$W/out" >"$W/pkg.out" 2>"$W/pkg.err"; rc=$?
t1=$(date +%s)
deb=$(ls "$W"/out/pvmig_*.deb 2>/dev/null | head -1)
if [ $rc -ne 0 ] || [ -z "$deb" ]; then
	bad "package-deb.sh: exit $rc: $(tail -5 "$W/pkg.err")"; tail -20 "$W/out/lintian.txt" 2>/dev/null
	echo "$passes passed, $fails failed"; exit 1
fi
ok "built $(basename "$deb") in $((t1 - t0)) s; $(grep 'lintian:' "$W/pkg.err")"
grep -E '^[EW]: ' "$W/out/lintian.txt" | sed 's/^/  lintian /'

# 2. Its control fields and contents.
version=$(sed -nE 's/^project\(pvmig VERSION ([0-9.]+).*/\1/p' "$SRC/CMakeLists.txt")
[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] && ok "Version $version (CMakeLists.txt's)" ||
	bad "Version '$(dpkg-deb -f "$deb" Version)', CMake says $version"
deps=$(dpkg-deb -f "$deb" Depends)
[[ $deps == *libssl3* && $deps == *liblz4* ]] && ok "Depends: $deps" || bad "Depends: $deps"
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's#^\./#/#' >"$W/files"
for f in /usr/bin/pvmig /usr/sbin/pvmigd /usr/libexec/pvmig/pvmig-simguest \
	/lib/systemd/system/pvmigd.service /usr/share/doc/pvmig/examples/pvmigd.conf \
	/usr/share/man/man1/pvmig.1.gz /usr/share/man/man8/pvmigd.8.gz \
	/usr/share/man/man5/pvmigd.conf.5.gz /usr/share/bash-completion/completions/pvmig; do
	grep -qx "$f" "$W/files" && ok "contains $f" || bad "missing $f"
done

# 3. Install it on this machine.
dpkg -i "$deb" >"$W/dpkg.out" 2>&1 && installed=1 && ok "dpkg -i" || { bad "dpkg -i: $(tail -5 "$W/dpkg.out")"; echo "$passes passed, $fails failed"; exit 1; }
[ "$(/usr/sbin/pvmigd --version)" = "pvmigd $version" ] && [ "$(/usr/bin/pvmig --version)" = "pvmig $version" ] &&
	ok "installed --version: $(/usr/sbin/pvmigd --version), $(/usr/bin/pvmig --version)" || bad "installed versions"
grep -qx "ExecStart=/usr/sbin/pvmigd --foreground" /lib/systemd/system/pvmigd.service &&
	ok "the unit runs /usr/sbin/pvmigd" || bad "unit: $(grep ExecStart /lib/systemd/system/pvmigd.service)"
if command -v systemd-analyze >/dev/null; then
	# With the man pages installed, Documentation=man:... is checked too.
	systemd-analyze verify /lib/systemd/system/pvmigd.service >"$W/verify" 2>&1 && [ ! -s "$W/verify" ] &&
		ok "systemd-analyze verify of the installed unit (its man: links resolve)" || bad "verify: $(cat "$W/verify")"
fi
for p in pvmig.1:PVMIG:1 pvmigd.8:PVMIGD:8 pvmigd.conf.5:PVMIGD.CONF:5; do
	IFS=: read -r page title sec <<<"$p"
	f=$(man -w "${page%.*}" "$sec" 2>/dev/null) th=$(zcat "$f" 2>/dev/null | grep -m1 '^\.TH')
	[[ $th == ".TH \"$title\" \"$sec\" \""*"\" \"pvmig $version\" \""*"\"" ]] && ok "man -w finds $f: $th" || bad "man page $page: '$f' '$th'"
done
/usr/sbin/pvmigd --check-config --config /usr/share/doc/pvmig/examples/pvmigd.conf >"$W/cc" 2>&1
grep -q "tls-ca /etc/pvmig/tls/ca.pem: cannot read it" "$W/cc" && ok "installed example config checked: $(head -1 "$W/cc")" ||
	bad "check-config of the example: $(cat "$W/cc")"
comp=$(bash -c 'source /usr/share/bash-completion/completions/pvmig; COMP_WORDS=(pvmig mi); COMP_CWORD=1; _pvmig; echo "${COMPREPLY[*]}"')
[ "$comp" = "migrate migrations" ] && ok "installed completion: pvmig mi<TAB> -> $comp" || bad "completion 'mi': '$comp'"

# 4. The demo from the installed programs only: PATH without the build
#    tree or /usr/sbin, so pvmig must find /usr/sbin/pvmigd where it was
#    installed and pvmigd /usr/libexec/pvmig/pvmig-simguest.
(cd / && env -i PATH=/usr/bin:/bin HOME=/root timeout 240 /usr/bin/pvmig demo --memory 64M) >"$W/demo.out" 2>&1; rc=$?
[ $rc -eq 0 ] && ok "installed pvmig demo: exit 0, $(grep -ciE 'migrat' "$W/demo.out") lines about migrations" ||
	{ bad "installed pvmig demo: exit $rc"; tail -20 "$W/demo.out"; }

# 5. Remove and purge: nothing of it left.
dpkg --purge pvmig >"$W/purge.out" 2>&1 && installed= && ok "dpkg --purge" || bad "purge: $(tail -3 "$W/purge.out")"
left=$(while read -r f; do [ -f "$f" ] && echo "$f"; done <"$W/files")
[ -z "$left" ] && ok "no file of the package left" || bad "left after purge: $left"
echo "package test: $(( $(date +%s) - t0 )) s (build $((t1 - t0)) s)"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
