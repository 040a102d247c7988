#!/usr/bin/env python3
"""Plot HdrHistogram percentile distributions (.hgrm) as a latency-by-percentile chart.

    scripts/plot-hdr.py -o latency.png run1.hgrm run2.hgrm [--title "..."] [--unit ms]

Reads the text written by HdrHistogram's outputPercentileDistribution (Glust's
`/debug/hdr`, loadgen's `--hdr-out`). The x axis is the percentile on the usual
"number of nines" scale (1/(1-p), logarithmic), the y axis the value. Needs matplotlib
(`pip install matplotlib`).
"""
import argparse
import os
import sys


def read_hgrm(path):
    points = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3 or line.startswith("#"):
                continue
            try:
                value, pct = float(parts[0]), float(parts[1])
            except ValueError:
                continue  # the header line
            if pct < 1.0:
                points.append((1.0 / (1.0 - pct), value))
    if not points:
        sys.exit(f"{path}: no percentile rows (is it a .hgrm file?)")
    return points


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help=".hgrm files, one line each on the chart")
    ap.add_argument("-o", "--output", required=True, help="PNG file to write")
    ap.add_argument("--title", default="Latency by percentile")
    ap.add_argument("--unit", default="ms", help="unit of the values, for the axis label")
    args = ap.parse_args()
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("matplotlib is needed: pip install matplotlib")

    fig, ax = plt.subplots(figsize=(10, 6))
    for path in args.files:
        xs, ys = zip(*read_hgrm(path))
        ax.plot(xs, ys, label=os.path.basename(path))
    ax.set_xscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000, 100000]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"])
    ax.set_xlabel("percentile")
    ax.set_ylabel(f"latency ({args.unit})")
    ax.set_title(args.title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.output, dpi=100)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
