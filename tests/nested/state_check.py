#!/usr/bin/env python3
"""Compares the state hv/xen read for a PV domU with what Xen itself reports.

Runs in dom0 (tests/nested/run.sh copies it there), after a `pvmig save -c`
taken while the guest was paused (so Xen's dumps and the file see one state):

  state_check.py SAVEFILE P2M XENKEYS XENCTX

  SAVEFILE  the pvmig save file (plain, not lz4)
  P2M       `xen-mfndump dump-p2m <domid>`   (pfn -> mfn, read by Xen's tools)
  XENKEYS   `xl dmesg` after `xl debug-keys e` and `xl debug-keys g`
  XENCTX    `xenctx -a <domid>`              (vCPU 0 registers)

Checks, printed one per line (OK / BAD); exit status: bit 0 set when the
state hv/xen read differs from Xen's, bit 1 when a virq/ipi port's kind is
wrong in the file (checkpoint/ converts hv's port table into PVMIG_EVTCHN):
  * event channels: the same open ports as Xen's 'e' dump; interdomain ports
    with the same peer (domid, port); virq/ipi ports with the kind the
    stream format has for them (docs/stream-format.md 4.4: 3 virq, 4 ipi)
  * grants: every entry Xen has active ('g' dump) is in the file as in use,
    with the mfn Xen shows translated to the pfn the p2m gives for it
  * vCPU 0: rip, rsp and cs as xenctx shows them

The records are found by scanning the file for their type and checking the
length (a parser of the whole stream is checkpoint/'s job, not this test's).
"""
import re
import struct
import sys

REC_HVM_CONTEXT = 0x09
REC_PVMIG_EVTCHN = 0x80706D04
REC_PVMIG_GRANT = 0x80706D05
KIND = {1: "unbound", 2: "interdomain", 3: "virq", 4: "ipi", 5: "pirq"}
# Xen's internal channel states in its 'e' dump (xen/include/xen/sched.h)
ECS = {2: "unbound", 3: "interdomain", 4: "pirq", 5: "virq", 6: "ipi"}

bad = 0        # mismatches in what hv/xen read (exit status bit 0)
bad_kind = 0   # virq/ipi kinds lost in the file (checkpoint/, bit 1)


def say(ok, msg, kind=False):
    global bad, bad_kind
    print(("OK    " if ok else "BAD   ") + msg)
    if not ok:
        if kind:
            bad_kind += 1
        else:
            bad += 1


def find_record(data, rtype, valid):
    """Body of the first record of @rtype whose body passes @valid."""
    key = struct.pack("<I", rtype)
    i = data.find(key)
    while i >= 0:
        if i % 8 == 0 and i + 8 <= len(data):
            _, ln = struct.unpack_from("<II", data, i)
            body = data[i + 8:i + 8 + ln]
            if len(body) == ln and valid(body):
                return body
        i = data.find(key, i + 1)
    return None


def evtchn_ok(b):
    return len(b) >= 8 and len(b) == 8 + 16 * struct.unpack_from("<I", b)[0]


def grant_ok(b):
    if len(b) < 16:
        return False
    ver, _, cnt, _ = struct.unpack_from("<IIII", b)
    return ver == 1 and len(b) == 16 + 16 * cnt


