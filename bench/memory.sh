#!/usr/bin/env bash
# Peak memory of the mount daemon (VmHWM) while a file of random data is written through it, per write-back cache
# budget, so the documented footprint stays true.
# Usage: bench/memory.sh [GIB] [REPEATS] [CACHE_SIZES...]   (root, fuse3; defaults 2, 3, "64M 256M 1G")
# Prints one line per run and the median (min-max) per cache size, in MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
GIB=${1:-2}
REPEATS=${2:-3}
shift $(($# < 2 ? $# : 2))
SIZES=${*:-64M 256M 1G}
cargo build --release --bin valencefs -q
VFS=$PWD/target/release/valencefs
W=$(mktemp -d /var/tmp/vmem.XXXXXX)
cleanup() { "$VFS" umount "$W/v" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
mkdir -p "$W/v"
echo "bench passphrase" > "$W/pass"
chmod 600 "$W/pass"  # passfiles open to others are refused
"$VFS" init --config "$W/vol.toml" --passfile "$W/pass" --state "$W/state" "$W"/d{0..4} >/dev/null
median() { sort -g | awk '{a[NR]=$1} END {printf "%d (%d-%d)", a[int((NR+1)/2)], a[1], a[NR]}'; }
for size in $SIZES; do
    peaks=()
    for r in $(seq "$REPEATS"); do
        "$VFS" mount -o passfile="$W/pass",cache_size="$size" "$W/vol.toml" "$W/v"
        pid=$(pgrep -f -- "--daemon-child .*$W/vol.toml")
        rm -f "$W/v/big"
        head -c "$((GIB << 30))" /dev/urandom > "$W/v/big"
        sync "$W/v/big"
        peak=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$pid/status")
        "$VFS" umount "$W/v"
        echo "cache_size=$size run $r: peak RSS $peak MiB"
        peaks+=("$peak")
    done
    echo "cache_size=$size: peak RSS $(printf "%s\n" "${peaks[@]}" | median) MiB over $REPEATS runs, ${GIB} GiB written"
done
