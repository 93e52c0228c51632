#!/usr/bin/env python3
"""The ViT variants of issue 9 against plain ViT of the same width, depth and token count.

    bash bench/side_by_side.sh --families [--seconds 5] [--rounds 2]

Each pair is built by timm 1.0.31 itself (timm.create_model(..., pretrained=False): timm's own
initialisation, so activations stay realistic) and written as safetensors + config.json as
timm's hub writes it. `vitbatch bench` runs each model on onednn fp32 with 2 threads; the two
models of a pair alternate, rounds times, and the best and median of each are reported with
the ratio of the bests. Run on a quiet machine (check `uptime`); name the CPU (`lscpu`) with
every figure.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")

import torch
from timm_quiet import timm
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
VITBATCH = os.path.join(HERE, "..", "build", "bin", "vitbatch")

# (label, variant: name + overrides, plain twin: name + overrides, batch)
PAIRS = [
    ("DeiT-III-S/16 (no_embed_class, layer scale)", ("deit3_small_patch16_224", {}),
     ("vit_small_patch16_224", {}), 16),
    ("DINOv2-S/14 at 518, embedder (layer scale, no head)", ("vit_small_patch14_dinov2", {}),
     ("vit_small_patch16_224", {"img_size": 518, "patch_size": 14, "num_classes": 0}), 2),
    ("ViT-M/16 gap at 256 (no class token, avg pool, layer scale, no qkv bias)", ("vit_medium_patch16_gap_256", {}),
     ("vit_small_patch16_224", {"embed_dim": 512, "num_heads": 8, "img_size": 256}), 16),
    ("BEiT-B/16 (relative position bias)", ("beit_base_patch16_224", {}),
     ("vit_base_patch16_224", {}), 4),
    ("EVA-02-S/14 at 224 (rotary embedding, SwiGLU packed)", ("eva02_small_patch14_224", {}),
     ("vit_small_patch16_224", {"img_size": 224, "patch_size": 14}), 8),
]


def write(folder, name, overrides):
    model = timm.create_model(name, pretrained=False, **overrides).eval()
    os.makedirs(folder)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(folder, "model.safetensors"))
    config = {"num_classes": model.num_classes, "global_pool": model.global_pool,
              "pretrained_cfg": {"input_size": [3, model.patch_embed.img_size[0], model.patch_embed.img_size[0]]}}
    if overrides:  # no longer the registry's architecture: say the heads instead
        config["num_heads"] = model.blocks[0].attn.num_heads
    else:
        config["architecture"] = name
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    return sum(p.numel() for p in model.parameters())


def bench(folder, batch, seconds):
    r = subprocess.run([VITBATCH, "bench", "--model", folder, "--backend", "onednn", "--threads", "2",
                        "--batch-size", str(batch), "--seconds", str(seconds), "--json"],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)["images_per_second"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", default="", help="run the pairs whose label contains this")
    args = ap.parse_args()
    print(subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout.strip())
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, (vname, vover), (pname, pover), batch) in enumerate(PAIRS):
            if args.only not in label:
                continue
            variant, plain = os.path.join(tmp, f"{i}v"), os.path.join(tmp, f"{i}p")
            write(variant, vname, vover)
            write(plain, pname, pover)
            rates = {"variant": [], "plain": []}
            for _ in range(args.rounds):
                rates["variant"].append(bench(variant, batch, args.seconds))
                rates["plain"].append(bench(plain, batch, args.seconds))
            v, p = max(rates["variant"]), max(rates["plain"])
            print(f"{label}, batch {batch}: variant best {v:.2f} median {statistics.median(rates['variant']):.2f} img/s; "
                  f"plain best {p:.2f} median {statistics.median(rates['plain']):.2f} img/s; variant/plain {v / p:.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
