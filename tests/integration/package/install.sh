#!/usr/bin/env bash
# 'cmake --install' of the build tree into a scratch DESTDIR: every file in
# its place (programs, guest helper, unit naming the installed pvmigd,
# example config, man pages, completion); the man pages' title lines; the
# bash completion offering pvmig's real commands and options; and a
# configure without go-md2man still working and saying the man pages were
# skipped. No root needed.
#   $1 = build dir
set -uo pipefail
B=$(cd "$1" && pwd)
SRC=$(cd "$(dirname "$0")/../../.." && pwd)
PVMIG=$B/pvmig
. "$(dirname "$0")/../lib.sh"
W=$(mktemp -d /tmp/pvmig-it-install.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$W"' EXIT
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$B/CMakeCache.txt")
unitdir=$(sed -n 's/^PVM_SYSTEMD_UNITDIR:PATH=//p' "$B/CMakeCache.txt")
[[ $unitdir == /* ]] || unitdir=$prefix/$unitdir
version=$(sed -nE 's/^project\(pvmig VERSION ([0-9.]+).*/\1/p' "$SRC/CMakeLists.txt")
have_md2man=$(sed -n 's/^PVM_GO_MD2MAN:FILEPATH=//p' "$B/CMakeCache.txt")
[[ $have_md2man == *NOTFOUND* ]] && have_md2man=

# 1. Install.
DESTDIR=$W/root cmake --install "$B" >"$W/install.log" 2>&1 && ok "cmake --install (prefix $prefix)" ||
	{ bad "cmake --install: $(tail -5 "$W/install.log")"; echo "$passes passed, $fails failed"; exit 1; }
R=$W/root
files=("$prefix/bin/pvmig" "$prefix/sbin/pvmigd" "$prefix/libexec/pvmig/pvmig-simguest"
	"$unitdir/pvmigd.service" "$prefix/share/doc/pvmig/examples/pvmigd.conf"
	"$prefix/share/bash-completion/completions/pvmig")
[ -n "$have_md2man" ] && files+=("$prefix/share/man/man1/pvmig.1" "$prefix/share/man/man8/pvmigd.8" "$prefix/share/man/man5/pvmigd.conf.5")
for f in "${files[@]}"; do [ -f "$R$f" ] && ok "installed $f" || bad "not installed: $f"; done
for f in "$prefix/bin/pvmig" "$prefix/sbin/pvmigd" "$prefix/libexec/pvmig/pvmig-simguest"; do
	[ -x "$R$f" ] || bad "$f is not executable"
done
grep -qx "ExecStart=$prefix/sbin/pvmigd --foreground" "$R$unitdir/pvmigd.service" &&
	ok "the installed unit runs $prefix/sbin/pvmigd" || bad "unit: $(grep ExecStart= "$R$unitdir/pvmigd.service")"
cmp -s "$SRC/contrib/pvmigd.conf.example" "$R$prefix/share/doc/pvmig/examples/pvmigd.conf" &&
	ok "example config is contrib/pvmigd.conf.example" || bad "example config differs"

# 2. Man pages: title line .TH NAME SECTION DATE "pvmig VERSION" MANUAL,
#    and man(1) renders each without a warning.
if [ -z "$have_md2man" ]; then
	echo "man pages: not built in $B (no go-md2man): title lines not checked"
else
	for p in "pvmig 1 User Commands" "pvmigd 8 System Manager's Manual" "pvmigd.conf 5 File Formats Manual"; do
		read -r name sec manual <<<"$p"
		f=$B/man/$name.$sec title=$(tr '[:lower:]' '[:upper:]' <<<"$name")
		th=$(grep -m1 '^\.TH' "$f")
		[[ $th =~ ^\.TH\ \"$title\"\ \"$sec\"\ \"[0-9]{4}-[0-9]{2}-[0-9]{2}\"\ \"pvmig\ $version\"\ \"$manual\"$ ]] &&
			ok "$name.$sec: $th" || bad "$name.$sec title line: '$th'"
		if command -v man >/dev/null; then
			warn=$(MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings -l "$f" 2>&1 >/dev/null)
			[ -z "$warn" ] && ok "man -l $name.$sec: no groff warning" || bad "man -l $name.$sec: $warn"
			MANWIDTH=80 man -l "$f" 2>/dev/null | grep -q '^NAME' && ok "$name.$sec renders a NAME section" || bad "$name.$sec has no NAME"
		fi
	done
fi

# 3. Bash completion (the installed file) against pvmig's own tables.
comp() { # comp WORD... : what completing the last WORD offers
	bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _pvmig; printf "%s\n" "${COMPREPLY[@]}"' \
		_ "$R$prefix/share/bash-completion/completions/pvmig" "$@" | sort
}
want=$("$PVMIG" help --json | python3 -c 'import json,sys; print("\n".join(sorted(i["name"] for i in json.load(sys.stdin)["items"])))')
got=$(comp "$PVMIG" "")
[ -n "$want" ] && [ "$got" = "$want" ] && ok "pvmig <TAB>: every command, no other ($(echo $got | wc -w))" ||
	bad "commands offered: '$(echo $got)', pvmig has '$(echo $want)'"
got=$(comp "$PVMIG" mi | xargs)
[ "$got" = "migrate migrations" ] && ok "pvmig mi<TAB> -> $got" || bad "pvmig mi<TAB> -> '$got'"
want=$("$PVMIG" migrate --help | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u)
got=$(comp "$PVMIG" migrate web --)
[ "$got" = "$want" ] && ok "pvmig migrate web --<TAB>: its $(echo $want | wc -w) options" ||
	bad "migrate options: '$(echo $got)' vs --help's '$(echo $want)'"
got=$(comp "$PVMIG" -H /tmp save --l | xargs)
want=$("$PVMIG" save --help | grep -oE -- '--l[a-z0-9-]*' | sort -u | xargs)
[ -n "$got" ] && [ "$got" = "$want" ] && ok "after -H DIR: save --l<TAB> -> $got" || bad "save --l -> '$got', --help has '$want'"
got=$(comp "$PVMIG" migrate web --pv-mode "" | xargs)
[ "$got" = "auto cooperative transparent" ] && ok "--pv-mode <TAB> -> $got" || bad "--pv-mode -> '$got'"
got=$(comp "$PVMIG" help st | xargs)
[ "$got" = "status" ] && ok "help st<TAB> -> $got" || bad "help st -> '$got'"
# Domain names come from the local pvmigd.
"$B/pvmigd" --state-dir "$W/st" --foreground 2>"$W/d.log" & P=$!
for _ in $(seq 100); do "$PVMIG" -H "$W/st" info >/dev/null 2>&1 && break; sleep 0.05; done
"$PVMIG" -H "$W/st" create --name webserver --memory 16M >/dev/null 2>&1
got=$(comp "$PVMIG" -H "$W/st" pause we | xargs)
kill -TERM $P; wait $P
[ "$got" = "webserver" ] && ok "pause we<TAB> -> $got (from pvmigd)" || bad "domain completion: '$got'"

# 4. No converter: the build is configured anyway and says what it skipped.
cmake -S "$SRC" -B "$W/nomd" -DPVM_GO_MD2MAN=PVM_GO_MD2MAN-NOTFOUND >"$W/nomd.log" 2>&1; rc=$?
[ $rc -eq 0 ] && grep -q "go-md2man not found: man pages skipped" "$W/nomd.log" &&
	ok "without go-md2man: configured, '$(grep -o 'go-md2man not found: man pages skipped' "$W/nomd.log")'" ||
	bad "configure without go-md2man: exit $rc $(tail -3 "$W/nomd.log")"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
