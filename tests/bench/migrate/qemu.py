#!/usr/bin/env python3
"""QEMU side of tests/bench/migrate.sh.

  qemu.py initramfs OUT BUSYBOX DIRTIER
      writes a newc cpio (busybox as /bin/sh, /init script, the dirtier)
  qemu.py run --kernel K --initrd I --work DIR --count N --rate R
              [--content counter|random|mixed] [--boot-pages N]
              [--tls DIR] [--mem 1G] [--smp 2] [--timeout S]
      boots a source guest (TCG), starts a destination with -incoming defer,
      migrates over loopback TCP (max-bandwidth raised, default downtime
      target), checks the destination's serial log, prints one JSON line:
      {"status", "total_ms", "downtime_ms", "bytes", "survived", "errors", ...}

QMP is spoken over a unix socket with a few lines of socket + json. Only the
QEMU processes started here are stopped, by their PID.
"""
import argparse, json, os, re, signal, socket, subprocess, sys, time

# ---- initramfs -----------------------------------------------------------
INIT = """#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "pvmig-bench init: dirtier $pvb_count $pvb_rate $pvb_threads $pvb_content $pvb_boot"
exec /dirtier "$pvb_count" "$pvb_rate" "$pvb_threads" "$pvb_content" "$pvb_boot"
"""


def cpio_entry(name, mode, data=b"", rdev=(0, 0), ino=[1]):
    ino[0] += 1
    hdr = "070701" + "".join("%08X" % v for v in (
        ino[0], mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
        len(name) + 1, 0))
    out = hdr.encode() + name.encode() + b"\0"
    out += b"\0" * (-len(out) % 4) + data
    return out + b"\0" * (-len(out) % 4)


def initramfs(out, busybox, dirtier):
    parts = []
    for d in ("bin", "dev", "proc", "sys"):
        parts.append(cpio_entry(d, 0o40755))
    parts.append(cpio_entry("dev/console", 0o20600, rdev=(5, 1)))
    parts.append(cpio_entry("bin/busybox", 0o100755, open(busybox, "rb").read()))
    for applet in ("sh", "mount", "echo", "cat"):
        parts.append(cpio_entry("bin/" + applet, 0o120777, b"busybox"))
    parts.append(cpio_entry("init", 0o100755, INIT.encode()))
    parts.append(cpio_entry("dirtier", 0o100755, open(dirtier, "rb").read()))
    parts.append(cpio_entry("TRAILER!!!", 0))
    with open(out, "wb") as f:
        f.write(b"".join(parts))


