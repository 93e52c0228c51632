"""Makes a tree of real files covering every input edge case vitbatch must survive, and a
small synthetic model to classify them quickly. Used by test_streaming.py; run it directly to
make a tree by hand:  python3 edge_cases.py OUT_DIR [N_GOOD]"""

import io
import json
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

import vitref

IMAGE = 32  # the synthetic model's input size


def small_model(root, seed=1):
    """A ViT on 32x32 inputs with 10 classes (milliseconds per image), and its labels file."""
    folder = os.path.join(root, "model")
    os.makedirs(folder, exist_ok=True)
    sd = vitref.random_timm_state(seed, image=IMAGE, patch=8, dim=48, depth=2, mlp=96, classes=10)
    vitref.write_safetensors(os.path.join(folder, "model.safetensors"), sd)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"num_heads": 3, "pretrained_cfg": {"input_size": [3, IMAGE, IMAGE], "crop_pct": 0.875,
                                                      "interpolation": "bicubic", "mean": [0.5] * 3, "std": [0.5] * 3}}, f)
    labels = os.path.join(root, "labels.txt")
    with open(labels, "w") as f:
        f.write("".join(f"class {i}\n" for i in range(10)))
    return folder, labels


def png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_16bit_rgb(h, w, rng, interlace=False):
    rows = b"".join(b"\0" + rng.integers(0, 65536, (w, 3)).astype(">u2").tobytes() for _ in range(h))
    if interlace:  # Adam7 with raw rows per pass (filter 0)
        a = rng.integers(0, 65536, (h, w, 3)).astype(">u2")
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        rows = b"".join(b"".join(b"\0" + r.tobytes() for r in a[y0::dy, x0::dx])
                        for x0, y0, dx, dy in passes if a[y0::dy, x0::dx].size)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, int(interlace)))
            + png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b""))


def png_bomb_header(w, h):
    """A valid PNG start claiming a huge image: must be refused before decoding."""
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))


def encode(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


def good_image(i, rng):
    """A real image in one of many encodings; sizes vary from 5x5 to 300x200."""
    w, h = int(rng.integers(5, 300)), int(rng.integers(5, 200))
    rgb = Image.fromarray(rng.integers(0, 256, (h, w, 3)).astype(np.uint8))
    kind = i % 10
    if kind == 0:
        return ".jpg", encode(rgb, "JPEG", quality=90)
    if kind == 1:
        return ".JPEG", encode(rgb, "JPEG", quality=80, progressive=True)
    if kind == 2:
        return ".jpg", encode(rgb.convert("L"), "JPEG")
    if kind == 3:
        return ".jpg", encode(rgb.convert("CMYK"), "JPEG")
    if kind == 4:
        return ".png", encode(rgb, "PNG")
    if kind == 5:
        return ".PNG", encode(rgb.convert("RGBA"), "PNG")
    if kind == 6:
        return ".png", encode(rgb.convert("P"), "PNG", transparency=3)
    if kind == 7:
        return ".png", png_16bit_rgb(h, w, rng, interlace=i % 20 == 7)
    if kind == 8:
        return ".png", encode(rgb.convert("LA"), "PNG")
    return ".jpg", encode(rgb, "JPEG", subsampling=2)


def make_tree(root, n_good=1900, seed=0):
    """Writes the tree; returns {path: None for a good image, or a substring of its error}."""
    rng = np.random.default_rng(seed)
    expected = {}

    def put(rel, data, reason=None):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        expected[path] = reason
        return path

    for i in range(n_good):
        ext, data = good_image(i, rng)
        put(f"good/{i // 100:02d}/img{i:05d}{ext}", data)
    strip = Image.fromarray(rng.integers(0, 256, (20000, 1, 3)).astype(np.uint8))
    put("edge/strip_1x20000.png", encode(strip, "PNG"))
    put("edge/strip_20000x1.png", encode(strip.transpose(Image.Transpose.TRANSPOSE), "PNG"))
    put("edge/tiny_1x1.png", encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"))
    exif = Image.Exif()
    exif[0x0112] = 6
    put("edge/rotated_exif6.jpg", encode(Image.fromarray(rng.integers(0, 256, (40, 60, 3)).astype(np.uint8)), "JPEG",
                                         exif=exif.tobytes()))
    with open(os.path.join(vitref.IMAGES_DIR, "dog.jpg"), "rb") as f:
        photo = f.read()
    put("bad/zero_bytes.jpg", b"", "empty file")
    put("bad/text_named.png", b"this is not an image\n" * 10, "not an image vitbatch reads")
    put("bad/html_named.jpg", b"<html><body>404</body></html>", "not an image vitbatch reads")
    put("bad/truncated.jpg", photo[: len(photo) // 3], "Premature end of JPEG file")
    put("bad/corrupt_middle.jpg", photo[:2000] + b"\x00" * 4000 + photo[6000:], "corrupt JPEG")
    png = encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)), "PNG")
    put("bad/truncated.png", png[: len(png) // 2], "corrupt PNG")
    put("bad/bad_crc.png", png[:40] + bytes([png[40] ^ 0xFF]) + png[41:], "corrupt PNG")
    put("bad/bomb.png", png_bomb_header(30000, 30000), "over the limit of 178956970")
    unreadable = put("bad/unreadable.png", png, None if os.geteuid() == 0 else "Permission denied")
    os.chmod(unreadable, 0)
    os.symlink("does_not_exist.jpg", os.path.join(root, "bad/broken_link.jpg"))
    expected[os.path.join(root, "bad/broken_link.jpg")] = "No such file or directory"
    os.symlink("loop_b.jpg", os.path.join(root, "bad/loop_a.jpg"))
    os.symlink("loop_a.jpg", os.path.join(root, "bad/loop_b.jpg"))
    expected[os.path.join(root, "bad/loop_a.jpg")] = "Too many levels of symbolic links"
    expected[os.path.join(root, "bad/loop_b.jpg")] = "Too many levels of symbolic links"
    os.mkfifo(os.path.join(root, "bad/fifo.jpg"))
    expected[os.path.join(root, "bad/fifo.jpg")] = "not a regular file"
    os.symlink("..", os.path.join(root, "bad/dir_loop"))  # a directory symlink loop: walked once
    small = encode(Image.fromarray(rng.integers(0, 256, (30, 30, 3)).astype(np.uint8)), "PNG")
    for name in ["with space.png", "with,comma.png", 'with"quote.png', "with\nnewline.png", "caf\u00e9.png"]:
        put("names/" + name, small)
    raw = os.path.join(os.fsencode(root), b"names", b"latin1_\xe9\xff.png")
    with open(raw, "wb") as f:
        f.write(small)
    expected[os.fsdecode(raw)] = None
    return expected


if __name__ == "__main__":
    tree = make_tree(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1900)
    print(f"{len(tree)} inputs, {sum(r is not None for r in tree.values())} bad")
