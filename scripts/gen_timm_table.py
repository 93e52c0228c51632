#!/usr/bin/env python3
"""Writes core/data/timm_architectures.json from timm's own model registry.

timm's config.json names the architecture (e.g. "vit_huge_patch14_224") but not the number of
heads, the LayerNorm eps or the activation: those live in the model's constructor arguments.
Typing a few of them in would guess the rest, so this script builds every architecture of
the ViT families (with one block, so vit_gigantic takes a second, not a minute) and reads the
facts off the module itself. Rerun it when timm changes:

    /work/timm-venv/bin/python scripts/gen_timm_table.py core/data/timm_architectures.json

The C++ loader (core/src/timm_table.cpp) reads the facts; which ones it can run is decided
there, so the table records what timm builds, also for what vitbatch refuses.
"""
import json
import sys
import warnings

import timm
import torch

warnings.filterwarnings("ignore")

MODULES = ["vision_transformer", "deit", "eva", "beit"]


def class_name(m):
    return type(m).__name__


def activation(mlp):
    act = getattr(mlp, "act", None)
    if act is None:
        return None
    name = class_name(act)
    if name == "GELU":
        return "gelu_tanh" if getattr(act, "approximate", "none") == "tanh" else "gelu"
    return {"QuickGELU": "quick_gelu", "SiLU": "silu", "GELUTanh": "gelu_tanh", "ReLU": "relu"}.get(name, name)


def norm_facts(norm):
    if class_name(norm) == "Identity":
        return None
    return {"kind": class_name(norm), "eps": float(getattr(norm, "eps", 0.0))}


def describe(name):
    model = timm.create_model(name, pretrained=False, depth=1)
    model.eval()
    block = model.blocks[0]
    attn = block.attn
    facts = {
        "class": class_name(model),
        "block": class_name(block),
        "attention": class_name(attn),
        "mlp": class_name(block.mlp),
        "act": activation(block.mlp),
        "gate_last": bool(getattr(block.mlp, "gate_last", False)),
        "heads": int(attn.num_heads),
        "head_dim": int(getattr(attn, "head_dim", 0) or 0),
        "dim": int(model.embed_dim),
        "norm": norm_facts(block.norm1),
        "patch_embed": class_name(model.patch_embed),
        "img_size": list(model.patch_embed.img_size),
        "patch_size": list(model.patch_embed.patch_size),
        "global_pool": getattr(model, "global_pool", None),
        "num_prefix_tokens": int(getattr(model, "num_prefix_tokens", 1)),
        "num_reg_tokens": int(getattr(model, "num_reg_tokens", 0) or 0),
        "no_embed_class": bool(getattr(model, "no_embed_class", False)),
        "pool_include_prefix": bool(getattr(model, "pool_include_prefix", False)),
        "dynamic_img_size": bool(getattr(model, "dynamic_img_size", False)),
    }
    scale = getattr(attn, "scale", None)
    if facts["head_dim"] and scale is not None:
        facts["attn_scale"] = float(scale)
    if hasattr(model, "attn_pool") and model.attn_pool is not None:
        pool = model.attn_pool
        facts["attn_pool"] = {"class": class_name(pool), "heads": int(getattr(pool, "num_heads", 0)),
                              "latent_len": int(getattr(pool, "latent_len", 1)),
                              "pool": getattr(pool, "pool", None),
                              "pos_embed": getattr(pool, "pos_embed", None) is not None,
                              "mlp_act": activation(pool.mlp) if hasattr(pool, "mlp") else None,
                              "norm": norm_facts(pool.norm) if hasattr(pool, "norm") else None}
    rope = getattr(model, "rope", None)
    if rope is not None:
        def plain(v):
            return list(v) if isinstance(v, (tuple, list)) else v
        facts["rope"] = {"class": class_name(rope), "in_pixels": bool(getattr(rope, "in_pixels", True)),
                         "ref_feat_shape": plain(getattr(rope, "ref_feat_shape", None)),
                         "temperature": float(getattr(rope, "temperature", 10000.0)),
                         "grid_offset": float(getattr(rope, "grid_offset", 0.0)),
                         "grid_indexing": getattr(rope, "grid_indexing", "ij"),
                         "grid_type": getattr(rope, "grid_type", None),
                         "linear_bands": bool(getattr(rope, "linear_bands", False)),
                         "rotate_half": bool(getattr(attn, "rotate_half", False))}
    cfg = model.pretrained_cfg or {}
    facts["test_input_size"] = cfg.get("test_input_size")
    return facts


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "core/data/timm_architectures.json"
    names = sorted({n for m in MODULES for n in timm.list_models(module=m)})
    table = {}
    for i, name in enumerate(names):
        try:
            with torch.no_grad():
                table[name] = describe(name)
        except Exception as e:  # recorded, so the loader can say why it refuses
            table[name] = {"error": f"{type(e).__name__}: {e}"[:200]}
        print(f"[{i + 1}/{len(names)}] {name}", file=sys.stderr)
    doc = {"generated_by": "scripts/gen_timm_table.py", "timm_version": timm.__version__,
           "torch_version": torch.__version__, "architectures": table}
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=0, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
