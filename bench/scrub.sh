#!/bin/sh
# Keyless scrub MB/s vs `cat` of the same shard files, and disk-rebuild MB/s (issue 6 benchmark).
# Dev profile on purpose: dependencies (BLAKE3, Reed-Solomon, AES-GCM) are built at opt-level 3 there, and the
# machine is shared, so no separate release build. Usage: bench/scrub.sh [MiB of data] [work dir]
set -eu
cd "$(dirname "$0")/.."
exec cargo run --quiet --example scrub_bench -- "$@"
