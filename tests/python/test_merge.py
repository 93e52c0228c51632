"""vitbatch merge: the shards of a directory run (classify --shard I/4) merge into the unsharded
output byte for byte, CSV and JSON Lines, error rows included; --inputs checks that every input
has a row and no other does; a duplicate, a missing shard, a torn last row, another --top-k or
a mix of formats is refused naming the file and path."""

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
    return subprocess.run([vitref.VITBATCH, *args], capture_output=True, timeout=300)


class Merge(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()
        cls.model, cls.labels = edge_cases.small_model(cls.tmp)
        cls.tree = os.path.join(cls.tmp, "photos")
        rng = np.random.default_rng(3)
        for i in range(40):
            sub = os.path.join(cls.tree, ["", "a", "a/b", "a-b", "z"][i % 5])
            os.makedirs(sub, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (30 + i, 40, 3)).astype(np.uint8)).save(os.path.join(sub, f"img{i:02d}.png"))
        with open(os.path.join(cls.tree, "a", "broken.jpg"), "wb") as f:
            f.write(b"\xff\xd8\xff\xe0 not really")
        cls.outputs = {}
        for fmt in ("csv", "jsonl"):
            full = os.path.join(cls.tmp, f"full.{fmt}")
            cls.classify(full, fmt)
            shards = []
            for i in range(4):
                shards.append(os.path.join(cls.tmp, f"part{i}.{fmt}"))
                cls.classify(shards[-1], fmt, "--shard", f"{i}/4")
            cls.outputs[fmt] = (full, shards)

    @classmethod
    def classify(cls, out, fmt, *extra):
        r = vitbatch("classify", "--model", cls.model, "--labels", cls.labels, "--backend", "reference", "--progress",
                     "never", "--format", fmt, "-k", "3", "-o", out, *extra, cls.tree)
        assert r.returncode in (0, 1), r.stderr  # 1: the broken JPEG

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def test_shards_merge_into_the_unsharded_file_byte_for_byte(self):
        for fmt, (full, shards) in self.outputs.items():
            with self.subTest(fmt):
                r = vitbatch("merge", *reversed(shards), "--inputs", self.tree)
                self.assertEqual(r.returncode, 0, r.stderr)
                with open(full, "rb") as f:
                    self.assertEqual(r.stdout, f.read())
                self.assertIn(b"merged 41 rows from 4 files, every input present", r.stderr)
                out = os.path.join(self.tmp, f"merged.{fmt}")
                r = vitbatch("merge", *shards, "-o", out)
                self.assertEqual(r.returncode, 0, r.stderr)
                with open(full, "rb") as a, open(out, "rb") as b:
                    self.assertEqual(a.read(), b.read())

    def test_a_missing_shard_names_a_missing_input(self):
        full, shards = self.outputs["csv"]
        r = vitbatch("merge", *shards[:3], "--inputs", self.tree)
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"(an input) has no row in the merged files", r.stderr)
        self.assertEqual(r.stdout, b"")
        r = vitbatch("merge", *shards, "--inputs", os.path.join(self.tree, "a"))
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"is not one of the given inputs", r.stderr)

    def test_a_path_twice_is_refused(self):
        full, shards = self.outputs["jsonl"]
        r = vitbatch("merge", shards[0], shards[1], shards[0])
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"has a row in " + shards[0].encode() + b" and in " + shards[0].encode(), r.stderr)
        r = vitbatch("merge", full, shards[2])
        self.assertEqual(r.returncode, 2)
        self.assertIn(f"and in {shards[2]}".encode(), r.stderr)

    def test_torn_rows_other_headers_and_mixed_formats_are_refused(self):
        full, shards = self.outputs["csv"]
        torn = os.path.join(self.tmp, "torn.csv")
        with open(shards[1], "rb") as f:
            data = f.read()
        with open(torn, "wb") as f:
            f.write(data[:-7])
        r = vitbatch("merge", shards[0], torn)
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"torn.csv: its last row is cut short", r.stderr)
        top5 = os.path.join(self.tmp, "top5.csv")
        r = vitbatch("classify", "--model", self.model, "--labels", self.labels, "--backend", "reference", "-k", "5",
                     "--progress", "never",
                     "-o", top5, os.path.join(self.tree, "z"))
        self.assertEqual(r.returncode, 0, r.stderr)
        r = vitbatch("merge", shards[0], top5)
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"top5.csv: its header differs", r.stderr)
        r = vitbatch("merge", shards[0], self.outputs["jsonl"][1][1])
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"is jsonl but", r.stderr)
        r = vitbatch("merge", os.path.join(self.tree, "img00.png"))
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"not a vitbatch output", r.stderr)

    def test_an_empty_shard_is_fine(self):
        full, shards = self.outputs["csv"]
        empty = os.path.join(self.tmp, "empty.csv")
        open(empty, "w").close()
        r = vitbatch("merge", empty, *shards)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(full, "rb") as f:
            self.assertEqual(r.stdout, f.read())


if __name__ == "__main__":
    unittest.main(verbosity=2)
