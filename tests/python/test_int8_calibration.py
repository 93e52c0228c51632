"""int8 with calibrated ranges (`vitbatch calibrate`) on the real ViT-Ti: the ranges file it
writes, an image's logits bit-identical at every batch size and shard, the refusals (int8
without ranges, ranges of another model, both --int8-scales and --int8-dynamic), the default
int8_scales.safetensors beside the weights, and fp32's confident top-1s kept. Calibration
uses photos made by crops/flips/rescales of the shared ones (bench/augment_photos.py), so the
shared photos themselves are not in the calibration set."""

import csv
import io
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch
from PIL import Image

import edge_cases
import vitref

HERE = os.path.dirname(os.path.abspath(__file__))
AUGMENT = os.path.join(HERE, "..", "..", "bench", "augment_photos.py")


def run(*args, **kw):
    return subprocess.run([vitref.VITBATCH, *args], capture_output=True, text=True, timeout=600, **kw)


def rows(csv_text):
    return list(csv.DictReader(io.StringIO(csv_text)))


class Int8Calibration(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()
        cls.cal = os.path.join(cls.tmp, "cal")
        subprocess.run([sys.executable, AUGMENT, "--shared", vitref.SHARED, "--count", "48", "--seed", "2", cls.cal],
                       check=True)
        cls.scales = os.path.join(cls.tmp, "ti_scales.safetensors")
        cls.calibrated = run("calibrate", "--model", vitref.MODEL_DIR, cls.cal, "-o", cls.scales)
        crop, to_tensor = vitref.model_eval_transform(vitref.MODEL_DIR)
        cls.paths = vitref.photos()
        cls.inputs = torch.stack([to_tensor(crop(Image.open(p).convert("RGB"))) for p in cls.paths]).numpy()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def logits(self, inputs, precision):
        with tempfile.TemporaryDirectory() as work:
            return vitref.vitbatch_logits(vitref.MODEL_DIR, inputs, work, "onednn", precision)

    def test_calibrate_writes_a_range_per_linear(self):
        self.assertEqual(self.calibrated.returncode, 0, self.calibrated.stderr)
        self.assertIn("calibrated 50 linears on 48 images", self.calibrated.stderr)
        self.assertIn("0 kept out of int8", self.calibrated.stderr)  # fc2 too: per token (onednn)
        self.assertIn("SmoothQuant alpha 0.8 on the linears of 25 LayerNorms", self.calibrated.stderr)
        everything = vitref.read_safetensors(self.scales)
        tensors = {n: r for n, r in everything.items() if not n.startswith("smoothquant/")}
        self.assertEqual(len(tensors), 50)  # patch embedding, 4 per block, head
        # SmoothQuant's factors: the norms before qkv and fc1 in each block, and the final one
        # (the head reads it); 192 channels each, all positive.
        factors = {n[len("smoothquant/"):]: c for n, c in everything.items() if n.startswith("smoothquant/")}
        self.assertEqual(sorted(factors), sorted([f"blocks.{i}.norm{j}" for i in range(12) for j in (1, 2)] + ["norm"]))
        for name, c in factors.items():
            self.assertEqual(c.shape, (192,), name)
            self.assertTrue((c > 0).all() and np.isfinite(c).all(), name)
        for name, r in tensors.items():
            self.assertEqual(r.shape, (2,), name)
            self.assertLessEqual(r[0], 0.0, name)
            self.assertGreaterEqual(r[1], 0.0, name)
            self.assertTrue(np.isfinite(r).all(), name)
        # LayerNorm outputs are centred: the qkv input's range holds both signs
        self.assertLess(tensors["blocks.0.attn.qkv"][0], -0.5)
        # GELU's minimum is -0.17: fc2's input never goes below it
        self.assertGreaterEqual(tensors["blocks.0.mlp.fc2"][0], -0.171)

    def test_smoothquant_moves_the_outliers_into_the_weights(self):
        plain = os.path.join(self.tmp, "plain.safetensors")
        r = run("calibrate", "--model", vitref.MODEL_DIR, self.cal, "-o", plain, "--smoothquant", "0")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("SmoothQuant off", r.stderr)
        a, b = vitref.read_safetensors(plain), vitref.read_safetensors(self.scales)
        self.assertFalse(any(n.startswith("smoothquant/") for n in a))
        # ViT-Ti's LayerNorm outputs have outlier channels: divided by their factors, the
        # inputs of qkv and fc1 fit a far narrower range; the other linears' stay as they were.
        for i in range(12):
            for name in (f"blocks.{i}.attn.qkv", f"blocks.{i}.mlp.fc1"):
                self.assertLess(b[name][1] - b[name][0], 0.5 * (a[name][1] - a[name][0]), name)
            np.testing.assert_allclose(b[f"blocks.{i}.attn.proj"], a[f"blocks.{i}.attn.proj"], rtol=1e-3, atol=1e-3)
        # and int8 comes nearer fp32 with them
        fp32 = self.logits(self.inputs, "fp32")
        errors = {f: np.abs(self.logits(self.inputs, "int8:" + f) - fp32).mean() for f in (plain, self.scales)}
        print(f"\nmean |int8 - fp32| logit on the shared photos: {errors[plain]:.4f} without SmoothQuant, "
              f"{errors[self.scales]:.4f} with it")
        self.assertLess(errors[self.scales], errors[plain])

    def test_keep_float_leaves_the_named_linears_out(self):
        kept = os.path.join(self.tmp, "kept.safetensors")
        r = run("calibrate", "--model", vitref.MODEL_DIR, self.cal, "-o", kept, "--keep-float", "mlp.fc2")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("12 kept out of int8", r.stderr)
        # The same ranges (same photos), so only fc2's precision differs: bf16 here, per-token
        # int8 with the default file; both keep fp32's top-1 on these photos.
        fp32 = self.logits(self.inputs[:4], "fp32")
        for f in (kept, self.scales):
            int8 = self.logits(self.inputs[:4], "int8:" + f)
            self.assertFalse(np.array_equal(int8, fp32))
            np.testing.assert_array_equal(int8.argmax(1), fp32.argmax(1))
        self.assertFalse(np.array_equal(self.logits(self.inputs[:4], "int8:" + kept),
                                        self.logits(self.inputs[:4], "int8:" + self.scales)))

    def test_minmax_range_is_wider_than_percentile(self):
        minmax = os.path.join(self.tmp, "minmax.safetensors")
        r = run("calibrate", "--model", vitref.MODEL_DIR, self.cal, "-o", minmax, "--method", "minmax", "--max-images", "16")
        self.assertEqual(r.returncode, 0, r.stderr)
        pct = os.path.join(self.tmp, "pct.safetensors")
        r = run("calibrate", "--model", vitref.MODEL_DIR, self.cal, "-o", pct, "--percentile", "99", "--max-images", "16")
        self.assertEqual(r.returncode, 0, r.stderr)
        a, b = vitref.read_safetensors(minmax), vitref.read_safetensors(pct)
        for name in a:
            self.assertLessEqual(a[name][0], b[name][0] + 1e-6, name)
            self.assertGreaterEqual(a[name][1], b[name][1] - 1e-6, name)
        self.assertTrue(any(a[n][1] > 1.5 * b[n][1] for n in a))  # clipping 1% cuts real tails

    def test_same_logits_at_every_batch_size(self):
        full = self.logits(self.inputs, "int8:" + self.scales)
        three = self.logits(self.inputs[5:8], "int8:" + self.scales)
        one = self.logits(self.inputs[2:3], "int8:" + self.scales)
        np.testing.assert_array_equal(three, full[5:8])
        np.testing.assert_array_equal(one, full[2:3])

    def test_keeps_fp32s_confident_top1(self):
        fp32 = self.logits(self.inputs, "fp32")
        int8 = self.logits(self.inputs, "int8:" + self.scales)
        e = np.exp(fp32 - fp32.max(1, keepdims=True))
        confident = (e / e.sum(1, keepdims=True)).max(1) > 0.5
        agree = fp32.argmax(1) == int8.argmax(1)
        print(f"\nint8 (calibrated) top-1 = fp32 top-1 on {agree.sum()}/{len(agree)} photos, "
              f"{agree[confident].sum()}/{confident.sum()} of the confident ones")
        self.assertGreaterEqual(int(confident.sum()), 5)
        self.assertTrue(agree[confident].all())

    def test_classify_rows_equal_across_batches_and_shards(self):
        base = ["classify", "--model", vitref.MODEL_DIR, "--precision", "int8", "--int8-scales", self.scales,
                "--progress", "never", vitref.IMAGES_DIR]
        straight = run(*base, "--batch-size", "16")
        self.assertEqual(straight.returncode, 1, straight.stderr)  # the truncated JPEG
        self.assertIn("int8 (ranges " + self.scales, straight.stderr)
        single = run(*base, "--batch-size", "1")
        self.assertEqual(single.stdout, straight.stdout)
        sharded = []
        for i in (0, 1, 2):
            r = run(*base, "--batch-size", "4", "--shard", f"{i}/3")
            sharded += rows(r.stdout)
        by_path = {r["path"]: r for r in rows(straight.stdout)}
        self.assertEqual(len(sharded), len(by_path))
        for r in sharded:
            self.assertEqual(r, by_path[r["path"]])

    def test_int8_without_ranges_is_refused_with_the_way_out(self):
        r = run("classify", "--model", vitref.MODEL_DIR, "--precision", "int8", vitref.IMAGES_DIR)
        self.assertEqual(r.returncode, 2)
        self.assertIn("vitbatch calibrate", r.stderr)
        self.assertIn("--int8-dynamic", r.stderr)
        self.assertEqual(r.stdout, "")
        r = run("classify", "--model", vitref.MODEL_DIR, "--precision", "int8", "--int8-dynamic", "--progress", "never",
                os.path.join(vitref.IMAGES_DIR, "dog.jpg"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("int8 (dynamic)", r.stderr)
        r = run("classify", "--model", vitref.MODEL_DIR, "--precision", "int8", "--int8-dynamic", "--int8-scales",
                self.scales, os.path.join(vitref.IMAGES_DIR, "dog.jpg"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("not both", r.stderr)

    def test_ranges_of_another_model_are_refused(self):
        small, _ = edge_cases.small_model(self.tmp)
        other = os.path.join(self.tmp, "small_scales.safetensors")
        images = os.path.join(self.tmp, "few")
        os.makedirs(images, exist_ok=True)
        for i in range(3):
            Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(os.path.join(images, f"{i}.png"))
        r = run("calibrate", "--model", small, images, "-o", other)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run("classify", "--model", vitref.MODEL_DIR, "--precision", "int8", "--int8-scales", other, vitref.IMAGES_DIR)
        self.assertEqual(r.returncode, 2)
        self.assertIn(other, r.stderr)
        self.assertIn("another model", r.stderr)
        not_ranges = os.path.join(vitref.MODEL_DIR, "model.safetensors")
        r = run("classify", "--model", vitref.MODEL_DIR, "--precision", "int8", "--int8-scales", not_ranges, vitref.IMAGES_DIR)
        self.assertEqual(r.returncode, 2)
        self.assertIn("not an int8 ranges file", r.stderr)

    def test_default_ranges_beside_the_weights(self):
        folder = os.path.join(self.tmp, "model_with_scales")
        os.makedirs(folder)
        for name in ("model.safetensors", "config.json"):
            os.symlink(os.path.join(os.path.abspath(vitref.MODEL_DIR), name), os.path.join(folder, name))
        shutil.copy(self.scales, os.path.join(folder, "int8_scales.safetensors"))
        photo = os.path.join(vitref.IMAGES_DIR, "dog.jpg")
        r = run("classify", "--model", folder, "--precision", "int8", "--progress", "never", photo)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("int8_scales.safetensors", r.stderr)
        explicit = run("classify", "--model", vitref.MODEL_DIR, "--precision", "int8", "--int8-scales", self.scales,
                       "--progress", "never", photo)
        self.assertEqual(r.stdout.replace(folder, vitref.MODEL_DIR), explicit.stdout)

    def test_bench_compare_puts_every_precision_side_by_side(self):
        import json
        common = ["bench", "--compare", "--model", vitref.MODEL_DIR, "--backend", "onednn", "--seconds", "0.2",
                  "--batch-size", "4", vitref.IMAGES_DIR]
        r = run(*common, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("truncated.jpg", r.stderr)  # left out, and said so
        out = json.loads(r.stdout)
        self.assertEqual(out["photos"], 14)
        rows = {p["precision"]: p for p in out["precisions"]}
        self.assertEqual(sorted(rows), ["bf16", "fp32", "int8"])  # onednn has no fp16
        self.assertEqual(rows["fp32"]["top1_as_fp32"], 14)
        self.assertGreaterEqual(rows["bf16"]["top1_as_fp32"], 13)
        self.assertIn("dynamic ranges", rows["int8"]["note"])
        self.assertIn(out["fastest"], rows)
        self.assertEqual(max(rows.values(), key=lambda p: p["images_per_second"])["precision"], out["fastest"])
        r = run(*common, "--int8-scales", self.scales)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"int8 +[0-9.]+ +[0-9.]+x +\d+/14 +onednn int8 \(ranges ")
        self.assertIn("fastest here: ", r.stdout)
        r = run(*common, "--precision", "bf16")
        self.assertEqual(r.returncode, 2)
        self.assertIn("leave out --precision", r.stderr)

    def test_calibrate_reports_bad_inputs_and_goes_on(self):
        out = os.path.join(self.tmp, "with_bad.safetensors")
        r = run("calibrate", "--model", vitref.MODEL_DIR, "--max-images", "4",
                os.path.join(vitref.IMAGES_DIR, "truncated.jpg"), self.cal, "-o", out)
        self.assertEqual(r.returncode, 1)
        self.assertIn("truncated.jpg", r.stderr)
        self.assertTrue(os.path.exists(out))
        r = run("calibrate", "--model", vitref.MODEL_DIR, os.path.join(vitref.IMAGES_DIR, "truncated.jpg"),
                "-o", os.path.join(self.tmp, "none.safetensors"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("no image could be used", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "none.safetensors")))


if __name__ == "__main__":
    unittest.main(verbosity=2)
