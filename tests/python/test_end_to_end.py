"""The vitbatch CLI (default backend, and reference) on the real model and photos, against PyTorch + Pillow (decode,
torchvision's timm-eval transform, a torch.nn ViT): same top-1 on every photo, top-5
probabilities within 1e-3, truncated.jpg reported as a bad input, and the CLI's contract
(order, stdin, --output, YAML config, exit statuses, info, backends)."""

import csv
import io
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import numpy as np
import torch
from PIL import Image

import vitref

MODEL = vitref.MODEL_DIR


def classify(*args, stdin=None):
    return subprocess.run([vitref.VITBATCH, "classify", *args], input=stdin, capture_output=True, text=True,
                          timeout=600)


def torch_probabilities(paths):
    sd = vitref.read_safetensors(os.path.join(MODEL, "model.safetensors"))
    model = vitref.TorchViT().load_timm(sd)
    crop, to_tensor = vitref.model_eval_transform(MODEL)
    x = torch.stack([to_tensor(crop(Image.open(p).convert("RGB"))) for p in paths])
    with torch.no_grad():
        return torch.softmax(model(x), dim=1).numpy()


class EndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.result = classify("--model", MODEL, vitref.IMAGES_DIR)
        cls.rows = list(csv.reader(io.StringIO(cls.result.stdout)))

    def test_header(self):
        header = ["path"]
        for k in range(1, 6):
            header += [f"top{k}_index", f"top{k}_label", f"top{k}_prob"]
        self.assertEqual(self.rows[0], header + ["error"])

    def test_rows_in_sorted_order_one_per_image(self):
        expected = sorted(os.path.join(vitref.IMAGES_DIR, f) for f in os.listdir(vitref.IMAGES_DIR)
                          if f.lower().endswith((".jpg", ".jpeg", ".png")))
        self.assertEqual([r[0] for r in self.rows[1:]], expected)

    def test_predictions_match_pytorch_and_pillow(self):
        paths = vitref.photos()
        probs = torch_probabilities(paths)
        by_path = {r[0]: r for r in self.rows[1:]}
        with open(os.path.join(vitref.SHARED, "labels", "imagenet1k.txt")) as f:
            labels = [line.split(", ")[0] for line in f.read().splitlines()]
        # The README's rule for the two first names ImageNet uses twice.
        labels[134], labels[517], labels[639] = "crane (bird)", "crane (machine)", "tank suit"
        worst = 0.0
        for p, prob in zip(paths, probs):
            row = by_path[p]
            self.assertEqual(row[-1], "", p)
            self.assertEqual(int(row[1]), int(prob.argmax()), p)
            for k in range(5):
                index, label, value = int(row[1 + 3 * k]), row[2 + 3 * k], float(row[3 + 3 * k])
                self.assertEqual(label, labels[index])
                worst = max(worst, abs(value - prob[index]))
                self.assertLessEqual(abs(value - prob[index]), 1e-3, p)
        print(f"max |probability difference| over top-5 of {len(paths)} photos: {worst:.2e}")
        chelsea = by_path[os.path.join(vitref.IMAGES_DIR, "chelsea.png")]
        coffee = by_path[os.path.join(vitref.IMAGES_DIR, "coffee.png")]
        self.assertEqual(chelsea[1:3], ["285", "Egyptian cat"])
        self.assertEqual(coffee[1:3], ["967", "espresso"])

    def test_truncated_jpeg_is_a_bad_input(self):
        truncated = os.path.join(vitref.IMAGES_DIR, "truncated.jpg")
        row = next(r for r in self.rows if r[0] == truncated)
        self.assertEqual(row[1:-1], [""] * 15)
        self.assertIn("Premature end of JPEG file", row[-1])
        self.assertIn(truncated + ": corrupt JPEG", self.result.stderr)
        self.assertEqual(self.result.returncode, 1)
        # What runs, the bad file, the ignored README.md, then the summary naming the backend.
        lines = self.result.stderr.splitlines()
        self.assertEqual(len(lines), 4, self.result.stderr)
        self.assertRegex(lines[0], r"^vitbatch: running on (onednn|reference) fp32, \d+ threads?(, \d+ lanes)?$")
        self.assertIn(truncated, lines[1])
        self.assertIn("ignored", lines[2])
        self.assertRegex(lines[3], r"^vitbatch: 14 classified, 1 failed, 0 skipped in .* images/s, (onednn|reference) fp32")

    def test_stdin_paths_keep_their_order_and_batching_does_not_change_results(self):
        names = ["scream.jpg", "missing.png", "chelsea.png", "truncated.jpg", "coffee.png"]
        paths = [os.path.join(vitref.IMAGES_DIR, n) for n in names]
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "preds.csv")
            r = classify("--model", MODEL, "--batch-size", "2", "--top-k", "3", "--output", out, "-",
                         stdin="\n".join(paths) + "\n")
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertEqual(r.stdout, "")
            with open(out, newline="") as f:
                rows = list(csv.reader(f))
        self.assertEqual([row[0] for row in rows[1:]], paths)
        self.assertEqual(len(rows[0]), 1 + 3 * 3 + 1)
        self.assertIn("No such file or directory", rows[2][-1])
        full = {r[0]: r for r in self.rows[1:]}
        for row in rows[1:]:
            if not row[-1]:
                self.assertEqual(row[1:10], full[row[0]][1:10], row[0])

    def test_yaml_config_and_flags_override_it(self):
        with tempfile.TemporaryDirectory() as tmp:
            config = os.path.join(tmp, "run.yaml")
            with open(config, "w") as f:
                f.write(f"model: {MODEL}\nbackend:\n  name: reference\n  threads: 1\ntop_k: 2\nbatch_size: 4\n")
            photo = os.path.join(vitref.IMAGES_DIR, "coffee.png")
            r = classify("--config", config, photo)
            self.assertEqual(r.returncode, 0, r.stderr)
            rows = list(csv.reader(io.StringIO(r.stdout)))
            self.assertEqual(len(rows[0]), 1 + 2 * 3 + 1)
            self.assertEqual(rows[1][1:3], ["967", "espresso"])
            r = classify("--config", config, "--top-k", "1", photo)
            self.assertEqual(len(next(csv.reader(io.StringIO(r.stdout)))), 1 + 3 + 1)

            with open(config, "w") as f:
                f.write(f"model: {MODEL}\nbackend:\n  name: reference\n  thread: 2\n")
            r = classify("--config", config, photo)
            self.assertEqual(r.returncode, 2)
            self.assertIn(f"{config}:4: 'backend.thread': unknown key", r.stderr)
            self.assertEqual(r.stdout, "")

    def test_every_shipped_config_classifies_the_photos(self):
        configs = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
        photo = os.path.join(vitref.IMAGES_DIR, "coffee.png")
        for name in sorted(n for n in os.listdir(configs) if n.endswith(".yaml")):
            with self.subTest(name):
                config = os.path.join(configs, name)
                if "int8" in name:
                    config = self.calibrated_copy(config)
                r = classify("--config", config, photo)
                if "cuda" in name and "backend 'cuda' failed to start: no CUDA device" in r.stderr + " " or \
                        "cuda" in name and "no backend named 'cuda'" in r.stderr:
                    self.assertEqual(r.returncode, 2)  # no GPU here, or no CUDA toolkit at build time
                    continue
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(list(csv.reader(io.StringIO(r.stdout)))[1][1:3], ["967", "espresso"])

    def calibrated_copy(self, config):
        """The int8 config reads ranges from beside itself, which `vitbatch calibrate` makes: without
        them it is refused with the command to run; a copy (model path made absolute) gets them."""
        with open(config) as f:
            text = f.read()
        scales = re.search(r"int8_scales:\s*(\S+)", text).group(1)
        if not os.path.exists(os.path.join(os.path.dirname(config), scales)):
            r = classify("--config", config, os.path.join(vitref.IMAGES_DIR, "coffee.png"))
            self.assertEqual(r.returncode, 2)
            self.assertIn("vitbatch calibrate", r.stderr)
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        copy = os.path.join(folder, os.path.basename(config))
        with open(copy, "w") as f:
            f.write(re.sub(r"(?m)^model: .*$", "model: " + os.path.abspath(MODEL), text))
        subprocess.run([vitref.VITBATCH, "calibrate", "--model", MODEL, vitref.IMAGES_DIR, "-o",
                        os.path.join(folder, scales)], check=False, capture_output=True)
        self.assertTrue(os.path.exists(os.path.join(folder, scales)))
        return copy

    def test_usage_and_model_errors_exit_2(self):
        photo = os.path.join(vitref.IMAGES_DIR, "coffee.png")
        r = classify("--model", "/nonexistent/model", photo)
        self.assertEqual(r.returncode, 2)
        self.assertIn("/nonexistent/model: no such model", r.stderr)
        r = classify("--model", MODEL, "--backend", "nosuch", photo)
        self.assertEqual(r.returncode, 2)
        self.assertRegex(r.stderr, r"no backend named 'nosuch' \(plugin files found for: blas, (cuda, )?onednn, reference; see ")
        r = classify("--model", MODEL)
        self.assertEqual(r.returncode, 2)
        r = subprocess.run([vitref.VITBATCH, "classify", "--model", MODEL, "--top-k", "0", photo],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)

    def test_info(self):
        out = subprocess.run([vitref.VITBATCH, "info", "--model", MODEL, "--backend", "reference", "--graph"],
                             check=True, capture_output=True, text=True).stdout
        self.assertIn("ViT patch 16, image 224, dim 192, depth 12, heads 3, mlp 768, tokens 197, classes 1000", out)
        self.assertIn("parameters:   5717416", out)
        self.assertIn("GMACs", out)
        self.assertIn("= attention(", out)  # the graph as built, composites and all
        self.assertIn("reference  batch_matmul  blocks.11.attn.core/q@kT", out)  # lowered placement
        # The default backend is the fastest exact one installed: onednn claims attention whole.
        out = subprocess.run([vitref.VITBATCH, "info", "--model", MODEL, "--graph"], check=True, capture_output=True,
                             text=True).stdout
        self.assertIn("onednn  attention  blocks.11.attn.core", out)
        self.assertIn("onednn  concat  tokens", out)
        self.assertIn("reference  reshape  pool.cls.flatten", out)  # what onednn leaves falls back

    def test_reference_backend_gives_the_same_predictions(self):
        r = classify("--model", MODEL, "--backend", "reference", vitref.IMAGES_DIR)
        self.assertEqual(r.returncode, 1, r.stderr)
        default = {row[0]: row for row in self.rows[1:]}
        for row in list(csv.reader(io.StringIO(r.stdout)))[1:]:
            other = default[row[0]]
            self.assertEqual(row[1::3], other[1::3])  # indices (and the error column)
            for a, b in zip(row[3:-1:3], other[3:-1:3]):
                if a:
                    self.assertLessEqual(abs(float(a) - float(b)), 1e-5)

    def test_backends_lists_plugins_and_rejections(self):
        test_plugins = os.environ.get("VITBATCH_TEST_PLUGIN_DIR")
        args = [vitref.VITBATCH, "backends"] + (["--plugin-dir", test_plugins] if test_plugins else [])
        out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
        self.assertRegex(out, r"reference  2\.0  ABI 2  precisions: fp32  .*libvitbatch_backend_reference\.so")
        self.assertIn("ops: patchify linear batch_matmul", out)
        if test_plugins:
            self.assertIn("plugin ABI version 999, this vitbatch loads ABI versions 1 to 2", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
