#!/bin/sh
# Long run of the disk-bytes parser fuzzer (tests/fuzz_parsers.rs): the suite runs 512 cases per parser from a
# fixed seed; this runs CASES per parser (default 200000) from SEED (default: a new one, printed so a failure
# replays). Dev profile on purpose: dependencies (BLAKE3, AES-GCM, Reed-Solomon) build at opt-level 3 there.
# Usage: bench/fuzz.sh [CASES] [SEED]
set -eu
cd "$(dirname "$0")/.."
CASES=${1:-200000}
SEED=${2:-$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')}
echo "fuzz_parsers: PROPTEST_CASES=$CASES FUZZ_SEED=$SEED"
PROPTEST_CASES=$CASES FUZZ_SEED=$SEED exec cargo test --quiet --test fuzz_parsers
