#!/usr/bin/env python3
"""Instructions per call of one function, from a callgrind profile: a repeatable measure of a
hot-path change on a noisy machine (wall-clock benches here swing by 10-40% between phases).

Run a bench under callgrind, collecting only inside the function, then divide:

    cargo bench --bench decode --no-run    # prints the bench binary, target/release/deps/decode-HASH
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \\
        --toggle-collect='glust::otlp::proto::decode_traces*' \\
        target/release/deps/decode-HASH --bench --profile-time 2 decode_traces/glust
    scripts/ir-per-call.py /tmp/cg.out glust::otlp::proto::decode_traces

Prints the calls, the instructions collected, and their ratio. With --toggle-collect the
instructions are those executed inside the function (callees included), so the ratio is the
cost of one call. Compare two builds by their ratios; the call counts differ (--profile-time
runs for a fixed time).
"""
import re
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    path, prefix = sys.argv[1], sys.argv[2]
    names, calls, total = {}, 0, None
    lines = open(path).read().split("\n")
    for i, line in enumerate(lines):
        # Callgrind compresses names (the default): "(id) name" the first time, "(id)" after.
        m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line)
        if m and m.group(2):
            names[m.group(1)] = m.group(2)
        if m and line.startswith("cfn=") and i + 1 < len(lines) and lines[i + 1].startswith("calls="):
            if names.get(m.group(1), "").startswith(prefix):
                calls += int(lines[i + 1].split("=")[1].split()[0])
        if line.startswith(("summary:", "totals:")):
            total = int(line.split()[1])
    if total is None:
        sys.exit("%s: no summary line: not a callgrind profile?" % path)
    if calls == 0:
        sys.exit("%s: no calls to a function starting with %s" % (path, prefix))
    print("%s: %d calls, %d instructions, %d per call" % (prefix, calls, total, total // calls))


if __name__ == "__main__":
    main()
