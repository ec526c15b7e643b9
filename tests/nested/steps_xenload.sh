# Real Xen under load (sourced by run.sh; steps in xenload_steps at the end).
#
#   xl_io_move          `pvmig migrate` a -> b and b -> a while the source's
#                       dom0 polls the domU's HTTP status every 0.2 s and
#                       the domU's own disk loop goes on: polls failed, the
#                       longest gap between answers; the tick only grows
#                       (the same guest), disk=ok in every answer, the polls
#                       come back after the move
#   xl_throttle         a domU that dirties 16 MiB faster than the link
#                       carries, `pvmig migrate --no-converge throttle`:
#                       dom0 reads the domU's scheduler cap (xl
#                       sched-credit2, else sched-credit) every 0.3 s while
#                       it runs: the cap pvmig sets is seen, the migration
#                       converges, the domU on the destination has the cap
#                       it had before, its checks pass
#   xl_stop             the same dirtier, `--no-converge stop --bandwidth 4`:
#                       no cap is ever set, pre-copy gives up (converged=no)
#                       and the rest is copied paused; at most 4 MiB/s went
#                       on the wire
#   xl_cancel_restores  the domU with a cap of its own (60), throttled by a
#                       migration that is then cancelled: it stays on the
#                       source with its cap back at 60
# Pollers run in dom0 (bounded in count and time) and are stopped by their
# PID. The dirtier is the domU's /cgi-bin/dirty (harness/guest/domu-init).

XL_POLL=/usr/local/bin/nx-xenload-poll
XL_DIRTY_MIB=4
XL_JS=""
XL_STOP_MIB=2     # --bandwidth of the --no-converge stop migration
# The pause aimed at: a TCG dom0 sends ~3 MB/s of random pages, so 30 ms
# (the default) would be ~25 pages, less than the idle guest dirties.
XL_DOWN_MS=500

