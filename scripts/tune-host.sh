#!/usr/bin/env bash
# Host tuning for Glust (bare metal; one section for KVM guests). Prints what it would change
# (a dry run) unless --apply.
#
#   scripts/tune-host.sh [--apply] [--shards N] [--shard-cores 0-7] [--irq-cores 8-9]
#
# Which cores are shard cores follows Glust: it pins shard i to the i-th core it may run on
# (its CPU affinity, ascending; shards wrap around when there are more shards than cores), and
# --shards defaults to the cores available. So by default the shards take the first N cores of
# this shell's affinity, N = --shards or Glust's default (every core available). --shard-cores
# LIST means the shards run on LIST (`glust serve --cores`, under `taskset -c LIST`: all of LIST
# is glust's; N defaults to its size).
#
# - CPU frequency governor -> performance on every core (no ramp-up latency).
# - IRQ affinity: every interrupt that accepts it (network and disk included), and the default
#   for later ones, moved to --irq-cores (default: every online core glust does not run on);
#   irqbalance stopped. Never onto a shard core: if every core is glust's (e.g. --shards = the
#   core count, or 2 shards on a 2-core machine), IRQ affinity is left alone and the script
#   says so; an --irq-cores that overlaps glust's cores is refused.
# - Locked memory: io_uring registers buffers. Only reported, even with --apply (a script
#   cannot raise the limit of the shell that starts glust): prints the lines to set instead.
# - Transparent huge pages -> madvise (no surprise compaction stalls on the shard cores).
# - In a KVM guest whose cpuidle driver is haltpoll: guest_halt_poll_ns -> 200000 (the kernel's
#   default, 200 us) when lower. An idle virtual CPU then polls a while before it halts, so
#   waking it (a request for a shard that went idle; on one machine also the answer to a
#   loadgen on the other core) costs no interrupt and VM exit. The vCPUs burn host CPU while
#   they poll. Bare metal and other hypervisors: nothing to do.
set -euo pipefail

apply=0
shards=""
shard_cores_arg=""
irq_cores_arg=""
while [ $# -gt 0 ]; do
  case "$1" in
    --apply) apply=1 ;;
    --shards) shards="${2:?--shards needs a number}"; shift ;;
    --shard-cores) shard_cores_arg="${2:?--shard-cores needs a core list}"; shift ;;
    --irq-cores) irq_cores_arg="${2:?--irq-cores needs a core list}"; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;  # the header
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

die() { echo "tune-host: $*" >&2; exit 2; }

