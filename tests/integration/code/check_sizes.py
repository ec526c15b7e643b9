#!/usr/bin/env python3
"""Size limits the code keeps (issue 13; docs/architecture.md):

  - no function in migrate/ longer than 120 lines;
  - no C source or header outside hv/sim/ (and tests/) longer than 1,500
    lines.

A function is counted from the first line of its definition to its closing
brace. The tree is kernel-style (checked by .clang-format): a definition's
body opens with "{" alone in column 0 and closes with "}" in column 0, and
the definition starts after the previous blank line, comment or "}". Prints
every breach and exits 1 if there is one; with -v also the longest ones.
"""
import os
import re
import sys

FUNC_LIMITS = {"migrate": 120}
FILE_LIMIT = 1500
FILE_EXEMPT = ("hv/sim/", "tests/")  # tests/: fakes and test programs
SKIP_DIRS = {".git", "build", "build-asan"}


def functions(path):
    """Yields (name, first line, length) for each function in @path."""
    lines = open(path, encoding="utf-8", errors="replace").read().split("\n")
    i = 0
    while i < len(lines):
        if lines[i] != "{":
            i += 1
            continue
        # the signature: back to the line after a blank, "}" or "*/", ";"
        start = i - 1
        while start > 0 and lines[start - 1].strip() and \
                not lines[start - 1].startswith("}") and \
                not lines[start - 1].rstrip().endswith(("*/", ";")) and \
                not lines[start - 1].startswith("#"):
            start -= 1
        end = i + 1
        while end < len(lines) and not lines[end].startswith("}"):
            end += 1
        m = re.search(r"(\w+)\s*\(", " ".join(lines[start:i]))
        name = m.group(1) if m else "?"
        # struct/union/enum/array initialisers at file scope are not
        # functions: their opening line ends with "=" or names a type
        sig = " ".join(lines[start:i])
        if "(" in sig and not sig.rstrip().endswith("="):
            yield name, start + 1, end - start + 1
        i = end + 1


def main():
    root = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "-v" else "."
    verbose = "-v" in sys.argv
    bad = 0
    longest = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for f in sorted(files):
            if not f.endswith((".c", ".h")):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, root)
            n = sum(1 for _ in open(path, encoding="utf-8", errors="replace"))
            if n > FILE_LIMIT and not rel.startswith(FILE_EXEMPT):
                print("%s: %d lines, over %d" % (rel, n, FILE_LIMIT))
                bad += 1
            top = rel.split(os.sep)[0]
            if top not in FUNC_LIMITS or not f.endswith(".c"):
                continue
            for name, line, length in functions(path):
                longest.append((length, "%s:%d %s" % (rel, line, name)))
                if length > FUNC_LIMITS[top]:
                    print("%s:%d: %s() is %d lines, over %d" %
                          (rel, line, name, length, FUNC_LIMITS[top]))
                    bad += 1
    if verbose:
        for length, where in sorted(longest, reverse=True)[:10]:
            print("%4d %s" % (length, where))
    print("%d over the limits" % bad)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
