#!/bin/bash
# Builds what a nested Xen host boots, into $PVMIG_NESTED_CACHE
# (default /var/tmp/pvmig-nested), from Debian's repositories only:
#
#   kernel/vmlinuz, kernel/vmlinux   Debian's linux-image (apt-get download);
#                                    the plain ELF is dom0's kernel, the
#                                    bzImage the domU's
#   xen/xen                          Debian's Xen 4.17 source (the version of
#                                    dom0's xen-utils) rebuilt with
#                                    CONFIG_SHADOW_PAGING=y: Debian's binary
#                                    lacks it and a PV guest cannot do
#                                    log-dirty (live migration) without it
#   dom0.cpio.zst                    debootstrap minbase + xen-utils-4.17,
#                                    QEMU's Xen device model
#                                    (qemu-system-xen, seabios) for HVM
#                                    domUs, busybox init, sshd, the domU
#                                    files
#   domu.cpio.gz                     busybox + netfront/blkfront: the test
#                                    guest, which checks its disk and serves
#                                    its status over HTTP
#
#   build-images.sh [STAGE...]       (root) stages: tools kernel busybox key
#                                    rootfs dom0 domu pack xen; default all.
# Each stage is skipped when its output exists; delete it to rebuild.
set -euo pipefail
. "$(dirname "$(readlink -f "$0")")/env.sh"
[ "$(id -u)" = 0 ] || nx_die "build-images.sh needs root (debootstrap, chroot)"

