#!/usr/bin/env bash
# Nightly PostgreSQL dumps onto valencefs and into restic, in the same run: how much each dump format deduplicates.
#
# Usage: bench/pg_nightly.sh [SCALE] [NIGHTS]      (defaults 55 and 7; needs root, fuse3, postgresql, restic, python3)
#   SCALE   pgbench scale factor: each unit is 100,000 accounts rows plus 50,000 documents rows, ~20 MiB of plain
#           dump; 55 gives ≥ 1 GiB dumps. On 2 busy shared cores, scale 10 with 7 nights and 4 formats takes ~15 min,
#           scale 50 with FORMATS=dirz0 and 2 nights ~10 min.
#   NIGHTS  nights to simulate.
# Environment:
#   FORMATS="plain dirz0 custom customz0"   dump formats: -Fp, -Fd -Z0 -j 2, -Fc (default gzip), -Fc -Z0
#   CHUNKS="1M"       valencefs volumes to fill, one per average chunk size (init --chunk-size), e.g. "1M 256K 64K"
#   UPDATE_PCT=2      % of accounts and documents updated each night in one contiguous window ("hot" rows), moving
#   SCATTER_PPM=200   rows updated each night uniformly at random, per million rows (200 = 0.02 %)
#   INSERT_PCT=1      % new accounts and documents appended each night (plus history and small-table churn)
#   DOCS_PER_SCALE=50000  documents rows per scale unit (~200 bytes each)
#   RESTORE=1         time pg_restore -j 2 from the last -Fd dump on valencefs vs on the underlying disk
#   OUT=DIR           also keep the raw TSV files there
#   VFS_OPTS=         extra mount options for the valencefs volumes, e.g. writeback_cache
#
# Each night: change the database, VACUUM, CHECKPOINT, then per format: pg_dump onto the first valencefs volume
# (timed) and the same dump onto the underlying disk (timed; the ratio is valencefs/disk), in alternating order,
# copied from there onto the other chunk-size volumes, and `restic backup` of the disk copy (timed). Every night's dump is kept (as a backup set would be).
# Stored bytes: valencefs `status --json` while unmounted — "unique" is the plaintext of distinct chunks, "sealed"
# is stored_bytes × k/(k+m), i.e. after compression and before parity (restic keeps no parity);
# restic `stats --mode raw-data` total_size (after its compression).
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${1:-55}
NIGHTS=${2:-7}
FORMATS=${FORMATS:-plain dirz0 custom customz0}
CHUNKS=${CHUNKS:-1M}
UPDATE_PCT=${UPDATE_PCT:-2}
SCATTER_PPM=${SCATTER_PPM:-200}
INSERT_PCT=${INSERT_PCT:-1}
RESTORE=${RESTORE:-1}
[ "$(id -u)" -eq 0 ] || { echo "run as root (mounts, and PostgreSQL runs as the postgres user)" >&2; exit 2; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "PostgreSQL not found: apt-get install postgresql" >&2; exit 2; }
command -v restic >/dev/null || { echo "restic not found: apt-get install restic" >&2; exit 2; }
cargo build --release --bin valencefs -q
VFS=$PWD/target/release/valencefs
W=$(mktemp -d /var/tmp/vpgnight.XXXXXX)
chmod 755 "$W"
mkdir -p "$W/pg" "$W/local"
chown postgres: "$W/pg" "$W/local"
export RESTIC_PASSWORD="bench passphrase"
LOG=$W/pg/server.log
as_pg() { runuser -u postgres -- env PGHOST="$W/pg" "$@"; }
pg() { as_pg "$PGBIN/$1" "${@:2}"; }
sql() { pg psql -X -q -A -t -v ON_ERROR_STOP=1 -d bench -c "$1"; }
cleanup() {
    set +e
    pg pg_ctl -D "$W/pg/data" -m immediate -w stop >/dev/null 2>&1
    for m in "$W"/mnt-*; do
        "$VFS" umount "$m" >/dev/null 2>&1 || fusermount3 -u -z "$m" >/dev/null 2>&1
    done
    rm -rf --one-file-system "$W"
}
trap cleanup EXIT
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }

pg initdb -D "$W/pg/data" --no-sync -A trust -U postgres -E UTF8 --locale=C >/dev/null
pg pg_ctl -D "$W/pg/data" -l "$LOG" -w -o "-c listen_addresses='' -c unix_socket_directories='$W/pg' \
    -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c shared_buffers=256MB -c max_wal_size=4GB \
    -c autovacuum=off" start >/dev/null
