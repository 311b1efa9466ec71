#!/usr/bin/env python3
"""Inclusive CPU share per function, over the perf samples whose stack contains a marker.

    perf script -i FILE | bench/tools/perf-inclusive.py MARKER [TOP] [FILTER]

MARKER selects samples: substrings joined by `&`, each `!`-prefixed one excluded (e.g.
`workloads::w3::&!W3State`); every function on the selected samples' stacks is credited once per
sample. FILTER (a substring) limits the printed rows.
"""
import re
import sys
from collections import Counter

marker = sys.argv[1]
top = int(sys.argv[2]) if len(sys.argv) > 2 else 60
only = sys.argv[3] if len(sys.argv) > 3 else ""
total = 0
picked = 0
incl = Counter()
selfc = Counter()
stack = []


def clean(name):
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    name = re.sub(r"\+0x[0-9a-f]+$", "", name)
    return name


def flush():
    global total, picked
    if not stack:
        return
    total += 1
    terms = marker.split("&")
    wanted = [t for t in terms if not t.startswith("!")]
    unwanted = [t[1:] for t in terms if t.startswith("!")]
    if all(any(t in frame for frame in stack) for t in wanted) and not any(
        any(t in frame for frame in stack) for t in unwanted
    ):
        picked += 1
        for name in set(stack):
            incl[name] += 1
        selfc[stack[0]] += 1


for line in sys.stdin:
    line = line.rstrip("\n")
    if not line.strip():
        flush()
        stack = []
        continue
    if line.startswith((" ", "\t")):
        parts = line.strip().split(" ", 1)
        if len(parts) == 2:
            sym = parts[1].rsplit(" (", 1)[0]
            stack.append(clean(sym))
flush()
print(f"{picked} of {total} samples contain {marker!r}")
print("inclusive % of those samples:")
for name, count in incl.most_common():
    if only and only not in name:
        continue
    print(f"{100.0 * count / max(picked, 1):6.1f}%  {name[:160]}")
    top -= 1
    if top <= 0:
        break
