"""Sums Nsight Compute's per-kernel durations (ncu --csv --metrics gpu__time_duration.sum) by
kernel and prints each kernel's share of the GPU time, heaviest first.

usage: python3 gpu_kernel_shares.py PROFILE.csv [--batches N] [--title T] [--top K]
"""
import argparse
import csv
import re
import sys
from collections import defaultdict

SCALE = {"nsecond": 1e-9, "ns": 1e-9, "usecond": 1e-6, "us": 1e-6, "msecond": 1e-3, "ms": 1e-3, "second": 1.0, "s": 1.0}


def short(name):
    """A kernel's name without its argument list, cut to 96 characters."""
    name = name.split("(")[0] if not name.startswith("void ") else name[5:].split("(")[0]
    return name if len(name) <= 96 else name[:93] + "..."


def rows(path):
    with open(path, newline="") as f:
        lines = [line for line in f if line.startswith('"')]  # ncu's own messages are unquoted
    for r in csv.DictReader(lines):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        value = float(r["Metric Value"].replace(",", ""))
        yield short(r.get("Kernel Name") or r.get("Function Name") or "?"), value * SCALE.get(r.get("Metric Unit", "ns"), 1e-9)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("csv")
    p.add_argument("--batches", type=int, default=1)
    p.add_argument("--title", default="")
    p.add_argument("--top", type=int, default=14)
    a = p.parse_args()
    total = defaultdict(float)
    count = defaultdict(int)
    for name, seconds in rows(a.csv):
        total[name] += seconds
        count[name] += 1
    if not total:
        sys.exit("no kernel durations in " + a.csv)
    grand = sum(total.values())
    print(f"== {a.title}: {sum(count.values())} kernels, {grand / a.batches * 1e3:.3f} ms of kernel time a batch")
    for name, seconds in sorted(total.items(), key=lambda kv: -kv[1])[: a.top]:
        print(f"{100 * seconds / grand:5.1f}%  {seconds / a.batches * 1e3:8.3f} ms  x{count[name] / a.batches:5.1f}  {name}")


if __name__ == "__main__":
    main()
