"""classify --report and evaluate --report in a real browser: Debian's chromium, headless, loads
each page from disk (no network), the DOM after its script has run is dumped and a screenshot
taken. Checked: the cards drawn (a page of 100 at most, "page 1 of N"), every thumbnail decoded
(the page counts img onload/onerror into data-thumbs-ok / data-thumbs-failed), the failures
shown with their reasons, no console message at all, and for evaluate the summary and tables.
Exit 77 (ctest SKIP) when chromium is not installed."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np
from PIL import Image

import edge_cases
import vitref

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def browse(page, *extra):
    """(dumped DOM, console lines, status) of `page` after its script ran; with `extra` options
    (a screenshot) instead of the DOM dump."""
    r = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", *(extra or ["--dump-dom"]),
                        "file://" + os.path.abspath(page)], capture_output=True, text=True, timeout=120)
    console = [line for line in r.stderr.splitlines() if "CONSOLE" in line]
    return r.stdout, console, r.returncode


def body_data(dom):
    return {k: int(v) for k, v in re.findall(r'data-([a-z-]+)="(\d+)"', dom.split("<body", 1)[1].split(">", 1)[0])}


class Report(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def test_classify_report_of_the_photos(self):
        page = os.path.join(self.tmp, "photos.html")
        images = os.path.join(vitref.SHARED, "images")
        r = subprocess.run([vitref.VITBATCH, "classify", "--model", vitref.MODEL_DIR, "--progress", "never", "--report",
                            page, images], capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 1, r.stderr)  # truncated.jpg
        with open(page) as f:
            html = f.read()
        self.assertNotIn("http://", html.replace("http://www.w3.org", ""))  # nothing fetched from anywhere
        self.assertNotIn("https://", html)
        dom, console, status = browse(page)
        self.assertEqual(status, 0)
        self.assertEqual(console, [])
        data = body_data(dom)
        photos = [f for f in os.listdir(images) if f.lower().endswith((".jpg", ".png"))]
        self.assertEqual(data["cards"], len(photos))
        self.assertEqual(data["thumbs-ok"], len(photos) - 1)
        self.assertEqual(data["thumbs-failed"], 0)
        self.assertEqual(dom.count('class="card failed"'), 1)
        self.assertIn("Premature end of JPEG file", dom)
        self.assertIn("Egyptian cat", dom)
        shot = os.path.join(self.tmp, "photos.png")
        browse(page, "--hide-scrollbars", "--window-size=1280,1400", f"--screenshot={shot}")
        with Image.open(shot) as im:
            self.assertEqual(im.size, (1280, 1400))
            self.assertGreater(np.asarray(im.convert("L")).std(), 10)  # not a blank page

    def test_many_rows_are_paged(self):
        model, labels = edge_cases.small_model(self.tmp)
        tree = os.path.join(self.tmp, "many")
        os.makedirs(tree)
        source = os.path.join(self.tmp, "one.png")
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 20, 3)).astype(np.uint8)).save(source)
        for i in range(3000):
            os.link(source, os.path.join(tree, f"{i:05d}.png"))
        page = os.path.join(self.tmp, "many.html")
        r = subprocess.run([vitref.VITBATCH, "classify", "--model", model, "--labels", labels, "--progress", "never",
                            "--report", page, "--report-thumbnails", "150", tree], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertLess(os.path.getsize(page), 3_000_000)
        dom, console, _ = browse(page)
        self.assertEqual(console, [])
        data = body_data(dom)
        self.assertEqual(data["cards"], 100)
        self.assertEqual((data["thumbs-ok"], data["thumbs-failed"]), (100, 0))
        self.assertIn("page 1 of 30 (3000 rows)", dom)

    def test_evaluate_report(self):
        root = os.path.join(self.tmp, "val")
        for name, photo in (("n02123045", "chelsea.png"), ("tripod", "camera.png"), ("7", "dog.jpg"), ("7", "truncated.jpg")):
            os.makedirs(os.path.join(root, name), exist_ok=True)
            shutil.copy(os.path.join(vitref.SHARED, "images", photo), os.path.join(root, name))
        page = os.path.join(self.tmp, "eval.html")
        r = subprocess.run([vitref.VITBATCH, "evaluate", "--model", vitref.MODEL_DIR, "--progress", "never", "--report", page,
                            root], capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 1, r.stderr)
        dom, console, _ = browse(page)
        self.assertEqual(console, [])
        data = body_data(dom)
        self.assertEqual((data["cards"], data["thumbs-ok"], data["thumbs-failed"]), (4, 3, 0))
        self.assertIn("33.33% (95% CI", dom)  # top-1: tripod right, tabby and cock wrong
        self.assertIn("per class, lowest top-1 first", dom)
        self.assertIn("most confused", dom)
        self.assertEqual(dom.count('class="card wrong"'), 2)
        self.assertIn("label: tabby", dom)


if __name__ == "__main__":
    if not CHROMIUM:
        print("SKIP: chromium is not installed (Debian: chromium)")
        sys.exit(77)
    unittest.main()
