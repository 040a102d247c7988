#!/usr/bin/env bash
# Bare-metal tuning for a Glust host. Prints what it would change (a dry run) unless --apply.
#
#   scripts/tune-host.sh [--apply] [--shard-cores 0-7] [--irq-cores 8-9]
#
# - CPU frequency governor -> performance on every core (no ramp-up latency).
# - IRQ affinity: network and disk interrupts moved to --irq-cores, away from the cores the
#   shards are pinned to (Glust pins shard i to core i by default).
# - Locked memory: io_uring registers buffers; prints the `ulimit -l` / systemd setting to use.
# - Transparent huge pages -> madvise (no surprise compaction stalls on the shard cores).
set -euo pipefail

apply=0
shard_cores=""
irq_cores=""
while [ $# -gt 0 ]; do
  case "$1" in
    --apply) apply=1 ;;
    --shard-cores) shard_cores="$2"; shift ;;
    --irq-cores) irq_cores="$2"; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

ncpu=$(nproc)
if [ -z "$irq_cores" ]; then
  # By default keep the last core for interrupts when there are more than two.
  if [ "$ncpu" -gt 2 ]; then irq_cores=$((ncpu - 1)); else irq_cores=0; fi
fi
[ -n "$shard_cores" ] || shard_cores="0-$((ncpu - 1))"

run() {
  if [ "$apply" = 1 ]; then
    echo "+ $*"
    sh -c "$*" || echo "  (failed: $*)" >&2
  else
    echo "would run: $*"
  fi
}

echo "# cores: $ncpu; shards on $shard_cores; interrupts on $irq_cores; $( [ $apply = 1 ] && echo applying || echo 'dry run (use --apply)')"

echo "## CPU frequency governor"
found=0
for g in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do
  [ -e "$g" ] || continue
  found=1
  cur=$(cat "$g")
  [ "$cur" = performance ] && continue
  run "echo performance > $g   # was $cur"
done
[ $found = 1 ] || echo "no cpufreq interface (a VM or a fixed-frequency host): nothing to do"

echo "## IRQ affinity"
mask_list="$irq_cores"
for irq in /proc/irq/[0-9]*; do
  f="$irq/smp_affinity_list"
  [ -w "$f" ] || [ "$apply" = 0 ] || continue
  [ -e "$f" ] || continue
  cur=$(cat "$f" 2>/dev/null || echo "?")
  [ "$cur" = "$mask_list" ] && continue
  run "echo $mask_list > $f   # was $cur"
done
if systemctl is-active --quiet irqbalance 2>/dev/null; then
  run "systemctl stop irqbalance   # it would undo the affinities"
fi

echo "## Locked memory (io_uring)"
echo "current: ulimit -l = $(ulimit -l)"
echo "set for the shell that starts glust: ulimit -l unlimited"
echo "or in its systemd unit: [Service] LimitMEMLOCK=infinity"

echo "## Transparent huge pages"
thp=/sys/kernel/mm/transparent_hugepage/enabled
if [ -e "$thp" ]; then
  cur=$(cat "$thp")
  case "$cur" in
    *"[madvise]"*) echo "already madvise" ;;
    *) run "echo madvise > $thp   # was: $cur" ;;
  esac
else
  echo "no THP interface"
fi

echo "## Then start glust pinned to the shard cores, e.g.:"
echo "taskset -c $shard_cores glust serve --shards <number of shard cores>"
