"""vitbatch explain against a NumPy attention rollout (Abnar & Zuidema 2020) over the attention
probabilities of timm's own ViT-Ti on the real weights and photos (read with hooks, fused
attention off): the rollout with mean, max and min head fusion, with 90% of the weakest
attention discarded, and the last layer's class-token attention. The picture: crop | rollout |
last layer, the crop equal to the one timm's transform makes; index.csv with the top-1 and the
failures. Runs under the timm venv (scripts/timm_venv.sh)."""

import csv
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

BIN = os.environ.get("VITBATCH_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin"))
VITBATCH = os.path.join(BIN, "vitbatch")
SHARED = os.environ.get("VITBATCH_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"))
MODEL_DIR = os.path.join(SHARED, "models", "vit_tiny_patch16_224.augreg_in21k_ft_in1k")
PHOTOS = [os.path.join(SHARED, "images", n) for n in ("dog.jpg", "chelsea.png", "rocket.jpg")]


def rollout(attentions, fusion, discard, prefix=1):
    """attentions: [L][H, T, T] of one image. The definition in vitbatch/attention_maps.hpp,
    written again in NumPy."""
    T = attentions[0].shape[-1]
    result = np.eye(T)
    for att in attentions:
        a = {"mean": att.mean(0), "max": att.max(0), "min": att.min(0)}[fusion].astype(np.float64)
        drop = int(T * T * discard)
        if drop:
            order = np.argsort(a.reshape(-1), kind="stable")[:drop]
            i, j = order // T, order % T
            keep = (i == 0) | (j == 0)
            a.reshape(-1)[order[~keep]] = 0
        a = 0.5 * a + 0.5 * np.eye(T)
        a = a / a.sum(-1, keepdims=True)
        result = a @ result
    m = result[0, prefix:]
    return m / m.max()


def last_layer(att, fusion, prefix=1):
    a = {"mean": att.mean(0), "max": att.max(0), "min": att.min(0)}[fusion].astype(np.float64)
    m = a[0, prefix:]
    return m / m.max()