ROOT=$NX_CACHE/dom0-root
DEBS=$NX_CACHE/debs
# The guest files and this script, as a stamp: when they change, the stages
# that copy them (dom0, domu, pack) run again.
STAMP=$(cat "$HARNESS"/guest/* "$HARNESS/build-images.sh" | sha256sum | cut -c1-16)
mkdir -p "$NX_CACHE" "$DEBS"

# apt-get download into $DEBS and unpack into $2; prints the .deb's path.
fetch_deb() {
	local pkg=$1 dest=$2
	(cd "$DEBS" && apt-get -q -o APT::Sandbox::User=root download "$pkg" >/dev/null) ||
		nx_die "apt-get download $pkg failed"
	rm -rf "$dest" && mkdir -p "$dest"
	dpkg -x "$(ls -t "$DEBS"/"${pkg%%=*}"_*.deb | head -n1)" "$dest"
}

st_tools() {
	local need=()
	# a fresh machine may have no package lists yet (apt-get download and
	# apt-cache need them too)
	compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null || apt-get update -qq
	for t in debootstrap:debootstrap cpio:cpio zstd:zstd ssh-keygen:openssh-client \
		 python3:python3 gcc:build-essential flex:flex bison:bison \
		 dpkg-source:dpkg-dev qemu-system-x86_64:qemu-system-x86 socat:socat \
		 jq:jq; do
		command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
	done
	[ ${#need[@]} = 0 ] && return 0
	nx_log "installing ${need[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -o DPkg::Lock::Timeout=600 -y -q "${need[@]}" >/dev/null
}

st_kernel() {
	[ -f "$NX_CACHE/kernel/vmlinux" ] && return 0
	local pkg
	pkg=$(apt-cache depends linux-image-amd64 | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ {print $2; exit}')
	[ -n "$pkg" ] || nx_die "linux-image-amd64 depends on no linux-image-N"
	nx_log "kernel: $pkg"
	fetch_deb "$pkg" "$NX_CACHE/kernel/pkg"
	cp "$NX_CACHE"/kernel/pkg/boot/vmlinuz-* "$NX_CACHE/kernel/vmlinuz"
	ls "$NX_CACHE/kernel/pkg/lib/modules" > "$NX_CACHE/kernel/release"
	# Xen gets the uncompressed ELF: the bzImage's payload is xz.
	python3 - "$NX_CACHE/kernel/vmlinuz" "$NX_CACHE/kernel/vmlinux.tmp" <<'PY'
import lzma, sys
img = open(sys.argv[1], "rb").read()
at = img.find(b"\xfd7zXZ\x00")
if at < 0:
    sys.exit("no xz payload in " + sys.argv[1])
elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(img[at:])
if elf[:4] != b"\x7fELF":
    sys.exit("the payload is not an ELF image")
open(sys.argv[2], "wb").write(elf)
PY
	mv "$NX_CACHE/kernel/vmlinux.tmp" "$NX_CACHE/kernel/vmlinux"
}

st_busybox() {
	[ -x "$NX_CACHE/busybox/bin/busybox" ] && return 0
	nx_log "busybox-static"
	fetch_deb busybox-static "$NX_CACHE/busybox"
}

st_key() {
	[ -f "$NX_KEY" ] && return 0
	mkdir -p "$(dirname "$NX_KEY")"
	ssh-keygen -q -t ed25519 -N '' -C pvmig-nested -f "$NX_KEY"
}

DOM0_PKGS=xen-utils-4.17,xenstore-utils,iproute2,openssh-server,openssh-client,socat,busybox,kmod,procps,iputils-ping,psmisc,python3
# The device model of HVM domUs (libxl starts qemu-system-i386 from it;
# seabios is hvmloader's BIOS). Installed into a rootfs made without them.
DOM0_DM_PKGS="qemu-system-xen seabios"
st_rootfs() {
	if [ -f "$ROOT/.pvmig-debootstrap" ]; then
		[ "$(chroot "$ROOT" dpkg-query -W -f '${Status}\n' $DOM0_DM_PKGS 2>/dev/null |
		     grep -c 'install ok installed')" = 2 ] && return 0
		nx_log "dom0: installing $DOM0_DM_PKGS (no recommends)"
		local rc=0
		mount -t proc proc "$ROOT/proc"
		DEBIAN_FRONTEND=noninteractive chroot "$ROOT" sh -c "apt-get -q update && apt-get install -y -q --no-install-recommends $DOM0_DM_PKGS && apt-get clean" \
			>"$NX_CACHE/dm-install.log" 2>&1 || rc=$?
		umount "$ROOT/proc"
		[ $rc = 0 ] || { tail -n 20 "$NX_CACHE/dm-install.log"; nx_die "installing $DOM0_DM_PKGS failed"; }
		rm -rf "$ROOT/var/lib/apt/lists/"*
		return 0
	fi
	local mirror
	mirror=$(nx_mirror)
	nx_log "debootstrap $NX_SUITE minbase + xen-utils from $mirror"
	rm -rf "$ROOT"
	debootstrap --variant=minbase --include="$DOM0_PKGS,${DOM0_DM_PKGS// /,}" "$NX_SUITE" "$ROOT" "$mirror" \
		>"$NX_CACHE/debootstrap.log" 2>&1 || { tail -n 20 "$NX_CACHE/debootstrap.log"; nx_die "debootstrap failed"; }
	touch "$ROOT/.pvmig-debootstrap"
}

# What dom0 loads (the pack keeps only these modules and their deps).
DOM0_MODS="xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xen-netback xen-blkback loop bridge e1000"
st_dom0() {
	[ "$(cat "$ROOT/.pvmig-dom0" 2>/dev/null)" = "$STAMP" ] && return 0
	[ -f "$ROOT/.pvmig-debootstrap" ] || nx_die "stage rootfs first"
	local kr keep
	kr=$(cat "$NX_CACHE/kernel/release")
	nx_log "dom0: modules, init, ssh, test-guest files"
	rm -rf "$ROOT/lib/modules" && mkdir -p "$ROOT/lib/modules"
	cp -a "$NX_CACHE/kernel/pkg/lib/modules/$kr" "$ROOT/lib/modules/"
	chroot "$ROOT" depmod "$kr"
	keep=$(chroot "$ROOT" modprobe -S "$kr" -a --show-depends $DOM0_MODS |
	       awk '$1 == "insmod" {print $2}')
	# one pass (a grep per module took 14 min of a loaded 2-core machine)
	(cd "$ROOT" && find "lib/modules/$kr/kernel" -name '*.ko*' | sed 's|^|/|' | sort |
		comm -23 - <(sort <<<"$keep") | sed 's|^/||' | xargs -r rm -f)
	find "$ROOT/lib/modules/$kr/kernel" -type d -empty -delete
	chroot "$ROOT" depmod "$kr"

	ln -sf /bin/busybox "$ROOT/init"
	install -D -m 0755 "$HARNESS/guest/dom0-init" "$ROOT/etc/pvmig-nested/dom0-init"
	install -D -m 0755 "$HARNESS/guest/dom0-halt" "$ROOT/etc/pvmig-nested/dom0-halt"
	install -D -m 0755 "$HARNESS/guest/domu-check" "$ROOT/usr/local/bin/domu-check"
	ln -sf domu-check "$ROOT/usr/local/bin/nx-domu-check"   # the lab's name for it
	printf '%s\n' '::sysinit:/etc/pvmig-nested/dom0-init' '::shutdown:/etc/pvmig-nested/dom0-halt' \
		'hvc0::respawn:/bin/bash -l' > "$ROOT/etc/inittab"
	printf '#!/bin/sh\nexec /bin/busybox poweroff "$@"\n' > "$ROOT/usr/local/sbin/poweroff"
	chmod 755 "$ROOT/usr/local/sbin/poweroff"

	# Both dom0s share the key, so dom0 a reaches dom0 b (xl migrate over ssh).
	install -d -m 700 "$ROOT/root/.ssh"
	cp "$NX_KEY.pub" "$ROOT/root/.ssh/authorized_keys"
	cp "$NX_KEY" "$NX_KEY.pub" "$ROOT/root/.ssh/"
	printf 'Host *\n StrictHostKeyChecking no\n UserKnownHostsFile /dev/null\n LogLevel ERROR\n' \
		> "$ROOT/root/.ssh/config"
	chmod 600 "$ROOT/root/.ssh/"*
	printf 'PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n' \
		> "$ROOT/etc/ssh/sshd_config.d/pvmig-nested.conf"
	printf '127.0.0.1 localhost\n%s.1 hosta\n%s.2 hostb\n' "$NX_NET" "$NX_NET" > "$ROOT/etc/hosts"
	install -D -m 0644 "$HARNESS/guest/domu.cfg" "$ROOT/etc/xen/domu.cfg"
	install -D -m 0644 "$HARNESS/guest/hvm.cfg" "$ROOT/etc/xen/hvm.cfg"
	install -D -m 0644 "$HARNESS/guest/pvh.cfg" "$ROOT/etc/xen/pvh.cfg"
	mkdir -p "$ROOT/var/lib/pvmig-nested" "$ROOT/var/log/xen/console"
	echo "$STAMP" >"$ROOT/.pvmig-dom0"
}

st_domu() {
	[ -f "$NX_CACHE/domu.cpio.gz" ] && [ "$(cat "$NX_CACHE/domu.stamp" 2>/dev/null)" = "$STAMP" ] && return 0
	local kr d=$NX_CACHE/domu-root
	kr=$(cat "$NX_CACHE/kernel/release")
	nx_log "domU initramfs"
	rm -rf "$d" && mkdir -p "$d"/{bin,dev,proc,sys,www,lib/modules}
	cp "$NX_CACHE/busybox/bin/busybox" "$d/bin/"
	ln -s busybox "$d/bin/sh"
	for m in drivers/net/xen-netfront.ko drivers/block/xen-blkfront.ko; do
		cp "$NX_CACHE/kernel/pkg/lib/modules/$kr/kernel/$m" "$d/lib/modules/"
	done
	install -m 0755 "$HARNESS/guest/domu-init" "$d/init"
	(cd "$d" && find . | cpio -o -H newc --quiet) | gzip -9 > "$NX_CACHE/domu.cpio.gz.tmp"
	mv "$NX_CACHE/domu.cpio.gz.tmp" "$NX_CACHE/domu.cpio.gz"
	echo "$STAMP" >"$NX_CACHE/domu.stamp"
}

st_pack() {
	[ -f "$NX_CACHE/dom0.cpio.zst" ] && [ "$(cat "$NX_CACHE/dom0.stamp" 2>/dev/null)" = "$STAMP" ] && return 0
	[ "$(cat "$ROOT/.pvmig-dom0" 2>/dev/null)" = "$STAMP" ] || nx_die "stage dom0 first"
	nx_log "packing dom0's initramfs"
	cp "$NX_CACHE/kernel/vmlinuz" "$NX_CACHE/domu.cpio.gz" "$ROOT/var/lib/pvmig-nested/"
	(cd "$ROOT" && find . -xdev \( -path ./usr/share/doc -o -path ./usr/share/man \
		-o -path ./usr/share/locale -o -path ./var/cache/apt -o -path ./var/lib/apt/lists \) -prune \
		-o ! -name '.pvmig-*' -print | cpio -o -H newc --quiet) | zstd -q -T0 -9 > "$NX_CACHE/dom0.cpio.zst.tmp"
	mv "$NX_CACHE/dom0.cpio.zst.tmp" "$NX_CACHE/dom0.cpio.zst"
	echo "$STAMP" >"$NX_CACHE/dom0.stamp"
	nx_log "dom0.cpio.zst: $(du -h "$NX_CACHE/dom0.cpio.zst" | cut -f1)"
}

st_xen() {
	[ -f "$NX_CACHE/xen/xen" ] && return 0
	[ -f "$ROOT/.pvmig-debootstrap" ] || nx_die "stage rootfs first"
	local ver src=$NX_CACHE/xen-src mirror apt
	ver=$(chroot "$ROOT" dpkg-query -W -f '${Version}' xen-utils-4.17)
	mirror=$(nx_mirror)
	nx_log "Xen $ver hypervisor with CONFIG_SHADOW_PAGING=y"
	rm -rf "$src" && mkdir -p "$src/lists/partial" "$src/archives/partial"
	# A private deb-src list: this machine's apt configuration stays as is.
	echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $NX_SUITE main" \
		> "$src/sources.list"
	apt=(-o "Dir::Etc::SourceList=$src/sources.list" -o Dir::Etc::SourceParts=/dev/null
	     -o "Dir::State::Lists=$src/lists" -o "Dir::Cache::Archives=$src/archives"
	     -o APT::Sandbox::User=root)
	(cd "$src" && apt-get -q "${apt[@]}" update >/dev/null &&
	 apt-get -q "${apt[@]}" source --download-only "xen=$ver" >/dev/null &&
	 dpkg-source -x xen_*.dsc tree >/dev/null) || nx_die "cannot fetch the source of xen $ver"
	(cd "$src/tree" &&
	 cp debian/xen-kconfig xen/.config &&
	 echo CONFIG_SHADOW_PAGING=y >> xen/.config &&
	 make -C xen olddefconfig XEN_TARGET_ARCH=x86_64 PYTHON=python3 &&
	 grep -qx CONFIG_SHADOW_PAGING=y xen/.config &&
	 make -C xen -j"$(nproc)" XEN_TARGET_ARCH=x86_64 PYTHON=python3 xen) \
		>"$NX_CACHE/xen-build.log" 2>&1 || { tail -n 20 "$NX_CACHE/xen-build.log"; nx_die "Xen build failed"; }
	mkdir -p "$NX_CACHE/xen"
	cp "$src/tree/xen/.config" "$NX_CACHE/xen/config"
	cp "$src/tree/xen/xen" "$NX_CACHE/xen/xen.tmp" && mv "$NX_CACHE/xen/xen.tmp" "$NX_CACHE/xen/xen"
	rm -rf "$src/tree"
}

t0=$(date +%s)
for s in ${*:-tools kernel busybox key rootfs dom0 domu pack xen}; do
	case $s in
	tools | kernel | busybox | key | rootfs | dom0 | domu | pack | xen) "st_$s" ;;
	*) nx_die "unknown stage '$s'" ;;
	esac
done
nx_log "images ready in $NX_CACHE ($(($(date +%s) - t0)) s)"