# ---- QMP -----------------------------------------------------------------
class QMP:
    def __init__(self, path, timeout=30):
        deadline = time.time() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.s.settimeout(timeout)
        self.f = self.s.makefile("rb")
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError("QMP closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def cmd(self, name, **args):
        self.s.sendall(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        r = self._read()
        if "error" in r:
            raise RuntimeError("%s: %s" % (name, r["error"].get("desc")))
        return r.get("return")


# ---- one migration -------------------------------------------------------
BAD = re.compile(r"Kernel panic|Oops|BUG:|general protection|Attempted to kill init|segfault")
HB = re.compile(r"pvmig-bench hb (\d+) writes=(\d+) errors=(\d+)")


def heartbeats(path):
    try:
        text = open(path, errors="replace").read()
    except OSError:
        return "", []
    return text, [tuple(map(int, m)) for m in HB.findall(text)]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run(a):
    os.makedirs(a.work, exist_ok=True)
    base = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "qemu64", "-m", a.mem,
            "-smp", str(a.smp), "-nographic", "-monitor", "none", "-net", "none",
            "-no-reboot", "-kernel", a.kernel, "-initrd", a.initrd, "-append",
            "console=ttyS0 quiet panic=0 pvb_count=%d pvb_rate=%d pvb_threads=%d "
            "pvb_content=%s pvb_boot=%d" % (a.count, a.rate, a.smp, a.content, a.boot_pages)]
    procs = {}
    res = {"status": "error", "tls": bool(a.tls)}

    def start(role, extra):
        log = os.path.join(a.work, role + ".serial")
        qmp = os.path.join(a.work, role + ".qmp")
        for p in (log, qmp):
            if os.path.exists(p):
                os.unlink(p)
        cmd = base + ["-serial", "file:" + log, "-qmp", "unix:%s,server=on,wait=off" % qmp]
        if a.tls:
            cmd += ["-object", "tls-creds-x509,id=tls0,dir=%s,endpoint=%s,verify-peer=on"
                    % (a.tls, "client" if role == "src" else "server")]
        cmd += extra
        procs[role] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                       stdout=open(os.path.join(a.work, role + ".out"), "w"),
                                       stderr=subprocess.STDOUT)
        return log, qmp

    try:
        t0 = time.time()
        src_log, src_qmp = start("src", [])
        # Booted and dirtying: the dirtier has written its whole set once
        # and reported a few heartbeats.
        while True:
            text, hb = heartbeats(src_log)
            if len(hb) >= 3:
                break
            if procs["src"].poll() is not None or time.time() - t0 > a.boot_timeout:
                res["status"] = "source did not boot in %ds" % a.boot_timeout
                res["src_serial_tail"] = text[-400:]
                return res
            time.sleep(0.5)
        res["boot_s"] = round(time.time() - t0, 1)
        dst_log, dst_qmp = start("dst", ["-incoming", "defer"])
        dst = QMP(dst_qmp)
        src = QMP(src_qmp)
        port = free_port()
        if a.tls:
            dst.cmd("migrate-set-parameters", **{"tls-creds": "tls0"})
            src.cmd("migrate-set-parameters", **{"tls-creds": "tls0", "tls-hostname": "localhost"})
        dst.cmd("migrate-incoming", uri="tcp:127.0.0.1:%d" % port)
        src.cmd("migrate-set-parameters", **{"max-bandwidth": a.max_bandwidth})
        src.cmd("migrate", uri="tcp:127.0.0.1:%d" % port)
        t1 = time.time()
        while True:
            q = src.cmd("query-migrate")
            st = q.get("status")
            if st in ("completed", "failed", "cancelled"):
                break
            if time.time() - t1 > a.timeout:
                src.cmd("migrate_cancel")
                res["status"] = "not completed in %ds (cancelled; %s, %s bytes sent)" % (
                    a.timeout, st, q.get("ram", {}).get("transferred"))
                return res
            time.sleep(0.05)
        if st != "completed":
            res["status"] = "migration %s: %s" % (st, q.get("error-desc", ""))
            return res
        ram = q.get("ram", {})
        res.update(status="completed", total_ms=q.get("total-time"), downtime_ms=q.get("downtime"),
                   setup_ms=q.get("setup-time"), bytes=ram.get("transferred"),
                   dirty_sync_count=ram.get("dirty-sync-count"),
                   mbps=ram.get("mbps"))
        # The rate the dirtier achieved on the source (TCG may not keep up
        # with the one asked for): page writes per second over its
        # heartbeats while the source ran.
        _, shb = heartbeats(src_log)
        if len(shb) >= 2 and shb[-1][0] > shb[0][0]:
            res["dirty_mib_s"] = round((shb[-1][1] - shb[0][1]) / (shb[-1][0] - shb[0][0]) * 4096 / 1048576, 1)
        # The destination must go on: new heartbeats, no errors, no oops.
        t2 = time.time()
        while time.time() - t2 < a.check_s:
            time.sleep(0.5)
        status = dst.cmd("query-status").get("status")
        text, hb = heartbeats(dst_log)
        bad = BAD.findall(text)
        errors = hb[-1][2] if hb else None
        res.update(dst_status=status, dst_heartbeats=len(hb), errors=errors,
                   dst_bad=bad[:3])
        res["survived"] = (status == "running" and len(hb) >= max(2, a.check_s // 2)
                           and errors == 0 and not bad)
        if not res["survived"]:
            res["dst_serial_tail"] = text[-400:]
        return res
    except Exception as e:  # noqa: BLE001 - reported as this run's status
        res["status"] = "error: %s" % e
        return res
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("initramfs")
    i.add_argument("out")
    i.add_argument("busybox")
    i.add_argument("dirtier")
    r = sub.add_parser("run")
    r.add_argument("--kernel", required=True)
    r.add_argument("--initrd", required=True)
    r.add_argument("--work", required=True)
    r.add_argument("--count", type=int, default=0)
    r.add_argument("--rate", type=int, default=0)
    r.add_argument("--content", choices=("counter", "random", "mixed"), default="mixed")
    r.add_argument("--boot-pages", type=int, default=0)
    r.add_argument("--tls")
    r.add_argument("--mem", default="1G")
    r.add_argument("--smp", type=int, default=2)
    r.add_argument("--timeout", type=int, default=180)
    r.add_argument("--boot-timeout", type=int, default=240)
    r.add_argument("--check-s", type=int, default=6)
    r.add_argument("--max-bandwidth", type=int, default=100 << 30)
    a = ap.parse_args()
    if a.cmd == "initramfs":
        initramfs(a.out, a.busybox, a.dirtier)
    else:
        print(json.dumps(run(a)))


if __name__ == "__main__":
    main()
