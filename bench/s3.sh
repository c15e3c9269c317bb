#!/usr/bin/env bash
# Mounted throughput of a mixed volume (3 local directories + 2 S3 buckets on moto servers) against an all-local
# volume (5 directories), personal 3+2, in the same run.
# Usage: bench/s3.sh [SIZE_MIB] [REPEATS]   (defaults 1024 and 1; needs root, fuse3, moto_server, python3)
# FORMAT=3 makes both volumes packed-stripe volumes (format v3, experimental); the default is v2. At the end the
# objects in each bucket are counted, per GiB written.
# The S3 figure measures moto (a single-threaded Python server, one per bucket here, on this machine's cores) as
# much as valencefs: ~830 shard objects per GiB per disk, each a signed HTTP request. Read it as a lower bound.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-1024}
REPEATS=${2:-1}
FORMAT=${FORMAT:-2}
command -v moto_server >/dev/null || { echo "moto_server missing: pip install 'moto[server]'" >&2; exit 1; }
cargo build --release --bin valencefs -q
VFS=$PWD/target/release/valencefs
W=$(mktemp -d /var/tmp/s3bench.XXXXXX)
pids=()
cleanup() {
    "$VFS" umount "$W/mnt-local" 2>/dev/null || true
    "$VFS" umount "$W/mnt-s3" 2>/dev/null || true
    for p in "${pids[@]}"; do kill -9 -- "-$p" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ports=()
for b in a b; do
    port=$(free_port)
    setsid moto_server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
    pids+=($!)
    ports+=("$port")
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
    curl -sf -X PUT "http://127.0.0.1:$port/bench-$b" >/dev/null
done
cat > "$W/s3.toml" <<TOML
[s3]
region = "us-east-1"
access_key_id = "bench"
secret_access_key = "bench-secret"
timeout_secs = 30
[s3.disk."s3://bench-a/vol"]
endpoint = "http://127.0.0.1:${ports[0]}"
[s3.disk."s3://bench-b/vol"]
endpoint = "http://127.0.0.1:${ports[1]}"
TOML
echo "bench passphrase" > "$W/pass"
mkdir -p "$W/mnt-local" "$W/mnt-s3"
chmod 600 "$W/pass"
"$VFS" init --format "$FORMAT" --config "$W/local.toml" --passfile "$W/pass" --state "$W/state-local" \
    "$W"/l{1..5} >/dev/null
"$VFS" init --format "$FORMAT" --config "$W/s3.toml.vol" --passfile "$W/pass" --state "$W/state-s3" \
    --s3-config "$W/s3.toml" "$W"/s{1..3} s3://bench-a/vol s3://bench-b/vol >/dev/null
"$VFS" mount -o passfile="$W/pass" "$W/local.toml" "$W/mnt-local"
"$VFS" mount -o passfile="$W/pass" "$W/s3.toml.vol" "$W/mnt-s3"
head -c $((SIZE << 20)) /dev/urandom > "$W/src"

t() { local s; s=$(date +%s.%N); "$@" >/dev/null 2>&1; echo "$(date +%s.%N) - $s" | bc; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
mbs() { echo "$SIZE * 1.048576 / $1" | bc -l; }
seqwrite() { rm -f "$1/big"; t dd if="$W/src" of="$1/big" bs=1M conv=fsync; }
seqread() { drop; t dd if="$1/big" of=/dev/null bs=1M; }

printf "%-10s %-26s %10s %10s\n" test layout seconds "MB/s"
for _ in $(seq "$REPEATS"); do
    for test in seqwrite seqread; do
        for m in local s3; do
            s=$($test "$W/mnt-$m")
            layout=$([ $m = local ] && echo "5 dirs" || echo "3 dirs + 2 moto buckets")
            printf "%-10s %-26s %10.2f %10.1f\n" "$test" "$layout" "$s" "$(mbs "$s")"
        done
    done
done
cmp "$W/src" "$W/mnt-s3/big" && echo "mixed volume content verified"
count_objects() { # port bucket -> number of objects (ListObjectsV2, paginated)
    python3 - "$1" "$2" <<'PY'
import re, sys, urllib.parse, urllib.request
port, bucket = sys.argv[1], sys.argv[2]
n, token = 0, None
while True:
    q = {"list-type": "2", "max-keys": "1000"}
    if token:
        q["continuation-token"] = token
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/{bucket}?{urllib.parse.urlencode(q)}").read().decode()
    n += body.count("<Key>")
    m = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", body)
    if not m:
        break
    token = m.group(1)
print(n)
PY
}
"$VFS" umount "$W/mnt-s3"
for i in 0 1; do
    b=$([ $i = 0 ] && echo a || echo b)
    n=$(count_objects "${ports[$i]}" "bench-$b")
    echo "bucket bench-$b: $n objects after ${REPEATS} x ${SIZE} MiB written = $(echo "$n * 1024 / ($SIZE * $REPEATS)" | bc) per GiB (format v$FORMAT)"
done
echo "size ${SIZE} MiB, ${REPEATS} repeats, 3+2, release build, local disks on $(df --output=fstype "$W" | tail -1)"
