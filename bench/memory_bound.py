#!/usr/bin/env python3
"""Peak RSS and time to first row of `vitbatch classify` (or `embed`) on trees of 1,000 and
100,000 small images, to show that memory is bounded by the images in flight and not by the
file count.

    /usr/bin/python3 bench/memory_bound.py [--bin build/bin] [--counts 1000,100000] [--command embed]

Files are hard links to one 16x16 PNG (fast to make, no disk cost), 1,000 per directory
(`nested`) or all in one directory (`flat`: one directory's names are held for sorting).
The model is a small synthetic ViT, so decoding and bookkeeping dominate, not the model."""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import edge_cases  # noqa: E402


def make_tree(root, count, per_dir):
    tree = os.path.join(root, "tree")
    for i in range(count):
        if i % 50000 == 0:  # file systems cap the links to one inode (65000 on ext4)
            source = os.path.join(root, f"source{i}.png")
            pixels = np.random.default_rng(i).integers(0, 256, (16, 16, 3)).astype(np.uint8)
            Image.fromarray(pixels).save(source)
        folder = os.path.join(tree, f"d{i // per_dir:04d}")
        if i % per_dir == 0:
            os.makedirs(folder)
        os.link(source, os.path.join(folder, f"img{i:06d}.png"))
    return tree


def high_water_mib(pid):
    """VmHWM: the peak resident set of the process's own memory since exec. (ru_maxrss from
    wait4 would also count the pages of this Python process that the child had before exec.)"""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def measure(vitbatch, model, labels, tree):
    start = time.monotonic()
    proc = subprocess.Popen([vitbatch, "classify", "--model", model, "--labels", labels, "--progress", "never",
                             "-k", "1", tree], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    proc.stdout.readline()  # header
    proc.stdout.readline()  # first prediction
    first_row = time.monotonic() - start
    rows, peak = 1, 0.0
    for _ in proc.stdout:
        rows += 1
        if rows % 500 == 0:
            peak = max(peak, high_water_mib(proc.pid) or 0.0)
    # The output is closed: the process is exiting. Take the last reading it allows.
    peak = max(peak, high_water_mib(proc.pid) or 0.0)
    status = proc.wait()
    return first_row, time.monotonic() - start, rows, peak, status


def measure_embed(vitbatch, model, tree, out):
    """embed writes to a directory: its peak is read while it runs, its first row from the index."""
    start = time.monotonic()
    proc = subprocess.Popen([vitbatch, "embed", "--model", model, "--progress", "never", "-o", out, tree],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    index = os.path.join(out, "index.csv")
    first_row, peak = None, 0.0
    while proc.poll() is None:
        if first_row is None and os.path.exists(index) and os.path.getsize(index) > len("path,shard,row,error\n"):
            first_row = time.monotonic() - start
        peak = max(peak, high_water_mib(proc.pid) or 0.0)
        time.sleep(0.01 if first_row is None else 0.2)
    total = time.monotonic() - start
    with open(index) as f:
        rows = sum(1 for _ in f) - 1
    return first_row or total, total, rows, peak, proc.returncode


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--bin", default=os.path.join(here, "..", "build", "bin"))
    parser.add_argument("--counts", default="1000,100000")
    parser.add_argument("--command", choices=("classify", "embed"), default="classify")
    args = parser.parse_args()
    vitbatch = os.path.join(args.bin, "vitbatch")
    print(f"{'layout':8s} {'files':>8s} {'first row s':>12s} {'total s':>8s} {'rows':>8s} {'peak RSS MiB':>13s}")
    with tempfile.TemporaryDirectory() as tmp:
        model, labels = edge_cases.small_model(tmp)
        for layout, per_dir in (("nested", 1000), ("flat", 10**9)):
            for count in map(int, args.counts.split(",")):
                work = os.path.join(tmp, f"{layout}{count}")
                os.makedirs(work)
                tree = make_tree(work, count, per_dir)
                if args.command == "embed":
                    first, total, rows, rss, status = measure_embed(vitbatch, model, tree, os.path.join(work, "out"))
                else:
                    first, total, rows, rss, status = measure(vitbatch, model, labels, tree)
                assert status == 0 and rows == count, (status, rows, count)
                print(f"{layout:8s} {count:8d} {first:12.3f} {total:8.1f} {rows:8d} {rss:13.1f}", flush=True)
                shutil.rmtree(work)


if __name__ == "__main__":
    main()
