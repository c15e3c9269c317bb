#!/usr/bin/env bash
# fsx (xfstests' ltp/fsx) against a fresh valencefs mount, in several configurations; optionally fsstress too.
# Usage: FSX=/path/to/fsx [FSSTRESS=/path/to/fsstress] bench/fsx.sh [OPS]   (default 20000 ops per run; needs root
# and fuse3). Fetches nothing: build fsx/fsstress from an xfstests checkout yourself. Exit status is non-zero on
# the first failing run; its .fsxlog/.fsxgood/.fsxops and the daemon log are kept in the printed work directory.
# Unsupported by valencefs, so disabled: collapse/insert/unshare range (-C -I -u; fsx also probes and
# disables these itself), clone/dedupe range, atomic writes, dontcache I/O.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${FSX:?set FSX=/path/to/fsx}"
OPS=${1:-20000}
cargo build --release --bin valencefs -q
VFS=$PWD/target/release/valencefs
W=$(mktemp -d /var/tmp/vfsx.XXXXXX)
mounted=
cleanup() {
    local rc=$?
    if [ -n "$mounted" ]; then "$VFS" umount "$mounted" 2>/dev/null || fusermount3 -u -z "$mounted" 2>/dev/null || true; fi
    if [ $rc -eq 0 ]; then rm -rf "$W"; else echo "failed: logs kept in $W" >&2; fi
}
trap cleanup EXIT
echo "fsx passphrase" > "$W/pass"
chmod 600 "$W/pass"  # passfiles open to others are refused

# run NAME CACHE_SIZE FSX_ARGS...: a fresh 2+1 volume with 4 KiB chunks, one fsx run, unmount, fsck (with shards).
run() {
    local name=$1 cache=$2; shift 2
    local d="$W/$name"
    mkdir -p "$d/mnt" "$d/logs"
    "$VFS" init --config "$d/vol.toml" --passfile "$W/pass" --state "$d/state" --chunk-size 4K \
        --redundancy 2+1 "$d"/d{1..3} >/dev/null
    "$VFS" mount -o "passfile=$W/pass,cache_size=$cache" "$d/vol.toml" "$d/mnt"
    mounted="$d/mnt"
    local s; s=$(date +%s)
    echo "== $name: fsx -N $OPS $* (cache_size=$cache)"
    "$FSX" -q -C -I -u -N "$OPS" -P "$d/logs" "$@" "$d/mnt/f" | tail -n 1
    # fsstress's multi-MiB writes crawl through a 64K budget (each waits for a whole flush): default cache only.
    if [ -n "${FSSTRESS:-}" ] && [ "$cache" = 256M ]; then
        echo "== $name: fsstress -p 4 -n 2000"
        mkdir "$d/mnt/stress"
        "$FSSTRESS" -d "$d/mnt/stress" -p 4 -n 2000 -s 1 >/dev/null
    fi
    "$VFS" umount "$d/mnt"
    mounted=
    "$VFS" fsck --shards --passfile "$W/pass" "$d/vol.toml"
    echo "   $(( $(date +%s) - s )) s"
}

run mmap 256M -S 1
run nommap 256M -W -R -S 2
run aligned-large 256M -W -R -S 3 -r 4096 -w 4096 -t 4096 -o 1048576 -l 8000000
run reopen-flush 256M -S 4 -c 10 -f
run tiny-cache 64K -W -R -S 5 -o 16384
run odirect 256M -Z -W -R -S 6 -r 4096 -w 4096 -t 4096
echo "all fsx runs passed"
