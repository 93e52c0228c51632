"""Inputs at scale: tar files and WebDataset shards read as a stream (rows "archive.tar!member"),
with the same predictions as the loose files; compressed shards; a sample without an image and
a damaged archive as error rows while the run goes on; --shard over archives merging into the
unsharded output; --resume inside an archive; --files-from (lines and NUL); URLs refused."""

import csv
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import unittest

import numpy as np
from PIL import Image

import edge_cases
import vitref


def vitbatch(*args, stdin=None):
    return subprocess.run([vitref.VITBATCH, *args], capture_output=True, timeout=300, input=stdin)


def rows(text):
    return list(csv.DictReader(io.StringIO(text.decode() if isinstance(text, bytes) else text)))


def slurp(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


class ArchiveInputs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()
        cls.model, cls.labels = edge_cases.small_model(cls.tmp)
        rng = np.random.default_rng(7)
        # 30 loose images (PNG and JPEG), and the same bytes as a WebDataset shard: key.jpg|png
        # with key.cls and key.json beside each, plus one sample whose image is missing.
        cls.loose = os.path.join(cls.tmp, "loose")
        os.makedirs(cls.loose)
        cls.images = {}
        for i in range(30):
            ext = "png" if i % 3 else "jpg"
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (24 + i, 40, 3)).astype(np.uint8)).save(buf, "PNG" if ext == "png" else "JPEG")
            name = f"{i:06d}.{ext}"
            cls.images[name] = buf.getvalue()
            with open(os.path.join(cls.loose, name), "wb") as f:
                f.write(buf.getvalue())
        cls.shard = os.path.join(cls.tmp, "shard-000000.tar")
        with tarfile.open(cls.shard, "w") as tar:
            for name in sorted(cls.images):
                key = name.split(".")[0]
                add_bytes(tar, name, cls.images[name])
                add_bytes(tar, key + ".cls", str(int(key) % 10).encode())
                add_bytes(tar, key + ".json", b'{"source": "test"}')
            add_bytes(tar, "000099.cls", b"3")  # a sample whose image was lost
            add_bytes(tar, "000099.json", b"{}")
            add_bytes(tar, "README.txt", b"not an image")  # a lone non-image member: ignored, counted

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def classify(self, *args, stdin=None, ok=(0, 1)):
        r = vitbatch("classify", "--model", self.model, "--labels", self.labels, "--backend", "reference",
                     "--progress", "never", "-k", "3", *args, stdin=stdin)
        self.assertIn(r.returncode, ok, r.stderr.decode())
        return r

    def loose_predictions(self):
        r = self.classify(self.loose, ok=(0,))
        return {os.path.basename(row["path"]): row for row in rows(r.stdout)}

    def test_webdataset_shard_gives_the_loose_files_predictions(self):
        loose = self.loose_predictions()
        r = self.classify(self.shard)
        self.assertEqual(r.returncode, 1, "the sample without an image is a failure")
        out = rows(r.stdout)
        images = [row for row in out if not row["error"]]
        self.assertEqual([row["path"] for row in images], [self.shard + "!" + n for n in sorted(self.images)])
        for row in images:
            want = loose[row["path"].split("!")[1]]
            self.assertEqual({k: v for k, v in row.items() if k != "path"}, {k: v for k, v in want.items() if k != "path"})
        errors = [row for row in out if row["error"]]
        self.assertEqual([row["path"] for row in errors], [self.shard + "!000099"])
        self.assertIn("WebDataset sample with no image member (it has .cls, .json)", errors[0]["error"])
        self.assertIn(self.shard + "!000099: a WebDataset sample with no image member", r.stderr.decode())
        self.assertIn("1 file in the directories and archives ignored: not images by extension or content (.txt 1)",
                      r.stderr.decode())

    def test_compressed_shards_and_archives_met_by_a_directory_walk(self):
        want = rows(self.classify(self.shard).stdout)
        folder = os.path.join(self.tmp, "compressed")
        os.makedirs(folder, exist_ok=True)
        for mode, ext in (("w:gz", ".tar.gz"), ("w:bz2", ".tar.bz2"), ("w:xz", ".tar.xz")):
            packed = os.path.join(folder, "shard" + ext)
            with tarfile.open(self.shard) as src, tarfile.open(packed, mode) as dst:
                for m in src.getmembers():
                    dst.addfile(m, src.extractfile(m))
        r = self.classify(folder)
        got = rows(r.stdout)
        for ext in (".tar.bz2", ".tar.gz", ".tar.xz"):  # the walk's order: by name
            part = [row for row in got if row["path"].startswith(os.path.join(folder, "shard" + ext + "!"))]
            self.assertEqual([(row["path"].split("!")[1], row["top1_index"], row["top1_prob"], row["error"]) for row in part],
                             [(row["path"].split("!")[1], row["top1_index"], row["top1_prob"], row["error"]) for row in want],
                             ext)
        self.assertEqual(len(got), 3 * len(want))

    def test_a_damaged_archive_keeps_what_came_before_and_the_run_goes_on(self):
        data = slurp(self.shard, "rb")
        cut = os.path.join(self.tmp, "cut.tar")
        with open(cut, "wb") as f:
            f.write(data[: len(data) // 2 + 100])  # inside a member's data
        junk = os.path.join(self.tmp, "junk.tar")
        with open(junk, "wb") as f:
            f.write(b"this is not a tar file at all" * 50)
        after = os.path.join(self.loose, "000001.png")
        r = self.classify(cut, junk, after)
        out = rows(r.stdout)
        good = [row for row in out if not row["error"]]
        bad = [row for row in out if row["error"]]
        self.assertGreater(len(good), 5)
        self.assertEqual(good[-1]["path"], after, "the run went on after both archives")
        self.assertTrue(all(row["path"].startswith(cut + "!") for row in good[:-1]))
        self.assertEqual(len(bad), 2, bad)
        self.assertTrue(bad[0]["path"].startswith(cut), bad[0])  # the member cut short, or the archive
        self.assertRegex(bad[0]["error"], "cut short|damaged|Truncated")
        self.assertEqual(bad[1]["path"], junk)
        self.assertIn("cannot read archive", bad[1]["error"])
        # One line per failure on stderr, each naming its file.
        err = r.stderr.decode()
        self.assertIn(junk + ": cannot read archive", err)

    def test_shards_of_archives_merge_into_the_unsharded_output(self):
        folder = os.path.join(self.tmp, "shards")
        os.makedirs(folder, exist_ok=True)
        names = sorted(self.images)
        for s in range(3):  # three WebDataset shards, ten samples each
            with tarfile.open(os.path.join(folder, f"part-{s:06d}.tar"), "w") as tar:
                for name in names[s * 10:(s + 1) * 10]:
                    add_bytes(tar, name, self.images[name])
                    add_bytes(tar, name.split(".")[0] + ".cls", b"1")
        full = os.path.join(self.tmp, "full.csv")
        self.classify(folder, "-o", full, ok=(0,))
        parts = []
        for i in range(4):
            parts.append(os.path.join(self.tmp, f"part{i}.csv"))
            self.classify(folder, "-o", parts[-1], "--shard", f"{i}/4", ok=(0,))
        counts = [len(rows(slurp(p))) for p in parts]
        self.assertEqual(sum(counts), 30)
        self.assertTrue(all(0 < c < 30 for c in counts), counts)
        r = vitbatch("merge", *parts, "--inputs", folder)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, slurp(full, "rb"))
        # A missing shard is named by a member it lacks.
        r = vitbatch("merge", *parts[1:], "--inputs", folder)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(".tar!", r.stderr.decode())

    def test_resume_inside_an_archive(self):
        full = os.path.join(self.tmp, "resume_full.csv")
        self.classify(self.shard, "-o", full)
        text = slurp(full)
        lines = text.splitlines(keepends=True)
        part = os.path.join(self.tmp, "resume_part.csv")
        shutil.copy(full + ".meta.json", part + ".meta.json")
        with open(part, "w") as f:
            f.write("".join(lines[:12]) + lines[12][:7])  # killed mid-row
        r = self.classify(self.shard, "-o", part, "--resume")
        self.assertIn("11 skipped", r.stderr.decode())
        self.assertEqual(slurp(part), text)

    def test_files_from_lines_and_nul_with_archives_and_urls(self):
        names = sorted(self.images)[:5]
        paths = [os.path.join(self.loose, n) for n in names]
        want = rows(self.classify(*paths, self.shard).stdout)
        listed = os.path.join(self.tmp, "list.txt")
        with open(listed, "w") as f:
            f.write("\n".join(paths[2:] + [self.shard]) + "\n")
        got = rows(self.classify(*paths[:2], "--files-from", listed).stdout)
        self.assertEqual(got, want)
        nul = os.path.join(self.tmp, "list.nul")
        with open(nul, "wb") as f:
            f.write(b"".join(p.encode() + b"\0" for p in paths + [self.shard]))
        self.assertEqual(rows(self.classify("-0", "--files-from", nul).stdout), want)
        self.assertEqual(rows(self.classify("--files-from", "-", stdin=slurp(listed, "rb")).stdout)[-len(want) + 2:],
                         want[2:])
        # URLs: an error row each, named, and the run goes on.
        r = self.classify("s3://bucket/photos/a.jpg", paths[0], "--files-from", listed)
        self.assertEqual(r.returncode, 1)
        out = rows(r.stdout)
        self.assertEqual(out[0]["path"], "s3://bucket/photos/a.jpg")
        self.assertIn("a URL, not a local file", out[0]["error"])
        self.assertEqual(out[1]["path"], paths[0])
        self.assertIn("s3://bucket/photos/a.jpg: a URL, not a local file", r.stderr.decode())
        r = self.classify("--files-from", "-", stdin=b"https://example.com/x.jpg\n" + paths[0].encode() + b"\n")
        self.assertEqual([row["path"] for row in rows(r.stdout)], ["https://example.com/x.jpg", paths[0]])
        # No inputs at all, and a list that does not exist: usage errors.
        r = vitbatch("classify", "--model", self.model, "--labels", self.labels)
        self.assertEqual(r.returncode, 2)
        self.assertIn("no inputs", r.stderr.decode())
        r = vitbatch("classify", "--model", self.model, "--files-from", os.path.join(self.tmp, "nope.txt"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("nope.txt", r.stderr.decode())


class RealModelOnATarOfThePhotos(unittest.TestCase):
    def test_the_shared_photos_in_a_tar_classify_as_the_files_do(self):
        tmp = tempfile.mkdtemp()
        try:
            images = os.path.join(vitref.SHARED, "images")
            tar_path = os.path.join(tmp, "photos.tar")
            with tarfile.open(tar_path, "w") as tar:
                tar.add(images, arcname="images")
            loose = subprocess.run([vitref.VITBATCH, "classify", "--model", vitref.MODEL_DIR, "--progress", "never",
                                    images], capture_output=True, timeout=300)
            packed = subprocess.run([vitref.VITBATCH, "classify", "--model", vitref.MODEL_DIR, "--progress", "never",
                                     tar_path], capture_output=True, timeout=300)
            want = {os.path.basename(r["path"]): r for r in rows(loose.stdout)}
            got = {os.path.basename(r["path"].split("!")[1]): r for r in rows(packed.stdout)}
            self.assertEqual(set(got), set(want))
            for name, row in got.items():
                self.assertTrue(row["path"].startswith(tar_path + "!images/"))
                self.assertEqual({k: v for k, v in row.items() if k != "path"},
                                 {k: v for k, v in want[name].items() if k != "path"}, name)
            self.assertEqual(packed.returncode, loose.returncode)
        finally:
            shutil.rmtree(tmp)


if __name__ == "__main__":
    unittest.main()