pg createdb bench
s=$(now)
pg pgbench -i -q -s "$SCALE" bench 2>/dev/null
# Beside pgbench's tables (whose blank-padded rows compress ~60:1, which hides dedup): a documents table of
# hex text that compresses only ~2:1, about as big as pgbench_accounts in the dump; configuration rows; an
# append-mostly event log with a JSON column.
DOCS=$((SCALE * ${DOCS_PER_SCALE:-50000}))
sql "CREATE TABLE documents (id int PRIMARY KEY, title text NOT NULL, body text NOT NULL);
     INSERT INTO documents SELECT g, 'doc ' || g, md5(g || 'a') || md5(g || 'b') || md5(g || 'c') || md5(g || 'd')
         || md5(g || 'e') || md5(g || 'f') FROM generate_series(1, $DOCS) g;
     CREATE TABLE settings (k text PRIMARY KEY, v text NOT NULL, changed timestamptz NOT NULL DEFAULT '2024-01-01');
     INSERT INTO settings SELECT 'key' || g, md5(g::text) FROM generate_series(1, 2000) g;
     CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz NOT NULL, kind text NOT NULL, body jsonb);
     INSERT INTO events (at, kind, body) SELECT timestamptz '2024-01-01' + g * interval '1 minute', 'k' || (g % 9),
         jsonb_build_object('n', g, 'h', md5(g::text)) FROM generate_series(1, 50000) g;" >/dev/null
sql "VACUUM ANALYZE" >/dev/null
sql "CHECKPOINT" >/dev/null
echo "pgbench -i -s $SCALE and small tables: $(since "$s") s; database $(sql "SELECT pg_size_pretty(pg_database_size('bench'))")"

# One volume (personal, 3+2, default compression) per format and chunk size, so each one's bytes are its own.
echo bench > "$W/pass"
chmod 600 "$W/pass"  # passfiles open to others are refused
VOLS=$(for f in $FORMATS; do for c in $CHUNKS; do echo "$f-$c"; done; done)
for v in $VOLS; do
    mkdir -p "$W/mnt-$v"
    VALENCEFS_INSECURE_FAST_KDF=1 "$VFS" init --config "$W/vol-$v.toml" --passfile "$W/pass" \
        --state "$W/state-$v" --chunk-size "${v##*-}" "$W/disks-$v"/d{1..5} >/dev/null
done
mount_all() {
    for v in $VOLS; do
        "$VFS" mount -o passfile="$W/pass",allow_other${VFS_OPTS:+,$VFS_OPTS} "$W/vol-$v.toml" "$W/mnt-$v"
        chown postgres: "$W/mnt-$v"
    done
}
umount_all() { for v in $VOLS; do "$VFS" umount "$W/mnt-$v"; done; }
mount_all
# Repository format 2: restic compresses (zstd, "auto"), as valencefs does.
for f in $FORMATS; do restic init -q --repository-version 2 -r "$W/restic-$f" >/dev/null; done

dump_args() {
    case $1 in
        plain) echo "-Fp" ;;
        dirz0) echo "-Fd -Z0 -j 2" ;;
        custom) echo "-Fc" ;;
        customz0) echo "-Fc -Z0" ;;
        *) echo "unknown format $1" >&2; exit 2 ;;
    esac
}
# One night's changes: a moving hot window, a few scattered rows, appended rows, history and small-table churn.
mutate() {
    local n=$1 rows=$((SCALE * 100000))
    local win=$((rows * UPDATE_PCT / 100)) lo=$(((n * 7919 * 1000) % rows + 1))
    local scatter=$((rows * SCATTER_PPM / 1000000)) ins=$((rows * INSERT_PCT / 100))
    local dwin=$((DOCS * UPDATE_PCT / 100)) dlo=$(((n * 7919 * 100) % DOCS + 1))
    local dscatter=$((DOCS * SCATTER_PPM / 1000000)) dins=$((DOCS * INSERT_PCT / 100))
    sql "UPDATE pgbench_accounts SET abalance = abalance + $n WHERE aid BETWEEN $lo AND $((lo + win - 1));
         UPDATE pgbench_accounts SET abalance = abalance - $n
             WHERE aid IN (SELECT 1 + (hashint4(g + $n * 1000003) & 2147483647) % $rows
                           FROM generate_series(1, $scatter) g);
         INSERT INTO pgbench_accounts (aid, bid, abalance, filler)
             SELECT m + g, 1 + g % $SCALE, 0, '' FROM (SELECT max(aid) AS m FROM pgbench_accounts) x,
                 generate_series(1, $ins) g;
         INSERT INTO pgbench_history (tid, bid, aid, delta, mtime)
             SELECT 1 + g % ($SCALE * 10), 1 + g % $SCALE, 1 + g * 13 % $rows, g % 1000 - 500,
                 timestamp '2024-01-01' + ($n * 86400 + g) * interval '1 second' FROM generate_series(1, $ins) g;
         UPDATE pgbench_branches SET bbalance = bbalance + $n;
         UPDATE documents SET body = md5(body) || substr(body, 33) WHERE id BETWEEN $dlo AND $((dlo + dwin - 1));
         UPDATE documents SET title = title || ' rev $n'
             WHERE id IN (SELECT 1 + (hashint4(g + $n * 999983) & 2147483647) % $DOCS
                          FROM generate_series(1, $dscatter) g);
         INSERT INTO documents SELECT m + g, 'new ' || g, md5((m + g) || 'a') || md5((m + g) || 'b')
             || md5((m + g) || 'c') || md5((m + g) || 'd') || md5((m + g) || 'e') || md5((m + g) || 'f')
             FROM (SELECT max(id) AS m FROM documents) x, generate_series(1, $dins) g;
         UPDATE settings SET v = md5(v), changed = changed + interval '1 day' WHERE k LIKE 'key$n%';
         INSERT INTO events (at, kind, body) SELECT timestamptz '2025-01-01' + ($n * 10000 + g) * interval '1 s', 'n',
             jsonb_build_object('night', $n, 'g', g) FROM generate_series(1, 5000) g;
         DELETE FROM events WHERE id % 97 = $n;" >/dev/null
    sql "VACUUM ANALYZE" >/dev/null
    # Write the night's changes out now, so no checkpoint runs during whichever dump comes first.
    sql "CHECKPOINT" >/dev/null
}

