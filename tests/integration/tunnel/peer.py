#!/usr/bin/env python3
"""The far end of a test tunnel: pvmigd runs it as its tunnel-command.

It speaks a request/reply protocol shaped like xl's migration handshake:
  peer:   BANNER\n
  client: LEN n EXIT code BACK m\n, then n bytes
  peer:   GOT n sha256\n, then m pseudo-random bytes
  client: GO\n
  peer:   DONE sha256-of-the-m-bytes\n, exits with `code`
argv[1]: a file it writes "started" to (the test checks whether it ran).
"""
import hashlib
import random
import sys
import time

import os
open(sys.argv[1], "a").write("started %d\n" % os.getpid())
inp, out = sys.stdin.buffer, sys.stdout.buffer
out.write(b"BANNER\n")
out.flush()
hdr = inp.readline().split()
if len(hdr) != 6 or hdr[0] != b"LEN":
    sys.exit("bad header %r" % hdr)
n, code, m = int(hdr[1]), int(hdr[3]), int(hdr[5])
h = hashlib.sha256()
left = n
reads = 0
while left:
    b = inp.read(min(left, 1 << 16))
    if not b:
        sys.exit("stream ended %d bytes early" % left)
    h.update(b)
    left -= len(b)
    reads += 1
    if reads < 150:
        # a slow reader at first: pvmigd's writes to it block while more
        # messages and pages arrive (how a busy dom0 behaves)
        time.sleep(0.003)
out.write(b"GOT %d %s\n" % (n, h.hexdigest().encode()))
back = random.Random(7).randbytes(m)
out.write(back)
out.flush()
if inp.readline() != b"GO\n":
    sys.exit("no GO")
out.write(b"DONE %s\n" % hashlib.sha256(back).hexdigest().encode())
out.flush()
sys.exit(code)
