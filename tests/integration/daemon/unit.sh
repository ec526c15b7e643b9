#!/usr/bin/env bash
# contrib/pvmigd.service, as systemd reads it (systemd-analyze, offline:
# this machine need not run systemd): it parses without a warning, it is
# Type=notify with pvmigd in the foreground (the readiness datagram itself
# is tested by notify_logs.sh), and the hardening its comments claim is
# what systemd sees. Prints systemd's exposure score.
#   $1 = build dir
set -uo pipefail
B=$(cd "$1" && pwd)
SRC=$(cd "$(dirname "$0")/../../.." && pwd)
UNIT=$SRC/contrib/pvmigd.service
. "$(dirname "$0")/../lib.sh"
command -v systemd-analyze >/dev/null || { echo "skip: systemd-analyze (package systemd) is not installed"; exit 77; }
W=$(mktemp -d /tmp/pvmig-it-unit.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$W"' EXIT

# The unit names the installed /usr/sbin/pvmigd; verify wants it to exist.
grep -qx 'ExecStart=/usr/sbin/pvmigd --foreground' "$UNIT" && ok "ExecStart runs pvmigd in the foreground" ||
	bad "ExecStart: $(grep ExecStart= "$UNIT")"
sed "s#^ExecStart=/usr/sbin/pvmigd#ExecStart=$B/pvmigd#" "$UNIT" >"$W/pvmigd.service"
systemd-analyze verify --man=no "$W/pvmigd.service" >"$W/v" 2>&1 && [ ! -s "$W/v" ] &&
	ok "systemd-analyze verify: no complaint" || bad "systemd-analyze verify: $(cat "$W/v")"
grep -qx 'Type=notify' "$UNIT" && ok "Type=notify" || bad "not Type=notify"

systemd-analyze security --offline=yes --no-pager "$W/pvmigd.service" >"$W/s" 2>&1 ||
	{ grep -q "Overall exposure" "$W/s" || { echo "skip: systemd-analyze security --offline is not supported here: $(head -1 "$W/s")"; exit 77; }; }
# has LINE-PATTERN: systemd's verdict line for a setting is a pass (✓).
has() { grep -E "^✓ $1" "$W/s" >/dev/null && ok "systemd sees: $(grep -E "^✓ $1" "$W/s" | head -1 | sed 's/  */ /g')" || bad "not a pass: $(grep -E "$1" "$W/s" | head -1)"; }
has 'ProtectSystem= .*strict read-only'
has 'NoNewPrivileges='
has 'ProtectKernelTunables='
has 'ProtectKernelModules='
has 'ProtectControlGroups='
has 'RestrictNamespaces=~user'
has 'RestrictSUIDSGID='
has 'LockPersonality='
# Left out on purpose (the unit's comment says why): systemd must agree
# they are off, or the comment is stale.
for k in PrivateTmp PrivateDevices PrivateNetwork; do
	grep -E "^✗ $k=" "$W/s" >/dev/null && ok "$k left out, as the unit explains" || bad "$k: $(grep -E "$k=" "$W/s" | head -1)"
	grep -q "^#   $k=\|^#   .*$k=" "$UNIT" || bad "$k is off but the unit does not say why"
done
grep -E "ProtectHome= .*read-only access to home" "$W/s" >/dev/null && ok "ProtectHome=read-only" || bad "ProtectHome: $(grep ProtectHome= "$W/s")"
echo "systemd's exposure score: $(grep -o 'Overall exposure level.*' "$W/s")"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
