"""Writes ViT-Ti/S/B checkpoints with timm's initialisation (trunc-normal std 0.02 weights,
zero biases, LayerNorm 1/0; the scheme timm.create_model(..., pretrained=False) uses), laid out
as timm's safetensors + config.json. For benchmarks: realistic activations, no download.
"free" is a near-free model (one block of width 64, one head; ViT-B's preprocessing): what
`classify` reaches with it is what decoding and preprocessing alone allow on that host.

usage: python3 gpu_models.py OUT_DIR [tiny small base free]
"""
import json
import os
import struct
import sys

import numpy as np

# name: (width, heads, blocks)
SIZES = {"tiny": (192, 3, 12), "small": (384, 6, 12), "base": (768, 12, 12), "free": (64, 1, 1)}


def trunc_normal(rng, shape, std=0.02):
    x = rng.standard_normal(size=shape).astype(np.float32) * std
    return np.clip(x, -2 * std, 2 * std)


def state(dim, depth=12, patch=16, image=224, classes=1000, seed=0):
    rng = np.random.default_rng(seed)
    t = {}
    grid = (image // patch) ** 2
    t["cls_token"] = (rng.standard_normal((1, 1, dim)) * 1e-6).astype(np.float32)
    t["pos_embed"] = trunc_normal(rng, (1, grid + 1, dim))
    t["patch_embed.proj.weight"] = trunc_normal(rng, (dim, 3, patch, patch))
    t["patch_embed.proj.bias"] = np.zeros(dim, np.float32)
    for i in range(depth):
        b = f"blocks.{i}."
        for norm in ("norm1", "norm2"):
            t[b + norm + ".weight"] = np.ones(dim, np.float32)
            t[b + norm + ".bias"] = np.zeros(dim, np.float32)
        for name, (rows, cols) in {"attn.qkv": (3 * dim, dim), "attn.proj": (dim, dim),
                                   "mlp.fc1": (4 * dim, dim), "mlp.fc2": (dim, 4 * dim)}.items():
            t[b + name + ".weight"] = trunc_normal(rng, (rows, cols))
            t[b + name + ".bias"] = np.zeros(rows, np.float32)
    t["norm.weight"] = np.ones(dim, np.float32)
    t["norm.bias"] = np.zeros(dim, np.float32)
    t["head.weight"] = trunc_normal(rng, (classes, dim))
    t["head.bias"] = np.zeros(classes, np.float32)
    return t


def write_safetensors(path, tensors):
    header, offset = {}, 0
    for name, a in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for a in tensors.values():
            f.write(np.ascontiguousarray(a).tobytes())


def main():
    out = sys.argv[1]
    for size in sys.argv[2:] or ["small", "base"]:
        dim, heads, depth = SIZES[size]
        d = os.path.join(out, f"vit_{size}_patch16_224")
        os.makedirs(d, exist_ok=True)
        write_safetensors(os.path.join(d, "model.safetensors"), state(dim, depth))
        # timm's registry knows the three sizes' heads; the near-free one says its own
        arch = {"architecture": "synthetic", "num_heads": heads} if size == "free" else \
            {"architecture": f"vit_{size}_patch16_224"}
        cfg = {**arch, "num_classes": 1000, "num_features": dim,
               "global_pool": "token",
               "pretrained_cfg": {"input_size": [3, 224, 224], "interpolation": "bicubic", "crop_pct": 0.9,
                                  "crop_mode": "center", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                                  "num_classes": 1000}}
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        print(d)


if __name__ == "__main__":
    main()
