#!/usr/bin/env python3
"""Which int8 scheme keeps ViT-Ti's top-1: a simulation in PyTorch (timm's model, the real
weights) of the schemes vitbatch's int8 could use, each scored by top-1 agreement with fp32
on photos made by bench/augment_photos.py, calibrated on a disjoint set (another seed).

Every quantised linear gets symmetric s8 weights per output channel (as the onednn backend);
its input is fake-quantised to u8 by one of:
  tensor  one scale per tensor from the calibrated percentile range (vitbatch, but for fc2);
  token   a scale per row (token) above the calibrated floor, x ~ s[m] * q + lo: independent
          of batch-mates (vitbatch does it for fc2 only, in an epilogue of its own: oneDNN
          2.6's brgemm matmul has no per-row post-op);
  smooth  SmoothQuant: the input divided per channel by c = max|x|^a / max|w|^(1-a), the
          weights multiplied by it, then per tensor.
  mixed   what vitbatch does now: per tensor, except fc2's input per token above its floor.
The attention and everything outside the linears stay in float (vitbatch runs them in bf16
or fp32), so the figures isolate the linears.

--sites: where the mixed scheme loses its agreement instead (every weight in int8, the
activations quantised at one kind of linear only; the weights alone, with and without
fc2's), and the mixed scheme with SmoothQuant on the linears a LayerNorm feeds (qkv, fc1),
whose c could be folded into that LayerNorm's weight and bias at no cost at run time.

    .venv-timm/bin/python bench/int8_schemes.py [--eval 400] [--calibration 64] [--sites]
    (about 8 minutes; --sites about 10, 20 at --eval 800)
"""
import argparse
import os
import subprocess
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")

from timm_quiet import timm
import torch
from PIL import Image
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
TI = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"


def ti_model(shared):
    """timm's ViT-Ti/16 with the real weights from ../shared, in eval mode."""
    m = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    m.load_state_dict(load_file(os.path.join(shared, "models", TI, "model.safetensors")))
    return m.eval()


def quantised_weight(w):
    """Symmetric s8 per output channel, as the onednn backend quantises weights, dequantised."""
    flat = w.reshape(w.shape[0], -1)
    scale = flat.abs().amax(1, keepdim=True).clamp(min=1e-12) / 127
    return (torch.clamp(torch.round(flat / scale), -127, 127) * scale).reshape(w.shape)