# The poller, into both dom0s: xenload-poll http|cap OUT MAXSECS writes a
# line every 0.2 s (http) / 0.3 s (cap) until OUT.stop exists or MAXSECS
# passed: "MS DOMU-TICK n disk=ok" or "MS FAIL"; "MS CAP" or "MS -" (no
# such domain here). MS: dom0's clock in milliseconds.
xl_install_poll() {
	local h
	for h in a b; do
		on_h "$h" "cat >$XL_POLL && chmod 755 $XL_POLL" <<'EOF' || return 1
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

# xl_poll_start HOST KIND MAXSECS: prints the poller's PID in HOST's dom0.
xl_poll_start() {
	on_h "$1" "nohup $XL_POLL $2 /tmp/xenload-$2.log $3 >/dev/null 2>&1 </dev/null & echo \$!"
}
# xl_poll_stop HOST KIND PID: stops it (stop file, then its PID if it
# lingers) and copies its log to $LOGDIR/xenload-KIND-HOST.log.
xl_poll_stop() {
	on_h "$1" "touch /tmp/xenload-$2.log.stop; for i in \$(seq 20); do kill -0 $3 2>/dev/null || break; sleep 0.2; done
	    kill $3 2>/dev/null; true"
	"$NX" scp-from "$1" "/tmp/xenload-$2.log" "$LOGDIR/xenload-$2-$1.log" >/dev/null
}

# The domU's scheduler cap as HOST's dom0 sees it ("" if it is not there).
xl_cap() {
	on_h "$1" "c=\$(xl sched-credit2 -d $DOMU 2>/dev/null | awk 'NR == 2 {print \$4}')
	    [ -n \"\$c\" ] || c=\$(xl sched-credit -d $DOMU 2>/dev/null | awk 'NR == 2 {print \$4}'); echo \$c"
}
# xl_set_cap HOST CAP: with whichever of the two schedulers runs it.
xl_set_cap() {
	on_h "$1" "xl sched-credit2 -d $DOMU -c $2 2>/dev/null || xl sched-credit -d $DOMU -c $2"
}

# The dirtier in the domU, through HTTP from HOST's dom0: xl_dirty HOST QUERY
xl_dirty() { on_h "$1" "timeout 20 busybox wget -q -O- 'http://192.168.100.10/cgi-bin/dirty?$2'" 2>/dev/null; }
xl_dirty_on() {  # HOST SECS: (re)starts it; passes/s over 4 s
	local a b out
	xl_dirty "$1" stop >/dev/null
	out=$(xl_dirty "$1" "$XL_DIRTY_MIB,$2")
	grep -q 'DIRTY running' <<<"$out" || { fail "the domU's dirtier did not start: ${out:-no answer}"; return 1; }
	sleep 1
	a=$(xl_dirty "$1" status | sed -n 's/.*passes=//p')
	sleep 4
	b=$(xl_dirty "$1" status | sed -n 's/.*passes=//p')
	echo "  dirtier: $XL_DIRTY_MIB MiB rewritten $(( ${b:-0} - ${a:-0} )) times in 4 s"
	[ "${b:-0}" -gt "${a:-0}" ] || { fail "the dirtier does not run (passes $a -> $b)"; return 1; }
}

# xl_migrate FROM TO ARGS...: `pvmig migrate` FROM -> TO (JSON in XL_JS),
# timed in FROM's dom0 (XL_T0/XL_T1, its clock in ms); passes if the domU
# is only on TO afterwards and domu-check passes there (retried 30 s).
XL_T0=0 XL_T1=0
xl_migrate() {
	local from=$1 to=$2 out rc=0 i
	shift 2
	out=$(on_h "$from" "t0=\$(date +%s%3N); $PVMIG migrate $DOMU host$to --json $*; rc=\$?
	    echo; echo XL-T \$t0 \$(date +%s%3N); exit \$rc" 2>&1) || rc=$?
	read -r XL_T0 XL_T1 <<<"$(awk '/^XL-T /{print $2, $3}' <<<"$out")"
	XL_JS=$(sed '/^XL-T /d' <<<"$out")
	echo "  $(jq -c '.result | {result, total_ms, downtime_ms, rounds, converged, throttle_max_pct, wire_bytes}' <<<"$XL_JS" 2>/dev/null || echo "$XL_JS")"
	[ $rc = 0 ] || { fail "pvmig migrate $* $from -> $to failed: rc $rc"; return 1; }
	[ -z "$(xl_row "$from")" ] && [ -n "$(xl_row "$to")" ] || { fail "$DOMU is not (only) on $to"; return 1; }
	for i in $(seq 15); do
		on_h "$to" "domu-check $DOMU" >/dev/null 2>&1 && break
		sleep 2
	done
	on_h "$to" "domu-check $DOMU" | grep -v '^  '
}
xl_res() { jq -r ".result.$1 // empty" <<<"$XL_JS" 2>/dev/null; }

# ---- I/O during the move -------------------------------------------------------

# xl_io_move FROM TO: the poller on FROM's dom0 from 3 s before the move
# until 3 answers came after it (at most 30 s).
xl_io_move() {
	local from=$1 to=$2 pid log i n
	pid=$(xl_poll_start "$from" http 150) || { fail "cannot start the poller"; return 1; }
	sleep 3
	xl_migrate "$from" "$to"
	local rc=$?
	for i in $(seq 30); do
		n=$(on_h "$from" "awk -v t=$XL_T1 '\$1 > t && \$2 == \"DOMU-TICK\"' /tmp/xenload-http.log | wc -l")
		[ "${n:-0}" -ge 3 ] && break
		sleep 1
	done
	xl_poll_stop "$from" http "$pid"
	[ $rc = 0 ] || return 1
	log=$LOGDIR/xenload-http-$from.log
	# polls, failures, longest gap between two answers, ticks seen, the
	# answers after the move, the first tick that went down or lost its
	# disk. Each host has its own copy of the domU's disk (a file in its
	# dom0, no shared storage): a tick whose write went to the source's
	# copy and whose read came from the destination's reads back an older
	# block (BAD(block-M), M < tick), once, across the move; counted apart.
	awk -v t0="$XL_T0" -v t1="$XL_T1" '
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
	echo "  $from -> $to: $n polls from $from's dom0, $f failed ($fm during the migrate command, $((XL_T1 - XL_T0)) ms);" \
	     "longest gap between answers ${gap} ms; tick $first -> $last; $after answers after the move;" \
	     "pvmig downtime $(xl_res downtime_ms) ms"
	[ "$stale" = - ] || echo "  tick ${stale%%:*} wrote its block on one host and read it on the other: block-${stale#*:} (the disks are per host)"
	[ "$bad" = - ] || { fail "the domU's tick went back or its disk failed: $bad"; return 1; }
	[ "${after:-0}" -ge 3 ] || { fail "the polls did not come back after the move"; return 1; }
	[ -n "$first" ] && [ "$last" -gt "$first" ] || { fail "the tick did not go on ($first -> $last)"; return 1; }
	[ "$n" -gt "$f" ] || fail "no poll was answered"
}
xl_io_ab() { xl_io_move a b; }
xl_io_ba() { xl_io_move b a; }

# ---- the auto-converge throttle on real Xen -------------------------------------

# xl_caps_seen HOST: the distinct caps in that poller's log ("-" excluded)
xl_caps_seen() { awk '$2 != "-" {print $2}' "$LOGDIR/xenload-cap-$1.log" | sort -n | uniq | tr '\n' ' '; }

XL_THR_TOTAL= XL_THR_DOWN= XL_STOP_TOTAL= XL_STOP_DOWN=
xl_throttle() {
	local cap0 pid rc=0 seen cap1
	xl_dirty_on a 240 || return 1
	cap0=$(xl_cap a)
	[ -n "$cap0" ] || { fail "xl shows no credit/credit2 cap for $DOMU"; return 1; }
	pid=$(xl_poll_start a cap 180) || { fail "cannot start the cap poller"; return 1; }
	xl_migrate a b --no-converge throttle --downtime-ms $XL_DOWN_MS || rc=1
	xl_poll_stop a cap "$pid"
	seen=$(xl_caps_seen a)
	cap1=$(xl_cap b)
	echo "  cap before $cap0; seen on a during the migration: $seen; on b after: $cap1"
	echo "  rounds: $(xl_res round_detail)"
	echo "  stop: $(xl_res stop_reason); converged $(xl_res converged); throttle max $(xl_res throttle_max_pct)%"
	[ $rc = 0 ] || return 1
	XL_THR_TOTAL=$(xl_res total_ms) XL_THR_DOWN=$(xl_res downtime_ms)
	[ "$(xl_res converged)" = yes ] || { fail "the throttled migration did not converge"; return 1; }
	[ "$(xl_res throttle_max_pct)" -gt 0 ] 2>/dev/null || { fail "pvmig reports no throttle"; return 1; }
	# a cap other than the one it had, and lower, was in force a while
	awk -v c="$cap0" '$2 != "-" && $2 != c && (c == 0 || $2 < c) {f = 1} END {exit !f}' \
		"$LOGDIR/xenload-cap-a.log" || { fail "no cap was seen on a while pvmig throttled"; return 1; }
	[ "$cap1" = "$cap0" ] || fail "$DOMU has cap $cap1 on b, $cap0 before"
}

xl_stop() {
	local cap0 pid rc=0 seen
	xl_dirty_on b 240 || return 1
	cap0=$(xl_cap b)
	pid=$(xl_poll_start b cap 180) || { fail "cannot start the cap poller"; return 1; }
	xl_migrate b a --no-converge stop --downtime-ms $XL_DOWN_MS --bandwidth $XL_STOP_MIB --max-rounds 8 || rc=1
	xl_poll_stop b cap "$pid"
	seen=$(xl_caps_seen b)
	echo "  cap before $cap0; seen on b during the migration: $seen; on a after: $(xl_cap a)"
	echo "  rounds: $(xl_res round_detail)"
	echo "  stop: $(xl_res stop_reason); converged $(xl_res converged)"
	xl_dirty a stop >/dev/null
	[ $rc = 0 ] || return 1
	XL_STOP_TOTAL=$(xl_res total_ms) XL_STOP_DOWN=$(xl_res downtime_ms)
	[ "$seen" = "$cap0 " ] || { fail "the cap changed without throttle: $seen"; return 1; }
	# --bandwidth holds on the whole migration (connect and hand-over included)
	awk -v b="$(xl_res wire_bytes)" -v t="$(xl_res total_ms)" -v l="$XL_STOP_MIB" \
		'BEGIN {r = b / 1048576 / (t / 1000); printf "  on the wire: %.2f MiB/s (--bandwidth %d)\n", r, l; exit !(t > 0 && r <= l * 1.05)}' ||
		{ fail "more than --bandwidth $XL_STOP_MIB MiB/s went out"; return 1; }
	[ "$(xl_res converged)" = no ] || fail "pre-copy converged: the dirtier did not keep it from converging"
}

# A cap of its own, a throttled migration cancelled: back on a at 60.
# Watching the cap and cancelling both happen in dom0 a (no ssh round
# trip between them), before the throttle makes the migration converge.
xl_cancel_restores() {
	local out c rc=0
	xl_set_cap a 60 || { fail "cannot set a cap of 60"; return 1; }
	xl_dirty_on a 120 || { xl_set_cap a 0; return 1; }
	out=$(on "nohup env $PVMIG migrate $DOMU hostb --no-converge throttle --downtime-ms $XL_DOWN_MS >/tmp/xenload-cancel.out 2>&1 </dev/null & m=\$!
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
	xl_dirty a stop >/dev/null
	c=$(awk '/^CAP-DURING/{print $2}' <<<"$out")
	[ -n "$c" ] && [ "$c" -lt 60 ] || { fail "no throttle below the domU's own cap (60) was seen"; xl_set_cap a 0; return 1; }
	[ -n "$(xl_row a)" ] && [ -z "$(xl_row b)" ] || { fail "$DOMU is not (only) on a after the cancel"; return 1; }
	grep -q '^MIGRATE-RC 0$' <<<"$out" && { fail "the cancelled migration says it succeeded"; xl_set_cap a 0; return 1; }
	c=$(xl_cap a)
	echo "  cap after the cancel: $c (60 before)"
	xl_set_cap a 0
	[ "$c" = 60 ] || { fail "the cap is $c after the cancel, 60 before"; return 1; }
	on "sleep 2; domu-check $DOMU" | grep -v '^  '
}

xenload_steps() {
	xl_install_poll || { echo "  error: cannot install the poller in dom0"; return 1; }
	step xenload-io-during-migrate-a-to-b xl_io_ab &&
		step xenload-io-during-migrate-b-to-a xl_io_ba
	[ -n "$(xl_row a)" ] || return 1
	step xenload-throttle-a-to-b xl_throttle &&
		step xenload-no-converge-stop-b-to-a xl_stop
	[ -n "$(xl_row a)" ] || return 1
	step xenload-cancel-restores-cap xl_cancel_restores
	if [ -n "$XL_THR_TOTAL" ] && [ -n "$XL_STOP_TOTAL" ]; then
		echo "  xenload: dirtier of $XL_DIRTY_MIB MiB: throttle total $XL_THR_TOTAL ms, down $XL_THR_DOWN ms;" \
		     "stop total $XL_STOP_TOTAL ms, down $XL_STOP_DOWN ms"
	fi
}
