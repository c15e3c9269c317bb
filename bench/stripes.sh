#!/usr/bin/env bash
# Packed stripes (format v3) against one stripe per chunk (v2): a tree of small files copied onto a 3+2 mount,
# then the files per disk and the space they take. Each (format, chunk size) pair REPEATS times, in alternating
# order; prints medians with (min-max).
# Usage: bench/stripes.sh [TREE, default /usr/share/doc] [REPEATS, default 3]   (root, fuse3)
# Columns: files per disk (shard + stripe files) and per 64 user files; bytes on the disks (block usage, du -s)
# over their apparent size (du -sb: what the store wrote, (k+m)/k x sealed + headers); seconds for cp -a + sync.
set -euo pipefail
cd "$(dirname "$0")/.."
TREE=${1:-/usr/share/doc}
REPEATS=${2:-3}
cargo build --release --bin valencefs -q
VFS=$PWD/target/release/valencefs
W=$(mktemp -d /var/tmp/vstripes.XXXXXX)
cleanup() { "$VFS" umount "$W/m" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
mkdir -p "$W/m"
echo "bench passphrase" > "$W/pass"
chmod 600 "$W/pass"
USER_FILES=$(find "$TREE" -type f | wc -l)
echo "tree $TREE: $USER_FILES files, $(du -sm "$TREE" | cut -f1) MiB"
run() { # format chunk -> "files_per_disk blocks/apparent seconds"
    local f=$1 c=$2 d="$W/v"
    rm -rf "$d" && mkdir -p "$d"
    VALENCEFS_INSECURE_FAST_KDF=1 "$VFS" init --config "$d/vol.toml" --passfile "$W/pass" --state "$d/state" \
        --format "$f" --chunk-size "$c" "$d"/d{0..4} >/dev/null 2>&1
    "$VFS" mount -o passfile="$W/pass" "$d/vol.toml" "$W/m"
    local s e
    s=$(date +%s.%N)
    cp -a "$TREE" "$W/m/tree" && sync
    e=$(date +%s.%N)
    "$VFS" umount "$W/m"
    local files blocks apparent
    files=$(find "$d"/d0 "$d"/d1 "$d"/d2 "$d"/d3 "$d"/d4 -type f \( -path '*/shards/*' -o -path '*/stripes/*' \) | wc -l)
    blocks=$(du -sB1 "$d"/d{0..4} | awk '{s+=$1} END {print s}')
    apparent=$(du -sb "$d"/d{0..4} | awk '{s+=$1} END {print s}')
    echo "$((files / 5)) $(echo "scale=3; $blocks / $apparent" | bc) $(echo "$e - $s" | bc)"
}
median() { sort -g | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; printf "%s (%s-%s)", m, a[1], a[NR]}'; }
declare -A out
CONFIGS=("2 1M" "3 1M" "2 64K" "3 64K")
for r in $(seq 1 "$REPEATS"); do
    order=("${CONFIGS[@]}")
    if [ $((r % 2)) -eq 0 ]; then order=("3 64K" "2 64K" "3 1M" "2 1M"); fi
    for cfg in "${order[@]}"; do
        # shellcheck disable=SC2086
        out["$cfg"]+="$(run $cfg)"$'\n'
    done
done
echo "| format | chunk | files per disk | per 64 user files | disk blocks / apparent bytes | cp -a + sync, s |"
echo "| --- | --- | ---: | ---: | ---: | ---: |"
for cfg in "${CONFIGS[@]}"; do
    # shellcheck disable=SC2086
    set -- $cfg
    rows=${out["$cfg"]}
    fpd=$(echo -n "$rows" | awk '{print $1}' | median)
    per64=$(echo -n "$rows" | awk -v u="$USER_FILES" '{printf "%.2f\n", $1 * 64 / u}' | median)
    ratio=$(echo -n "$rows" | awk '{print $2}' | median)
    secs=$(echo -n "$rows" | awk '{print $3}' | median)
    echo "| v$1 | $2 | $fpd | $per64 | $ratio | $secs |"
done
