#!/usr/bin/env python3
"""What int8's calibration choices and keeping linears out of int8 cost and buy on the real
ViT-Ti/16: top-1 agreement with fp32 and images/s, beside bf16 and fp32. Regenerates
BENCHMARKS.md's "int8: calibration, and what float linears buy" tables:

    /usr/bin/python3 bench/int8_tradeoff.py [--eval 400] [--rounds 6] [--seconds 3]

Photos from bench/augment_photos.py: 64 to calibrate on (seed 7; 16 and 256 more, seeds 9 and
8, for the calibration-size rows) and four disjoint sets of --eval to measure agreement on
(seeds 21-24), each printed on its own so the spread shows. `vitbatch calibrate` writes one
ranges file per row (--smoothquant, --method, --percentile, --keep-float); `classify --precision int8
--int8-scales` is compared image by image with `classify` at fp32. Speed: `vitbatch bench`
(batch 16, every thread, the default lanes), the rows interleaved round by round; median and
best. The agreement figures are deterministic; the speeds are this machine's (its CPU model
is printed), and bf16's place among them depends on the CPU. A table splits bf16's and
int8's agreement by how decisive fp32 was on each photo (its top-1 probability less its
top-2's): where the disagreements lie. The last works out a cascade from the same answers:
int8 first, then the photos on which int8 itself was undecided (its own top-1 less top-2
below t) again in bf16 or fp32; its images/s follow from the medians above.
"""
import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TI = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"

# (label, calibration set, calibrate's arguments); None: not int8 (the precision instead).
CALIBRATIONS = [
    ("default: SmoothQuant alpha 0.8, percentile 99.999", "calib64", []),
    ("SmoothQuant off (`--smoothquant 0`)", "calib64", ["--smoothquant", "0"]),
    ("SmoothQuant alpha 0.5", "calib64", ["--smoothquant", "0.5"]),
    ("SmoothQuant alpha 1", "calib64", ["--smoothquant", "1"]),
    ("percentile 99.9999", "calib64", ["--percentile", "99.9999"]),
    ("percentile 99.99", "calib64", ["--percentile", "99.99"]),
    ("percentile 99.9", "calib64", ["--percentile", "99.9"]),
    ("minmax", "calib64", ["--method", "minmax"]),
    ("default, 16 calibration photos", "calib16", []),
    ("default, 256 calibration photos", "calib256", []),
    ("minmax, 256 calibration photos", "calib256", ["--method", "minmax"]),
]
FLOAT_LINEARS = [
    ("int8 (default ranges)", []),
    ("fc1 in float", ["mlp.fc1"]),
    ("qkv in float", ["attn.qkv"]),
    ("qkv, proj, fc1 in float", ["attn.qkv", "attn.proj", "mlp.fc1"]),
    ("qkv, proj, fc1, fc2 in float", ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"]),
]


def cpu_model():
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])}... failed:\n{r.stderr[-2000:]}")
    return r.stdout


def top1(path):
    with open(path) as f:
        return {row["path"]: row["top1_index"] for row in csv.DictReader(f)}


