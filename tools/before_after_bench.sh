#!/usr/bin/env bash
# Whole-process timing of two checkouts of mcsim, alternated in one run (fair under a
# shared machine): `mcsim run CONFIG --paths N --no-plots` from each tree's own venv.
#   tools/before_after_bench.sh BEFORE_TREE AFTER_TREE [PATHS] [ROUNDS] [CONFIG]
# CONFIG (default configs/base.toml, relative to each tree) may be an absolute path, to run
# the same file in both. Also prints each run's peak resident memory (GNU time's %M).
set -euo pipefail
before=$1 after=$2 paths=${3:-1000000} rounds=${4:-3} config=${5:-configs/base.toml}
out=$(mktemp -d)
echo "device: $(nproc) cores, JAX_PLATFORMS=cpu; $config, $paths paths, $rounds rounds"
for r in $(seq 1 "$rounds"); do
  for side in before after; do
    tree=${!side}
    start=$(date +%s.%N)
    (cd "$tree" && JAX_PLATFORMS=cpu /usr/bin/time -f "%M" -o "$out/rss-$side-$r" \
       .venv/bin/mcsim run "$config" --paths "$paths" --no-plots --no-progress \
       --out "$out/$side-$r" > /dev/null)
    end=$(date +%s.%N)
    printf '%s round %d: %.1f s, peak RSS %d MB\n' "$side" "$r" \
      "$(echo "$end - $start" | bc)" "$(( $(cat "$out/rss-$side-$r") / 1024 ))"
  done
done | tee "$out/times.txt"
python3 - "$out/times.txt" <<'PY'
import statistics, sys, collections
t = collections.defaultdict(list)
for line in open(sys.argv[1]):
    side, rest = line.split(" round ")
    t[side].append(float(rest.split(": ")[1].split()[0].rstrip(",")))
for side, v in t.items():
    print(f"{side}: median {statistics.median(v):.1f} s, min {min(v):.1f}, max {max(v):.1f}")
print(f"after / before (medians): {statistics.median(t['after']) / statistics.median(t['before']):.3f}")
PY
