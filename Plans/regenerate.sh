#!/usr/bin/env bash
# Regenerates the golden plan dumps of the zoo. Usage: Plans/regenerate.sh [path/to/kiln]
# The test PlanSnapshotTests compares these files byte for byte with freshly compiled plans, so a change
# to the compiler that alters any plan shows up as a diff here.
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${1:-.build/debug/kiln}
while read -r model batch; do
  for mode in inference training; do
    "$KILN" plan "$model" --mode "$mode" --batch-size "$batch" > "Plans/$model-$mode-b$batch.txt"
    echo "Plans/$model-$mode-b$batch.txt"
  done
done < Plans/models.txt
# Mixed-precision training plans (float16 storage, staging and rounding steps) of some of the zoo.
while read -r model batch; do
  "$KILN" plan "$model" --mode training --batch-size "$batch" --precision half > "Plans/$model-training-half-b$batch.txt"
  echo "Plans/$model-training-half-b$batch.txt"
done < Plans/half-models.txt
