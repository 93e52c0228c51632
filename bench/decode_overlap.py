#!/usr/bin/env python3
"""How close `vitbatch classify` on JPEG files comes to the model alone, and to the bound that
sharing the cores with the decoders sets. Regenerates BENCHMARKS.md's "Classifying files"
table:

    bash bench/decode_overlap.sh [--rounds 2] [--seconds 6]

Inputs: every readable shared .jpg copied 25 times. Models: the real ViT-Ti/16, a ViT-B/16
with timm's own initialisation (realistic activations), and a near-free model (dim 48, one
block, ViT-Ti's preprocessing) whose classify rate is what decoding, resizing and writing
alone allow. int8 runs use `vitbatch calibrate` ranges from photos made by
bench/augment_photos.py (a different seed from nothing else here: no agreement is measured).

On a machine with C cores the model and the decoders share them, so per image the CPU time is
model + decode: the bound is 1 / (1 / model rate + 1 / near-free rate). Rounds alternate
bench and classify; the table gives the best of the rounds and the median ratio.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
sys.path.insert(0, HERE)

from side_by_side import cpu_model, load_average  # noqa: E402

TI = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"


def rate_of_classify(vitbatch, model, folder, extra):
    """images/s from classify's summary line; every file must classify."""
    run = subprocess.run([vitbatch, "classify", "--model", model, "--backend", "onednn", *extra, folder],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    summary = run.stderr.strip().splitlines()[-1]
    if " 0 failed" not in summary:
        raise SystemExit(f"decode_overlap: classify failed on some photos: {summary}")
    return float(summary.split("(")[1].split(" images/s")[0])


def rate_of_bench(vitbatch, model, seconds, extra):
    run = subprocess.run([vitbatch, "bench", "--model", model, "--backend", "onednn", "--batch-size", "16",
                          "--seconds", str(seconds), "--json", *extra], capture_output=True, text=True, check=True)
    return json.loads(run.stdout)["images_per_second"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    parser.add_argument("--vitbatch", default=os.path.join(ROOT, "build", "bin", "vitbatch"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6)
    args = parser.parse_args()
    from timm_quiet import timm
    import torch
    from PIL import Image
    from safetensors.torch import save_file
    import vitref

    work = tempfile.mkdtemp(prefix="vitbatch-decode-")
    try:
        photos = os.path.join(work, "photos")
        os.makedirs(photos)
        folder = os.path.join(args.shared, "images")
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".jpg"):
                continue
            try:
                with Image.open(os.path.join(folder, name)) as im:
                    im.load()
            except Exception:  # the truncated JPEG: classify would (rightly) fail it
                continue
            for i in range(25):
                shutil.copy(os.path.join(folder, name), os.path.join(photos, f"{i:02d}_{name}"))
        count = len(os.listdir(photos))

        ti = os.path.join(args.shared, "models", TI)
        base = os.path.join(work, "vit_base")
        os.makedirs(base)
        torch.manual_seed(0)
        model = timm.create_model("vit_base_patch16_224", pretrained=False)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(base, "model.safetensors"))
        with open(os.path.join(base, "config.json"), "w") as f:
            json.dump({"architecture": "vit_base_patch16_224", "num_classes": 1000,
                       "pretrained_cfg": json.load(open(os.path.join(ti, "config.json")))["pretrained_cfg"]}, f)
        free = os.path.join(work, "near_free")
        os.makedirs(free)
        vitref.write_safetensors(os.path.join(free, "model.safetensors"),
                                 vitref.random_timm_state(0, image=224, patch=16, dim=48, depth=1, mlp=96, classes=1000))
        config = json.load(open(os.path.join(ti, "config.json")))
        config.update(architecture="synthetic", num_heads=1)
        with open(os.path.join(free, "config.json"), "w") as f:
            json.dump(config, f)

        calibration = os.path.join(work, "calibration")
        subprocess.run([sys.executable, os.path.join(HERE, "augment_photos.py"), "--shared", args.shared,
                        "--count", "32", "--seed", "7", calibration], check=True, stdout=subprocess.DEVNULL)
        models = {"ViT-Ti/16 (real weights)": ti, "ViT-B/16 (timm init)": base}
        scales = {}
        for label, path in models.items():
            scales[label] = os.path.join(work, os.path.basename(path) + "_scales.safetensors")
            subprocess.run([args.vitbatch, "calibrate", "--model", path, calibration, "-o", scales[label]],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average before: {load_average()}; "
              f"{count} JPEG photos; batch 16, onednn, default threads and decode threads; "
              f"{args.rounds} rounds of bench ({args.seconds:g} s) and classify, alternating.", file=sys.stderr)
        results = {}
        free_rates = []
        for _ in range(args.rounds):
            free_rates.append(rate_of_classify(args.vitbatch, free, photos, []))
            for label, path in models.items():
                for precision in ("fp32", "int8"):
                    extra = ["--precision", precision]
                    if precision == "int8":
                        extra += ["--int8-scales", scales[label]]
                    b = rate_of_bench(args.vitbatch, path, args.seconds, extra)
                    c = rate_of_classify(args.vitbatch, path, photos, extra)
                    results.setdefault((label, precision), []).append((b, c))
                    print(f"  {label} {precision}: bench {b:.2f}, classify {c:.2f} images/s", file=sys.stderr)
        free_best = max(free_rates)
        print(f"CPU: {cpu_model()}, {os.cpu_count()} cores. {count} JPEG photos (the shared .jpg files x 25). "
              f"Near-free model: classify {free_best:.1f} images/s (best of {args.rounds}; "
              f"{1000 * os.cpu_count() / free_best:.1f} core-ms of decoding, resizing and writing an image).")
        print()
        print("| model | precision | `bench` img/s | `classify` img/s | classify / bench | bound | classify / bound |")
        print("|---|---|---|---|---|---|---|")
        for (label, precision), runs in results.items():
            best_b = max(b for b, _ in runs)
            best_c = max(c for _, c in runs)
            bound = 1 / (1 / best_b + 1 / free_best)
            ratio = statistics.median(c / b for b, c in runs)
            print(f"| {label} | {precision} | {best_b:.2f} | {best_c:.2f} | {100 * ratio:.0f}% | {bound:.1f} | "
                  f"{100 * best_c / bound:.0f}% |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
