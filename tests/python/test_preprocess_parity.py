"""Decoding and timm-eval preprocessing against Pillow + torchvision.

Decoding must equal Pillow's Image.open(...).convert("RGB") exactly, for the shared photos
and for generated files of every colour type; the resized-and-cropped image must equal
torchvision's on >= 99.9% of values and differ by at most 1 anywhere."""

import io
import os
import struct
import subprocess
import tempfile
import unittest
import zlib

import numpy as np
from PIL import Image, ImageOps

import vitref


def dump_decode(path, tmp, exif=False):
    out = os.path.join(tmp, "decoded.rgb")
    cmd = [vitref.DUMP, "decode", path, out] + (["exif"] if exif else [])
    wh = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    w, h = map(int, wh.split())
    return np.fromfile(out, dtype=np.uint8).reshape(h, w, 3)


def dump_crop(model, path, tmp):
    out = os.path.join(tmp, "crop.rgb")
    subprocess.run([vitref.DUMP, "crop", model, path, out], check=True)
    return np.fromfile(out, dtype=np.uint8)


def png_bytes(array, color_type, bit_depth, interlace=False, palette=None, trns=None):
    """A minimal PNG writer, so that 16-bit and interlaced files need no extra library."""
    h, w = array.shape[:2]
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    a = array.reshape(h, w, channels)

    def raw_rows(img):
        rows = []
        for row in img:
            if bit_depth == 16:
                rows.append(b"\0" + row.astype(">u2").tobytes())
            elif bit_depth == 8:
                rows.append(b"\0" + row.astype(np.uint8).tobytes())
            else:  # 1, 2 or 4 bits, one channel
                bits = np.unpackbits(row.astype(np.uint8).reshape(-1, 1), axis=1)[:, 8 - bit_depth:]
                rows.append(b"\0" + np.packbits(bits.reshape(-1)).tobytes())
        return b"".join(rows)

    if interlace:  # Adam7
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        data = b"".join(raw_rows(a[y0::dy, x0::dx]) for x0, y0, dx, dy in passes if a[y0::dy, x0::dx].size)
    else:
        data = raw_rows(a)

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, int(interlace)))
    if palette is not None:
        out += chunk(b"PLTE", palette.astype(np.uint8).tobytes())
    if trns is not None:
        out += chunk(b"tRNS", trns)
    return out + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b"")


class DecodeParity(unittest.TestCase):
    def assert_decodes_like_pillow(self, path):
        with tempfile.TemporaryDirectory() as tmp:
            got = dump_decode(path, tmp)
        expected = np.asarray(Image.open(path).convert("RGB"))
        self.assertEqual(got.shape, expected.shape, path)
        np.testing.assert_array_equal(got, expected, err_msg=path)

    def test_shared_photos(self):
        for p in vitref.photos():
            with self.subTest(p):
                self.assert_decodes_like_pillow(p)

    def test_generated_colour_types(self):
        g = np.random.default_rng(7)
        h, w = 37, 53
        rgb8 = g.integers(0, 256, (h, w, 3))
        cases = {
            "gray8": png_bytes(g.integers(0, 256, (h, w)), 0, 8),
            "gray1": png_bytes(g.integers(0, 2, (h, w)), 0, 1),
            "gray2": png_bytes(g.integers(0, 4, (h, w)), 0, 2),
            "gray4": png_bytes(g.integers(0, 16, (h, w)), 0, 4),
            "gray16": png_bytes(g.integers(0, 600, (h, w)), 0, 16),
            "gray_alpha8": png_bytes(g.integers(0, 256, (h, w, 2)), 4, 8),
            "gray_alpha16": png_bytes(g.integers(0, 65536, (h, w, 2)), 4, 16),
            "rgb8": png_bytes(rgb8, 2, 8),
            "rgb16": png_bytes(g.integers(0, 65536, (h, w, 3)), 2, 16),
            "rgba8": png_bytes(g.integers(0, 256, (h, w, 4)), 6, 8),
            "rgba16": png_bytes(g.integers(0, 65536, (h, w, 4)), 6, 16),
            "rgb8_interlaced": png_bytes(rgb8, 2, 8, interlace=True),
            "rgb16_interlaced": png_bytes(g.integers(0, 65536, (h, w, 3)), 2, 16, interlace=True),
            "palette8_trns": png_bytes(g.integers(0, 16, (h, w)), 3, 8, palette=g.integers(0, 256, (16, 3)),
                                       trns=bytes(range(0, 160, 10))),
            "palette4": png_bytes(g.integers(0, 16, (h, w)), 3, 4, palette=g.integers(0, 256, (16, 3))),
            "rgb8_trns": png_bytes(rgb8, 2, 8, trns=struct.pack(">HHH", 1, 2, 3)),
        }
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in cases.items():
                path = os.path.join(tmp, name + ".png")
                with open(path, "wb") as f:
                    f.write(data)
                with self.subTest(name):
                    self.assert_decodes_like_pillow(path)
            pil = Image.fromarray(rgb8.astype(np.uint8))
            jpegs = {
                "baseline.jpg": (pil, {"quality": 90}),
                "progressive.jpg": (pil, {"quality": 85, "progressive": True}),
                "gray.jpg": (pil.convert("L"), {}),
                "cmyk.jpg": (pil.convert("CMYK"), {"quality": 95}),
                "subsampled.jpg": (pil, {"subsampling": 2}),
            }
            for name, (img, kw) in jpegs.items():
                path = os.path.join(tmp, name)
                img.save(path, **kw)
                with self.subTest(name):
                    self.assert_decodes_like_pillow(path)


