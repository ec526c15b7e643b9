#!/usr/bin/env bash
# The stock xenstore tools (Debian xenstore-utils) against a real pvmigd
# --backend sim. Usage: stock_tools.sh PATH/TO/pvmigd
# Exit 0 pass, 1 fail, 77 skipped (a tool is missing; the reason is printed).
set -u
pvmigd=$1
for t in xenstore-ls xenstore-read xenstore-write xenstore-rm xenstore-chmod \
	xenstore-watch xenstore-list xenstore-exists; do
	if ! command -v "$t" >/dev/null; then
		echo "SKIP: $t is not installed (apt-get install xenstore-utils)"
		exit 77
	fi
done

dir=$(mktemp -d /tmp/pvm-xs-it.XXXXXX)
pid=
watch_pid=
cleanup() {
	[ -n "$watch_pid" ] && kill "$watch_pid" 2>/dev/null
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- pvmigd log:"; cat "$dir/log" 2>/dev/null; exit 1; }

start() {
	"$pvmigd" --backend sim --state-dir "$dir" --foreground 2>>"$dir/log" &
	pid=$!
	# Ready when it answers (a killed server's stale socket may be there).
	for _ in $(seq 200); do
		XENSTORED_PATH=$dir/xenstore.sock xenstore-exists / 2>/dev/null && return 0
		kill -0 "$pid" 2>/dev/null || fail "pvmigd exited at start"
		sleep 0.05
	done
	fail "pvmigd does not answer on its socket"
}

# --help and bad arguments.
"$pvmigd" --help | grep -q -- '--state-dir' || fail "--help"
"$pvmigd" --backend kvm --state-dir "$dir" 2>/dev/null; [ $? -eq 2 ] || fail "unknown backend accepted"
"$pvmigd" --config "$dir/no-such.conf" 2>/dev/null; [ $? -eq 2 ] || fail "a missing --config file accepted"

start
export XENSTORED_PATH=$dir/xenstore.sock

# write / read / ls / list / exists
xenstore-write /local/domain/0/name Domain-0 /vm/a 1 /vm/b "hello world" || fail "xenstore-write"
[ "$(xenstore-read /vm/b)" = "hello world" ] || fail "xenstore-read"
xenstore-ls /vm | grep -q '^a = "1"' || fail "xenstore-ls: $(xenstore-ls /vm)"
[ "$(xenstore-list /vm | tr '\n' ' ')" = "a b " ] || fail "xenstore-list"
xenstore-exists /vm/a || fail "xenstore-exists"
xenstore-exists /vm/none && fail "xenstore-exists of a missing node"
xenstore-read /vm/none 2>/dev/null && fail "reading a missing node succeeded"

# chmod: owner 5, others read; dom7 both
xenstore-chmod /vm/a r5 b7 || fail "xenstore-chmod"
xenstore-ls -p /vm | grep -q 'a = "1".*(r5,b7)' || fail "xenstore-ls -p: $(xenstore-ls -p /vm)"

# watch: the initial event, then a change below the watched path
: >"$dir/watch.out"
xenstore-watch -n 2 /vm/w >"$dir/watch.out" &
watch_pid=$!
for _ in $(seq 100); do grep -q '^/vm/w$' "$dir/watch.out" && break; sleep 0.05; done
grep -q '^/vm/w$' "$dir/watch.out" || fail "no initial watch event"
xenstore-write /vm/w/x 1 || fail "xenstore-write under the watch"
for _ in $(seq 100); do kill -0 "$watch_pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$watch_pid" 2>/dev/null && fail "xenstore-watch did not see the change"
wait "$watch_pid" || fail "xenstore-watch failed"
watch_pid=
grep -q '^/vm/w/x$' "$dir/watch.out" || fail "watch output: $(cat "$dir/watch.out")"

# rm
xenstore-rm /vm || fail "xenstore-rm"
xenstore-exists /vm && fail "node still there after xenstore-rm"

# A second server on the same state dir is refused, clearly.
out=$("$pvmigd" --backend sim --state-dir "$dir" --foreground 2>&1)
[ $? -ne 0 ] || fail "second pvmigd started"
echo "$out" | grep -q "already serves" || fail "second pvmigd message: $out"
[ "$(xenstore-read /local/domain/0/name)" = "Domain-0" ] || fail "first server hurt by the second"

# SIGTERM: clean exit, socket removed.
kill -TERM "$pid"
wait "$pid"; rc=$?
pid=
[ $rc -eq 0 ] || fail "pvmigd exit status $rc after SIGTERM"
[ -e "$dir/xenstore.sock" ] && fail "socket left behind"

# After a crash (SIGKILL) a new server starts on the same dir.
start
kill -KILL "$pid"; wait "$pid" 2>/dev/null; pid=
start
xenstore-write /again 1 || fail "restart after SIGKILL"
kill -INT "$pid"; wait "$pid"; rc=$?; pid=
[ $rc -eq 0 ] || fail "pvmigd exit status $rc after SIGINT"
echo "PASS"
