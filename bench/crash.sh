#!/usr/bin/env bash
# The mounted crash loop at length: TRIALS (default 500) rounds of SIGKILL during fsync-heavy writes, each followed
# by fsck and a check of every acknowledged file. CI runs 50 (tests/mount_crash.rs); this is the long version.
# Usage: sudo bench/crash.sh [TRIALS]
set -euo pipefail
cd "$(dirname "$0")/.."
trials="${1:-500}"
start=$(date +%s)
VALENCEFS_CRASH_TRIALS="$trials" cargo test --release --test mount_crash -- --nocapture 2>&1 | tail -5
echo "$trials crash trials in $(( $(date +%s) - start )) s"
