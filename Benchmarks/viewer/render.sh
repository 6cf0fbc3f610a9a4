#!/usr/bin/env bash
# Viewer benchmark: times `kiln view` on generated graphs of 1,000 and 5,000 functions (SVG and PNG) and on
# the 5,000-function graph's training plan picture, RUNS times each (default 5), and prints the minimum,
# median and maximum wall time of each case (a shared machine is noisy; the median is the figure to quote).
# Usage: Benchmarks/viewer/render.sh [path/to/kiln] [RUNS]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
KILN=${1:-"$HERE/../../.build/release/kiln"}
RUNS=${2:-5}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT

# Runs "$@" RUNS times; prints "LABEL: min X s  median Y s  max Z s" (fails loudly if kiln fails).
time_case() {
  local label=$1; shift
  local times=()
  for ((i = 0; i < RUNS; i++)); do
    local start end
    start=$(date +%s.%N)
    if ! "$@" > "$DIR/out.log" 2>&1; then
      echo "$label: kiln failed:" >&2; cat "$DIR/out.log" >&2; exit 1
    fi
    end=$(date +%s.%N)
    times+=("$(echo "$end - $start" | bc)")
  done
  printf '%s\n' "${times[@]}" | sort -g | awk -v label="$label" '
    { t[NR] = $1 }
    END {
      med = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
      printf "%-42s min %6.2f s  median %6.2f s  max %6.2f s  (%d runs)\n", label, t[1], med, t[NR], NR
    }'
}

for n in 1000 5000; do
  python3 "$HERE/generate_graph.py" "$n" "$DIR/g$n.json"
  for fmt in svg png; do
    time_case "view $n functions $fmt" "$KILN" view "$DIR/g$n.json" -o "$DIR/g$n.$fmt"
  done
done
time_case "plan picture 5000 functions (training) png" \
  "$KILN" view "$DIR/g5000.json" --plan --mode training -o "$DIR/plan.png"