class Explain(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
        model.load_state_dict(load_file(os.path.join(MODEL_DIR, "model.safetensors")))
        with open(os.path.join(MODEL_DIR, "config.json")) as f:
            cfg = json.load(f)["pretrained_cfg"]
        cls.transform = timm.data.create_transform(**timm.data.resolve_data_config(cfg), is_training=False)
        captured = []
        for blk in model.blocks:
            blk.attn.fused_attn = False
            blk.attn.attn_drop.register_forward_hook(lambda m, inp, out: captured.append(inp[0].detach().numpy()))
        x = torch.stack([cls.transform(Image.open(p).convert("RGB")) for p in PHOTOS])
        with torch.no_grad():
            cls.logits = model(x).numpy()
        cls.attn = np.stack(captured, 1)  # [B, L, H, T, T]
        assert cls.attn.shape == (3, 12, 3, 197, 197), cls.attn.shape

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def explain(self, out, *args, ok=(0,)):
        r = subprocess.run([VITBATCH, "explain", "--model", MODEL_DIR, "--save-npy", "-o", out, *args],
                           capture_output=True, text=True, timeout=600)
        self.assertIn(r.returncode, ok, r.stderr)
        return r

    def test_rollout_matches_numpy_over_timm_attention(self):
        # Without discarding the maps agree to about 2e-6. Discarding is a threshold: an entry
        # at it whose last bits differ between oneDNN and torch is dropped on one side only
        # (8e-4 on chelsea.png here), hence the looser bound there.
        for fusion, discard, tol in (("mean", 0.0, 1e-4), ("max", 0.0, 1e-4), ("min", 0.0, 1e-4), ("mean", 0.9, 5e-3)):
            with self.subTest(fusion=fusion, discard=discard):
                out = os.path.join(self.tmp, f"{fusion}{discard}")
                self.explain(out, "--head-fusion", fusion, "--discard", str(discard), *PHOTOS)
                for b, p in enumerate(PHOTOS):
                    maps = np.load(os.path.join(out, os.path.basename(p) + ".npy"))
                    self.assertEqual(maps.shape, (2, 14, 14))
                    want = rollout(list(self.attn[b]), fusion, discard).reshape(14, 14)
                    err = np.abs(maps[0] - want).max()
                    print(f"{fusion} discard {discard} {os.path.basename(p)}: rollout max |diff| {err:.2e}", file=sys.stderr)
                    self.assertLessEqual(err, tol, f"{os.path.basename(p)} rollout: max |diff| {err:.2e}")
                    want = last_layer(self.attn[b, -1], fusion).reshape(14, 14)
                    self.assertLessEqual(np.abs(maps[1] - want).max(), 1e-4)

    def test_picture_index_and_failures(self):
        out = os.path.join(self.tmp, "pictures")
        broken = os.path.join(self.tmp, "broken.jpg")
        with open(broken, "wb") as f:
            f.write(b"\xff\xd8\xff\xe0 broken")
        r = self.explain(out, PHOTOS[0], broken, PHOTOS[1], ok=(1,))
        self.assertIn("broken.jpg", r.stderr)
        with open(os.path.join(out, "index.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual([row["path"] for row in rows], [PHOTOS[0], broken, PHOTOS[1]])
        self.assertTrue(rows[1]["error"] and not rows[1]["png"])
        for row, b in ((rows[0], 0), (rows[2], 1)):
            self.assertEqual(int(row["top1_index"]), int(np.argmax(self.logits[b])))
            with Image.open(os.path.join(out, row["png"])) as im:
                picture = np.asarray(im)
            self.assertEqual(picture.shape, (224, 672, 3))
            # The left panel is the crop the model saw: timm's resize and centre crop.
            with Image.open(PHOTOS[b]) as im:
                crop = self.transform.transforms[1](self.transform.transforms[0](im.convert("RGB")))
            np.testing.assert_array_equal(picture[:, :224], np.asarray(crop))
            # The overlays differ from the crop, and from each other where the maps differ.
            self.assertGreater(np.abs(picture[:, 224:448].astype(int) - picture[:, :224]).mean(), 5)
            self.assertGreater(np.abs(picture[:, 448:].astype(int) - picture[:, 224:448]).mean(), 1)

    def test_a_tree_with_bad_inputs_mirrors_its_paths(self):
        tree = os.path.join(self.tmp, "tree")
        for sub, photo in (("a", PHOTOS[0]), ("a/b", PHOTOS[1]), ("c", PHOTOS[2]), ("c", PHOTOS[0])):
            os.makedirs(os.path.join(tree, sub), exist_ok=True)
            shutil.copy(photo, os.path.join(tree, sub))
        with open(os.path.join(tree, "c", "empty.jpg"), "wb"):
            pass
        out = os.path.join(self.tmp, "tree_maps")
        r = subprocess.run([VITBATCH, "explain", "--model", MODEL_DIR, "-o", out, tree], capture_output=True, text=True)
        self.assertEqual(r.returncode, 1, r.stderr)
        with open(os.path.join(out, "index.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual([row["png"] for row in rows],
                         ["a/b/chelsea.png.png", "a/dog.jpg.png", "c/dog.jpg.png", "", "c/rocket.jpg.png"])
        self.assertIn("c/empty.jpg", rows[3]["path"])
        for row in rows:
            if row["png"]:
                with Image.open(os.path.join(out, row["png"])) as im:
                    self.assertEqual(im.size, (672, 224))

    def test_small_models_are_drawn_at_224_at_least(self):
        sys.path.insert(0, os.path.dirname(__file__))
        import edge_cases
        model, _ = edge_cases.small_model(self.tmp)
        out = os.path.join(self.tmp, "small")
        r = subprocess.run([VITBATCH, "explain", "--model", model, "-o", out, PHOTOS[0]], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        with Image.open(os.path.join(out, "dog.jpg.png")) as picture:
            self.assertEqual(picture.size, (3 * 224, 224))  # a 32-pixel crop, 7 times


if __name__ == "__main__":
    unittest.main()
