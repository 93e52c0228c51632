"""classify's outputs beyond top-k probabilities: --output-logits (an .npy whose row i holds the
logits of the output's row i, NaN for a failed row), --activation softmax|sigmoid|none checked
against those logits, --min-prob dropping low predictions, and what --resume and merge make of
them."""

import csv
import io
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import numpy as np
from PIL import Image

import edge_cases
import vitref


def vitbatch(*args):
    return subprocess.run([vitref.VITBATCH, *args], capture_output=True, text=True, timeout=300)


class ClassifyOutputs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()
        cls.model, cls.labels = edge_cases.small_model(cls.tmp)
        cls.tree = os.path.join(cls.tmp, "photos")
        os.makedirs(cls.tree)
        rng = np.random.default_rng(11)
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (20 + i, 36, 3)).astype(np.uint8)).save(os.path.join(cls.tree, f"{i:02d}.png"))
        with open(os.path.join(cls.tree, "05_bad.png"), "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n cut")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def classify(self, *args, ok=(0, 1)):
        r = vitbatch("classify", "--model", self.model, "--labels", self.labels, "--backend", "reference",
                     "--progress", "never", *args)
        self.assertIn(r.returncode, ok, r.stderr)
        return r

    def rows(self, text):
        return list(csv.DictReader(io.StringIO(text)))

    def test_logits_file_and_the_three_activations(self):
        npy = os.path.join(self.tmp, "logits.npy")
        r = self.classify("-k", "3", "--output-logits", npy, self.tree)
        rows = self.rows(r.stdout)
        logits = np.load(npy)
        self.assertEqual(logits.shape, (13, 10))
        self.assertEqual(logits.dtype, np.float32)
        for row, l in zip(rows, logits):
            if row["error"]:
                self.assertTrue(np.isnan(l).all(), row["path"])
                continue
            p = np.exp(l.astype(np.float64) - l.max())
            p /= p.sum()
            order = np.argsort(-l, kind="stable")[:3]
            self.assertEqual([int(row[f"top{k}_index"]) for k in (1, 2, 3)], list(order))
            for k in range(3):
                self.assertAlmostEqual(float(row[f"top{k + 1}_prob"]), p[order[k]], places=6)
        sig = self.rows(self.classify("-k", "3", "--activation", "sigmoid", self.tree).stdout)
        raw = self.rows(self.classify("-k", "3", "--activation", "none", self.tree).stdout)
        self.assertIn("top1_logit", raw[0])
        for s, n, l in zip(sig, raw, logits):
            if s["error"]:
                continue
            order = np.argsort(-l, kind="stable")[:3]
            for k in range(3):
                self.assertEqual(int(s[f"top{k + 1}_index"]), order[k])
                self.assertAlmostEqual(float(s[f"top{k + 1}_prob"]), 1 / (1 + np.exp(-float(l[order[k]]))), places=6)
                self.assertAlmostEqual(float(n[f"top{k + 1}_logit"]), float(l[order[k]]), delta=1e-5 * max(1, abs(l[order[k]])))
        jsonl = self.classify("-k", "2", "--activation", "none", "--format", "jsonl", self.tree).stdout
        self.assertIn('"logit":', jsonl)
        self.assertNotIn('"prob":', jsonl)

    def test_min_prob_drops_predictions(self):
        full = self.rows(self.classify("-k", "5", self.tree).stdout)
        cut = self.rows(self.classify("-k", "5", "--min-prob", "0.15", self.tree).stdout)
        dropped = 0
        for a, b in zip(full, cut):
            for k in range(1, 6):
                if a["error"]:
                    continue
                if float(a[f"top{k}_prob"]) >= 0.15:
                    self.assertEqual(b[f"top{k}_index"], a[f"top{k}_index"])
                else:
                    self.assertEqual(b[f"top{k}_index"], "")
                    dropped += 1
        self.assertGreater(dropped, 10)
        # The report's cards carry the same predictions as the rows (--min-prob applied).
        page = os.path.join(self.tmp, "cut.html")
        rows = self.rows(self.classify("-k", "5", "--min-prob", "0.15", "--report", page, self.tree).stdout)
        with open(page) as f:
            html = f.read()
        data = json.loads(html.split('<script type="application/json" id="rows">', 1)[1].split("</script>", 1)[0])
        self.assertEqual(len(data["rows"]), len(rows))
        for card, row in zip(data["rows"], rows):
            self.assertEqual(card["path"], row["path"])
            self.assertEqual([q[0] for q in card["p"]], [int(row[f"top{k}_index"]) for k in range(1, 6) if row[f"top{k}_index"]])
            self.assertEqual(card["error"], row["error"])
        r = self.classify("--min-prob", "0.1", "--activation", "none", self.tree, ok=(2,))
        self.assertIn("--min-prob is a probability", r.stderr)

    def test_resume_and_merge_know_the_settings(self):
        out = os.path.join(self.tmp, "sig.csv")
        self.classify("--activation", "sigmoid", "-o", out, self.tree)
        r = self.classify("-o", out, "--resume", self.tree, ok=(2,))
        self.assertIn("activation sigmoid then, softmax now", r.stderr)
        r = self.classify("--activation", "sigmoid", "--min-prob", "0.5", "-o", out, "--resume", self.tree, ok=(2,))
        self.assertIn("--min-prob 0 then, 0.5 now", r.stderr)
        r = self.classify("--output-logits", os.path.join(self.tmp, "x.npy"), "-o", out, "--resume", self.tree, ok=(2,))
        self.assertIn("--output-logits cannot be resumed", r.stderr)
        parts = []
        for i in range(2):
            parts.append(os.path.join(self.tmp, f"logit{i}.csv"))
            self.classify("--activation", "none", "-o", parts[-1], "--shard", f"{i}/2", self.tree)
        whole = self.classify("--activation", "none", self.tree).stdout
        r = vitbatch("merge", *parts)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, whole)


if __name__ == "__main__":
    unittest.main()
