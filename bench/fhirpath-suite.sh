#!/usr/bin/env bash
# Runs the FHIRPath R4 test suite against Hearth's FHIRPath evaluator and prints
# the pass counts (recorded in docs/performance.md).
#   ./bench/fhirpath-suite.sh [SUITE_DIR]   (default ../shared/data/fhirpath)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
suite="${1:-$here/../../shared/data/fhirpath}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
python3 "$here/fhirpath-suite-to-json.py" "$suite/tests-fhir-r4.xml" "$out/tests.json"
cargo run --quiet --release -p hearth-bench --bin hearth-fhirpath-suite -- "$out/tests.json" "$suite/inputs"