class ExifTranspose(unittest.TestCase):
    def test_every_orientation_matches_pillow_exif_transpose(self):
        g = np.random.default_rng(5)
        pil = Image.fromarray(g.integers(0, 256, (21, 34, 3)).astype(np.uint8))
        with tempfile.TemporaryDirectory() as tmp:
            for orientation in range(1, 9):
                exif = Image.Exif()
                exif[0x0112] = orientation
                for ext, kw in ((".jpg", {"quality": 95}), (".png", {})):
                    path = os.path.join(tmp, f"o{orientation}{ext}")
                    pil.save(path, exif=exif.tobytes(), **kw)
                    with self.subTest(path=os.path.basename(path)):
                        expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
                        got = dump_decode(path, tmp, exif=True)
                        self.assertEqual(got.shape, expected.shape)
                        np.testing.assert_array_equal(got, expected)
                        # Off by default: the stored pixels, as timm sees them.
                        np.testing.assert_array_equal(dump_decode(path, tmp), np.asarray(Image.open(path).convert("RGB")))


class CropParity(unittest.TestCase):
    def compare(self, model, path, crop):
        expected = np.asarray(crop(Image.open(path).convert("RGB"))).reshape(-1)
        with tempfile.TemporaryDirectory() as tmp:
            got = dump_crop(model, path, tmp)
        self.assertEqual(got.shape, expected.shape, path)
        diff = np.abs(got.astype(int) - expected.astype(int))
        equal = float((diff == 0).mean())
        print(f"{os.path.basename(path):24s} equal {equal * 100:.4f}%  max diff {diff.max()}")
        self.assertGreaterEqual(equal, 0.999, path)
        self.assertLessEqual(int(diff.max()), 1, path)

    def test_shared_photos(self):
        crop, _ = vitref.model_eval_transform(vitref.MODEL_DIR)
        for p in vitref.photos():
            with self.subTest(p):
                self.compare(vitref.MODEL_DIR, p, crop)

    def test_odd_sizes_and_small_images(self):
        # Odd margins exercise torchvision's round-half-even crop offset; tiny and extreme
        # aspect ratio images exercise upscaling and the long-side formula.
        crop, _ = vitref.model_eval_transform(vitref.MODEL_DIR)
        g = np.random.default_rng(3)
        with tempfile.TemporaryDirectory() as tmp:
            for w, h in [(301, 250), (250, 301), (10, 10), (7, 300), (1000, 3), (249, 248), (275, 248), (2, 2000),
                         (1500, 3)]:
                path = os.path.join(tmp, f"img_{w}x{h}.png")
                Image.fromarray(g.integers(0, 256, (h, w, 3)).astype(np.uint8)).save(path)
                with self.subTest(size=(w, h)):
                    self.compare(vitref.MODEL_DIR, path, crop)


if __name__ == "__main__":
    unittest.main(verbosity=2)
