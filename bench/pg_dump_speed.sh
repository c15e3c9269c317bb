#!/usr/bin/env bash
# pg_dump -Fd -Z0 -j 2 onto valencefs against the same dump onto the disk under it, alternating, in the same run.
# Usage: bench/pg_dump_speed.sh [SCALE] [REPEATS]   (defaults 50 and 5; root, PostgreSQL, fuse3)
#   VARIANTS="default writeback_cache"   mount options per variant ("default" = none)
# Each repeat dumps into a new directory of one volume per variant, so repeat 1 is a first night (nothing to dedup
# against) and later repeats are nights with yesterday's dump already stored. Prints per-repeat lines and, per
# variant, the median ratio (valencefs wall / disk wall) with min-max, and the daemon's CPU seconds per dump.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${1:-50}
REPEATS=${2:-5}
VARIANTS=${VARIANTS:-default writeback_cache}
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 2; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "PostgreSQL not found: apt-get install postgresql" >&2; exit 2; }
cargo build --release --bin valencefs -q
VFS=$PWD/target/release/valencefs
W=$(mktemp -d /var/tmp/vpgspeed.XXXXXX)
chmod 755 "$W"
mkdir -p "$W/pg" "$W/raw"
chown postgres: "$W/pg" "$W/raw"
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
    set +e
    as_pg "$PGBIN/pg_ctl" -D "$W/pg/data" -m immediate -w stop >/dev/null 2>&1
    for m in "$W"/mnt-*; do "$VFS" umount "$m" >/dev/null 2>&1 || fusermount3 -u -z "$m" >/dev/null 2>&1; done
    rm -rf --one-file-system "$W"
}
trap cleanup EXIT
as_pg "$PGBIN/initdb" -D "$W/pg/data" -A trust >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$W/pg/data" -o "-k $W/pg -c listen_addresses=''" -l "$W/pg/log" -w start >/dev/null
as_pg "$PGBIN/createdb" -h "$W/pg" bench
as_pg "$PGBIN/pgbench" -h "$W/pg" -i -s "$SCALE" -q bench >/dev/null 2>&1
echo "bench passphrase" > "$W/pass"
chmod 600 "$W/pass"  # passfiles open to others are refused
for v in $VARIANTS; do
    opts=allow_other; [ "$v" = default ] || opts="$opts,$v"
    "$VFS" init --config "$W/vol-$v.toml" --passfile "$W/pass" --state "$W/state-$v" "$W/disks-$v"/d{0..4} >/dev/null
    mkdir -p "$W/mnt-$v"
    "$VFS" mount -o "passfile=$W/pass,$opts" "$W/vol-$v.toml" "$W/mnt-$v"
    chown postgres: "$W/mnt-$v"
done
tck=$(getconf CLK_TCK)
dcpu() { awk -v t="$tck" '{print ($14 + $15) / t}' "/proc/$(pgrep -f "daemon-child.* $W/vol-$1.toml")/stat"; }
dump() { # OUTDIR -> wall seconds
    local s; s=$(date +%s.%N)
    as_pg "$PGBIN/pg_dump" -h "$W/pg" -Fd -Z0 -j 2 -f "$1" bench
    echo "$(date +%s.%N) - $s" | bc
}
median() { sort -g | awk '{a[NR]=$1} END {printf "%.2f (%.2f-%.2f)", a[int((NR+1)/2)], a[1], a[NR]}'; }
declare -A ratios cpus
for r in $(seq "$REPEATS"); do
    for v in $VARIANTS; do
        rm -rf "$W/raw/d"; sync
        d=$(dump "$W/raw/d")
        c0=$(dcpu "$v")
        t=$(dump "$W/mnt-$v/d$r")
        c=$(echo "$(dcpu "$v") - $c0" | bc)
        ratio=$(echo "$t / $d" | bc -l)
        printf "repeat %d %-16s disk %6.2f s  valencefs %6.2f s  ratio %.2f  daemon cpu %.2f s\n" "$r" "$v" "$d" "$t" "$ratio" "$c"
        ratios[$v]+="$ratio "; cpus[$v]+="$c "
    done
done
echo "dump size $(du -sh "$W/raw/d" | cut -f1), scale $SCALE, $REPEATS repeats, load $(cut -d' ' -f1-3 /proc/loadavg)"
for v in $VARIANTS; do
    printf "%-16s ratio %s   daemon cpu s %s\n" "$v" "$(printf "%s\n" ${ratios[$v]} | median)" "$(printf "%s\n" ${cpus[$v]} | median)"
done
