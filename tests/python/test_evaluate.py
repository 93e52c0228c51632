"""vitbatch evaluate on the real ViT-Ti: an ImageFolder tree made from the shared photos, its class
folders named by WordNet id, by index and by class name (spaces as underscores, other case),
labelled so that some photos are right at top-1, some only within the top 5, some wrong; a
broken image and a file outside any class folder mixed in. The accuracy, per-class figures,
confused pairs and misclassified list must be what classify's own top-5 rows imply; the same
set as a path,label CSV must give the same; a folder that names no class is refused by name."""

import csv
import io
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import vitref

WNIDS = os.path.join(os.path.dirname(__file__), "..", "..", "core", "data", "imagenet1k_wnids.txt")


def vitbatch(*args):
    return subprocess.run([vitref.VITBATCH, *args], capture_output=True, text=True, timeout=300)


class Evaluate(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()
        photos = vitref.photos()
        r = vitbatch("classify", "--model", vitref.MODEL_DIR, "-k", "5", "--progress", "never", *photos)
        assert r.returncode == 0, r.stderr
        rows = list(csv.DictReader(io.StringIO(r.stdout)))
        cls.top5 = {row["path"]: [int(row[f"top{k}_index"]) for k in range(1, 6)] for row in rows}
        names = {int(row[f"top{k}_index"]): row[f"top{k}_label"] for row in rows for k in range(1, 6)}
        with open(WNIDS) as f:
            wnids = f.read().split()
        # The class of each photo: its top-1 (right), its top-3 (right within 5), or a class
        # outside its top 5 (wrong).
        cls.truth = {}
        for i, p in enumerate(photos):
            top = cls.top5[p]
            cls.truth[p] = top[0] if i % 3 == 0 else top[2] if i % 3 == 1 else next(c for c in range(1000) if c not in top)
        cls.root = os.path.join(cls.tmp, "val")
        cls.folder_of = {}
        forms, k = ("wnid", "index", "name"), 0
        for p, c in sorted(cls.truth.items()):
            if c not in cls.folder_of.values():
                form = forms[k % 3]
                if form == "name" and c not in names:
                    form = "wnid"  # a class outside every top 5: its name is not at hand
                else:
                    k += 1
                name = {"wnid": wnids[c], "index": str(c),
                        "name": names.get(c, "").replace(" ", "_").upper()}[form]
                cls.folder_of[name] = c
            name = next(n for n, v in cls.folder_of.items() if v == c)
            os.makedirs(os.path.join(cls.root, name), exist_ok=True)
            shutil.copy(p, os.path.join(cls.root, name, os.path.basename(p)))
        any_folder = sorted(cls.folder_of)[0]
        with open(os.path.join(cls.root, any_folder, "broken.jpg"), "wb") as f:
            f.write(b"\xff\xd8\xff\xe0 broken")
        shutil.copy(photos[0], os.path.join(cls.root, "stray.jpg"))  # in no class folder
        cls.paths = {os.path.join(cls.root, name, os.path.basename(p)): cls.truth[p]
                     for name, c in cls.folder_of.items() for p in photos if cls.truth[p] == c}
        cls.src = {os.path.join(cls.root, name, os.path.basename(p)): p
                   for name, c in cls.folder_of.items() for p in photos if cls.truth[p] == c}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def expected(self):
        top1 = sum(self.top5[self.src[p]][0] == c for p, c in self.paths.items())
        top5 = sum(c in self.top5[self.src[p]] for p, c in self.paths.items())
        wrong = sorted(p for p, c in self.paths.items() if self.top5[self.src[p]][0] != c)
        return top1, top5, wrong

    def check(self, report):
        top1, top5, wrong = self.expected()
        n = len(self.paths)
        self.assertEqual(report["count"], n)
        self.assertEqual(report["correct_top1"], top1)
        self.assertEqual(report["correct_top5"], top5)
        self.assertAlmostEqual(report["top1"], top1 / n)
        self.assertAlmostEqual(report["top5"], top5 / n)
        self.assertGreater(top5, top1)
        self.assertLess(top5, n)
        lo, hi = report["top1_ci95"]
        self.assertTrue(0 <= lo < top1 / n < hi <= 1)
        self.assertEqual(sorted(m["path"] for m in report["misclassified"]), wrong)
        for m in report["misclassified"]:
            self.assertEqual(m["label"], self.paths[m["path"]])
            self.assertEqual(m["predicted"], self.top5[self.src[m["path"]]][0])
        self.assertEqual(sum(c["count"] for c in report["confused"]), len(wrong))
        self.assertEqual(report["failed"], 1)
        self.assertTrue(report["errors"][0]["path"].endswith("broken.jpg"))

    def test_image_folder(self):
        r = vitbatch("evaluate", "--model", vitref.MODEL_DIR, "--json", "--progress", "never", self.root)
        self.assertEqual(r.returncode, 1, r.stderr)  # the broken image
        report = json.loads(r.stdout)
        self.check(report)
        self.assertEqual(report["unlabelled"], 1)  # stray.jpg
        how = {c["name"]: (c["index"], c["mapped_by"]) for c in report["classes"]}
        for name, c in self.folder_of.items():
            self.assertEqual(how[name][0], c, name)
        self.assertEqual({h for _, h in how.values()}, {"WordNet id", "index", "name (case and _ ignored)"})
        for c in report["classes"]:
            want = [p for p, k in self.paths.items() if k == c["index"]]
            self.assertEqual(c["count"], len(want))
            self.assertAlmostEqual(c["top1"], sum(self.top5[self.src[p]][0] == c["index"] for p in want) / len(want))
        table = vitbatch("evaluate", "--model", vitref.MODEL_DIR, "--progress", "never", self.root).stdout
        top1, _, _ = self.expected()
        self.assertIn(f"top-1  {100 * top1 / len(self.paths):.2f}%", table)
        self.assertIn("misclassified", table)

    def test_csv_gives_the_same(self):
        listing = os.path.join(self.root, "labels.csv")
        with open(listing, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label"])
            for name in sorted(self.folder_of):
                for p in sorted(os.listdir(os.path.join(self.root, name))):
                    w.writerow([f"{name}/{p}", name])
        r = vitbatch("evaluate", "--model", vitref.MODEL_DIR, "--json", "--progress", "never", listing)
        self.assertEqual(r.returncode, 1, r.stderr)
        report = json.loads(r.stdout)
        # CSV paths are the CSV's directory joined with the listed path: the same files.
        self.check(report)
        self.assertEqual(report["unlabelled"], 0)

    def test_unmapped_folders_are_named(self):
        bad = os.path.join(self.tmp, "bad")
        for name in ("n01440764", "not_a_class", "zebra", "1000"):
            os.makedirs(os.path.join(bad, name))
        r = vitbatch("evaluate", "--model", vitref.MODEL_DIR, bad)
        self.assertEqual(r.returncode, 2)
        self.assertIn("2 folders name no class of the model ('1000', 'not_a_class')", r.stderr)

    def test_wilson_interval(self):
        # 8 of 10 and 0 of 10 at 95%: (0.4902, 0.9433) and (0, 0.2775), the textbook values.
        tree = os.path.join(self.tmp, "wilson")
        photos = vitref.photos()
        ten = [p for p in photos if self.truth[p] == self.top5[p][0]][:1] * 10
        for i, p in enumerate(ten):
            os.makedirs(os.path.join(tree, str(self.top5[p][0] if i < 8 else self.top5[p][4])), exist_ok=True)
            shutil.copy(p, os.path.join(tree, str(self.top5[p][0] if i < 8 else self.top5[p][4]), f"{i}.png"))
        report = json.loads(vitbatch("evaluate", "--model", vitref.MODEL_DIR, "--json", tree).stdout)
        self.assertEqual((report["count"], report["correct_top1"]), (10, 8))
        self.assertAlmostEqual(report["top1_ci95"][0], 0.4902, places=4)
        self.assertAlmostEqual(report["top1_ci95"][1], 0.9433, places=4)


if __name__ == "__main__":
    unittest.main()
