#!/bin/sh
# Chunk-store benchmark (release build). Figures go into docs/FORMAT.md "Measurements".
set -e
cd "$(dirname "$0")/.."
exec cargo bench --bench store -- "$@"
