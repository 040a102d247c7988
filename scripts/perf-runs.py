#!/usr/bin/env python3
"""Stalls in a perf timeline of one thread: gaps between samples, and long runs of one stage.

Record the shard thread with call graphs, then feed this the script output:

    perf record -F 4999 --call-graph dwarf,8192 -t <shard tid> -o /tmp/perft.data -- sleep 4
    perf script -i /tmp/perft.data -F time,ip,sym > /tmp/pt.txt
    python3 scripts/perf-runs.py /tmp/pt.txt

Gaps: consecutive samples more than 1 ms apart, i.e. time the thread was not running
(sampling every 0.2 ms). Runs: consecutive samples whose call stacks fall in the same stage
(the first of STAGES found in the stack): a long run is one call that held the thread. A
run's length includes any gap inside it; samples x 0.2 ms is its time on the CPU.
"""
import re
import sys

STAGES = ["add_spans", "encode_records", "decode_traces", "pwritev", "madvise",
          "spin_poll_io", "park", "__send", "recv"]


def samples(path):
    out, cur = [], None
    for line in open(path):
        m = re.match(r"^\s*(\d+\.\d+):\s*$", line)
        if m:
            if cur:
                out.append(cur)
            cur = (float(m.group(1)), [])
        elif line.strip() and cur is not None:
            parts = line.split(None, 1)
            if len(parts) == 2:
                cur[1].append(parts[1].strip())
    if cur:
        out.append(cur)
    return out


def stage(stack):
    text = " ".join(stack)
    return next((s for s in STAGES if s in text), stack[0] if stack else "?")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    s = samples(sys.argv[1])
    if len(s) < 2:
        sys.exit("fewer than two samples")
    gaps = [(b[0] - a[0], a) for a, b in zip(s, s[1:]) if b[0] - a[0] > 0.001]
    print("%d samples over %.2f s; %d gaps over 1 ms, %.1f ms in all"
          % (len(s), s[-1][0] - s[0][0], len(gaps), 1000 * sum(g for g, _ in gaps)))
    for g, (_, stack) in sorted(gaps, key=lambda x: -x[0])[:8]:
        print("  gap %6.2f ms after %s" % (1000 * g, " <- ".join(stack[:4])))
    runs, start = [], 0
    for i in range(1, len(s) + 1):
        if i == len(s) or stage(s[i][1]) != stage(s[start][1]):
            runs.append((s[i - 1][0] - s[start][0], stage(s[start][1]), i - start))
            start = i
    print("longest runs of one stage:")
    for length, name, n in sorted(runs, key=lambda r: -r[0])[:8]:
        print("  %6.2f ms  %-16s %d samples" % (1000 * length, name, n))


if __name__ == "__main__":
    main()
