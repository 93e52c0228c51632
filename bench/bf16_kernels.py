#!/usr/bin/env python3
"""vitbatch's bf16 on its two matmul kernels against its fp32, side by side in one run.

    bash bench/side_by_side.sh --bf16-kernels [--seconds 3] [--rounds 3]

The onednn backend runs bf16 matmuls on oneDNN's (option bf16_gemm=onednn) or on vitbatch's own
AVX512_BF16 kernel (bf16_gemm=own, backends/onednn/bf16_gemm.cpp); which is the default depends
on the CPU (README, "Backends"). This measures both beside fp32 on this CPU: ViT-Ti/16 (real
weights, ../shared) and ViT-S/16, ViT-B/16 as timm.create_model(..., pretrained=False) builds
them (timm's own initialisation), at batch 1 and 16, 2 threads, engines interleaved within each
round; each cell the best (and median) images/s over the rounds. And each engine's GEMM ceiling
(`vitbatch bench`'s linear 3152x768x3072, ViT-B's MLP at batch 16), the measure of issue 11's
bf16 target (>= 1.6x the fp32 ceiling).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from side_by_side import MODELS, TI_DIR_NAME, cpu_model

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
ENGINES = [("fp32", "fp32", None), ("bf16 oneDNN", "bf16", "onednn"), ("bf16 own", "bf16", "own")]


def cpu_flags():
    flags = open("/proc/cpuinfo").read()
    return ", ".join(f for f in ("avx512_bf16", "amx_bf16") if f in flags) or "no AVX512_BF16"


def model_folder(work, shared, arch, real):
    folder = os.path.join(work, arch)
    os.makedirs(folder, exist_ok=True)
    if real:
        for name in ("model.safetensors", "config.json"):
            os.symlink(os.path.abspath(os.path.join(shared, "models", TI_DIR_NAME, name)), os.path.join(folder, name))
        return folder
    from timm_quiet import timm
    import torch
    from safetensors.torch import save_file
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"architecture": arch, "num_classes": 1000}, f)
    return folder


def bench(vitbatch, folder, precision, kernel, batch, seconds):
    cmd = [vitbatch, "bench", "--model", folder, "--backend", "onednn", "--precision", precision, "--threads", "2",
           "--batch-size", str(batch), "--seconds", str(seconds), "--json"]
    if kernel:
        cmd.append(f"--backend-option=bf16_gemm={kernel}")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cell(values):
    return f"{max(values):.2f} ({statistics.median(values):.2f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    parser.add_argument("--shared", default=os.environ.get("VITBATCH_SHARED", os.path.join(ROOT, "..", "shared")))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--models", default="ViT-Ti/16,ViT-S/16,ViT-B/16")
    args = parser.parse_args()
    if "avx512_bf16" not in open("/proc/cpuinfo").read():
        raise SystemExit("bf16_kernels: this CPU has no AVX512_BF16, so no own bf16 kernel to measure")
    vitbatch = os.path.join(args.bin, "vitbatch")
    batches = [int(b) for b in args.batches.split(",")]
    load_before = os.getloadavg()[0]
    ips, ceiling = {}, {}
    with tempfile.TemporaryDirectory() as work:
        models = [(label, model_folder(work, args.shared, arch, real)) for label, arch, real in MODELS
                  if label in args.models.split(",")]
        for r in range(args.rounds):
            for label, folder in models:
                for batch in batches:
                    for name, precision, kernel in ENGINES:
                        out = bench(vitbatch, folder, precision, kernel, batch, args.seconds)
                        ips.setdefault((label, batch, name), []).append(out["images_per_second"])
                        ceiling.setdefault(name, []).append(out["gemm_gflops"])
                        print(f"round {r + 1}: {label} batch {batch} {name}: {out['images_per_second']:.2f} img/s, "
                              f"ceiling {out['gemm_gflops']:.0f} GFLOP/s", file=sys.stderr, flush=True)
    load_after = os.getloadavg()[0]
    print(f"CPU: {cpu_model()} ({cpu_flags()}), {os.cpu_count()} cores; onednn backend, 2 threads; load average "
          f"{load_before:.2f} before, {load_after:.2f} after; {args.rounds} rounds of {args.seconds:g} s per cell, "
          "engines interleaved.")
    print()
    print("Images/s, best of the rounds (median in brackets); ratios of the bests.")
    print()
    print("| model | batch | " + " | ".join(n for n, _, _ in ENGINES) + " | own / oneDNN bf16 | own bf16 / fp32 |")
    print("|---|---|" + "---|" * (len(ENGINES) + 2))
    for label, _ in models:
        for batch in batches:
            best = {n: max(ips[(label, batch, n)]) for n, _, _ in ENGINES}
            print(f"| {label} | {batch} | " + " | ".join(cell(ips[(label, batch, n)]) for n, _, _ in ENGINES) +
                  f" | {best['bf16 own'] / best['bf16 oneDNN']:.2f}x | {best['bf16 own'] / best['fp32']:.2f}x |")
    print()
    print("GEMM ceiling (linear 3152x768x3072), GFLOP/s, best of every run (median in brackets):")
    print()
    print("| " + " | ".join(n for n, _, _ in ENGINES) + " | own bf16 / fp32 | oneDNN bf16 / fp32 |")
    print("|" + "---|" * (len(ENGINES) + 2))
    best = {n: max(ceiling[n]) for n, _, _ in ENGINES}
    print("| " + " | ".join(f"{max(ceiling[n]):.0f} ({statistics.median(ceiling[n]):.0f})" for n, _, _ in ENGINES) +
          f" | {best['bf16 own'] / best['fp32']:.2f}x | {best['bf16 oneDNN'] / best['fp32']:.2f}x |")


if __name__ == "__main__":
    main()
