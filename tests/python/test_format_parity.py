"""Decoding of every format a user's folder holds, against Pillow's convert("RGB").

WebP, BMP, TIFF and GIF files of every mode Pillow writes (plus hand-made BMP/TIFF layouts
Pillow reads but does not write: 16-bit, bit fields, RLE, top-down, planar, tiled), and the
JPEG/PNG/EXIF cases that once decoded differently from Pillow: each must decode to exactly
Pillow's pixels, or be refused with a reason where Pillow refuses too."""

import io
import os
import shutil
import struct
import subprocess
import tempfile
import unittest

import numpy as np
from PIL import Image

import vitref
from test_preprocess_parity import dump_decode

RNG = np.random.default_rng(11)


def rgb_image(w=23, h=17):
    # Smooth content plus noise: lossy codecs keep it interesting, every value range is hit.
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(1, w - 1), y * 255 // max(1, h - 1), (x + y) * 255 // (w + h)], -1)
    return Image.fromarray(np.clip(base + RNG.integers(-40, 40, base.shape), 0, 255).astype(np.uint8))


def in_mode(mode):
    im = rgb_image()
    if mode in ("1", "L", "P", "RGB", "RGBA", "CMYK", "LA", "PA"):
        if mode == "RGBA":
            im = im.copy()
            im.putalpha(Image.fromarray(RNG.integers(0, 256, (im.height, im.width)).astype(np.uint8)))
            return im
        if mode == "PA":
            return im.convert("P").convert("PA")
        return im.convert(mode)
    a = np.asarray(im.convert("L")).astype(np.int64)
    if mode == "I;16":
        return Image.fromarray((a * 257 // 64).astype(np.uint16), "I;16")  # values 0..1027: some past 255
    if mode == "I":
        return Image.fromarray((a * 3 - 200).astype(np.int32), "I")
    if mode == "F":
        return Image.fromarray((a * 1.37 - 30.5).astype(np.float32), "F")
    raise ValueError(mode)


class FormatParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def assert_like_pillow(self, path):
        with Image.open(path) as im:
            expected = np.asarray(im.convert("RGB"))
        got = dump_decode(path, self.tmp)
        self.assertEqual(got.shape, expected.shape, path)
        np.testing.assert_array_equal(got, expected, err_msg=path)

    def save(self, im, name, **kw):
        path = os.path.join(self.tmp, name)
        im.save(path, **kw)
        return path

    def write(self, name, data):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_webp_every_mode(self):
        cases = {"lossy_rgb": (in_mode("RGB"), {"quality": 80}),
                 "lossy_rgba": (in_mode("RGBA"), {"quality": 70}),
                 "lossless_rgb": (in_mode("RGB"), {"lossless": True}),
                 "lossless_rgba": (in_mode("RGBA"), {"lossless": True, "exact": True}),
                 "gray_source": (in_mode("L"), {"quality": 90})}
        for name, (im, kw) in cases.items():
            with self.subTest(name):
                self.assert_like_pillow(self.save(im, name + ".webp", **kw))
        frames = [rgb_image(), rgb_image().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
        with self.subTest("animated: first frame"):
            self.assert_like_pillow(self.save(frames[0], "anim.webp", save_all=True, append_images=frames[1:],
                                              duration=100, lossless=True))

    def test_bmp_modes_pillow_writes(self):
        for mode in ("1", "L", "P", "RGB", "RGBA"):
            with self.subTest(mode):
                self.assert_like_pillow(self.save(in_mode(mode), f"m_{mode}.bmp"))

    def bmp(self, w, h, bits, rows, compression=0, palette=b"", masks=None, top_down=False, header=40):
        info = struct.pack("<iiHHIIiiII", w, -h if top_down else h, 1, bits, compression, len(rows), 2835, 2835,
                           len(palette) // 4, 0)
        if header == 108:  # V4: the four masks, then colour space fields Pillow does not read
            info += struct.pack("<IIII", *masks) + b"\0" * (104 - len(info) - 16)
        extra = struct.pack("<III", *masks[:3]) if masks and header == 40 else b""
        offset = 14 + 4 + len(info) + len(extra) + len(palette)
        head = b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset)
        return head + struct.pack("<I", 4 + len(info)) + info + extra + palette + rows

    def test_bmp_layouts_pillow_reads(self):
        w, h = 7, 5
        px16 = RNG.integers(0, 65536, (h, w)).astype("<u2")
        rows16 = b"".join(r.tobytes() + b"\0" * ((-2 * w) % 4) for r in px16)
        px32 = RNG.integers(0, 256, (h, w, 4)).astype(np.uint8)
        rows32 = b"".join(r.tobytes() for r in px32)
        palette = bytes(RNG.integers(0, 256, 4 * 16).astype(np.uint8))
        idx8 = RNG.integers(0, 20, (h, w)).astype(np.uint8)  # some indices past the 16-entry palette
        rows8 = b"".join(r.tobytes() + b"\0" * ((-w) % 4) for r in idx8)
        cases = {
            "bgr15": self.bmp(w, h, 16, rows16),
            "bgr565_bitfields": self.bmp(w, h, 16, rows16, 3, masks=(0xF800, 0x7E0, 0x1F)),
            "bgr555_bitfields": self.bmp(w, h, 16, rows16, 3, masks=(0x7C00, 0x3E0, 0x1F)),
            "bgrx": self.bmp(w, h, 32, rows32),
            "rgba_bitfields_v4": self.bmp(w, h, 32, rows32, 3, masks=(0xFF, 0xFF00, 0xFF0000, 0xFF000000), header=108),
            "xbgr_bitfields": self.bmp(w, h, 32, rows32, 3, masks=(0xFF000000, 0xFF0000, 0xFF00, 0)),
            "top_down_8bit_short_palette": self.bmp(w, h, 8, rows8, palette=palette, top_down=True),
            # RLE8: a run, an absolute run (padded), end of line; then end of bitmap.
            "rle8": self.bmp(4, 2, 8, bytes([2, 5, 0, 3, 1, 2, 3, 0, 0, 0, 4, 9, 0, 1]), 1, palette=palette),
            "rle4": self.bmp(4, 2, 4, bytes([4, 0x12, 0, 0, 0, 4, 0x34, 0x56, 0, 1]), 2, palette=palette),
        }
        for name, data in cases.items():
            with self.subTest(name):
                self.assert_like_pillow(self.write(name + ".bmp", data))

    def test_tiff_every_mode_and_compression(self):
        modes = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"]
        for mode in modes:
            for compression in ("raw", "tiff_lzw", "tiff_adobe_deflate", "packbits"):
                with self.subTest(mode=mode, compression=compression):
                    self.assert_like_pillow(self.save(in_mode(mode), f"t_{mode}_{compression}.tif",
                                                      compression=compression))
        with self.subTest("group4 fax"):
            self.assert_like_pillow(self.save(in_mode("1"), "g4.tif", compression="group4"))
        for mode in ("L", "RGB"):
            with self.subTest(f"jpeg-compressed {mode}"):
                self.assert_like_pillow(self.save(in_mode(mode), f"tj_{mode}.tif", compression="jpeg"))
        with self.subTest("two pages: the first"):
            self.assert_like_pillow(self.save(in_mode("RGB"), "pages.tif", save_all=True,
                                              append_images=[in_mode("L").convert("RGB")]))

    def test_tiff_planar_and_tiled_via_libtiff_tools(self):
        if not shutil.which("tiffcp"):
            self.skipTest("tiffcp (libtiff-tools) is not installed")
        src = self.save(in_mode("RGB"), "src.tif")
        for name, args in {"planar": ["-p", "separate"], "tiled": ["-t", "-w", "16", "-l", "16"]}.items():
            dst = os.path.join(self.tmp, name + ".tif")
            subprocess.run(["tiffcp", *args, src, dst], check=True)
            with self.subTest(name):
                self.assert_like_pillow(dst)

    def test_gif(self):
        with self.subTest("palette"):
            self.assert_like_pillow(self.save(in_mode("P"), "p.gif"))
        with self.subTest("grey"):
            self.assert_like_pillow(self.save(in_mode("L"), "l.gif"))
        with self.subTest("transparency"):
            self.assert_like_pillow(self.save(in_mode("P"), "t.gif", transparency=3))
        with self.subTest("interlaced"):
            self.assert_like_pillow(self.save(in_mode("P"), "i.gif", interlace=True))
        frames = [in_mode("P"), in_mode("P").transpose(Image.Transpose.FLIP_TOP_BOTTOM)]
        with self.subTest("animated: first frame"):
            self.assert_like_pillow(self.save(frames[0], "a.gif", save_all=True, append_images=frames[1:]))
        # A frame placed past the logical screen (Pillow grows the canvas) and a short palette.
        with open(self.save(in_mode("P").resize((6, 4)), "base.gif"), "rb") as f:
            raw = bytearray(f.read())
        width, height = struct.unpack("<HH", raw[6:10])
        raw[6:10] = struct.pack("<HH", 4, 3)  # logical screen smaller than the frame
        with self.subTest("frame larger than the screen"):
            self.assert_like_pillow(self.write("grown.gif", bytes(raw)))

    def test_jpeg_and_png_cases_that_differed(self):
        cmyk = in_mode("CMYK")
        buf = io.BytesIO()
        cmyk.save(buf, "JPEG", quality=95)
        data = buf.getvalue()
        # Drop the Adobe APP14 marker: Pillow still reads it as inverted CMYK.
        at = data.find(b"\xff\xee")
        self.assertGreater(at, 0)
        length = struct.unpack(">H", data[at + 2:at + 4])[0]
        with self.subTest("CMYK JPEG without an Adobe marker"):
            self.assert_like_pillow(self.write("cmyk_no_adobe.jpg", data[:at] + data[at + 2 + length:]))
        # Palette PNG whose indices run past its PLTE: Pillow shows grey there.
        im = Image.fromarray(RNG.integers(0, 200, (9, 11)).astype(np.uint8), "P")
        im.putpalette(bytes(RNG.integers(0, 256, 3 * 50).astype(np.uint8)))
        with self.subTest("palette indices past PLTE"):
            self.assert_like_pillow(self.save(im, "short_plte.png"))
        if shutil.which("cjpeg"):
            ppm = self.save(in_mode("RGB"), "src.ppm")
            arith = os.path.join(self.tmp, "arith.jpg")
            subprocess.run(["cjpeg", "-arithmetic", "-outfile", arith, ppm], check=True)
            with self.subTest("arithmetic-coded JPEG (SOF9)"):
                self.assert_like_pillow(arith)
            progressive = os.path.join(self.tmp, "arith_progressive.jpg")
            subprocess.run(["cjpeg", "-arithmetic", "-progressive", "-outfile", progressive, ppm], check=True)
            with self.subTest("arithmetic-coded progressive JPEG (SOF10)"):
                self.assert_like_pillow(progressive)
        # Entropy-coded data that does not decode: Pillow returns noise; vitbatch refuses it.
        buf = io.BytesIO()
        with Image.open(os.path.join(vitref.IMAGES_DIR, "chelsea.png")) as photo:
            photo.convert("RGB").save(buf, "JPEG", quality=75)
        data = bytearray(buf.getvalue())
        sos = data.find(b"\xff\xda")
        for at in range(sos + 300, len(data) - 100, 500):
            data[at:at + 16] = b"\xff\x00" * 8  # sixteen 1-bits: no Huffman code is that long
        damaged = self.write("bad_huffman.jpg", bytes(data))
        r = subprocess.run([vitref.DUMP, "decode", damaged, os.path.join(self.tmp, "x.rgb")], capture_output=True,
                           text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("corrupt JPEG: Corrupt JPEG data: bad Huffman code", r.stderr)

    def test_exif_orientation_stored_as_long(self):
        pil = rgb_image(21, 34)
        exif = Image.Exif()
        exif[0x0112] = 6
        data = bytearray(exif.tobytes())
        little = data[:2] == b"II"
        at = data.find(b"\x12\x01\x03\x00" if little else b"\x01\x12\x00\x03")  # tag 0x0112, type SHORT
        self.assertGreater(at, 0)
        # Type LONG, the same value: a LONG's value fills the 4 bytes, so move it there.
        value = data[at + 8:at + 10]
        data[at + 2:at + 4] = b"\x04\x00" if little else b"\x00\x04"
        data[at + 8:at + 12] = (value + b"\0\0") if little else (b"\0\0" + value)
        path = self.save(pil, "long_orientation.jpg", exif=bytes(data), quality=95)
        from PIL import ImageOps
        with Image.open(path) as im:
            expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        self.assertEqual(expected.shape[:2], (21, 34))  # Pillow did rotate it
        got = dump_decode(path, self.tmp, exif=True)
        np.testing.assert_array_equal(got, expected)


if __name__ == "__main__":
    unittest.main(verbosity=2)
