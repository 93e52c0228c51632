"""Synthetic checkpoints (any size, any seed) in every layout vitbatch reads: timm and Hugging
Face names, ViT and DeiT-distilled, F32 / F16 / BF16. Each must load and give the logits of
its torch.nn twin on the same inputs."""

import json
import csv
import io
import os
import subprocess
import tempfile
import unittest

import numpy as np
import torch

import vitref

CASES = [
    # name, naming, dtype, distilled, dim, heads, eps
    ("timm_vit_f32", "timm", "F32", False, 128, 2, 1e-6),
    ("hf_vit_f16", "hf", "F16", False, 48, 3, 1e-12),
    ("timm_deit_bf16", "timm", "BF16", True, 48, 4, 1e-6),
    ("hf_deit_f32", "hf", "F32", True, 64, 2, 1e-12),
]


def make_checkpoint(root, name, naming, dtype, distilled, dim, heads, eps, seed):
    sd = vitref.random_timm_state(seed, image=32, patch=8, dim=dim, depth=2, mlp=2 * dim, classes=10,
                                  distilled=distilled)
    folder = os.path.join(root, name)
    os.makedirs(folder)
    tensors = vitref.timm_to_hf(sd, "deit" if distilled else "vit", distilled) if naming == "hf" else sd
    vitref.write_safetensors(os.path.join(folder, "model.safetensors"), tensors, dtype)
    if naming == "hf":
        config = {"model_type": "deit" if distilled else "vit", "hidden_size": dim, "num_attention_heads": heads,
                  "layer_norm_eps": eps, "image_size": 32, "patch_size": 8}
    else:
        config = {"architecture": "synthetic", "pretrained_cfg": {"input_size": [3, 32, 32]}}
        if heads is not None:
            config["num_heads"] = heads
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    twin = vitref.TorchViT(image=32, patch=8, dim=dim, depth=2, heads=heads or 1, mlp=2 * dim,
                           classes=10, distilled=distilled, eps=eps)
    return folder, twin.load_timm(vitref.rounded_through(sd, dtype))


class SyntheticCheckpoints(unittest.TestCase):
    def test_every_layout_matches_its_torch_twin(self):
        inputs = np.random.default_rng(11).standard_normal((3, 3, 32, 32)).astype(np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            for seed, (name, naming, dtype, distilled, dim, heads, eps) in enumerate(CASES):
                with self.subTest(name):
                    folder, twin = make_checkpoint(tmp, name, naming, dtype, distilled, dim, heads, eps, seed)
                    with torch.no_grad():
                        expected = twin(torch.from_numpy(inputs)).numpy()
                    for backend in ("reference", "onednn"):
                        got = vitref.vitbatch_logits(folder, inputs, tmp, backend)
                        diff = float(np.abs(got - expected).max())
                        print(f"{name:30s} {backend:10s} max|dlogit| = {diff:.2e}")
                        self.assertLessEqual(diff, 1e-4)

    def test_heads_are_never_guessed(self):
        # A timm checkpoint whose config.json names no architecture timm registers, and no
        # heads: refused with the ways to say it; --heads then loads it.
        with tempfile.TemporaryDirectory() as tmp:
            folder, _ = make_checkpoint(tmp, "noheads", "timm", "F32", False, 128, None, 1e-6, 3)
            r = subprocess.run([vitref.VITBATCH, "info", "--model", folder], capture_output=True, text=True)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("the number of attention heads is not known: config.json's architecture 'synthetic' is not in "
                          "timm's registry; give it with --heads N (or model_options: {heads: N} in the YAML)", r.stderr)
            r = subprocess.run([vitref.VITBATCH, "info", "--model", folder, "--heads", "4"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("heads 4", r.stdout)

    def test_info_reports_inferred_architecture(self):
        with tempfile.TemporaryDirectory() as tmp:
            folder, _ = make_checkpoint(tmp, "deit", "hf", "F32", True, 64, 2, 1e-12, 5)
            out = subprocess.run([vitref.VITBATCH, "info", "--model", folder], check=True, capture_output=True,
                                 text=True).stdout
            self.assertIn("DeiT (distilled) patch 8, image 32, dim 64, depth 2, heads 2, mlp 128, tokens 18, "
                          "classes 10", out)
            self.assertIn("huggingface names", out)
            self.assertIn("eps 1e-12", out)

    def test_classify_with_custom_labels(self):
        with tempfile.TemporaryDirectory() as tmp:
            folder, twin = make_checkpoint(tmp, "vit", "timm", "F32", False, 48, 3, 1e-6, 9)
            labels = os.path.join(tmp, "labels.txt")
            with open(labels, "w") as f:
                f.write("".join(f"class {i}, synonym\n" for i in range(10)))
            photo = os.path.join(vitref.IMAGES_DIR, "chelsea.png")
            r = subprocess.run([vitref.VITBATCH, "classify", "--model", folder, "--labels", labels, "-k", "2", photo],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            rows = list(csv.reader(io.StringIO(r.stdout)))
            self.assertEqual(rows[0], ["path", "top1_index", "top1_label", "top1_prob", "top2_index", "top2_label",
                                       "top2_prob", "error"])
            # A custom label is written whole, commas and all (only the built-in list is cut
            # to its first synonym).
            self.assertEqual(rows[1][2], f"class {rows[1][1]}, synonym")
            # The same image through Pillow/torchvision and the twin.
            from PIL import Image
            crop, to_tensor = vitref.eval_transform(32)
            with torch.no_grad():
                logits = twin(to_tensor(crop(Image.open(photo).convert("RGB")))[None]).numpy()[0]
            self.assertEqual(int(rows[1][1]), int(logits.argmax()))

            short = os.path.join(tmp, "short.txt")
            with open(short, "w") as f:
                f.write("only\ntwo\n")
            r = subprocess.run([vitref.VITBATCH, "classify", "--model", folder, "--labels", short, photo],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 2)
            self.assertIn("has 2 labels, the model has 10 classes", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
