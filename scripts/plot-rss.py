#!/usr/bin/env python3
"""Plots resident memory against time from scripts/long-run.sh's CSV, as a standalone SVG.

    python3 scripts/plot-rss.py target/long-run.csv docs/long-run-rss.svg [LOAD_END_SECONDS]

No dependencies: the chart is written by hand (a line per series, axes, a mark where the load
ended). Series: resident memory and its anonymous part (MiB), and the raw segments not yet sealed
(count, on the right axis).
"""
import csv
import sys

src, out = sys.argv[1], sys.argv[2]
load_end = float(sys.argv[3]) if len(sys.argv) > 3 else None
rows = list(csv.DictReader(open(src)))
t = [float(r["elapsed_s"]) for r in rows]
rss = [float(r["rss_kib"]) / 1024 for r in rows]
anon = [float(r["rss_anon_kib"]) / 1024 for r in rows] if "rss_anon_kib" in rows[0] else None
raw = [float(r["raw_segments"]) for r in rows]

W, H, L, R, T, B = 760, 320, 60, 50, 20, 40
tmax = max(t) or 1
rmax = max(rss) * 1.15 or 1
smax = max(max(raw) * 1.5, 4)
x = lambda v: L + (W - L - R) * v / tmax
y = lambda v, top: H - B - (H - T - B) * v / top


def path(xs, ys, top):
    return " ".join(f"{'M' if i == 0 else 'L'}{x(a):.1f},{y(b, top):.1f}" for i, (a, b) in enumerate(zip(xs, ys)))


svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
       f'<rect width="{W}" height="{H}" fill="white"/>']
for i in range(6):
    v = rmax * i / 5
    svg.append(f'<line x1="{L}" x2="{W - R}" y1="{y(v, rmax):.1f}" y2="{y(v, rmax):.1f}" stroke="#ddd"/>')
    svg.append(f'<text x="{L - 6}" y="{y(v, rmax) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
for i in range(6):
    v = smax * i / 5
    svg.append(f'<text x="{W - R + 6}" y="{y(v, smax) + 4:.1f}" fill="#c60">{v:.0f}</text>')
step = 60 if tmax > 300 else 10
for s in range(0, int(tmax) + 1, step):
    svg.append(f'<text x="{x(s):.1f}" y="{H - B + 16}" text-anchor="middle">{s}</text>')
svg.append(f'<text x="{(L + W - R) / 2}" y="{H - 6}" text-anchor="middle">seconds</text>')
svg.append(f'<text x="12" y="{T + 4}" >MiB resident</text>')
svg.append(f'<text x="{W - 12}" y="{T + 4}" text-anchor="end" fill="#c60">raw segments</text>')
if load_end is not None:
    svg.append(f'<line x1="{x(load_end):.1f}" x2="{x(load_end):.1f}" y1="{T}" y2="{H - B}" stroke="#888" stroke-dasharray="4 3"/>')
    svg.append(f'<text x="{x(load_end) - 4:.1f}" y="{T + 12}" text-anchor="end" fill="#666">load ends</text>')
svg.append(f'<path d="{path(t, raw, smax)}" fill="none" stroke="#c60" stroke-width="1.5"/>')
svg.append(f'<path d="{path(t, rss, rmax)}" fill="none" stroke="#06c" stroke-width="2"/>')
if anon:
    svg.append(f'<path d="{path(t, anon, rmax)}" fill="none" stroke="#06c" stroke-width="1" stroke-dasharray="3 2"/>')
    svg.append(f'<text x="{L + 8}" y="{T + 12}" fill="#06c">solid: resident, dashed: anonymous (heap)</text>')
svg.append(f'<line x1="{L}" x2="{L}" y1="{T}" y2="{H - B}" stroke="#333"/>')
svg.append(f'<line x1="{L}" x2="{W - R}" y1="{H - B}" y2="{H - B}" stroke="#333"/>')
svg.append("</svg>")
open(out, "w").write("\n".join(svg) + "\n")
print(f"{out}: {len(rows)} samples, resident {min(rss):.0f}-{max(rss):.0f} MiB")
