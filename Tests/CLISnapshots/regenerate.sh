#!/usr/bin/env bash
# Rewrites the CLI snapshots in this folder (kiln's help texts and error messages) from the debug build.
# Usage: Tests/CLISnapshots/regenerate.sh
# The test CLISnapshotTests compares these files byte for byte with what `kiln` prints, so a change to the
# command-line interface shows up as a diff here: run this after an intended change and review the diff.
set -euo pipefail
cd "$(dirname "$0")/../.."
SWIFT=${SWIFT:-swift}
"$SWIFT" build --build-tests
KILN_UPDATE_SNAPSHOTS=1 "$SWIFT" test --skip-build --disable-xctest --filter CLISnapshotTests
git status --short Tests/CLISnapshots
