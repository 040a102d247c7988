/* How long this CPU is taken away from a thread that never blocks.
 *
 * Spins reading CLOCK_MONOTONIC for N seconds (default 10) and reports every gap between two
 * consecutive readings longer than 0.5 ms: time the thread did not run although it never
 * yielded (host preemption of a virtual CPU, interrupts, SMIs). On a machine that runs one
 * shard per core this is the floor under any tail latency: a request that arrives during a
 * gap waits for the rest of it, and so does everything queued behind it.
 *
 *   gcc -O2 -o /tmp/cpu-gaps scripts/cpu-gaps.c && taskset -c 0 /tmp/cpu-gaps 10
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 10;
    if (!(seconds > 0)) {
        fprintf(stderr, "usage: %s [seconds > 0]\n", argv[0]);
        return 2;
    }
    const double bounds[] = {0.0005, 0.001, 0.002, 0.005, 0.010};
    int counts[5] = {0};
    double in_gaps = 0, worst = 0;
    double start = now(), last = start;
    for (;;) {
        double t = now(), d = t - last;
        last = t;
        if (d > bounds[0]) {
            in_gaps += d;
            for (int i = 0; i < 5; i++)
                if (d > bounds[i]) counts[i]++;
        }
        if (d > worst) worst = d;
        if (t - start > seconds) break;
    }
    printf("%.0f s: gaps >0.5 ms %d, >1 ms %d, >2 ms %d, >5 ms %d, >10 ms %d; "
           "worst %.2f ms; %.2f%% of the time in gaps\n",
           seconds, counts[0], counts[1], counts[2], counts[3], counts[4], worst * 1e3,
           100 * in_gaps / seconds);
    return 0;
}
