#!/usr/bin/env python3
"""Perf samples by thread and time, for work a workload hands to threads of its own.

    perf script -i FILE -F comm,pid,tid,time,ip,sym > w.txt
    perf-window.py w.txt --threads
    perf-window.py w.txt --from T0 --to T1 [--tids 1,2] [--top 50]

--threads prints each thread's name, pid/tid, first and last sample time and sample count (to
find a phase: W2's decoders are the threads that live only during it). Otherwise it prints, over
the samples between T0 and T1 (perf's timestamps, seconds) of the given threads (all if none),
each function's inclusive and self share, and the samples per thread.
"""
import argparse
import collections
import re

HEADER = re.compile(r"^\s*(\S.*?)\s+(\d+)/(\d+)\s+([\d.]+):")


def clean(name):
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    return re.sub(r"\+0x[0-9a-f]+$", "", name)


def samples(path):
    """Yields (comm, tid, time, [frames, innermost first])."""
    current, frames = None, []
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            match = HEADER.match(line)
            if match:
                if current:
                    yield (*current, frames)
                current = (match.group(1), f"{match.group(2)}/{match.group(3)}", float(match.group(4)))
                frames = []
            elif current:
                parts = line.strip().split(None, 1)
                if len(parts) == 2:
                    frames.append(clean(parts[1].rsplit(" (", 1)[0]))
    if current:
        yield (*current, frames)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("script")
    parser.add_argument("--threads", action="store_true")
    parser.add_argument("--from", dest="start", type=float, default=0.0)
    parser.add_argument("--to", dest="end", type=float, default=float("inf"))
    parser.add_argument("--tids", default="")
    parser.add_argument("--top", type=int, default=50)
    args = parser.parse_args()

    if args.threads:
        spans = {}
        for comm, tid, time, _ in samples(args.script):
            first, last, count = spans.get((comm, tid), (time, time, 0))
            spans[(comm, tid)] = (min(first, time), max(last, time), count + 1)
        for (comm, tid), (first, last, count) in sorted(spans.items(), key=lambda item: item[1][0]):
            print(f"{comm:20} {tid:15} {first:.3f} {last:.3f} {count}")
        return

    tids = {tid for tid in args.tids.split(",") if tid}
    inclusive, own, per_thread = collections.Counter(), collections.Counter(), collections.Counter()
    total = 0
    for comm, tid, time, frames in samples(args.script):
        if not args.start <= time <= args.end:
            continue
        if tids and tid.split("/")[1] not in tids:
            continue
        total += 1
        per_thread[f"{comm} {tid}"] += 1
        if frames:
            own[frames[0]] += 1
        for frame in set(frames):
            inclusive[frame] += 1
    print(f"{total} samples; by thread: {dict(per_thread.most_common(12))}")
    print("incl%  self%  function")
    for frame, count in inclusive.most_common(args.top):
        print(f"{100 * count / max(total, 1):5.1f} {100 * own[frame] / max(total, 1):5.1f}  {frame[:160]}")


if __name__ == "__main__":
    main()
