#!/usr/bin/env python3
"""Drives `pvmig tunnel` the way xl drives its transport command: pipes on
stdin/stdout, the stream written in pieces of random sizes, replies read in
between. Prints one "key=value" line; exit 0 if the exchange completed.
usage: client.py N_BYTES EXIT_CODE BACK_BYTES -- pvmig tunnel ...
"""
import hashlib
import random
import subprocess
import time
import sys

n, code, m = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
cmd = sys.argv[5:]
rnd = random.Random(1)
# Compressible and not: text, zero pages, random bytes; length not a
# multiple of the page size.
parts, size = [], 0
while size < n:
    k = rnd.choice([b"DOMU-TICK %d disk=ok\n" % size * 50, bytes(12288),
                    rnd.randbytes(5000)])
    parts.append(k)
    size += len(k)
data = b"".join(parts)[:n]
p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
res = {"stage": "start"}
try:
    if p.stdout.readline() != b"BANNER\n":
        raise RuntimeError("no banner")
    res["stage"] = "banner"
    p.stdin.write(b"LEN %d EXIT %d BACK %d\n" % (n, code, m))
    p.stdin.flush()
    at = 0
    # First, paced: a piece shorter than a page (its message carries no
    # pages), at once whole pages, then a pause: as xl's small records
    # before its page batches.
    for _ in range(100):
        if at + 70000 > n:
            break
        for k in (100, 65536):
            p.stdin.write(data[at:at + k])
            p.stdin.flush()
            at += k
        time.sleep(0.002)
    while at < n:
        k = rnd.choice([1, 17, 4096, 4097, 65536, 300000])
        p.stdin.write(data[at:at + k])
        at += k
    p.stdin.flush()
    res["stage"] = "sent"
    got = p.stdout.readline().split()
    res["sent_intact"] = int(got[1]) == n and got[2].decode() == hashlib.sha256(data).hexdigest()
    back = p.stdout.read(m)
    p.stdin.write(b"GO\n")
    p.stdin.flush()
    done = p.stdout.readline().split()
    res["back_intact"] = len(back) == m and done[1].decode() == hashlib.sha256(back).hexdigest()
    res["stage"] = "done"
    p.stdin.close()
    res["eof"] = p.stdout.read() == b""
except (RuntimeError, IndexError, BrokenPipeError, ValueError) as e:
    res["error"] = repr(e).replace(" ", "_")
try:
    res["rc"] = p.wait(timeout=60)
except subprocess.TimeoutExpired:
    p.kill()
    res["rc"] = "hung"
print(" ".join("%s=%s" % kv for kv in res.items()))
sys.exit(0 if res["stage"] == "done" else 1)
