#!/usr/bin/env bash
# Viewer benchmark: times `kiln view` on generated graphs of 1,000 and 5,000 functions (SVG and PNG) and on
# the 5,000-function graph's training plan picture. Usage: Benchmarks/viewer/render.sh [path/to/kiln]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
KILN=${1:-"$HERE/../../.build/release/kiln"}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
for n in 1000 5000; do
  python3 "$HERE/generate_graph.py" "$n" "$DIR/g$n.json"
  for fmt in svg png; do
    start=$(date +%s.%N)
    "$KILN" view "$DIR/g$n.json" -o "$DIR/g$n.$fmt" > /dev/null 2>&1
    end=$(date +%s.%N)
    printf "view %5d functions %s: %.2f s\n" "$n" "$fmt" "$(echo "$end - $start" | bc)"
  done
done
start=$(date +%s.%N)
"$KILN" view "$DIR/g5000.json" --plan --mode training -o "$DIR/plan.png" > /dev/null 2>&1
end=$(date +%s.%N)
printf "plan picture 5000 functions (training) png: %.2f s\n" "$(echo "$end - $start" | bc)"
