#!/usr/bin/env python3
"""Makes N distinct photos from the shared ones by random crops, flips, rescales and small
colour changes, for int8 calibration and agreement checks (no image is committed).

    /usr/bin/python3 bench/augment_photos.py --shared ../shared --count 500 --seed 1 OUT_DIR

Different seeds give disjoint sets (each image's crop box, scale and flips are drawn anew),
so calibrating on one seed and measuring agreement on another keeps the two apart."""

import argparse
import os
import random

from PIL import Image, ImageEnhance


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--shared", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    folder = os.path.join(args.shared, "images")
    sources = []
    for name in sorted(os.listdir(folder)):
        try:
            with Image.open(os.path.join(folder, name)) as im:
                sources.append((name, im.convert("RGB")))
        except Exception:  # the truncated JPEG, the README
            continue
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    for i in range(args.count):
        name, im = sources[i % len(sources)]
        w, h = im.size
        frac = rng.uniform(0.45, 1.0)  # the crop's side, as a fraction of the image's
        cw, ch = max(32, int(w * frac * rng.uniform(0.85, 1.15))), max(32, int(h * frac))
        cw, ch = min(cw, w), min(ch, h)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        out = im.crop((x, y, x + cw, y + ch))
        scale = rng.uniform(0.5, 1.5)
        out = out.resize((max(32, int(cw * scale)), max(32, int(ch * scale))), Image.BICUBIC)
        if rng.random() < 0.5:
            out = out.transpose(Image.FLIP_LEFT_RIGHT)
        out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.8, 1.2))
        out = ImageEnhance.Color(out).enhance(rng.uniform(0.8, 1.2))
        stem = os.path.splitext(name)[0]
        out.save(os.path.join(args.out, f"{i:05d}_{stem}.jpg"), quality=rng.randint(80, 95))


if __name__ == "__main__":
    main()
