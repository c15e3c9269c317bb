#!/usr/bin/env python3
"""Prints bench/pg_nightly.sh's tables (Markdown) from the TSV files in its work directory.

Usage: pg_nightly_report.py WORKDIR [PARAMETERS-LINE]
"""
import csv
import statistics
import sys


def rows(path):
    try:
        with open(path) as f:
            return list(csv.DictReader(f, delimiter="\t"))
    except FileNotFoundError:
        return []


def mib(b):
    return "%.0f" % (int(b) / 2**20)


def main():
    w = sys.argv[1]
    res, stats, rstats, restore = (rows(f"{w}/{n}.tsv") for n in ("results", "stats", "rstats", "restore"))
    if len(sys.argv) > 2:
        print(sys.argv[2] + "\n")
    formats = list(dict.fromkeys(r["format"] for r in res))
    chunks = list(dict.fromkeys(r["chunk"] for r in stats))
    first = chunks[0] if chunks else "1M"
    restic = {(r["night"], r["format"]): int(r["restic_raw"]) for r in rstats}
    st = {(r["night"], r["format"], r["chunk"]): r for r in stats}
    head = ["night", "format", "dump MiB", "logical MiB", f"vfs {first} unique MiB"]
    head += [f"vfs {c} sealed MiB" for c in chunks] + ["restic MiB", f"t vfs s", "t disk s", "t restic s"]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for r in res:
        n, f = r["night"], r["format"]
        s0 = st.get((n, f, first))
        line = [n, f, mib(r["dump_bytes"])] + ([mib(s0["logical"]), mib(s0["unique"])] if s0 else ["?", "?"])
        line += [mib(st[(n, f, c)]["sealed"]) if (n, f, c) in st else "?" for c in chunks]
        line += [mib(restic[(n, f)]) if (n, f) in restic else "?", r["t_vfs"], r["t_disk"], r["t_restic"]]
        print("| " + " | ".join(line) + " |")
    print()
    # Per format: what the nights after the first cost, as a fraction of one dump's size.
    last = max((int(r["night"]) for r in res), default=0)
    if last > 1:
        print("| format | dump MiB | " + " | ".join(f"vfs {c}: MiB per later night" for c in chunks)
              + " | restic: MiB per later night | median t vfs / t disk (min-max) |")
        print("|" + " --- |" * (4 + len(chunks)))
        for f in formats:
            size = [int(r["dump_bytes"]) for r in res if r["format"] == f][-1]
            cells = []
            for c in chunks:
                a, b = st.get(("1", f, c)), st.get((str(last), f, c))
                cells.append("%.0f (%.0f%%)" % ((int(b["sealed"]) - int(a["sealed"])) / (last - 1) / 2**20,
                                                100 * (int(b["sealed"]) - int(a["sealed"])) / (last - 1) / size)
                             if a and b else "?")
            a, b = restic.get(("1", f)), restic.get((str(last), f))
            cells.append("%.0f (%.0f%%)" % ((b - a) / (last - 1) / 2**20, 100 * (b - a) / (last - 1) / size)
                         if a and b else "?")
            ratios = sorted(float(r["t_vfs"]) / float(r["t_disk"]) for r in res
                            if r["format"] == f and float(r["t_disk"]) > 0)
            cells.append("%.2f (%.2f-%.2f)" % (statistics.median(ratios), ratios[0], ratios[-1]) if ratios else "?")
            print(f"| {f} | {size / 2**20:.0f} | " + " | ".join(cells) + " |")
        print()
    t = {r["where"]: float(r["seconds"]) for r in restore}
    if "vfs" in t and "disk" in t:
        print("pg_restore -j 2 of the last -Fd -Z0 dump: valencefs %.1f s, disk %.1f s, ratio %.2f"
              % (t["vfs"], t["disk"], t["vfs"] / t["disk"]))


main()
