#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: formatting, lints, then every test (mounted ones need root and /dev/fuse).
set -euo pipefail
cd "$(dirname "$0")"
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# Bounded: a deadlocked daemon must fail CI, not hang it.
timeout --kill-after=30 1200 cargo test --all-targets
