"""vitbatch embed against timm: the pooled features (timm's forward_head(pre_logits=True)) of the
real ViT-Ti on the shared photos, and of headless timm models (average pooling with fc_norm,
DINOv2 with registers), max |diff| <= 1e-4 x max |feature|; L2-normalised and float16 output;
the index (path,shard,row,error) with bad inputs mixed in and files split every --shard-rows
rows; --resume after a kill mid-row equals a straight run; --shard halves cover the inputs once;
an existing directory and changed settings are refused.

Runs under the timm venv (scripts/timm_venv.sh)."""

import csv
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import warnings

warnings.filterwarnings("ignore")

import numpy as np
import torch
import timm
from PIL import Image
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(__file__))
from test_timm_families import build, write_checkpoint  # noqa: E402

BIN = os.environ.get("VITBATCH_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin"))
VITBATCH = os.path.join(BIN, "vitbatch")
SHARED = os.environ.get("VITBATCH_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"))
MODEL_DIR = os.path.join(SHARED, "models", "vit_tiny_patch16_224.augreg_in21k_ft_in1k")
IMAGES = os.path.join(SHARED, "images")


def photos():
    return sorted(os.path.join(IMAGES, f) for f in os.listdir(IMAGES)
                  if f.lower().endswith((".jpg", ".png")) and f != "truncated.jpg")


def embed(*args, ok=(0, 1)):
    r = subprocess.run([VITBATCH, "embed", "--progress", "never", *args], capture_output=True, text=True, timeout=600)
    assert r.returncode in ok, r.stderr
    return r


def read_index(folder):
    with open(os.path.join(folder, "index.csv"), newline="") as f:
        return list(csv.DictReader(f))


def features_by_path(folder):
    """{path: feature} from the index and the .npy files it names; failed rows map to their error."""
    shards = {}
    out = {}
    for row in read_index(folder):
        if row["error"]:
            out[row["path"]] = row["error"]
            continue
        s = int(row["shard"])
        if s not in shards:
            shards[s] = np.load(os.path.join(folder, f"features-{s:05d}.npy"))
        out[row["path"]] = shards[s][int(row["row"])]
    return out


def timm_features(model, transform, paths):
    x = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        return model.forward_head(model.forward_features(x), pre_logits=True).numpy()


def assert_close(test, got, want, what, tol=1e-4):
    err = np.abs(got - want).max()
    test.assertLessEqual(err, tol * np.abs(want).max(), f"{what}: max |diff| {err:.3g}, max |feature| {np.abs(want).max():.3g}")


