# Real Xen under load (sourced by run.sh; steps in xenload_steps at the end).
#
#   xld_io_move         `pvmig migrate` a -> b and b -> a while the source's
#                       dom0 polls the domU's HTTP status every 0.2 s and
#                       the domU's own disk loop goes on: polls failed, the
#                       longest gap between answers; the tick only grows
#                       (the same guest), disk=ok in every answer (but the
#                       one tick that spans the move, see xld_io_move), the
#                       polls come back after the move
#   xld_throttle        a domU rewriting 4 MiB with fresh random bytes
#                       (faster than the link carries), `pvmig migrate
#                       --no-converge throttle --downtime-ms 500`: dom0
#                       reads the domU's scheduler cap (xl sched-credit2,
#                       else sched-credit) every 0.3 s while it runs: a cap
#                       is seen, pvmig reports its throttle, the migration
#                       converges, the domU on the destination has the cap
#                       it had before, its checks pass
#   xld_stop            the same dirtier, `--no-converge stop --bandwidth 1`:
#                       no cap is ever set, pre-copy gives up (converged=no)
#                       and the rest is copied paused; at most 1 MiB/s went
#                       on the wire (unlimited, a TCG dom0 sends ~2 MB/s)
#   xld_cancel_restores the domU with a cap of its own (60), throttled by a
#                       migration that is then cancelled: it stays on the
#                       source with its cap back at 60
# Pollers run in dom0 (bounded in count and time) and are stopped by their
# PID. The dirtier is the domU's /cgi-bin/dirty (harness/guest/domu-init).

XLD_POLL=/usr/local/bin/nx-xenload-poll
XLD_DIRTY_MIB=4
XLD_JS=""
XLD_STOP_MIB=1     # --bandwidth of the --no-converge stop migration
# The pause aimed at: a TCG dom0 sends ~3 MB/s of random pages, so 30 ms
# (the default) would be ~25 pages, less than the idle guest dirties.
XLD_DOWN_MS=500

# The poller, into both dom0s: xenload-poll http|cap OUT MAXSECS writes a
# line every 0.2 s (http) / 0.3 s (cap) until OUT.stop exists or MAXSECS
# passed: "MS DOMU-TICK n disk=ok" or "MS FAIL"; "MS CAP" or "MS -" (no
# such domain here). MS: dom0's clock in milliseconds.
xld_install_poll() {
	local h
	for h in a b; do
		on_h "$h" "cat >$XLD_POLL && chmod 755 $XLD_POLL" <<'EOF' || return 1
#!/bin/bash
kind=$1 out=$2 max=$3
rm -f "$out.stop"
end=$((SECONDS + max))
while [ $SECONDS -lt $end ] && [ ! -e "$out.stop" ]; do
	t=$(date +%s%3N)
	case $kind in
	http)	s=$(timeout 2 busybox wget -q -O- http://192.168.100.10/status 2>/dev/null | head -n 1)
		echo "$t ${s:-FAIL}"; sleep 0.2 ;;
	cap)	c=$(xl sched-credit2 -d domu 2>/dev/null | awk 'NR == 2 {print $4}')
		[ -n "$c" ] || c=$(xl sched-credit -d domu 2>/dev/null | awk 'NR == 2 {print $4}')
		echo "$t ${c:--}"; sleep 0.3 ;;
	esac
done >"$out"
EOF
	done
}

# xld_poll_start HOST KIND MAXSECS: prints the poller's PID in HOST's dom0.
xld_poll_start() {
	on_h "$1" "nohup $XLD_POLL $2 /tmp/xenload-$2.log $3 >/dev/null 2>&1 </dev/null & echo \$!"
}
# xld_poll_stop HOST KIND PID: stops it (stop file, then its PID if it
# lingers) and copies its log to $LOGDIR/xenload-KIND-HOST.log.
xld_poll_stop() {
	on_h "$1" "touch /tmp/xenload-$2.log.stop; for i in \$(seq 20); do kill -0 $3 2>/dev/null || break; sleep 0.2; done
	    kill $3 2>/dev/null; true"
	"$NX" scp-from "$1" "/tmp/xenload-$2.log" "$LOGDIR/xenload-$2-$1.log" >/dev/null
}

