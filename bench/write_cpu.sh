#!/usr/bin/env bash
# Sequential-write cost of the mount against the disk under it, in the same run: wall time and the daemon's CPU
# seconds (user+sys from /proc) per GiB, for 1 and 2 concurrent writers (pg_dump -j 2 writes two files at once).
# Usage: bench/write_cpu.sh SOURCE_FILE [REPEATS]   (root, fuse3; SOURCE_FILE e.g. a pg_dump table file)
# Prints one line per run and the medians; the ratio is mount wall / disk wall.
# INIT_OPTS="--chunk-size 64K" passes options to `valencefs init` (e.g. to see what small chunks cost per GiB).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$1
REPEATS=${2:-3}
cargo build --release --bin valencefs -q
VFS=$PWD/target/release/valencefs
W=$(mktemp -d /var/tmp/vwcpu.XXXXXX)
cleanup() { "$VFS" umount "$W/v" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
mkdir -p "$W/v" "$W/raw"
echo "bench passphrase" > "$W/pass"
chmod 600 "$W/pass"  # passfiles open to others are refused
"$VFS" init ${INIT_OPTS:-} --config "$W/vol.toml" --passfile "$W/pass" --state "$W/state" "$W"/d{0..4} >/dev/null
"$VFS" mount -o passfile="$W/pass"${VFS_OPTS:+,$VFS_OPTS} "$W/vol.toml" "$W/v"
pid=$(pgrep -f "daemon-child $W/vol.toml")
tck=$(getconf CLK_TCK)
cpu() { awk -v t="$tck" '{print ($14 + $15) / t}' "/proc/$pid/stat"; }
gib=$(echo "$(stat -c %s "$SRC") / 1073741824" | bc -l)
run() { # DIR WRITERS
    local s; s=$(date +%s.%N)
    for i in $(seq "$2"); do dd if="$SRC" of="$1/f$i" bs=1M conv=fsync status=none & done
    wait
    echo "$(date +%s.%N) - $s" | bc
}
median() { sort -g | awk '{a[NR]=$1} END {printf "%.2f (%.2f-%.2f)", a[int((NR+1)/2)], a[1], a[NR]}'; }
for writers in 1 2; do
    rs=(); vs=(); cs=()
    for _ in $(seq "$REPEATS"); do
        rm -f "$W"/raw/f* "$W"/v/f*; sync
        rs+=("$(run "$W/raw" "$writers")")
        c0=$(cpu)
        vs+=("$(run "$W/v" "$writers")")
        cs+=("$(echo "($(cpu) - $c0) / ($gib * $writers)" | bc -l)")
    done
    r=$(printf "%s\n" "${rs[@]}" | median); v=$(printf "%s\n" "${vs[@]}" | median)
    c=$(printf "%s\n" "${cs[@]}" | median)
    printf "%d writer(s): disk %s s, valencefs %s s, ratio %.2f, daemon CPU %s s/GiB\n" "$writers" "$r" "$v" \
        "$(echo "${v%% *} / ${r%% *}" | bc -l)" "$c"
done
