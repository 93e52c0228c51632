"""SIGKILL at 20 random moments of a 300-image run, then --resume: the file must hold exactly
the rows of an uninterrupted run, every time, for CSV and JSON Lines, fp32 and int8.

The moments are drawn (seeded, so a failure reproduces) over the length of an uninterrupted
run: during startup, in the middle of batches, between flushes. A kill can also land while
--resume itself rewrites the file. int8 runs with calibrated ranges (`vitbatch calibrate`),
so an image's answer does not depend on its batch-mates, and batches of 4 as fp32: a resumed
run's batches are made of other images."""

import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import numpy as np
from PIL import Image

import edge_cases
import vitref

KILLS = 20


def has_backend(name):
    r = subprocess.run([vitref.VITBATCH, "backends", "--json"], capture_output=True, text=True)
    return f'"name": "{name}"' in r.stdout


class KillResume(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()
        cls.model, cls.labels = edge_cases.small_model(cls.tmp)
        cls.tree = os.path.join(cls.tmp, "tree")
        rng = np.random.default_rng(7)
        for d in range(3):
            os.makedirs(os.path.join(cls.tree, f"d{d}"))
        sources = []
        for i in range(30):
            path = os.path.join(cls.tmp, f"src{i}.png")
            # Large enough that decoding paces the run (about a second), so that the kills
            # land among the rows and not only during startup.
            Image.fromarray(rng.integers(0, 256, (300 + i, 400, 3)).astype(np.uint8)).save(path)
            sources.append(path)
        for i in range(300):
            os.link(sources[i % 30], os.path.join(cls.tree, f"d{i % 3}", f"img{i:03d}.png"))
        cls.scales = os.path.join(cls.tmp, "int8_scales.safetensors")
        subprocess.run([vitref.VITBATCH, "calibrate", "--model", cls.model, "--max-images", "32", cls.tree,
                        "-o", cls.scales], check=True, capture_output=True, timeout=300)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def command(self, out, fmt, precision, resume=False):
        scales = ["--int8-scales", self.scales] if precision == "int8" else []
        return [vitref.VITBATCH, "classify", "--model", self.model, "--labels", self.labels, "--progress", "never",
                "--precision", precision, *scales, "--batch-size", "4", "--decode-threads", "1", "--format", fmt, "-k", "3", "-o", out,
                *(["--resume"] if resume else []), self.tree]

    def campaign(self, fmt, precision):
        full = os.path.join(self.tmp, f"full.{fmt}.{precision}")
        started = time.time()
        r = subprocess.run(self.command(full, fmt, precision), capture_output=True, text=True, timeout=300)
        duration = time.time() - started
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(full, "rb") as f:
            expected = sorted(f.read().splitlines())
        self.assertEqual(len(expected), 300 + (fmt == "csv"))
        rng = random.Random(f"{fmt}-{precision}")
        mid_stream = 0  # kills that left some rows but not all: the case that matters most
        # On a loaded machine the run's phases move against the timing taken above, and fewer
        # kills land among the rows: draw more moments then (up to 3x), so that at least half
        # of KILLS do, rather than pass having tested less or fail for the machine's load.
        kill = -1
        while kill + 1 < KILLS or (mid_stream < KILLS // 2 and kill + 1 < 3 * KILLS):
            kill += 1
            out = os.path.join(self.tmp, f"killed.{fmt}.{precision}")
            for leftover in (out, out + ".meta.json"):
                if os.path.exists(leftover):
                    os.remove(leftover)
            moment = rng.uniform(0.0, duration)
            proc = subprocess.Popen(self.command(out, fmt, precision), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            time.sleep(moment)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            if os.path.exists(out):
                with open(out, "rb") as f:
                    rows = len(f.read().splitlines()) - (fmt == "csv")
                mid_stream += 0 < rows < 300
            # A second kill, during the resume, every fourth time.
            if kill % 4 == 3:
                proc = subprocess.Popen(self.command(out, fmt, precision, resume=True), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
                time.sleep(rng.uniform(0.0, duration / 2))
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            r = subprocess.run(self.command(out, fmt, precision, resume=True), capture_output=True, text=True,
                               timeout=300)
            self.assertEqual(r.returncode, 0, f"kill {kill} at {moment:.3f} s: {r.stderr[-1000:]}")
            with open(out, "rb") as f:
                got = sorted(f.read().splitlines())
            self.assertEqual(got, expected, f"kill {kill} at {moment:.3f} s of {duration:.2f} s ({fmt}, {precision})")
        self.assertGreaterEqual(mid_stream, KILLS // 2, f"only {mid_stream} of {kill + 1} kills landed among the rows")

    def test_csv_fp32(self):
        self.campaign("csv", "fp32")

    def test_jsonl_fp32(self):
        self.campaign("jsonl", "fp32")

    @unittest.skipUnless(has_backend("onednn"), "int8 needs the onednn backend")
    def test_csv_int8(self):
        self.campaign("csv", "int8")

    @unittest.skipUnless(has_backend("onednn"), "int8 needs the onednn backend")
    def test_jsonl_int8(self):
        self.campaign("jsonl", "int8")


if __name__ == "__main__":
    unittest.main(verbosity=2)
