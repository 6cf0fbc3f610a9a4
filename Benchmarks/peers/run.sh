#!/usr/bin/env bash
# `make bench-peers`: set up the peers' venvs (outside git, see setup.sh), then run every case with the
# release `kiln` (built by the Makefile's release target) and print the Kiln vs nnabla vs JAX table.
# Extra arguments go to run_peers.py (e.g. --cases lenet-train-64 --threads 1 --iterations 5).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
"$HERE/setup.sh"
exec python3 "$HERE/run_peers.py" "$@"
