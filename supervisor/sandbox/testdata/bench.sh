#!/bin/sh
# Start-up cost of a sandboxed `sh -c true` against baselines run the same
# way from the same process (sh, unshare, bwrap), as medians of interleaved
# rounds, with the ratios. Needs root. `make bench` runs it.
#   EXECGATE_BENCH_ROUNDS=N        rounds of 40 runs each (default 9)
#   EXECGATE_BENCH_CGROUP2=MOUNT   use cgroup v2 at MOUNT (e.g. /sys/fs/cgroup/unified)
set -eu
cd "$(dirname "$0")/../../.."
EXECGATE_BENCH=1 go test -count=1 -run '^TestBenchRatios$' -v ./supervisor/sandbox/ |
	grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS$' -e '^ok '
