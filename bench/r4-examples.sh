#!/usr/bin/env bash
# Validation and search extraction over the official R4 examples
# (npm package hl7.fhir.r4.examples@4.0.1, fetched here, never committed).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent hl7.fhir.r4.examples@4.0.1 >/dev/null && tar xzf hl7.fhir.r4.examples-4.0.1.tgz)
cargo run --release --quiet -p hearth-bench --bin hearth-examples -- "$work/package"
