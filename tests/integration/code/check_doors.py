#!/usr/bin/env python3
"""One door into each folder (issue 13; docs/architecture.md, DESIGN.md
"Layers: one folder, one door each"):

  - a file may include a header of its own folder, of a folder that
    contains its own (hv/sim/guest/ uses hv/sim/'s guest ABI), or the door
    of another folder: the header named after that folder
    (common/common.h, hv/hv.h, transport/transport.h);
  - a sub-folder's door opens only inside its parent: hv/sim/sim.h and
    hv/xen/xen.h are hv/'s own business (pvm_hv_open() chooses between
    them), so from outside hv/ the one way in is hv/hv.h; the layers above
    reach checkpoint/stream/stream.h through checkpoint/checkpoint.h;
  - nothing outside hv/ names a backend: no pvm_sim_*, pvm_xs_*,
    pvm_xenstored*, pvm_hv_xen_*, PVM_SIM_*, and no backend identity test
    (pvm_sim_is_sim, pvm_hv_is_xen, comparing ops->name with "sim" or
    "xen"). A difference between backends is a slot of the ops table.

Only the product's folders are read (tests/ may open the module it
tests). Before the tree, the rules are run on a probe tree with one breach
of each kind and one clean file, so that this check can fail.
Prints each breach as FILE:LINE: what, and exits 1 if there is one.
"""
import os
import re
import sys
import tempfile

SKIP_DIRS = {".git", "tests", "docs", "scripts", "packaging", "examples"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
BACKEND = re.compile(r"\b(pvm_sim_\w+|pvm_xs_\w+|pvm_xenstored\w*|"
                     r"pvm_hv_xen_\w+|pvm_hv_is_xen|PVM_SIM_\w+)\b|"
                     r"name\s*,\s*\"(?:sim|xen)\"")


def door(folder):
    """The one public header of @folder: the header named after it."""
    return folder + "/" + os.path.basename(folder) + ".h"


def within(d, folder):
    return d == folder or d.startswith(folder + "/")


def include_ok(d, header):
    """May a file in folder @d include @header (a path from the root)?"""
    hdir = os.path.dirname(header)
    if not hdir or within(d, hdir):
        return True  # its own folder, or a folder that contains it
    if header != door(hdir):
        return False
    parent = os.path.dirname(hdir)
    return not parent or within(d, parent)


def strip_comments(text):
    """Blanks out comments but keeps the line count."""
    return re.sub(r"/\*.*?\*/|//[^\n]*",
                  lambda m: re.sub(r"[^\n]", " ", m.group(0)), text,
                  flags=re.S)


def breaches(root):
    """Yields "FILE:LINE: what" for each breach under @root."""
    for dirpath, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS and
                         not x.startswith("build"))
        if rel_dir == ".":
            continue
        for f in sorted(files):
            if not f.endswith((".c", ".h")):
                continue
            rel = os.path.join(rel_dir, f)
            text = open(os.path.join(dirpath, f), encoding="utf-8",
                        errors="replace").read()
            for n, line in enumerate(text.split("\n"), 1):
                m = INCLUDE.match(line)
                if m and not include_ok(rel_dir, m.group(1)):
                    yield ('%s:%d: includes "%s", not a door open to %s/' %
                           (rel, n, m.group(1), rel_dir))
            if within(rel_dir, "hv"):
                continue
            code = strip_comments(text)
            for n, line in enumerate(code.split("\n"), 1):
                if line.lstrip().startswith("#"):
                    continue
                m = BACKEND.search(line)
                if m:
                    yield ("%s:%d: names a backend (%s) outside hv/" %
                           (rel, n, m.group(1) or m.group(0)))


PROBES = {
    # file: (text, breaches expected)
    "migrate/a.c": ('#include "hv/sim/sim.h"\n', 1),
    "checkpoint/b.h": ('#include "hv/xen/xen.h"\n', 1),
    "pvquiesce/c.c": ('#include "hv/sim/backend.h"\n', 1),
    "cmd/d.c": ('#include "migrate/internal.h"\n', 1),
    "migrate/e.c": ("int e(void) { return pvm_sim_is_sim(hv); }\n", 1),
    "checkpoint/f.c": ("int f(void) { return pvm_xs_export_domain(x); }\n"
                       "int g(void) { return pvm_hv_is_xen(hv); }\n", 2),
    "common/g.c": ('int h(void) { return !strcmp(hv->ops->name, "xen"); }\n',
                   1),
    # clean: doors, own folder, a parent's header, hv/ naming its backends
    "migrate/ok.c": ('#include "hv/hv.h"\n#include "migrate/internal.h"\n'
                     '#include "transport/transport.h"\n'
                     "/* pvm_sim_is_sim() is gone */\n"
                     "int i(void) { return hv->ops->stream_save(hv); }\n", 0),
    "hv/ok.c": ('#include "hv/sim/sim.h"\n#include "hv/xen/xen.h"\n'
                "int j(void) { return pvm_hv_xen_open(0); }\n", 0),
    "hv/sim/guest/ok.c": ('#include "hv/sim/guest_abi.h"\n', 0),
}


def self_test():
    """0 if the rules flag exactly the probes' breaches."""
    with tempfile.TemporaryDirectory() as tmp:
        for path, (text, _) in PROBES.items():
            os.makedirs(os.path.join(tmp, os.path.dirname(path)),
                        exist_ok=True)
            with open(os.path.join(tmp, path), "w") as f:
                f.write(text)
        got = {}
        for b in breaches(tmp):
            f = b.split(":")[0]
            got[f] = got.get(f, 0) + 1
    want = {p: n for p, (_, n) in PROBES.items() if n}
    if got != want:
        print("FAIL: the check's rules are broken: on the probes they flag "
              "%s, expected %s" % (sorted(got.items()), sorted(want.items())))
        return 1
    return 0


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    if self_test():
        return 1
    bad = 0
    for b in breaches(root):
        print(b)
        bad += 1
    print("%d breaches of the doors" % bad)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
