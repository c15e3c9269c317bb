#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: formatting, lints, then every test (mounted ones need root and /dev/fuse).
set -euo pipefail
cd "$(dirname "$0")"
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# Bounded: a deadlocked daemon must fail CI, not hang it. Plain `cargo test` (lib, bins, tests, doctests): the
# bench targets are built by clippy above but not run (a harness=false bench would run in full).
timeout --kill-after=30 1200 cargo test
