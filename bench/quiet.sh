# Sourced by the bench scripts: waiting for a quiet machine, and counting what else it does during a measurement.
# A shared machine's other jobs (and a hypervisor's steal) skew figures, most of all a ratio between a command
# that needs both cores and one that runs on one.
#
#   BENCH_WAIT_QUIET=300    before each measurement wait up to this many seconds (0 = never) for the machine to
#                           be nearly idle (< 0.1 cores busy, steal included) for 2 s in a row; a script may set
#                           wait_quiet_default before sourcing this file
tick_hz="$(getconf CLK_TCK)"
# CPU ticks spent by the whole machine (user, nice, system, irq, softirq, steal).
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
wait_quiet() {
    local limit="${BENCH_WAIT_QUIET:-${wait_quiet_default:-300}}" waited=0 calm=0 b0 b1
    while [ "$waited" -lt "$limit" ] && [ "$calm" -lt 2 ]; do
        b0="$(busy_ticks)"; sleep 1; b1="$(busy_ticks)"
        waited=$((waited + 1))
        if [ $((b1 - b0)) -lt $((tick_hz / 10)) ]; then calm=$((calm + 1)); else calm=0; fi
    done
    [ "$calm" -ge 2 ] || [ "$limit" = 0 ] || echo "  (machine still busy after ${limit} s; measuring anyway)" >&2
}