def margins(path):
    """top-1 probability less top-2's, per photo (a CSV written with -k 2)."""
    with open(path) as f:
        return {row["path"]: float(row["top1_prob"]) - float(row["top2_prob"]) for row in csv.DictReader(f)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    p.add_argument("--vitbatch", default=os.path.join(ROOT, "build", "bin", "vitbatch"))
    p.add_argument("--eval", type=int, default=400, help="photos in each of the four evaluation sets")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--seconds", type=float, default=3)
    a = p.parse_args()
    model = os.path.join(a.shared, "models", TI)
    work = tempfile.mkdtemp(prefix="int8_tradeoff.")
    try:
        measure(a, model, work)
    finally:
        shutil.rmtree(work)


def measure(a, model, work):
    photos = {"calib64": (64, 7), "calib16": (16, 9), "calib256": (256, 8)}
    photos.update({f"eval{s}": (a.eval, s) for s in (21, 22, 23, 24)})
    for name, (count, seed) in photos.items():
        run([sys.executable, os.path.join(HERE, "augment_photos.py"), "--shared", a.shared, "--count", str(count),
             "--seed", str(seed), os.path.join(work, name)])
    evals = [os.path.join(work, f"eval{s}") for s in (21, 22, 23, 24)]

    def classify(tag, args, k=1):
        out = os.path.join(work, tag + ".csv")
        run([a.vitbatch, "classify", "-m", model, *args, *evals, "-k", str(k), "-o", out])
        return top1(out)

    def calibrate(tag, folder, args):
        out = os.path.join(work, tag + ".safetensors")
        run([a.vitbatch, "calibrate", "-m", model, os.path.join(work, folder), *args, "-o", out])
        return out

    reference = classify("fp32", [], k=2)
    margin = margins(os.path.join(work, "fp32.csv"))

    def agreement(answers):
        per_set = [sum(answers[k] == v for k, v in reference.items() if os.path.dirname(k) == e) for e in evals]
        return f"{100 * sum(per_set) / len(reference):.2f}% ({sum(per_set)}/{len(reference)}; sets {' '.join(map(str, per_set))})"

    print(f"# ViT-Ti/16 (real weights), CPU: {cpu_model()}, {os.cpu_count()} cores")
    print("\n| int8 calibration | top-1 agreement with fp32 |\n|---|---|")
    measured = {}  # int8 ranges file -> its agreement (the default's serves both tables)
    answers = {}  # the default int8's and bf16's, for the table by fp32's margin
    for i, (label, folder, args) in enumerate(CALIBRATIONS):
        scales = calibrate(f"cal{i}", folder, args)
        got = classify(f"cal{i}", ["--precision", "int8", "--int8-scales", scales], k=2 if i == 0 else 1)
        if i == 0:
            answers["int8 (default ranges)"] = got
        measured[scales] = agreement(got)
        print(f"| {label} | {measured[scales]} |", flush=True)
    default_scales = os.path.join(work, "cal0.safetensors")  # CALIBRATIONS[0]: the default on calib64

    rows = [("fp32", ["--precision", "fp32"]), ("bf16", ["--precision", "bf16"])]
    for i, (label, keep) in enumerate(FLOAT_LINEARS):
        scales = calibrate(f"keep{i}", "calib64", ["--keep-float", *keep]) if keep else default_scales
        rows.append((label, ["--precision", "int8", "--int8-scales", scales]))
    answers["bf16"] = classify("bf16", ["--precision", "bf16"])
    accuracy = {"fp32": "100% (the yardstick)", "bf16": agreement(answers["bf16"])}
    for label, args in rows[2:]:
        scales = args[-1]
        if scales not in measured:
            measured[scales] = agreement(classify(os.path.basename(scales), args))
        accuracy[label] = measured[scales]
    speeds = {label: [] for label, _ in rows}
    for _ in range(a.rounds):
        for label, args in rows:
            out = run([a.vitbatch, "bench", "-m", model, *args, "--batch-size", "16", "--seconds", str(a.seconds), "--json"])
            speeds[label].append(json.loads(out.strip().splitlines()[-1])["images_per_second"])
    print(f"\n| precision | top-1 agreement with fp32 | images/s, median (best) of {a.rounds} |\n|---|---|---|")
    for label, _ in rows:
        v = speeds[label]
        print(f"| {label} | {accuracy[label]} | {statistics.median(v):.1f} ({max(v):.1f}) |")
    bands = (0.02, 0.05, 0.1)
    print("\n| precision | all photos | " + " | ".join(f"fp32's margin >= {b}" for b in bands) +
          " | largest margin among its disagreements |\n|---|---|" + "---|" * len(bands) + "---|")
    print(f"| (photos) | {len(reference)} | " +
          " | ".join(str(sum(m >= b for m in margin.values())) for b in bands) + " | |")
    for label in ("bf16", "int8 (default ranges)"):
        cells = []
        for b in (0.0, *bands):
            kept = [p for p in reference if margin[p] >= b]
            same = sum(answers[label][p] == reference[p] for p in kept)
            cells.append(f"{100 * same / len(kept):.2f}% ({same}/{len(kept)})")
        flipped = [margin[p] for p in reference if answers[label][p] != reference[p]]
        largest = f"{max(flipped):.3f}" if flipped else "none"
        print(f"| {label} | " + " | ".join(cells) + f" | {largest} |")
    cascade(reference, answers, margins(os.path.join(work, "cal0.csv")), speeds, agreement)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


def cascade(reference, answers, int8_margin, speeds, agreement):
    """int8, then again in bf16 or fp32 where int8's own margin is below t: the agreement, the
    share run twice, and images/s = 1 / (1 / int8's + share / the second precision's)."""
    int8 = answers["int8 (default ranges)"]
    rate = {label: statistics.median(v) for label, v in speeds.items()}
    print("\n| cascade: int8, again where int8's top-1 leads its top-2 by less than t | run again | "
          "top-1 agreement with fp32 | images/s (from the medians above) |\n|---|---|---|---|")
    for t in (0.05, 0.08, 0.1):
        again = sum(int8_margin[p] < t for p in reference)
        share = again / len(reference)
        for second, second_answers in (("bf16", answers["bf16"]), ("fp32", reference)):
            final = {p: second_answers[p] if int8_margin[p] < t else int8[p] for p in reference}
            speed = 1 / (1 / rate["int8 (default ranges)"] + share / rate[second])
            print(f"| t = {t} | {second}: {again} photos ({100 * share:.1f}%) | {agreement(final)} | {speed:.1f} |")


if __name__ == "__main__":
    main()