# The domU's scheduler cap as HOST's dom0 sees it ("" if it is not there).
xld_cap() {
	on_h "$1" "c=\$(xl sched-credit2 -d $DOMU 2>/dev/null | awk 'NR == 2 {print \$4}')
	    [ -n \"\$c\" ] || c=\$(xl sched-credit -d $DOMU 2>/dev/null | awk 'NR == 2 {print \$4}'); echo \$c"
}
# xld_set_cap HOST CAP: with whichever of the two schedulers runs it.
xld_set_cap() {
	on_h "$1" "xl sched-credit2 -d $DOMU -c $2 2>/dev/null || xl sched-credit -d $DOMU -c $2"
}

# The dirtier in the domU, through HTTP from HOST's dom0: xld_dirty HOST QUERY
xld_dirty() { on_h "$1" "timeout 20 busybox wget -q -O- 'http://192.168.100.10/cgi-bin/dirty?$2'" 2>/dev/null; }
xld_dirty_on() {  # HOST SECS: (re)starts it; passes/s over 4 s
	local a b out
	xld_dirty "$1" stop >/dev/null
	out=$(xld_dirty "$1" "$XLD_DIRTY_MIB,$2")
	grep -q 'DIRTY running' <<<"$out" || { fail "the domU's dirtier did not start: ${out:-no answer}"; return 1; }
	sleep 1
	a=$(xld_dirty "$1" status | sed -n 's/.*passes=//p')
	sleep 4
	b=$(xld_dirty "$1" status | sed -n 's/.*passes=//p')
	echo "  dirtier: $XLD_DIRTY_MIB MiB rewritten $(( ${b:-0} - ${a:-0} )) times in 4 s"
	[ "${b:-0}" -gt "${a:-0}" ] || { fail "the dirtier does not run (passes $a -> $b)"; return 1; }
}

# xld_migrate FROM TO ARGS...: `pvmig migrate` FROM -> TO (JSON in XLD_JS),
# timed in FROM's dom0 (XLD_T0/XLD_T1, its clock in ms); passes if the domU
# is only on TO afterwards and domu-check passes there (retried 30 s).
XLD_T0=0 XLD_T1=0
xld_migrate() {
	local from=$1 to=$2 out rc=0 i
	shift 2
	# (the domU's dirtier, if it runs, is stopped as soon as it moved:
	# the checks after the move need its CPU)
	out=$(on_h "$from" "t0=\$(date +%s%3N); $PVMIG migrate $DOMU host$to --json $*; rc=\$?
	    echo; echo XL-T \$t0 \$(date +%s%3N)
	    timeout 10 busybox wget -q -O- 'http://192.168.100.10/cgi-bin/dirty?stop' >/dev/null 2>&1; exit \$rc" 2>&1) || rc=$?
	read -r XLD_T0 XLD_T1 <<<"$(awk '/^XL-T /{print $2, $3}' <<<"$out")"
	XLD_JS=$(sed '/^XL-T /d' <<<"$out")
	echo "  $(jq -c '.result | {result, total_ms, downtime_ms, rounds, converged, throttle_max_pct, wire_bytes}' <<<"$XLD_JS" 2>/dev/null || echo "$XLD_JS")"
	[ $rc = 0 ] || { fail "pvmig migrate $* $from -> $to failed: rc $rc"; return 1; }
	[ -z "$(xl_row "$from")" ] && [ -n "$(xl_row "$to")" ] || { fail "$DOMU is not (only) on $to"; return 1; }
	for i in $(seq 15); do
		on_h "$to" "domu-check $DOMU" >/dev/null 2>&1 && break
		sleep 2
	done
	on_h "$to" "domu-check $DOMU" | grep -v '^  '
}
xld_res() { jq -r ".result.$1 // empty" <<<"$XLD_JS" 2>/dev/null; }

# ---- I/O during the move -------------------------------------------------------

# xld_io_move FROM TO: the poller on FROM's dom0 from 3 s before the move
# until 3 answers came after it (at most 30 s).
xld_io_move() {
	local from=$1 to=$2 pid log i n
	pid=$(xld_poll_start "$from" http 150) || { fail "cannot start the poller"; return 1; }
	sleep 3
	xld_migrate "$from" "$to"
	local rc=$?
	for i in $(seq 30); do
		n=$(on_h "$from" "awk -v t=$XLD_T1 '\$1 > t && \$2 == \"DOMU-TICK\"' /tmp/xenload-http.log | wc -l")
		[ "${n:-0}" -ge 3 ] && break
		sleep 1
	done
	xld_poll_stop "$from" http "$pid"
	[ $rc = 0 ] || return 1
	log=$LOGDIR/xenload-http-$from.log
	# polls, failures, longest gap between two answers, ticks seen, the
	# answers after the move, the first tick that went down or lost its
	# disk. Each host has its own copy of the domU's disk (a file in its
	# dom0, no shared storage): a tick whose write went to the source's
	# copy and whose read came from the destination's reads back an older
	# block (BAD(block-M), M < tick), once, across the move; counted apart.
	awk -v t0="$XLD_T0" -v t1="$XLD_T1" '
		{ n++ }
		$2 != "DOMU-TICK" { f++; if ($1 >= t0 && $1 <= t1) fm++; next }
		$4 ~ /^disk=BAD\(block-[0-9]+\)$/ && !stale && $1 >= t0 {
			m = $4; gsub(/[^0-9]/, "", m)
			if (m + 0 < $3 + 0) { stale = $3 ":" m; $4 = "disk=ok" }
		}
		$4 != "disk=ok" && !bad { bad = $0 }
		last != "" && $3 < last && !bad { bad = "tick " last " then " $3 }
		prev != "" && $1 - prev > gap { gap = $1 - prev }
		first == "" { first = $3 } { prev = $1; last = $3 } $1 > t1 { after++ }
		END { printf "XL-IO %d %d %d %d %s %s %d %s %s\n", n, f, fm, gap, first, last, after, (stale ? stale : "-"), (bad == "" ? "-" : bad) }
	' "$log" >"$log.sum"
	read -r _ n f fm gap first last after stale bad <"$log.sum"
	echo "  $from -> $to: $n polls from $from's dom0, $f failed ($fm during the migrate command, $((XLD_T1 - XLD_T0)) ms);" \
	     "longest gap between answers ${gap} ms; tick $first -> $last; $after answers after the move;" \
	     "pvmig downtime $(xld_res downtime_ms) ms"
	[ "$stale" = - ] || echo "  tick ${stale%%:*} wrote its block on one host and read it on the other: block-${stale#*:} (the disks are per host)"
	[ "$bad" = - ] || { fail "the domU's tick went back or its disk failed: $bad"; return 1; }
	[ "${after:-0}" -ge 3 ] || { fail "the polls did not come back after the move"; return 1; }
	[ -n "$first" ] && [ "$last" -gt "$first" ] || { fail "the tick did not go on ($first -> $last)"; return 1; }
	[ "$n" -gt "$f" ] || fail "no poll was answered"
}
xld_io_ab() { xld_io_move a b; }
xld_io_ba() { xld_io_move b a; }

# ---- the auto-converge throttle on real Xen -------------------------------------

# xld_caps_seen HOST: the distinct caps in that poller's log ("-" excluded)
xld_caps_seen() { awk '$2 != "-" {print $2}' "$LOGDIR/xenload-cap-$1.log" | sort -n | uniq | tr '\n' ' '; }

XLD_THR_TOTAL= XLD_THR_DOWN= XLD_STOP_TOTAL= XLD_STOP_DOWN=
xld_throttle() {
	local cap0 pid rc=0 seen cap1
	xld_dirty_on a 240 || return 1
	cap0=$(xld_cap a)
	[ -n "$cap0" ] || { fail "xl shows no credit/credit2 cap for $DOMU"; return 1; }
	pid=$(xld_poll_start a cap 180) || { fail "cannot start the cap poller"; return 1; }
	xld_migrate a b --no-converge throttle --downtime-ms $XLD_DOWN_MS || rc=1
	xld_poll_stop a cap "$pid"
	seen=$(xld_caps_seen a)
	cap1=$(xld_cap b)
	echo "  cap before $cap0; seen on a during the migration: $seen; on b after: $cap1"
	echo "  rounds: $(xld_res round_detail)"
	echo "  stop: $(xld_res stop_reason); converged $(xld_res converged); throttle max $(xld_res throttle_max_pct)%"
	[ $rc = 0 ] || return 1
	XLD_THR_TOTAL=$(xld_res total_ms) XLD_THR_DOWN=$(xld_res downtime_ms)
	[ "$(xld_res converged)" = yes ] || { fail "the throttled migration did not converge"; return 1; }
	[ "$(xld_res throttle_max_pct)" -gt 0 ] 2>/dev/null || { fail "pvmig reports no throttle"; return 1; }
	# a cap other than the one it had, and lower, was in force a while
	awk -v c="$cap0" '$2 != "-" && $2 != c && (c == 0 || $2 < c) {f = 1} END {exit !f}' \
		"$LOGDIR/xenload-cap-a.log" || { fail "no cap was seen on a while pvmig throttled"; return 1; }
	[ "$cap1" = "$cap0" ] || fail "$DOMU has cap $cap1 on b, $cap0 before"
}

xld_stop() {
	local cap0 pid rc=0 seen
	xld_dirty_on b 240 || return 1
	cap0=$(xld_cap b)
	pid=$(xld_poll_start b cap 180) || { fail "cannot start the cap poller"; return 1; }
	xld_migrate b a --no-converge stop --downtime-ms $XLD_DOWN_MS --bandwidth $XLD_STOP_MIB --max-rounds 8 || rc=1
	xld_poll_stop b cap "$pid"
	seen=$(xld_caps_seen b)
	echo "  cap before $cap0; seen on b during the migration: $seen; on a after: $(xld_cap a)"
	echo "  rounds: $(xld_res round_detail)"
	echo "  stop: $(xld_res stop_reason); converged $(xld_res converged)"
	[ $rc = 0 ] || return 1
	XLD_STOP_TOTAL=$(xld_res total_ms) XLD_STOP_DOWN=$(xld_res downtime_ms)
	[ "$seen" = "$cap0 " ] || { fail "the cap changed without throttle: $seen"; return 1; }
	# --bandwidth holds on the whole migration (connect and hand-over included)
	awk -v b="$(xld_res wire_bytes)" -v t="$(xld_res total_ms)" -v l="$XLD_STOP_MIB" \
		'BEGIN {r = b / 1048576 / (t / 1000); printf "  on the wire: %.2f MiB/s (--bandwidth %d)\n", r, l; exit !(t > 0 && r <= l * 1.05)}' ||
		{ fail "more than --bandwidth $XLD_STOP_MIB MiB/s went out"; return 1; }
	[ "$(xld_res converged)" = no ] || fail "pre-copy converged: the dirtier did not keep it from converging"
}

# A cap of its own, a throttled migration cancelled: back on a at 60.
# Watching the cap and cancelling both happen in dom0 a (no ssh round
# trip between them), before the throttle makes the migration converge.
xld_cancel_restores() {
	local out c rc=0
	xld_set_cap a 60 || { fail "cannot set a cap of 60"; return 1; }
	xld_dirty_on a 120 || { xld_set_cap a 0; return 1; }
	out=$(on "nohup env $PVMIG migrate $DOMU hostb --no-converge throttle --downtime-ms $XLD_DOWN_MS >/tmp/xenload-cancel.out 2>&1 </dev/null & m=\$!
	    for i in \$(seq 300); do
		c=\$(xl sched-credit2 -d $DOMU 2>/dev/null | awk 'NR == 2 {print \$4}')
		[ -n \"\$c\" ] || c=\$(xl sched-credit -d $DOMU 2>/dev/null | awk 'NR == 2 {print \$4}')
		[ -n \"\$c\" ] && [ \"\$c\" -lt 60 ] && break
		kill -0 \$m 2>/dev/null || break
		sleep 0.2
	    done
	    echo CAP-DURING \$c
	    $PVMIG migrate --cancel $DOMU 2>&1 | sed 's/^/CANCEL /'
	    for i in \$(seq 120); do kill -0 \$m 2>/dev/null || break; sleep 0.5; done
	    kill -0 \$m 2>/dev/null && kill \$m; wait \$m; echo MIGRATE-RC \$?
	    tail -n 3 /tmp/xenload-cancel.out" 2>&1) || rc=$?
	echo "$out" | sed 's/^/  /'
	xld_dirty a stop >/dev/null
	c=$(awk '/^CAP-DURING/{print $2}' <<<"$out")
	[ -n "$c" ] && [ "$c" -lt 60 ] || { fail "no throttle below the domU's own cap (60) was seen"; xld_set_cap a 0; return 1; }
	[ -n "$(xl_row a)" ] && [ -z "$(xl_row b)" ] || { fail "$DOMU is not (only) on a after the cancel"; return 1; }
	grep -q '^MIGRATE-RC 0$' <<<"$out" && { fail "the cancelled migration says it succeeded"; xld_set_cap a 0; return 1; }
	grep -q 'migrate: cancelled' <<<"$out" || { fail "pvmig migrate does not say it was cancelled"; xld_set_cap a 0; return 1; }
	c=$(xld_cap a)
	echo "  cap after the cancel: $c (60 before)"
	xld_set_cap a 0
	[ "$c" = 60 ] || { fail "the cap is $c after the cancel, 60 before"; return 1; }
	on "sleep 2; domu-check $DOMU" | grep -v '^  '
}

xenload_steps() {
	xld_install_poll || { echo "  error: cannot install the poller in dom0"; return 1; }
	step xenload-io-during-migrate-a-to-b xld_io_ab &&
		step xenload-io-during-migrate-b-to-a xld_io_ba
	[ -n "$(xl_row a)" ] || return 1
	step xenload-throttle-a-to-b xld_throttle &&
		step xenload-no-converge-stop-b-to-a xld_stop
	[ -n "$(xl_row a)" ] || return 1
	step xenload-cancel-restores-cap xld_cancel_restores
	if [ -n "$XLD_THR_TOTAL" ] && [ -n "$XLD_STOP_TOTAL" ]; then
		echo "  xenload: dirtier of $XLD_DIRTY_MIB MiB: throttle total $XLD_THR_TOTAL ms, down $XLD_THR_DOWN ms;" \
		     "stop total $XLD_STOP_TOTAL ms, down $XLD_STOP_DOWN ms"
	fi
}
