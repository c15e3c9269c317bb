#!/usr/bin/env bash
# What the disks reveal about a tree of files through chunk sizes, format v1 vs v2 (FORMAT.md §9).
# Usage: bench/observer.sh [DIR, default /usr/share/doc] [chunk size, default 1M]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet --release --example observer -- "$@"
