#!/usr/bin/env bash
# CPU used by each thread of a process over an interval, as % of one core (utime + stime from
# /proc/PID/task/*/stat). For "is the shard at 100%?" and "how much CPU per request?".
#
#   scripts/thread-cpu.sh PID [SECONDS=5]
#
# e.g. under load: scripts/thread-cpu.sh "$(pgrep -f 'glust serve')" 5; add loadgen's pid
# for the client side. Threads that used nothing are not printed.
set -euo pipefail
pid=${1:?usage: thread-cpu.sh PID [SECONDS]}
secs=${2:-5}
hz=$(getconf CLK_TCK)
snap() {
  for t in /proc/"$pid"/task/*; do
    # Field 2 is "(comm)" and may hold spaces: take the fields after the last ')'.
    read -r line < "$t/stat" || continue
    rest=${line##*) }
    set -- $rest
    name=${line#*(}; name=${name%)*}
    echo "${t##*/} $(( ${12} + ${13} )) $name"
  done | sort
}
before=$(snap)
sleep "$secs"
after=$(snap)
join <(echo "$before") <(echo "$after") | awk -v hz="$hz" -v s="$secs" '{
  d = $4 - $2; if (d > 0) printf "%-8s %-20s %5.1f%%\n", $1, $3, 100 * d / hz / s }'
