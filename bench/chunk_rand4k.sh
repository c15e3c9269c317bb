#!/usr/bin/env bash
# What the average chunk size costs random small writes: per `init --chunk-size`, a sequential write of SIZE MiB of
# random data, then 2,000 random 4 KiB overwrites (fsync every 100), timed, with the bytes the volume had to add.
# Usage: bench/chunk_rand4k.sh [SIZE_MIB]   (default 256; CHUNKS="1M 256K 64K"; needs root, fuse3, python3)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-256}
CHUNKS=${CHUNKS:-1M 256K 64K}
cargo build --release --bin valencefs -q
VFS=$PWD/target/release/valencefs
W=$(mktemp -d /var/tmp/vrand.XXXXXX)
cleanup() {
    set +e
    for m in "$W"/mnt-*; do "$VFS" umount "$m" >/dev/null 2>&1 || fusermount3 -u -z "$m" >/dev/null 2>&1; done
    rm -rf --one-file-system "$W"
}
trap cleanup EXIT
echo bench > "$W/pass"
chmod 600 "$W/pass"  # passfiles open to others are refused
head -c $((SIZE << 20)) /dev/urandom > "$W/src"
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
# Bytes the daemon wrote (write(2)/pwrite(2): shard files and its database), from /proc/PID/io.
wchar() { awk '/^wchar/ {print $2}' "/proc/$(cat "$W/state-$1/lock")/io"; }
printf "%-6s %12s %12s %10s %26s\n" chunk "seq write s" "4k writes s" "writes/s" "daemon MiB written for 8 MiB"
for c in $CHUNKS; do
    VALENCEFS_INSECURE_FAST_KDF=1 "$VFS" init --config "$W/vol-$c.toml" --passfile "$W/pass" \
        --state "$W/state-$c" --chunk-size "$c" "$W/d-$c"/{1..5} >/dev/null
    mkdir -p "$W/mnt-$c"
    "$VFS" mount -o passfile="$W/pass" "$W/vol-$c.toml" "$W/mnt-$c"
    s=$(now); dd if="$W/src" of="$W/mnt-$c/f" bs=1M conv=fsync status=none; tseq=$(since "$s")
    before=$(wchar "$c")
    s=$(now)
    python3 - "$W/mnt-$c/f" <<'PY'
import os, random, sys
fd = os.open(sys.argv[1], os.O_RDWR); size = os.fstat(fd).st_size; r = random.Random(1)
for i in range(2000):
    os.pwrite(fd, os.urandom(4096), r.randrange(0, size - 4096) & ~4095)
    if i % 100 == 99: os.fsync(fd)
os.fsync(fd); os.close(fd)
PY
    trand=$(since "$s")
    after=$(wchar "$c")
    "$VFS" umount "$W/mnt-$c"
    printf "%-6s %12.1f %12.1f %10.0f %26.0f\n" "$c" "$tseq" "$trand" "$(echo "2000 / $trand" | bc -l)" \
        "$(echo "($after - $before) / 1048576" | bc -l)"
done
echo "8 MiB = 2,000 × 4 KiB of new data; the daemon writes whole re-chunked chunks, all k+m shards (3+2 here)."
