# Shared by the integration test scripts (sourced, not run): the pass/fail
# tally, a free loopback port, and reading one field of "k=v k=v" text.
# A script ends with: echo "$passes passed, $fails failed"; [ "$fails" -eq 0 ]
fails=0 passes=0
ok() { echo "ok: $*"; passes=$((passes + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
port_of() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
val() { sed -E "s/.*$1=([^ ]*).*/\\1/" <<<"$2"; }
