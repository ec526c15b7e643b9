# Settings shared by the nested-Xen harness (sourced by build-images.sh,
# hosts and ../run.sh). Everything is overridable from the environment.
# shellcheck shell=bash

HARNESS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Images and per-run state (pids, serial logs) live here, never in the repo.
NX_CACHE=${PVMIG_NESTED_CACHE:-/var/tmp/pvmig-nested}
NX_RUN=${PVMIG_NESTED_RUN:-$NX_CACHE/run}
# One nested boot at a time on this machine (other test runs share it).
NX_LOCK=${PVMIG_NESTED_LOCK:-/var/tmp/pvmig-nested.lock}
NX_SUITE=${PVMIG_NESTED_SUITE:-bookworm}

# Each host: a QEMU/TCG VM with Xen and a PV dom0 (1 GiB of its 2 GiB).
NX_VM_MB=${PVMIG_NESTED_VM_MB:-2048}
NX_DOM0_MB=${PVMIG_NESTED_DOM0_MB:-1024}
# qemu64 under TCG: `-cpu max` crashes the PV dom0 and /dev/kvm here cannot
# run Xen (see README.md). +svm,+npt: TCG's SVM with nested paging, so Xen
# reports `virt_caps: pv hvm hap shadow` and runs HVM and PVH domUs (the
# PV dom0 boots as with plain qemu64).
NX_CPU=${PVMIG_NESTED_CPU:-qemu64,+svm,+npt}
NX_ACCEL=${PVMIG_NESTED_ACCEL:-tcg,thread=multi,tb-size=256}

# 127.0.0.1 only. ssh of host a/b on SSH_BASE+0/1, the a<->b link is a
# pair of UDP sockets LINK_BASE+0 <-> LINK_BASE+1.
NX_SSH_BASE=${PVMIG_NESTED_SSH_BASE:-10222}
NX_LINK_BASE=${PVMIG_NESTED_LINK_BASE:-10320}
# Inside: the link is bridged as xenbr0; a = .1, b = .2, the domU .10.
NX_NET=192.168.100

NX_KEY=$NX_CACHE/ssh/id_ed25519
NX_SSH_OPTS=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
	     -o LogLevel=ERROR -o ConnectTimeout=${PVMIG_NESTED_SSH_TIMEOUT:-30} -o BatchMode=yes -i "$NX_KEY")

nx_log() { printf '[nested %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
nx_die() { nx_log "error: $*"; exit 1; }

# host name -> index 0/1
nx_idx() {
	case "$1" in
	a) echo 0 ;;
	b) echo 1 ;;
	*) nx_log "unknown host '$1' (a or b)"; return 1 ;;
	esac
}

# The Debian mirror this machine's apt already uses (nothing hard-coded).
nx_mirror() {
	local m
	m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
	    awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}')
	[ -n "$m" ] || m=$(awk '$1 == "deb" && $0 !~ /security/ {
			for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}
		}' /etc/apt/sources.list 2>/dev/null | head -n1)
	[ -n "$m" ] || { nx_log "no Debian mirror in apt's sources"; return 1; }
	echo "$m"
}