first=${CHUNKS%% *}
RES=$W/results.tsv
printf "night\tformat\tdump_bytes\tt_vfs\tt_disk\tt_restic\n" > "$RES"
STATS=$W/stats.tsv
printf "night\tformat\tchunk\tlogical\tunique\tsealed\n" > "$STATS"
printf "where\tseconds\n" > "$W/restore.tsv"
RSTATS=$W/rstats.tsv
printf "night\tformat\trestic_raw\n" > "$RSTATS"
for n in $(seq 1 "$NIGHTS"); do
    if [ "$n" -gt 1 ]; then mutate "$n"; fi
    for f in $FORMATS; do
        # The first dump of a night reads what the second finds cached: odd nights dump onto valencefs first,
        # even nights onto the disk first.
        for target in $( [ $((n % 2)) = 1 ] && echo "vfs disk" || echo "disk vfs"); do
            if [ "$target" = vfs ]; then
                # shellcheck disable=SC2046
                s=$(now); pg pg_dump $(dump_args "$f") -f "$W/mnt-$f-$first/night$n" bench; tv=$(since "$s")
            else
                # shellcheck disable=SC2046
                s=$(now); pg pg_dump $(dump_args "$f") -f "$W/local/$f-night$n" bench; sync; tl=$(since "$s")
            fi
        done
        for c in $CHUNKS; do
            [ "$c" = "$first" ] || cp -r "$W/local/$f-night$n" "$W/mnt-$f-$c/night$n"
        done
        s=$(now); (cd "$W/local" && restic backup -q -r "$W/restic-$f" --host bench "$f-night$n" >/dev/null); tr=$(since "$s")
        size=$(du -sb "$W/local/$f-night$n" | cut -f1)
        printf "%s\t%s\t%s\t%.1f\t%.1f\t%.1f\n" "$n" "$f" "$size" "$tv" "$tl" "$tr" >> "$RES"
        if [ "$f" = dirz0 ] && [ "$n" -eq "$NIGHTS" ] && [ "$RESTORE" = 1 ]; then
            for where in vfs disk; do
                src=$W/local/$f-night$n
                [ $where = vfs ] && src=$W/mnt-$f-$first/night$n
                pg dropdb --if-exists restored; pg createdb restored; drop
                s=$(now); pg pg_restore -j 2 -d restored "$src"; printf "%s\t%.1f\n" $where "$(since "$s")" >> "$W/restore.tsv"
            done
            pg dropdb restored
        fi
        rm -rf "${W:?}/local/$f-night$n"
        rs=$(restic stats -q -r "$W/restic-$f" --mode raw-data --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["total_size"])')
        printf "%s\t%s\t%s\n" "$n" "$f" "$rs" >> "$RSTATS"
    done
    umount_all
    for v in $VOLS; do
        "$VFS" status --json "$W/vol-$v.toml" | python3 -c '
import json, sys
r = json.load(sys.stdin); u = r["usage"]; k, m = r["data_shards"], r["parity_shards"]
print("%s\t%s\t%s\t%d\t%d\t%d" % (sys.argv[1], sys.argv[2], sys.argv[3], u["logical_bytes"],
      u["unique_chunk_bytes"], round(u["stored_bytes"] * k / (k + m))))' "$n" "${v%-*}" "${v##*-}" >> "$STATS"
    done
    mount_all
    echo "night $n done ($(date +%T))" >&2
done
umount_all
python3 bench/pg_nightly_report.py "$W" "SCALE=$SCALE NIGHTS=$NIGHTS VFS_OPTS=${VFS_OPTS:-} CHUNKS=$CHUNKS UPDATE_PCT=$UPDATE_PCT SCATTER_PPM=$SCATTER_PPM INSERT_PCT=$INSERT_PCT"
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT" && cp "$W"/*.tsv "$OUT"/; fi
