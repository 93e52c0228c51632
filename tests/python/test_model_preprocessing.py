"""Preprocessing from the model's own files, against the libraries that define it.

timm: config.json's pretrained_cfg (crop_mode center / squash / border, crop_pct,
interpolation, mean/std) against timm's own create_transform(**resolve_data_config(...)).
Hugging Face: preprocessor_config.json (do_resize / size / resample, do_center_crop /
crop_size, do_rescale / rescale_factor, do_normalize / image_mean / image_std) against the
image processor's arithmetic: Pillow resize, centre crop with floor offsets, numpy float64
rescale cast to float32, float32 normalisation. Every shared photo, the float32 tensor the
model reads. Runs under the timm venv (scripts/timm_venv.sh).
"""
import glob
import json
import os
import subprocess
import tempfile
import unittest
import warnings

warnings.filterwarnings("ignore")

import numpy as np
from PIL import Image
import timm.data

BIN = os.environ.get("VITBATCH_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin"))
SHARED = os.environ.get("VITBATCH_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"))
WEIGHTS = os.path.join(SHARED, "models", "vit_tiny_patch16_224.augreg_in21k_ft_in1k", "model.safetensors")
PHOTOS = sorted(p for p in glob.glob(os.path.join(SHARED, "images", "*")) if p.endswith((".jpg", ".png")) and "truncated" not in p)

TIMM_CASES = [
    # pretrained_cfg entries (input size 224, from the weights)
    {"crop_mode": "center", "crop_pct": 0.9, "interpolation": "bicubic", "mean": [0.5] * 3, "std": [0.5] * 3},
    {"crop_mode": "squash", "crop_pct": 1.0, "interpolation": "bicubic", "mean": [0.48145466, 0.4578275, 0.40821073],
     "std": [0.26862954, 0.26130258, 0.27577711]},
    {"crop_mode": "squash", "crop_pct": 0.875, "interpolation": "bilinear", "mean": [0.485, 0.456, 0.406],
     "std": [0.229, 0.224, 0.225]},
    {"crop_mode": "border", "crop_pct": 1.0, "interpolation": "bicubic", "mean": [0.485, 0.456, 0.406],
     "std": [0.229, 0.224, 0.225]},
    {"crop_mode": "border", "crop_pct": 0.95, "interpolation": "bilinear", "mean": [0.5] * 3, "std": [0.5] * 3},
]

HF_CASES = [
    # google/vit-base-patch16-224's processor: a plain 224x224 bilinear resize, mean/std 0.5
    {"do_resize": True, "size": {"height": 224, "width": 224}, "resample": 2, "do_rescale": True,
     "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3},
    # DINOv2's (BitImageProcessor): shortest edge 256 bicubic, centre crop 224, ImageNet mean/std
    {"do_resize": True, "size": {"shortest_edge": 256}, "resample": 3, "do_center_crop": True,
     "crop_size": {"height": 224, "width": 224}, "do_rescale": True, "rescale_factor": 0.00392156862745098,
     "do_normalize": True, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]},
]


