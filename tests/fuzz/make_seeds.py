"""Writes the seed corpora of the fuzz harnesses into OUT/<harness>/: small valid inputs of
every kind each parser takes (images of every mode of every format, a tiny checkpoint,
configs, outputs to resume, stdin path lists). Generated rather than committed, so the
repository holds no image or weight files; tests/fuzz/seeds/ holds the hand-written text
seeds that are copied in as they are.

    /usr/bin/python3 tests/fuzz/make_seeds.py OUT"""

import io
import json
import os
import shutil
import struct
import sys

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def images():
    rng = np.random.default_rng(3)
    rgb = Image.fromarray(rng.integers(0, 256, (9, 13, 3)).astype(np.uint8))
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(rng.integers(0, 256, (9, 13)).astype(np.uint8)))
    modes = {"RGB": rgb, "RGBA": rgba, "L": rgb.convert("L"), "P": rgb.convert("P"), "1": rgb.convert("1"),
             "CMYK": rgb.convert("CMYK"), "LA": rgb.convert("LA"),
             "I;16": Image.fromarray((np.asarray(rgb.convert("L")).astype(np.uint16) * 300), "I;16")}
    out = {"jpeg": [], "png": [], "webp": [], "tiff": [], "gif": [], "bmp": []}

    def save(fmt, im, **kw):
        buf = io.BytesIO()
        im.save(buf, {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "tiff": "TIFF", "gif": "GIF", "bmp": "BMP"}[fmt], **kw)
        out[fmt].append(buf.getvalue())

    for mode in ("RGB", "L", "CMYK"):
        save("jpeg", modes[mode], quality=80)
    save("jpeg", rgb, progressive=True)
    for mode in ("RGB", "RGBA", "L", "P", "1", "LA", "I;16"):
        save("png", modes[mode])
    for kw in ({"quality": 50}, {"lossless": True}):
        save("webp", rgb, **kw)
        save("webp", rgba, **kw)
    for mode in ("RGB", "RGBA", "L", "P", "1", "CMYK", "I;16"):
        save("tiff", modes[mode])
    save("tiff", rgb, compression="tiff_lzw")
    save("tiff", modes["1"], compression="group4")
    for mode in ("RGB", "L", "P"):
        save("gif", modes[mode])
    save("gif", modes["P"], transparency=2, interlace=True)
    for mode in ("RGB", "RGBA", "L", "P", "1"):
        save("bmp", modes[mode])
    return out


def checkpoint():
    header, blobs, offset = {}, [], 0
    shapes = {"patch_embed.proj.weight": [8, 3, 8, 8], "patch_embed.proj.bias": [8], "cls_token": [1, 1, 8],
              "pos_embed": [1, 5, 8], "head.weight": [2, 8], "head.bias": [2]}
    for name, shape in shapes.items():
        raw = np.full(shape, 0.01, np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    f16 = {"w": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}
    h16 = json.dumps(f16).encode()
    return [struct.pack("<Q", len(h)) + h + b"".join(blobs), struct.pack("<Q", len(h16)) + h16 + b"\x00\x3c\x00\xbc"]


def archives(pictures):
    """WebDataset-like shards (an image, .cls and .json per key; a sample with no image; a lone
    text file), plain, gzip and xz."""
    import tarfile

    def member(tar, name, data):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    out = []
    for mode in ("w", "w:gz", "w:xz"):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode=mode) as tar:
            member(tar, "000000.png", pictures["png"][0])
            member(tar, "000000.cls", b"3")
            member(tar, "000001.jpg", pictures["jpeg"][0])
            member(tar, "000001.json", b"{}")
            member(tar, "000002.cls", b"1")
            member(tar, "000002.txt", b"no image")
            member(tar, "dir/notes.txt", b"x")
        out.append(buf.getvalue())
    return out


def main(out):
    pictures = images()
    corpora = {f"decode_{fmt}": blobs for fmt, blobs in pictures.items()}
    corpora["archive"] = archives(pictures)
    corpora["safetensors"] = checkpoint()
    for harness, blobs in corpora.items():
        os.makedirs(os.path.join(out, harness), exist_ok=True)
        for i, blob in enumerate(blobs):
            with open(os.path.join(out, harness, f"seed{i:02d}"), "wb") as f:
                f.write(blob)
    for harness in os.listdir(os.path.join(HERE, "seeds")):
        dst = os.path.join(out, harness)
        os.makedirs(dst, exist_ok=True)
        for name in os.listdir(os.path.join(HERE, "seeds", harness)):
            shutil.copy(os.path.join(HERE, "seeds", harness, name), dst)


if __name__ == "__main__":
    main(sys.argv[1])
