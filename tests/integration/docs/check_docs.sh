#!/usr/bin/env bash
# Fails when the reference docs drift from the programs.
#   $1 = build dir (pvmig, pvmigd, pvmig-simguest)
#
# What is checked (each line of output is one check, "ok:" or "FAIL:"):
#  docs/pvmig.1.md
#   - every command listed under "Commands:" by `pvmig --help` has a section
#     "### pvmig COMMAND", and every such section names a listed command;
#   - for each command, `pvmig COMMAND --help` succeeds, its usage paragraph
#     appears (whitespace-normalised) in the command's section, and every
#     long option it prints (--word) appears in that section's prose (not
#     only in its synopsis block);
#   - every long option under "Options:" of `pvmig --help` is in OPTIONS.
#  docs/pvmigd.8.md
#   - the usage paragraph of `pvmigd --help` is in SYNOPSIS and every long
#     option it prints is in OPTIONS.
#  docs/pvmigd.conf.5.md, from migrate/config.c (the keys are extracted
#  with sed, see "Config keys" below; no list is kept by hand):
#   - every key accepted by apply() has a section "### KEY" under KEYS, and
#     every such section is an accepted key;
#   - for set_uint() keys, the range "LO..HI" appears in the key's section;
#     for keys whose values are compared with strcmp(v, "X"), every X does;
#   - the numeric and string defaults set in pvm_service_config_defaults()
#     appear as "Default: `VALUE`" in the key's section;
#   - the first code block of EXAMPLE is contrib/pvmigd.conf.example.
#  contrib/pvmigd.conf.example
#   - pvmigd loads it: a temp copy (TLS files made with `pvmig tls-init`
#     in a temp dir, listen on 127.0.0.1, a free port) is run with
#     --state-dir $(mktemp -d) --foreground until `pvmig -H DIR info`
#     answers with that state dir (the command line beats the file), then
#     stopped by its PID with SIGTERM (exit status 0, control.sock gone);
#   - a copy with an unknown key is refused with exit status 2 and an
#     error naming FILE:LINE.
# Ends with "N passed, N failed"; exit status 1 if anything failed.
set -uo pipefail
B=$(cd "$1" && pwd)
SRC=$(cd "$(dirname "$0")/../../.." && pwd)
PVMIG=$B/pvmig PVMIGD=$B/pvmigd
MAN1=$SRC/docs/pvmig.1.md MAN8=$SRC/docs/pvmigd.8.md MAN5=$SRC/docs/pvmigd.conf.5.md
CONFIG_C=$SRC/migrate/config.c MIGRATE_H=$SRC/migrate/migrate.h
EXAMPLE=$SRC/contrib/pvmigd.conf.example
W=$(mktemp -d /tmp/pvmig-docs.XXXXXX)
DPID=
passes=0 fails=0
ok() { echo "ok: $*"; passes=$((passes + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
cleanup() {
	if [ -n "$DPID" ]; then kill "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null; fi
	rm -rf "$W"
}
trap cleanup EXIT

for f in "$PVMIG" "$PVMIGD"; do
	[ -x "$f" ] || { echo "FAIL: $f is not built"; echo "0 passed, 1 failed"; exit 1; }
done
for f in "$MAN1" "$MAN8" "$MAN5" "$EXAMPLE" "$CONFIG_C"; do
	[ -f "$f" ] || { echo "FAIL: $f is missing"; echo "0 passed, 1 failed"; exit 1; }
done

# section FILE "HEADING LINE": the heading and its body, up to the next
# heading of the same or a higher level; headings inside ``` are text.
section() {
	awk -v h="$2" '
		/^```/ { fence = !fence }
		!fence && /^#+ / {
			lvl = match($0, /[^#]/) - 1
			if (on && lvl <= hl) exit
			if ($0 == h) { on = 1; hl = lvl }
		}
		on { print }' "$1"
}
# Whitespace runs become one space; no leading/trailing space.
norm() { tr -s '[:space:]' ' ' | sed 's/^ //; s/ $//'; }
# The first paragraph (up to the first empty line).
first_para() { awk '/^[[:space:]]*$/ { exit } { print }'; }
long_opts() { grep -oE -- '--[a-z][a-z0-9-]*' | sort -u; }
# has_word TEXT WORD: WORD appears, not as part of a longer --option.
has_word() {
	local re
	re="(^|[^a-z0-9-])$(printf '%s' "$2" | sed 's/[.]/\\./g')([^a-z0-9-]|\$)"
	# A here-string, not a pipe: under pipefail, grep -q leaving early
	# would fail printf with SIGPIPE on a long TEXT (a flaky "lacks").
	grep -qE -- "$re" <<<"$1"
}

# ---- pvmig(1) ------------------------------------------------------------
top_help=$("$PVMIG" --help) || bad "pvmig --help failed"
cmds=$(printf '%s\n' "$top_help" | awk '/^Commands:/ { f = 1; next } f && /^[[:space:]]*$/ { exit } f { print $1 }')
if [ -z "$cmds" ]; then
	bad "no commands found under 'Commands:' in pvmig --help"
fi
for c in $cmds; do
	sec=$(section "$MAN1" "### pvmig $c")
	if [ -z "$sec" ]; then
		bad "pvmig.1.md: no section '### pvmig $c'"
		continue
	fi
	ok "pvmig.1.md has a section for '$c'"
	if [ "$c" = help ]; then
		# 'pvmig help --help' is "unknown command '--help'" (exit 2):
		# help has no --help of its own; its section is enough.
		continue
	fi
	h=$("$PVMIG" "$c" --help 2>&1)
	rc=$?
	if [ $rc -ne 0 ] || [ -z "$h" ]; then
		bad "pvmig $c --help: exit status $rc"
		continue
	fi
	usage=$(printf '%s\n' "$h" | first_para | norm)
	if grep -qF -- "$usage" <<<"$(printf '%s' "$sec" | norm)"; then
		ok "pvmig.1.md: '$c' synopsis matches --help"
	else
		bad "pvmig.1.md: section '$c' lacks the usage of 'pvmig $c --help': $usage"
	fi
	# Options must be described, not only shown in the synopsis block.
	prose=$(printf '%s\n' "$sec" | awk '/^```/ { fence = !fence; next } !fence')
	missing=
	for o in $(printf '%s\n' "$h" | long_opts); do
		has_word "$prose" "$o" || missing="$missing $o"
	done
	if [ -z "$missing" ]; then
		ok "pvmig.1.md: every option of 'pvmig $c --help' is documented"
	else
		bad "pvmig.1.md: section '$c' lacks$missing"
	fi
done
# Sections for commands that no longer exist.
for c in $(sed -n 's/^### pvmig \([^ ]*\)$/\1/p' "$MAN1"); do
	grep -qxF -- "$c" <<<"$cmds" ||
		bad "pvmig.1.md: section '### pvmig $c' but pvmig --help lists no '$c'"
done
sec=$(section "$MAN1" "## OPTIONS")
missing=
for o in $(printf '%s\n' "$top_help" | sed -n '/^Options:/,$p' | long_opts); do
	has_word "$sec" "$o" || missing="$missing $o"
done
[ -z "$missing" ] && [ -n "$sec" ] && ok "pvmig.1.md: global options documented" ||
	bad "pvmig.1.md: OPTIONS lacks$missing"

# ---- pvmigd(8) -------------------------------------------------------------
dh=$("$PVMIGD" --help) || bad "pvmigd --help failed"
usage=$(printf '%s\n' "$dh" | first_para | norm)
grep -qF -- "$usage" <<<"$(section "$MAN8" "## SYNOPSIS" | norm)" &&
	ok "pvmigd.8.md: synopsis matches pvmigd --help" ||
	bad "pvmigd.8.md: SYNOPSIS lacks the usage of pvmigd --help: $usage"
sec=$(section "$MAN8" "## OPTIONS")
missing=
for o in $(printf '%s\n' "$dh" | long_opts); do
	has_word "$sec" "$o" || missing="$missing $o"
done
[ -z "$missing" ] && [ -n "$sec" ] && ok "pvmigd.8.md: every option of pvmigd --help is documented" ||
	bad "pvmigd.8.md: OPTIONS lacks$missing"

# ---- pvmigd.conf(5) --------------------------------------------------------
# Config keys: apply() in migrate/config.c tests each key with
#   if (!strcmp(k, "KEY"))
# so the keys are what
#   grep -o 'strcmp(k, "[^"]*")' migrate/config.c | sed 's/^strcmp(k, "//; s/")$//'
# prints. Inside a key's block (up to the next strcmp(k, ...)),
# "set_uint(&..., v, LO, HI)" gives its range and "strcmp(v, "X")" its
# allowed values; awk tracks the current key(s).
keys=$(grep -o 'strcmp(k, "[^"]*")' "$CONFIG_C" | sed 's/^strcmp(k, "//; s/")$//')
if [ -z "$keys" ]; then
	bad "no keys extracted from migrate/config.c (did apply() change shape?)"
fi
facts=$(awk '
	# strcmp(k, "KEY"): 11 characters before KEY, 2 after.
	/strcmp\(k, "/ {
		nk = 0; s = $0
		while (match(s, /strcmp\(k, "[^"]*"\)/)) {
			key[++nk] = substr(s, RSTART + 11, RLENGTH - 13)
			s = substr(s, RSTART + RLENGTH)
		}
	}
	nk && match($0, /set_uint\([^;]*\)/) {
		split(substr($0, RSTART, RLENGTH), a, /[,)] */)
		gsub(/ /, "", a[3]); gsub(/ /, "", a[4])
		for (i = 1; i <= nk; i++) print key[i], "range", a[3] ".." a[4]
	}
	nk && /strcmp\(v, "/ {
		s = $0
		while (match(s, /strcmp\(v, "[^"]*"\)/)) {
			for (i = 1; i <= nk; i++)
				print key[i], "value", substr(s, RSTART + 11, RLENGTH - 13)
			s = substr(s, RSTART + RLENGTH)
		}
	}' "$CONFIG_C")
# Defaults: "c->FIELD = N;" and snprintf(c->FIELD, ..., "VAL" or MACRO),
# FIELD with "_" as "-" is the key; a MACRO is looked up in migrate.h.
defaults=$(sed -n '/pvm_service_config_defaults(struct/,/^}/p' "$CONFIG_C" | awk '
	match($0, /c->[a-z_]+ = [A-Za-z0-9_]+;/) {
		s = substr($0, RSTART + 3, RLENGTH - 4); split(s, a, / = /)
		gsub(/_/, "-", a[1]); print a[1], a[2]
	}
	match($0, /snprintf\(c->[a-z_]+,.*\);/) {
		s = substr($0, RSTART, RLENGTH)
		f = s; sub(/^snprintf\(c->/, "", f); sub(/,.*/, "", f); gsub(/_/, "-", f)
		v = s; sub(/\);$/, "", v); n = split(v, a, /, */); v = a[n]
		if (v ~ /^"/) { gsub(/"/, "", v); v = "=" v }
		print f, v
	}')
resolve() { # "=STRING", a number, or a #define of migrate.h (its "u" dropped)
	case $1 in
	=*) echo "${1#=}" ;;
	[0-9]*) echo "${1%u}" ;;
	*) sed -n "s/^#define $1 \"\{0,1\}\([^\" ]*\)\"\{0,1\}.*/\1/p" "$MIGRATE_H" | sed 's/u$//' ;;
	esac
}
keysec=$(section "$MAN5" "## KEYS")
for k in $keys; do
	sec=$(printf '%s\n' "$keysec" | awk -v h="### $k" '
		/^```/ { fence = !fence }
		!fence && /^### / { on = ($0 == h) }
		on { print }')
	if [ -z "$sec" ]; then
		bad "pvmigd.conf.5.md: no section '### $k' under KEYS"
		continue
	fi
	missing=
	while read -r key kind val; do
		[ "$key" = "$k" ] || continue
		grep -qF -- "$val" <<<"$sec" || missing="$missing $kind $val;"
	done <<<"$facts"
	while read -r key val; do
		[ "$key" = "$k" ] || continue
		v=$(resolve "$val")
		[ -n "$v" ] || { missing="$missing default $val (cannot resolve);"; continue; }
		grep -qF -- "Default: \`$v\`" <<<"$sec" || missing="$missing default \`$v\`;"
	done <<<"$defaults"
	[ -z "$missing" ] && ok "pvmigd.conf.5.md: key '$k' documented" ||
		bad "pvmigd.conf.5.md: key '$k' section lacks$missing"
done
for k in $(printf '%s\n' "$keysec" | sed -n 's/^### \(.*\)$/\1/p'); do
	grep -qxF -- "$k" <<<"$keys" ||
		bad "pvmigd.conf.5.md: section '### $k' but migrate/config.c accepts no key '$k'"
done
nr=$(printf '%s\n' "$facts" | grep -c ' range ')
nv=$(printf '%s\n' "$facts" | grep -c ' value ')
[ "$nr" -ge 1 ] && [ "$nv" -ge 1 ] && ok "config ranges ($nr) and values ($nv) extracted" ||
	bad "no ranges or values extracted from apply() in migrate/config.c"
while read -r key _ _; do
	[ -z "$key" ] || grep -qxF -- "$key" <<<"$keys" ||
		bad "extraction bug: '$key' is not a key"
done <<<"$facts"
nd=$(printf '%s\n' "$defaults" | grep -c .)
[ "$nd" -ge 1 ] && ok "config defaults extracted ($nd)" ||
	bad "no defaults extracted from pvm_service_config_defaults()"
section "$MAN5" "## EXAMPLE" | awk '/^```/ { n++; next } n == 1 { print }' >"$W/doc-example"
if cmp -s "$W/doc-example" "$EXAMPLE"; then
	ok "pvmigd.conf.5.md: EXAMPLE is contrib/pvmigd.conf.example"
else
	bad "pvmigd.conf.5.md: EXAMPLE differs from contrib/pvmigd.conf.example: $(diff "$W/doc-example" "$EXAMPLE" | head -5 | tr '\n' ' ')"
fi
for k in $(sed -n 's/^[[:space:]]*\([^#=[:space:]]*\)[[:space:]]*=.*/\1/p' "$EXAMPLE"); do
	grep -qxF -- "$k" <<<"$keys" || bad "contrib/pvmigd.conf.example: unknown key '$k'"
done

# ---- contrib/pvmigd.conf.example loads -------------------------------------
conf=$W/pvmigd.conf
cp "$EXAMPLE" "$conf"
if grep -qE '^[[:space:]]*tls-(ca|cert|key)[[:space:]]*=' "$EXAMPLE"; then
	if "$PVMIG" tls-init "$W/tls" localhost 2>"$W/tls.log"; then
		sed -i -e "s|^\([[:space:]]*tls-ca[[:space:]]*=\).*|\1 $W/tls/ca.pem|" \
		       -e "s|^\([[:space:]]*tls-cert[[:space:]]*=\).*|\1 $W/tls/localhost.pem|" \
		       -e "s|^\([[:space:]]*tls-key[[:space:]]*=\).*|\1 $W/tls/localhost.key|" "$conf"
	else
		bad "pvmig tls-init failed: $(cat "$W/tls.log")"
	fi
fi
# Keep the test off the real network and off port 8002.
if command -v python3 >/dev/null; then
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
else
	port=$((20000 + RANDOM % 40000))
fi
# ...and its storage roots in a directory that exists here.
sed -i -e "s|^\([[:space:]]*listen[[:space:]]*=\)[[:space:]]*[^[:space:]#][^#]*|\1 127.0.0.1 |" \
       -e "s|^\([[:space:]]*port[[:space:]]*=\).*|\1 $port|" \
       -e "s|^\([[:space:]]*storage-roots[[:space:]]*=\).*|\1 $W|" "$conf"
state=$(mktemp -d /tmp/pvmig-docs-state.XXXXXX)
"$PVMIGD" --config "$conf" --state-dir "$state" --foreground 2>"$W/pvmigd.log" &
DPID=$!
answered=
for _ in $(seq 100); do
	if info=$("$PVMIG" -H "$state" info 2>/dev/null); then answered=1; break; fi
	kill -0 "$DPID" 2>/dev/null || break
	sleep 0.1
done
if [ -n "$answered" ]; then
	ok "pvmigd runs with contrib/pvmigd.conf.example (port $port)"
	grep -qE "^state_dir +$state\$" <<<"$info" &&
		ok "--state-dir overrides the file's state-dir" ||
		bad "pvmig info shows another state dir: $info"
	kill -TERM "$DPID"
	wait "$DPID"
	rc=$?
	DPID=
	[ $rc -eq 0 ] && ok "pvmigd stopped by SIGTERM with status 0" ||
		bad "pvmigd exited $rc on SIGTERM: $(tail -5 "$W/pvmigd.log")"
	[ ! -e "$state/control.sock" ] && ok "control.sock removed on stop" ||
		bad "control.sock left behind after SIGTERM"
else
	bad "pvmigd did not answer with contrib/pvmigd.conf.example: $(tail -5 "$W/pvmigd.log")"
	kill "$DPID" 2>/dev/null
	wait "$DPID" 2>/dev/null
	DPID=
fi
rm -rf "$state"

printf 'bogus-key = 1\n' >"$W/bad.conf"
"$PVMIGD" --config "$W/bad.conf" --state-dir "$W/unused" --foreground 2>"$W/bad.log"
rc=$?
if [ $rc -eq 2 ] && grep -qF "$W/bad.conf:1:" "$W/bad.log"; then
	ok "an unknown key is refused with status 2, naming FILE:LINE"
else
	bad "unknown key: exit status $rc, stderr: $(cat "$W/bad.log")"
fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
