#!/usr/bin/env python3
"""How much of int8's top-1 disagreement with fp32 the weights alone cause: timm's ViT-Ti
with its real weights, every linear's weight quantised per output channel to symmetric s8
(as vitbatch's onednn backend does) and dequantised, activations left in float, against
the fp32 model, on photos made by bench/augment_photos.py.

    .venv-timm/bin/python bench/int8_weights_only.py [--count 200] [--seed 1]
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

from int8_schemes import quantised_weight, ti_model

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=os.path.join(HERE, "..", "..", "shared"))
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    fp32, quantised = ti_model(args.shared), ti_model(args.shared)
    for module in quantised.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            module.weight.data = quantised_weight(module.weight.data)
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=fp32))
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, os.path.join(HERE, "augment_photos.py"), "--shared", args.shared, "--count",
                        str(args.count), "--seed", str(args.seed), tmp], check=True)
        x = torch.stack([transform(Image.open(os.path.join(tmp, f)).convert("RGB")) for f in sorted(os.listdir(tmp))])
    with torch.no_grad():
        a, b = fp32(x).argmax(1), quantised(x).argmax(1)
    same = int((a == b).sum())
    print(f"int8 weights (per output channel), float activations: top-1 as fp32 on {same}/{len(a)} = "
          f"{100 * same / len(a):.1f}% of the photos")


if __name__ == "__main__":
    main()