# "0-3,8" -> "0 1 2 3 8" (sorted, unique); fails on anything else.
expand_list() {
  local part a b i
  local -a cpus=()
  local IFS=,
  [ -n "$1" ] || return 1
  for part in $1; do
    if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
      a=$((10#${BASH_REMATCH[1]})); b=$((10#${BASH_REMATCH[2]}))
      [ "$a" -le "$b" ] || return 1
      for ((i = a; i <= b; i++)); do cpus+=("$i"); done
    elif [[ $part =~ ^[0-9]+$ ]]; then
      cpus+=("$((10#$part))")
    else
      return 1
    fi
  done
  printf '%s\n' "${cpus[@]}" | sort -n -u | tr '\n' ' ' | sed 's/ $//'
}

# "0 1 2 3 8" (sorted) -> "0-3,8", the way the kernel prints smp_affinity_list.
compress_list() {
  local out="" start="" prev="" c
  for c in $1 ""; do
    if [ -n "$c" ] && [ -n "$prev" ] && [ "$c" -eq $((prev + 1)) ]; then prev=$c; continue; fi
    if [ -n "$start" ]; then
      if [ "$start" = "$prev" ]; then out+="${out:+,}$start"; else out+="${out:+,}$start-$prev"; fi
    fi
    start=$c; prev=$c
  done
  echo "$out"
}

# Words of $2 that are not in $1 / that are in $1.
minus() { local c; for c in $2; do [[ " $1 " == *" $c "* ]] || printf '%s ' "$c"; done | sed 's/ $//'; }
common() { local c; for c in $2; do [[ " $1 " != *" $c "* ]] || printf '%s ' "$c"; done | sed 's/ $//'; }
# shellcheck disable=SC2086
count() { set -- $1; echo $#; }

# The hex mask /proc/irq/default_smp_affinity takes: 32-bit words, most significant first.
hex_mask() {
  local c top i out=""
  local -a w=()
  for c in $1; do w[c / 32]=$(( ${w[c / 32]:-0} | (1 << (c % 32)) )); done
  top=$(( ${#w[@]} ? $(printf '%s\n' "${!w[@]}" | sort -n | tail -1) : 0 ))
  for ((i = top; i >= 0; i--)); do
    if [ "$i" = "$top" ]; then out+=$(printf '%x' "${w[i]:-0}"); else out+=$(printf ',%08x' "${w[i]:-0}"); fi
  done
  echo "$out"
}
norm_hex() { tr -d ',\n' | sed 's/^0*//' | tr 'A-F' 'a-f'; }

# Rust's available_parallelism (Glust's default --shards) is the affinity's size, lowered by a
# cgroup v2 CPU quota (cpu.max) of this process's cgroup or its parents. Best effort (no v1).
cgroup_quota() {
  local line path dir max period q=""
  line=$(grep '^0::' /proc/self/cgroup 2>/dev/null) || return 0
  path=${line#0::}; dir="/sys/fs/cgroup${path%/}"
  while :; do
    if [ -r "$dir/cpu.max" ] && read -r max period <"$dir/cpu.max" && [ "$max" != max ] \
        && [ "${period:-0}" -gt 0 ]; then
      max=$((max / period)); [ "$max" -ge 1 ] || max=1
      if [ -z "$q" ] || [ "$max" -lt "$q" ]; then q=$max; fi
    fi
    case "$dir" in /sys/fs/cgroup/?*) ;; *) break ;; esac
    dir=${dir%/*}
  done
  echo "$q"
}

online=$(expand_list "$(cat /sys/devices/system/cpu/online)") || die "cannot read the online cores"
allowed=$(expand_list "$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)") \
  || allowed=$online

# The cores glust runs on: --shard-cores (started with taskset), else this shell's affinity.
if [ -n "$shard_cores_arg" ]; then
  glust_cpus=$(expand_list "$shard_cores_arg") || die "--shard-cores: not a core list: $shard_cores_arg"
  extra=$(minus "$online" "$glust_cpus")
  [ -z "$extra" ] || die "--shard-cores: not online: $(compress_list "$extra") (online: $(compress_list "$online"))"
else
  glust_cpus=$allowed
fi
ncpus=$(count "$glust_cpus")
shards_note=""
if [ -z "$shards" ]; then
  shards=$ncpus
  quota=$(cgroup_quota)
  if [ -n "$quota" ] && [ "$quota" -lt "$shards" ]; then
    shards=$quota; shards_note=" (lowered by the cgroup CPU quota)"
  fi
  shards_note="glust's default$shards_note"
else
  if ! [[ $shards =~ ^[0-9]+$ ]] || [ "$((10#$shards))" -lt 1 ]; then
    die "--shards: not a positive number: $shards"
  fi
  shards=$((10#$shards))
  shards_note="--shards"
fi
# Shard i on the i-th of glust's cores, wrapping around.
shard_cpus=$(echo "$glust_cpus" | tr ' ' '\n' | head -n "$shards" | tr '\n' ' ' | sed 's/ $//')
if [ -n "$shard_cores_arg" ]; then
  reserved=$glust_cpus  # all of taskset's list is glust's (its blocking threads run there too)
else
  reserved=$shard_cpus  # and the suggested taskset confines glust to them
fi
shard_list=$(compress_list "$shard_cpus")
reserved_list=$(compress_list "$reserved")

irq_skip=""
if [ -n "$irq_cores_arg" ]; then
  irq_cpus=$(expand_list "$irq_cores_arg") || die "--irq-cores: not a core list: $irq_cores_arg"
  extra=$(minus "$online" "$irq_cpus")
  [ -z "$extra" ] || die "--irq-cores: not online: $(compress_list "$extra")"
  overlap=$(common "$reserved" "$irq_cpus")
  [ -z "$overlap" ] || die "--irq-cores $irq_cores_arg includes glust's core(s) $(compress_list "$overlap") (shards on $shard_list): interrupts there would preempt the shards. Choose cores outside $reserved_list."
else
  irq_cpus=$(minus "$reserved" "$online")
  if [ -z "$irq_cpus" ]; then
    n_online=$(count "$online")
    irq_skip="every online core ($(compress_list "$online")) is one of glust's ($shards shard(s), $shards_note, on $shard_list$( [ "$reserved_list" = "$shard_list" ] || echo "; glust confined to $reserved_list")), so no core is left for interrupts: IRQ affinity left alone (moving interrupts would put them on a shard core)."
    if [ "$n_online" -gt 1 ] && [ -n "$shard_cores_arg" ]; then
      irq_skip+=" To keep interrupts off the shards, give --shard-cores a list that leaves cores out."
    elif [ "$n_online" -gt 1 ]; then
      irq_skip+=" To keep interrupts off the shards, run fewer shards than cores: e.g. scripts/tune-host.sh --shards $((n_online - 1)), and start glust the way it then prints."
    fi
  fi
fi
irq_list=$(compress_list "$irq_cpus")

run() {
  if [ "$apply" = 1 ]; then
    echo "+ $*"
    sh -c "$*" || echo "  (failed: $*)" >&2
  else
    echo "would run: $*"
  fi
}

echo "# online cores: $(compress_list "$online"); $shards shard(s) ($shards_note) on core(s) $shard_list$( [ "$reserved_list" = "$shard_list" ] || echo "; glust confined to $reserved_list"); interrupts on ${irq_list:-(left alone)}; $( [ $apply = 1 ] && echo applying || echo 'dry run (use --apply)')"
if [ "$shards" -gt "$(count "$glust_cpus")" ]; then
  echo "# note: $shards shards on $(count "$glust_cpus") core(s): shards share cores (glust wraps shard i to core i mod $(count "$glust_cpus"))"
fi

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

echo "## IRQ affinity (away from glust's cores $reserved_list)"
if [ -n "$irq_skip" ]; then
  echo "$irq_skip"
else
  for irq in /proc/irq/[0-9]*; do
    f="$irq/smp_affinity_list"
    [ -e "$f" ] || continue
    [ -w "$f" ] || [ "$apply" = 0 ] || continue
    cur=$(cat "$f" 2>/dev/null || echo "?")
    [ "$cur" = "$irq_list" ] && continue
    run "echo $irq_list > $f   # was $cur"
  done
  # Interrupts registered later (a NIC reset, a new device) start from the default mask.
  def=/proc/irq/default_smp_affinity
  if [ -e "$def" ]; then
    mask=$(hex_mask "$irq_cpus")
    cur=$(cat "$def" 2>/dev/null || echo "?")
    [ "$(echo "$cur" | norm_hex)" = "$(echo "$mask" | norm_hex)" ] || run "echo $mask > $def   # was $cur"
  fi
  echo "(interrupts the kernel manages itself, e.g. per-queue NVMe ones, refuse the change: --apply reports them as failed)"
  if systemctl is-active --quiet irqbalance 2>/dev/null; then
    run "systemctl stop irqbalance   # it would undo the affinities"
  fi
fi

echo "## Locked memory (io_uring): not changed by this script, even with --apply"
# Per shard: glommio's registered io_uring buffers (EXECUTOR_IO_MEMORY_BYTES, 512 KiB) plus
# about 1 MiB for its rings, the allowance glust's start-up check uses.
need_kib=$((shards * (512 + 1024)))
soft=$(ulimit -Sl); hard=$(ulimit -Hl)
if [ "$soft" = unlimited ] || [ "$soft" -ge "$need_kib" ]; then verdict="enough"; else verdict="NOT enough: glust refuses to start"; fi
echo "glust with $shards shard(s) needs about $need_kib KiB; this shell's limit (which a glust started from it inherits): ulimit -l = $soft KiB (hard $hard): $verdict"
echo "A script cannot raise the limit of the shell or service manager that starts glust; set it there:"
echo "  - shell that starts glust:  ulimit -l unlimited$( [ "$hard" = unlimited ] || echo "   (above the hard limit, $hard KiB, needs root)")"
echo "  - systemd unit of glust:    [Service] section: LimitMEMLOCK=infinity   (then: systemctl daemon-reload, restart the unit)"
echo "  - login sessions (pam_limits), /etc/security/limits.conf:  <user>  -  memlock  unlimited   (from the next login)"
echo "  - docker run:               --ulimit memlock=-1:-1"

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

echo "## Idle polling of virtual CPUs (KVM guest, cpuidle-haltpoll)"
halt_poll=/sys/module/haltpoll/parameters/guest_halt_poll_ns
halt_poll_ns=200000  # the kernel's default; a guest started with haltpoll.guest_halt_poll_ns=0 has it off
idle_driver=$(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo none)
# The polling is the haltpoll governor's; the driver comes with it unless a governor was forced.
idle_governor=$(cat /sys/devices/system/cpu/cpuidle/current_governor 2>/dev/null \
  || cat /sys/devices/system/cpu/cpuidle/current_governor_ro 2>/dev/null || echo none)
if [ "$idle_driver" = haltpoll ] && [ "$idle_governor" != haltpoll ]; then
  echo "cpuidle driver haltpoll, but governor $idle_governor: guest_halt_poll_ns has no effect; nothing to do"
elif [ "$idle_driver" = haltpoll ] && [ -e "$halt_poll" ]; then
  cur=$(cat "$halt_poll")
  if [ "$cur" -ge "$halt_poll_ns" ]; then
    echo "already polls: guest_halt_poll_ns = $cur"
  else
    run "echo $halt_poll_ns > $halt_poll   # was $cur"
  fi
else
  echo "cpuidle driver: $idle_driver (not a KVM guest's haltpoll): nothing to do"
fi

echo "## Then start glust on the shard cores (--cores pins shard i to the i-th listed core):"
echo "glust serve --cores $shard_list"
echo "# glust's blocking threads (fsync, writeback, segment preparation) then run on any core it"
echo "# may use, the interrupt cores included; to keep them on glust's cores too:"
echo "taskset -c $reserved_list glust serve --cores $shard_list"
