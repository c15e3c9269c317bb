#!/usr/bin/env bash
# Mounted benchmark: valencefs against gocryptfs over the same backing storage, in the same run, printing ratios.
# Usage: bench/mount.sh [SIZE_MIB] [REPEATS]   (defaults 1024 and 3; needs root, fuse3, gocryptfs, python3)
# TESTS="seqwrite rand4k" runs a subset (seqwrite is needed before seqread and rand4k).
# Each figure is the median of REPEATS runs; the spread (min–max) is printed beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-1024}
REPEATS=${2:-3}
FILES=${FILES:-10000}
command -v gocryptfs >/dev/null || { apt-get update -qq && apt-get install -y -qq gocryptfs; }
# Debian's gocryptfs runs /bin/fusermount (FUSE 2), which fuse3 does not ship; fusermount3 takes the same arguments.
if [ ! -e /bin/fusermount ] && command -v fusermount3 >/dev/null; then ln -s "$(command -v fusermount3)" /bin/fusermount; fi
cargo build --release --bin valencefs -q
VFS=$PWD/target/release/valencefs
W=$(mktemp -d /var/tmp/vbench.XXXXXX)
cleanup() {
    "$VFS" umount "$W/v" 2>/dev/null || true
    fusermount3 -u "$W/g" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/v" "$W/g" "$W/gc"
echo "bench passphrase" > "$W/pass"
chmod 600 "$W/pass"  # passfiles open to others are refused
"$VFS" init --format "${FORMAT:-2}" --config "$W/vol.toml" --passfile "$W/pass" --state "$W/state" "$W"/d{0..4} >/dev/null
"$VFS" mount -o passfile="$W/pass" "$W/vol.toml" "$W/v"
gocryptfs -q -init -passfile "$W/pass" "$W/gc" >/dev/null
gocryptfs -q -passfile "$W/pass" "$W/gc" "$W/g"
head -c $((SIZE << 20)) /dev/urandom > "$W/src"
# A real source tree to untar: the crates this project builds from.
tar -C "$HOME/.cargo/registry/src" -cf "$W/tree.tar" "$(ls "$HOME/.cargo/registry/src" | head -1)"

t() { local s; s=$(date +%s.%N); "$@" >/dev/null 2>&1; echo "$(date +%s.%N) - $s" | bc; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
median() { sort -g | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; printf "%.3f (%.3f-%.3f)", m, a[1], a[NR]}'; }

seqwrite() { rm -f "$1/big"; t dd if="$W/src" of="$1/big" bs=1M conv=fsync; }
seqread() { drop; t dd if="$1/big" of=/dev/null bs=1M; }
meta() {
    t python3 - "$1" "$FILES" <<'PY'
import os, sys
d, n = os.path.join(sys.argv[1], "meta"), int(sys.argv[2])
os.makedirs(d, exist_ok=True)
for i in range(n): open(os.path.join(d, "f%d" % i), "w").close()
for i in range(n): os.stat(os.path.join(d, "f%d" % i))
for i in range(n): os.unlink(os.path.join(d, "f%d" % i))
PY
}
rand4k() {
    t python3 - "$1/big" <<'PY'
import os, random, sys
fd = os.open(sys.argv[1], os.O_RDWR); size = os.fstat(fd).st_size; r = random.Random(1)
for i in range(4000):
    off = r.randrange(0, size - 4096) & ~4095
    if i % 2: os.pwrite(fd, os.urandom(4096), off)
    else: os.pread(fd, 4096, off)
    if i % 500 == 499: os.fsync(fd)
os.fsync(fd); os.close(fd)
PY
}
untar() { rm -rf "$1/tree"; mkdir "$1/tree"; t tar -C "$1/tree" -xf "$W/tree.tar"; }
lsr() { drop; t ls -lR "$1/tree"; }
rmrf() { t rm -rf "$1/tree"; }

printf "%-22s %24s %24s %8s\n" test "valencefs s (min-max)" "gocryptfs s (min-max)" "ratio"
for test in ${TESTS:-seqwrite seqread rand4k meta untar lsr rmrf}; do
    vs=(); gs=()
    for _ in $(seq "$REPEATS"); do
        if [ "$test" = lsr ] || [ "$test" = rmrf ]; then untar "$W/v" >/dev/null; untar "$W/g" >/dev/null; fi
        vs+=("$($test "$W/v")"); gs+=("$($test "$W/g")")
    done
    v=$(printf "%s\n" "${vs[@]}" | median); g=$(printf "%s\n" "${gs[@]}" | median)
    ratio=$(echo "${g%% *} / ${v%% *}" | bc -l)
    printf "%-22s %24s %24s %8.2f\n" "$test" "$v" "$g" "$ratio"
done
echo "ratio = gocryptfs time / valencefs time (>1: valencefs faster). size ${SIZE} MiB, ${FILES} files, ${REPEATS} repeats"