def per_tensor(x, lo, hi):
    """vitbatch's u8: the range widened to hold 0, zero point rounded, round half up."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    s = (hi - lo) / 255 if hi > lo else 1.0
    z = max(0, min(255, round(-lo / s)))
    return (torch.clamp(torch.floor(x / s + z + 0.5), 0, 255) - z) * s


def per_token(x, lo):
    shifted = (x - lo).clamp(min=0)
    s = shifted.amax(-1, keepdim=True).clamp(min=1e-6) / 255
    return torch.clamp(torch.floor(shifted / s + 0.5), 0, 255) * s + lo


def percentile_range(v, p=99.999):
    k = max(1, int(round(v.numel() * (1 - p / 100))))
    return -torch.topk(-v, k).values[-1].item(), torch.topk(v, k).values[-1].item()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=os.path.join(HERE, "..", "..", "shared"))
    parser.add_argument("--eval", type=int, default=400)
    parser.add_argument("--calibration", type=int, default=64)
    parser.add_argument("--sites", action="store_true", help="where the mixed scheme loses agreement (see above)")
    args = parser.parse_args()

    def model():
        return ti_model(args.shared)

    fp32 = model()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=fp32))
    with tempfile.TemporaryDirectory() as tmp:
        sets = {}
        for name, count, seed in (("calibration", args.calibration, 1), ("eval", args.eval, 2)):
            out = os.path.join(tmp, name)
            subprocess.run([sys.executable, os.path.join(HERE, "augment_photos.py"), "--shared", args.shared,
                            "--count", str(count), "--seed", str(seed), out], check=True, stdout=subprocess.DEVNULL)
            sets[name] = torch.stack([transform(Image.open(os.path.join(out, f)).convert("RGB"))
                                      for f in sorted(os.listdir(out))])
    linears = {n: m for n, m in fp32.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}
    inputs = {}
    hooks = [m.register_forward_pre_hook(lambda mod, inp, n=n: inputs.setdefault(n, []).append(inp[0].detach()))
             for n, m in linears.items()]
    with torch.no_grad():
        fp32(sets["calibration"])
        reference = fp32(sets["eval"]).argmax(1)
    for h in hooks:
        h.remove()

    def agreement(scheme, keep_float=("mlp.fc2",), alpha=0.5, quantise_at=None, smooth_at=None):
        """quantise_at: name endings of the linears whose input is quantised (None: all);
        smooth_at (mixed only): those that get SmoothQuant with `alpha`."""
        m = model()
        for n, mod in m.named_modules():
            if n not in linears or any(n.endswith(k) for k in keep_float):
                continue
            x = torch.cat([t.flatten() if isinstance(mod, torch.nn.Conv2d) else t.reshape(-1, t.shape[-1])
                           for t in inputs[n]])
            w = mod.weight.data
            smooth = scheme == "smooth" or (smooth_at is not None and any(n.endswith(k) for k in smooth_at))
            if smooth and isinstance(mod, torch.nn.Linear):
                c = (x.abs().amax(0).clamp(min=1e-5) ** alpha / w.abs().amax(0).clamp(min=1e-5) ** (1 - alpha))
                mod.weight.data = quantised_weight(w * c)
                lo, hi = percentile_range((x / c).flatten())
                mod.register_forward_pre_hook(lambda _, inp, lo=lo, hi=hi, c=c: (per_tensor(inp[0] / c, lo, hi),))
                continue
            mod.weight.data = quantised_weight(w)
            if scheme == "weights" or (quantise_at is not None and not any(n.endswith(k) for k in quantise_at)):
                continue
            lo, hi = percentile_range(x.flatten())
            per_row = scheme == "token" or (scheme == "mixed" and n.endswith("mlp.fc2"))
            if per_row and isinstance(mod, torch.nn.Linear):
                mod.register_forward_pre_hook(lambda _, inp, lo=min(lo, 0.0): (per_token(inp[0], lo),))
            else:  # per tensor (the patch embedding always: its input is the normalised image)
                mod.register_forward_pre_hook(lambda _, inp, lo=lo, hi=hi: (per_tensor(inp[0], lo, hi),))
        with torch.no_grad():
            same = (m(sets["eval"]).argmax(1) == reference).sum().item()
        return f"{same}/{len(reference)} = {100 * same / len(reference):.2f}%"

    header = (f"ViT-Ti/16 (real weights), top-1 agreement with fp32 on {args.eval} photos (augment seed 2), "
              f"calibrated on {args.calibration} others (seed 1)")
    if args.sites:
        print(f"{header}; every weight in int8 unless a line says otherwise:")
        print(f"  weights only: {agreement('weights', ())}", flush=True)
        print(f"  weights only, fc2's left in float: {agreement('weights', ('mlp.fc2',))}", flush=True)
        print(f"  mixed (vitbatch's scheme): {agreement('mixed', ())}", flush=True)
        for site in ("patch_embed.proj", "attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "head"):
            print(f"  mixed, activations quantised at {site} only: {agreement('mixed', (), quantise_at=(site,))}",
                  flush=True)
        for alpha in (0.4, 0.5, 0.6):
            print(f"  mixed, SmoothQuant a={alpha} on attn.qkv and mlp.fc1: "
                  f"{agreement('mixed', (), alpha, smooth_at=('attn.qkv', 'mlp.fc1'))}", flush=True)
        return

    print(f"{header}:")
    for label, scheme, keep, alpha in (
            ("int8 weights only, float activations", "weights", (), 0.5),
            ("per tensor, fc2 kept in float (calibrate --keep-float mlp.fc2)", "tensor", ("mlp.fc2",), 0.5),
            ("per tensor, fc2 too (calibrate --keep-float none)", "tensor", (), 0.5),
            ("per token, fc2 kept in float", "token", ("mlp.fc2",), 0.5),
            ("per token, fc2 too", "token", (), 0.5),
            ("SmoothQuant a=0.5, fc2 kept in float", "smooth", ("mlp.fc2",), 0.5),
            ("SmoothQuant a=0.8, fc2 too", "smooth", (), 0.8)):
        print(f"  {label}: {agreement(scheme, keep, alpha)}", flush=True)


if __name__ == "__main__":
    main()