def hvm_ok(b):
    return len(b) >= 8 and b[:4] == b"pvmc"


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    data = open(sys.argv[1], "rb").read()
    p2m_text = open(sys.argv[2]).read()
    keys = open(sys.argv[3], errors="replace").read()
    ctx = open(sys.argv[4], errors="replace").read()

    domid = int(re.search(r"pvmig_domid = (\d+)", data[:4096].decode("latin1")).group(1))

    # ---- event channels
    body = find_record(data, REC_PVMIG_EVTCHN, evtchn_ok)
    say(body is not None, "PVMIG_EVTCHN record found")
    xen = None
    lines = keys.splitlines()
    for i, ln in enumerate(lines):
        if ln.endswith("Event channel information for domain %d:" % domid):
            xen = {}
            for ln2 in lines[i + 1:]:
                if re.match(r"\(XEN\)\s+(Polling|port \[)", ln2):
                    continue
                r = re.match(r"\(XEN\)\s+(\d+) \[.*?\]: s=(\d+)(.*)", ln2)
                if not r:
                    break
                if int(r.group(2)) in ECS:
                    extra = dict(re.findall(r"(\w)=(\d+)", r.group(3)))
                    xen[int(r.group(1))] = (ECS[int(r.group(2))], extra)
    say(bool(xen), "Xen's event channel dump for domain %d" % domid)
    if body and xen:
        mine = {}
        for k in range(struct.unpack_from("<I", body)[0]):
            port, kind, _, rdom, remote, _ = struct.unpack_from("<IBBHII", body, 8 + 16 * k)
            mine[port] = (KIND.get(kind, str(kind)), rdom, remote)
        say(sorted(mine) == sorted(xen),
            "event channels: ports %s in the file, %s in Xen" % (sorted(mine), sorted(xen)))
        for port in sorted(set(mine) & set(xen)):
            xk, ex = xen[port]
            k, rdom, remote = mine[port]
            if xk == "interdomain":
                say(k == "interdomain" and rdom == int(ex["d"]) and remote == int(ex["p"]),
                    "port %d: interdomain to d%s port %s in Xen, %s d%d port %d in the file"
                    % (port, ex["d"], ex["p"], k, rdom, remote))
            else:
                say(k == xk, "port %d: %s in Xen%s, %s in the file"
                    % (port, xk, " (virq %s)" % ex["v"] if "v" in ex else "", k),
                    kind=True)

    # ---- grants
    p2m = {int(a, 16): int(b, 16) for a, b in
           re.findall(r"pfn=0x([0-9a-f]+)\s*==>\s*mfn=0x([0-9a-f]+)", p2m_text)}
    say(len(p2m) > 0, "xen-mfndump gave %d p2m entries" % len(p2m))
    m2p = {v: k for k, v in p2m.items()}
    body = find_record(data, REC_PVMIG_GRANT, grant_ok)
    say(body is not None, "PVMIG_GRANT record found")
    m = re.search(r"grant-table for remote d%d \(v1\)\n(.*?)(?=grant-table for|gnttab_usage_print_all|\Z)"
                  % domid, keys, re.S)
    say(m is not None, "Xen's grant table dump for domain %d" % domid)
    if body and m and p2m:
        ents = {}
        for k in range(struct.unpack_from("<I", body, 8)[0]):
            ref, flags, gdom, frame = struct.unpack_from("<IHHQ", body, 16 + 16 * k)
            ents[ref] = (flags, gdom, frame)
        active = re.findall(r"\[0x([0-9a-f]+)\]\s+(\d+)\s+0x([0-9a-f]+)\s+0x[0-9a-f]+\s+(\d+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)",
                            m.group(1))
        say(len(active) > 0, "Xen shows %d active grant entries of d%d" % (len(active), domid))
        good = 0
        for ref, _, mfn, gdom, _, flags in active:
            ref, mfn = int(ref, 16), int(mfn, 16)
            want = m2p.get(mfn)
            got = ents.get(ref)
            ok = got is not None and want is not None and got[2] == want and \
                got[1] == int(gdom) and got[0] == int(flags, 16)
            if not ok:
                say(False, "grant ref %#x: Xen mfn %#x (pfn %s) flags %s, file %s"
                    % (ref, mfn, hex(want) if want is not None else "?", flags, got))
            good += ok
        say(good == len(active), "%d/%d active grants in the file with mfn -> pfn right"
            % (good, len(active)))
        inuse = [e for e in ents.values() if e[0] & 3]
        outside = [e for e in inuse if e[2] not in p2m]
        say(not outside, "%d in-use grant entries, all frames are guest pfns (%d outside)"
            % (len(inuse), len(outside)))

    # ---- vCPU 0
    body = find_record(data, REC_HVM_CONTEXT, hvm_ok)
    say(body is not None, "HVM_CONTEXT record (pvmig's vCPU blobs) found")
    if body:
        # "pvmc", count, then vcpu u32, len u32, blob: the "XVCP" header
        # (6 x le32) and Xen's vcpu_guest_context_x86_64_t, where
        # user_regs follows fpu_ctxt (512) and flags (8): rip at +128,
        # cs at +136, rsp at +152 in user_regs.
        _, _, vcpu, ln = struct.unpack_from("<IIII", body)
        blob = body[16:16 + ln]
        magic, ver, _, width, size, _ = struct.unpack_from("<6I", blob)
        say(magic == 0x50435658 and width == 8 and vcpu == 0,
            "vCPU 0 blob: magic %#x version %d width %d size %d" % (magic, ver, width, size))
        regs = 24 + 512 + 8
        rip, = struct.unpack_from("<Q", blob, regs + 128)
        cs, = struct.unpack_from("<H", blob, regs + 136)
        rsp, = struct.unpack_from("<Q", blob, regs + 152)
        xrip = re.search(r"\brip:\s*([0-9a-f]+)", ctx)
        xrsp = re.search(r"\brsp:\s*([0-9a-f]+)", ctx)
        xcs = re.search(r"\bcs:\s*([0-9a-f]+)", ctx)
        say(bool(xrip and xrsp), "xenctx shows rip/rsp")
        if xrip and xrsp:
            say(rip == int(xrip.group(1), 16) and rsp == int(xrsp.group(1), 16),
                "vCPU 0: rip %#x rsp %#x cs %#x in the file; xenctx rip %s rsp %s cs %s"
                % (rip, rsp, cs, xrip.group(1), xrsp.group(1), xcs.group(1) if xcs else "?"))
    print("%d mismatches in the state read from Xen, %d event-channel kinds "
          "lost in the file" % (bad, bad_kind))
    return (1 if bad else 0) | (2 if bad_kind else 0)


if __name__ == "__main__":
    sys.exit(main())