def vitbatch_pixels(folder, photo):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "px.f32")
        r = subprocess.run([os.path.join(BIN, "vitbatch_dump"), "pixels", folder, photo, out], capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise AssertionError(r.stderr)
        return np.fromfile(out, dtype=np.float32).reshape(3, 224, 224)


def model_folder(tmp, name, config, processor=None):
    folder = os.path.join(tmp, name)
    os.makedirs(folder)
    os.symlink(WEIGHTS, os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    if processor is not None:
        with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
            json.dump(processor, f)
    return folder


def hf_processor(image, p):
    """The arithmetic of transformers' ViTImageProcessor / BitImageProcessor on a PIL image."""
    if p.get("do_resize", True):
        size = p["size"]
        if "shortest_edge" in size:
            w, h = image.size
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = size["shortest_edge"], int(size["shortest_edge"] * long / short)
            w, h = (new_short, new_long) if w <= h else (new_long, new_short)
        else:
            w, h = size["width"], size["height"]
        image = image.resize((w, h), resample=p.get("resample", 2))
    a = np.asarray(image)
    if p.get("do_center_crop", False):
        ch, cw = p["crop_size"]["height"], p["crop_size"]["width"]
        top, left = (a.shape[0] - ch) // 2, (a.shape[1] - cw) // 2
        a = a[top:top + ch, left:left + cw]
    x = a.astype(np.float64) * p["rescale_factor"] if p.get("do_rescale", True) else a.astype(np.float64)
    x = x.astype(np.float32)
    if p.get("do_normalize", True):
        x = (x - np.array(p["image_mean"], dtype=np.float32)) / np.array(p["image_std"], dtype=np.float32)
    return x.transpose(2, 0, 1)


class ModelPreprocessing(unittest.TestCase):
    def compare(self, got, expected, what):
        # Bit for bit: the same float32 tensor as the library's.
        self.assertEqual(got.shape, expected.shape, what)
        differing = int((got != expected).sum())
        self.assertEqual(differing, 0, f"{what}: {differing} values differ, max |diff| {np.abs(got - expected).max()}")
        return 1.0

    def images(self, tmp):
        """The shared photos, and generated ones whose sizes exercise rounding and padding."""
        g = np.random.default_rng(5)
        out = list(PHOTOS)
        for w, h in [(301, 250), (250, 301), (10, 10), (7, 300), (1000, 3), (249, 248), (257, 259), (2, 2000)]:
            path = os.path.join(tmp, f"gen_{w}x{h}.png")
            Image.fromarray(g.integers(0, 256, (h, w, 3)).astype(np.uint8)).save(path)
            out.append(path)
        return out

    def test_timm_pretrained_cfg(self):
        self.assertGreater(len(PHOTOS), 5)
        with tempfile.TemporaryDirectory() as tmp:
            for i, cfg in enumerate(TIMM_CASES):
                config = {"architecture": "vit_tiny_patch16_224", "global_pool": "token",
                          "pretrained_cfg": dict(cfg, input_size=[3, 224, 224])}
                folder = model_folder(tmp, f"timm{i}", config)
                transform = timm.data.create_transform(**timm.data.resolve_data_config({}, pretrained_cfg=config["pretrained_cfg"]))
                images, compared = self.images(folder), 0
                for photo in images:
                    with self.subTest(cfg=cfg["crop_mode"], photo=os.path.basename(photo)):
                        got = vitbatch_pixels(folder, photo)
                        try:
                            expected = transform(Image.open(photo).convert("RGB")).numpy()
                        except ValueError:
                            # timm's border mode rounds a 2-pixel side to 0 and Pillow refuses;
                            # vitbatch keeps 1 pixel there and still gives the model an image.
                            self.assertEqual(cfg["crop_mode"], "border")
                            self.assertTrue(np.isfinite(got).all())
                            continue
                        self.compare(got, expected, f"{cfg} {photo}")
                        compared += 1
                print(f"timm {cfg['crop_mode']:6s} crop_pct {cfg['crop_pct']} {cfg['interpolation']:8s}: "
                      f"{compared} of {len(images)} images compared (the rest timm refuses), all bit-equal")

    def test_hugging_face_processor(self):
        with tempfile.TemporaryDirectory() as tmp:
            for i, proc in enumerate(HF_CASES):
                folder = model_folder(tmp, f"hf{i}", {"num_attention_heads": 3}, proc)
                images = self.images(folder)
                for photo in images:
                    with self.subTest(case=i, photo=os.path.basename(photo)):
                        expected = hf_processor(Image.open(photo).convert("RGB"), proc)
                        self.compare(vitbatch_pixels(folder, photo), expected, f"hf{i} {photo}")
                print(f"Hugging Face processor {i}: {len(images)} images, all bit-equal")


if __name__ == "__main__":
    unittest.main()