class Embed(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()
        cls.model = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
        cls.model.load_state_dict(load_file(os.path.join(MODEL_DIR, "model.safetensors")))
        with open(os.path.join(MODEL_DIR, "config.json")) as f:
            cfg = json.load(f)["pretrained_cfg"]
        cls.transform = timm.data.create_transform(**timm.data.resolve_data_config(cfg), is_training=False)
        cls.photos = photos()
        cls.want = dict(zip(cls.photos, timm_features(cls.model, cls.transform, cls.photos)))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def out(self, name):
        return os.path.join(self.tmp, name)

    def test_real_vit_tiny_features_equal_timm_pre_logits(self):
        for backend in ("onednn", "reference"):
            with self.subTest(backend):
                folder = self.out(f"ti_{backend}")
                embed("--model", MODEL_DIR, "--backend", backend, *self.photos, "-o", folder, ok=(0,))
                got = features_by_path(folder)
                self.assertEqual(list(got), self.photos)
                for p in self.photos:
                    assert_close(self, got[p], self.want[p], f"{os.path.basename(p)} on {backend}")

    def test_patch_tokens_equal_timm_forward_features(self):
        folder = self.out("ti_tokens")
        embed("--model", MODEL_DIR, "--tokens", "--shard-rows", "3", *self.photos[:5], "-o", folder, ok=(0,))
        x = torch.stack([self.transform(Image.open(p).convert("RGB")) for p in self.photos[:5]])
        with torch.no_grad():
            want = self.model.forward_features(x)[:, 1:].numpy()  # after the final norm, class token left out
        got = np.concatenate([np.load(os.path.join(folder, f"tokens-0000{s}.npy")) for s in (0, 1)])
        self.assertEqual(got.shape, (5, 196, 192))
        for i in range(5):
            assert_close(self, got[i], want[i], f"tokens of {os.path.basename(self.photos[i])}")
        feats = np.concatenate([np.load(os.path.join(folder, f"features-0000{s}.npy")) for s in (0, 1)])
        for i in range(5):
            assert_close(self, feats[i], self.want[self.photos[i]], "feature beside the tokens")
        # A headless model with registers: the registers are not patch tokens.
        model, named = build("vit_small_patch14_reg4_dinov2", {"depth": 1, "img_size": 112}, seed=5)
        ckpt = self.out("m_tokens_reg")
        write_checkpoint(ckpt, "vit_small_patch14_reg4_dinov2", model, named)
        data = timm.data.resolve_data_config(model=model)
        data["input_size"] = (3, 112, 112)
        transform = timm.data.create_transform(**data, is_training=False)
        x = torch.stack([transform(Image.open(p).convert("RGB")) for p in self.photos[:2]])
        with torch.no_grad():
            want = model.forward_features(x)[:, model.num_prefix_tokens:].numpy()
        out = self.out("e_tokens_reg")
        embed("--model", ckpt, "--backend", "reference", "--tokens", *self.photos[:2], "-o", out, ok=(0,))
        got = np.load(os.path.join(out, "tokens-00000.npy"))
        self.assertEqual(got.shape, want.shape)
        assert_close(self, got, want, "dinov2 registers: patch tokens")

    def test_normalised_float16(self):
        folder = self.out("ti_norm16")
        embed("--model", MODEL_DIR, "--normalize", "--dtype", "float16", *self.photos, "-o", folder, ok=(0,))
        arr = np.load(os.path.join(folder, "features-00000.npy"))
        self.assertEqual(arr.dtype, np.float16)
        self.assertEqual(arr.shape, (len(self.photos), 192))
        want = np.stack([self.want[p] / np.linalg.norm(self.want[p]) for p in self.photos])
        np.testing.assert_allclose(np.linalg.norm(arr.astype(np.float64), axis=1), 1.0, atol=2e-3)
        self.assertLessEqual(np.abs(arr.astype(np.float32) - want).max(), 1e-3)

    def test_headless_models_pooling_as_timm(self):
        for name, overrides in (("vit_small_patch16_224", {"num_classes": 0, "global_pool": "avg"}),
                                ("vit_small_patch14_reg4_dinov2", {"depth": 1, "img_size": 112})):
            with self.subTest(name):
                model, named = build(name, overrides, seed=4)
                folder = self.out("m_" + name)
                write_checkpoint(folder, name, model, named)
                self.assertEqual(model.num_classes, 0)
                data = timm.data.resolve_data_config(model=model)
                size = model.patch_embed.img_size[0]  # as written to config.json: the size built at
                data["input_size"] = (3, size, size)
                transform = timm.data.create_transform(**data, is_training=False)
                want = timm_features(model, transform, self.photos[:4])
                out = self.out("e_" + name)
                embed("--model", folder, "--backend", "reference", *self.photos[:4], "-o", out, ok=(0,))
                got = np.load(os.path.join(out, "features-00000.npy"))
                self.assertEqual(got.shape, want.shape)
                assert_close(self, got, want, name)

    def test_index_bad_inputs_and_shard_files(self):
        tree = self.out("tree")
        os.makedirs(os.path.join(tree, "sub"))
        for i, p in enumerate(self.photos[:7]):
            shutil.copy(p, os.path.join(tree, "sub" if i % 2 else "", f"{i:02d}{os.path.splitext(p)[1]}"))
        with open(os.path.join(tree, "03_broken.jpg"), "wb") as f:
            f.write(b"\xff\xd8\xff\xe0 not a JPEG")
        folder = self.out("indexed")
        r = embed("--model", MODEL_DIR, "--shard-rows", "3", tree, os.path.join(tree, "missing.png"), "-o", folder)
        self.assertEqual(r.returncode, 1)
        rows = read_index(folder)
        self.assertEqual(len(rows), 9)
        good = [row for row in rows if not row["error"]]
        self.assertEqual([(int(r["shard"]), int(r["row"])) for r in good], [(i // 3, i % 3) for i in range(7)])
        bad = {os.path.basename(r["path"]): r for r in rows if r["error"]}
        self.assertEqual(set(bad), {"03_broken.jpg", "missing.png"})
        self.assertTrue(all(r["shard"] == "" and r["row"] == "" for r in bad.values()))
        self.assertIn("03_broken.jpg", r.stderr)
        self.assertEqual(sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, "*.npy"))),
                         ["features-00000.npy", "features-00001.npy", "features-00002.npy"])
        got = features_by_path(folder)
        for row in good:
            name = os.path.basename(row["path"])
            src = self.photos[int(name[:2])]
            assert_close(self, got[row["path"]], self.want[src], name)

    def test_resume_after_a_kill_and_shards(self):
        # 28 inputs: the photos, then copies of them.
        copies = self.out("copies")
        os.makedirs(copies)
        inputs = list(self.photos)
        for p in self.photos:
            inputs.append(shutil.copy(p, copies))
        want_of = dict(self.want, **{c: self.want[p] for c, p in zip(inputs[len(self.photos):], self.photos)})
        full = self.out("full")
        embed("--model", MODEL_DIR, "--shard-rows", "5", "--batch-size", "4", "--tokens", *inputs, "-o", full, ok=(0,))
        want = features_by_path(full)
        for p in inputs:
            assert_close(self, want[p], want_of[p], p)
        # A kill after the features of a batch were flushed but mid-way through its index rows.
        part = self.out("part")
        shutil.copytree(full, part)
        with open(os.path.join(part, "index.csv"), "rb") as f:
            lines = f.read().splitlines(keepends=True)
        with open(os.path.join(part, "index.csv"), "wb") as f:
            f.write(b"".join(lines[:12]) + lines[12][:9])
        r = embed("--model", MODEL_DIR, "--shard-rows", "5", "--batch-size", "4", "--tokens", *inputs, "-o", part, "--resume",
                  ok=(0,))
        self.assertIn("11 skipped", r.stderr)
        self.assertEqual(read_index(part), read_index(full))
        got = features_by_path(part)
        for p in inputs:
            assert_close(self, got[p], want[p], p)
        self.assertEqual(sorted(os.listdir(part)), sorted(os.listdir(full)))
        for name in sorted(os.listdir(full)):
            if name.startswith("tokens-"):
                a, b = np.load(os.path.join(part, name)), np.load(os.path.join(full, name))
                self.assertEqual(a.shape, b.shape, name)
                assert_close(self, a, b, name)
        # Two shards of the run: each input in exactly one.
        halves = []
        for i in range(2):
            embed("--model", MODEL_DIR, *inputs, "-o", self.out(f"half{i}"), "--shard", f"{i}/2", ok=(0,))
            halves.append(features_by_path(self.out(f"half{i}")))
        self.assertEqual(sorted(list(halves[0]) + list(halves[1])), sorted(inputs))
        for h in halves:
            for p, v in h.items():
                assert_close(self, v, want[p], p)

    def test_refusals(self):
        folder = self.out("refuse")
        embed("--model", MODEL_DIR, self.photos[0], "-o", folder, ok=(0,))
        r = embed("--model", MODEL_DIR, self.photos[1], "-o", folder, ok=(2,))
        self.assertIn("already holds an embedding (index.csv): --resume continues it", r.stderr)
        r = embed("--model", MODEL_DIR, "--dtype", "float16", self.photos[1], "-o", folder, "--resume", ok=(2,))
        self.assertIn("other settings", r.stderr)
        self.assertIn("float16", r.stderr)
        r = embed("--model", MODEL_DIR, "-o", folder, ok=(2,))
        self.assertIn("no inputs", r.stderr)


if __name__ == "__main__":
    unittest.main()
