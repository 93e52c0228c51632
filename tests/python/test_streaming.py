"""Issue 3's contract, on a generated tree of ~1,900 good images of every encoding and every
kind of bad input (tests/python/edge_cases.py), classified by a small synthetic ViT so that
the whole tree takes seconds: one row per input in path order, the right reason for each
bad one, the same prediction as a clean run of the image alone, kill + resume, | head,
SIGINT, shards, NUL-separated stdin, odd file names through Python's csv and json."""

import csv
import io
import json
import os
import signal
import subprocess
import tempfile
import time
import unittest

import edge_cases
import vitref


def read_rows(path_or_text, from_text=False):
    f = io.StringIO(path_or_text) if from_text else open(path_or_text, encoding="utf-8", errors="surrogateescape",
                                                               newline="")
    with f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def rows_written(path):
    """Data rows in a CSV another process is still writing: the file may not exist yet, or
    exist before its header (0 then, not an error)."""
    if not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        return max(0, len(list(csv.reader(f))) - 1)


class Streaming(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        root = cls.tmp.name
        cls.model, cls.labels = edge_cases.small_model(root)
        cls.tree = os.path.join(root, "tree")
        cls.expected = edge_cases.make_tree(cls.tree)
        cls.full = cls.classify(cls.tree, "-k", "2")

    @classmethod
    def tearDownClass(cls):
        os.chmod(os.path.join(cls.tree, "bad", "unreadable.png"), 0o644)
        cls.tmp.cleanup()

    @classmethod
    def classify(cls, *args, stdin=None, binary=False):
        quiet = [] if "--progress" in args else ["--progress", "never"]
        cmd = [vitref.VITBATCH, "classify", "--model", cls.model, "--labels", cls.labels, *quiet, *args]
        return subprocess.run(cmd, input=stdin, capture_output=True, timeout=300, text=not binary,
                              errors=None if binary else "surrogateescape")

    def popen(self, *args, **kw):
        cmd = [vitref.VITBATCH, "classify", "--model", self.model, "--labels", self.labels, "--progress", "never", *args]
        return subprocess.Popen(cmd, **kw)

    def test_one_row_per_input_in_path_order_with_reasons(self):
        self.assertEqual(self.full.returncode, 1, self.full.stderr[-2000:])
        header, rows = read_rows(self.full.stdout, from_text=True)
        self.assertEqual(header, ["path", "top1_index", "top1_label", "top1_prob", "top2_index", "top2_label",
                                  "top2_prob", "error"])
        paths = [r[0] for r in rows]
        self.assertEqual(len(paths), len(set(paths)), "a path was written twice")
        self.assertEqual(set(paths), set(self.expected))
        self.assertEqual(paths, sorted(paths, key=os.fsencode), "rows are not in path order")
        for row in rows:
            reason = self.expected[row[0]]
            if reason is None:
                self.assertEqual(row[-1], "", row[0])
                self.assertRegex(row[1], r"^\d$", row[0])
                self.assertEqual(row[2], f"class {row[1]}")
            else:
                self.assertEqual(row[1:-1], [""] * 6, row[0])
                self.assertIn(reason, row[-1], row[0])
                self.assertIn(f"vitbatch: {row[0]}: {row[-1]}\n", self.full.stderr)
        bad = sum(r is not None for r in self.expected.values())
        self.assertRegex(self.full.stderr.splitlines()[-1],
                         rf"^vitbatch: {len(rows) - bad} classified, {bad} failed, 0 skipped in ")
        self.assertGreater(len(rows), 1900)

    def test_each_image_predicted_as_a_clean_run_of_it_alone(self):
        _, rows = read_rows(self.full.stdout, from_text=True)
        good = [r for r in rows if not r[-1]]
        # Reversed order, one image per batch, one decoder: nothing about the big run's
        # batching, threading or neighbours may leak into a prediction.
        stdin = "".join(r[0] + "\n" for r in reversed(good) if "\n" not in r[0])
        alone = self.classify("-k", "2", "--batch-size", "1", "--decode-threads", "1", "-", stdin=stdin)
        self.assertEqual(alone.returncode, 0, alone.stderr)
        _, alone_rows = read_rows(alone.stdout, from_text=True)
        by_path = {r[0]: r for r in good}
        self.assertEqual(len(alone_rows), len(stdin.splitlines()))
        for r in alone_rows:
            self.assertEqual(r, by_path[r[0]])

    def test_kill_and_resume_gives_the_rows_of_an_uninterrupted_run(self):
        _, full_rows = read_rows(self.full.stdout, from_text=True)
        out = os.path.join(self.tmp.name, "resume.csv")
        proc = self.popen("-k", "2", "--batch-size", "4", "--decode-threads", "1", "--output", out, self.tree,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            if os.path.exists(out) and os.path.getsize(out) > 20000:
                break
            time.sleep(0.005)
        proc.kill()
        self.assertEqual(proc.wait(), -signal.SIGKILL, "the run ended before it could be killed")
        with open(out, "ab") as f:
            f.write(b"/a/torn/row.jpg,3,class 3,0.12")  # a write cut short by the kill
        _, partial = read_rows(out)
        self.assertLess(len(partial), len(full_rows))
        resumed = self.classify("-k", "2", "--output", out, "--resume", self.tree)
        self.assertEqual(resumed.returncode, 1, resumed.stderr[-2000:])
        self.assertRegex(resumed.stderr.splitlines()[-1], r"[1-9]\d* skipped")
        _, rows = read_rows(out)
        self.assertEqual(len(rows), len(full_rows), "duplicates or losses")
        self.assertEqual(sorted(map(tuple, rows)), sorted(map(tuple, full_rows)))

    def test_head_ends_the_run_promptly_and_quietly(self):
        proc = self.popen(os.path.join(self.tree, "good"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines = [proc.stdout.readline() for _ in range(3)]
        proc.stdout.close()  # what `| head -3` does
        self.assertEqual(proc.wait(timeout=30), 141)
        # Only what is said before the first row (defaults used, what runs): no error, no summary.
        for line in proc.stderr.read().decode().splitlines():
            self.assertRegex(line, r"^vitbatch: (note: |running on )")
        proc.stderr.close()
        self.assertTrue(lines[2].startswith(os.fsencode(self.tree)))

    def test_sigint_flushes_every_finished_row_and_summarises(self):
        good = sorted(p for p, r in self.expected.items() if r is None and "/good/" in p)[:37]
        out = os.path.join(self.tmp.name, "sigint.csv")
        proc = self.popen("--output", out, "-", stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdin.write("".join(p + "\n" for p in good).encode())
        proc.stdin.flush()  # stdin stays open: vitbatch is waiting for more when the signal comes
        deadline = time.time() + 30
        while time.time() < deadline and rows_written(out) < len(good):
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        self.assertEqual(proc.wait(timeout=30), 130)
        _, rows = read_rows(out)
        self.assertEqual([r[0] for r in rows], good)
        self.assertRegex(proc.stderr.read().decode(), r"vitbatch: interrupted: 37 classified, 0 failed, 0 skipped")
        proc.stdin.close()
        proc.stderr.close()

    def test_progress_bar_counts_the_total_and_shows_rate_and_eta(self):
        r = self.classify("--progress", "always", "--batch-size", "4", os.path.join(self.tree, "good"))
        self.assertEqual(r.returncode, 0)
        self.assertEqual(len(read_rows(r.stdout, from_text=True)[1]), 1900)
        self.assertRegex(r.stderr, r"[\r\n]\x1b\[K\[[= >]+\] \d+/1900  [0-9.]+ img/s  ETA \d+:\d\d")
        self.assertRegex(r.stderr.splitlines()[-1], r"vitbatch: 1900 classified")

    def test_pixel_limit_flag(self):
        r = self.classify("--max-pixels", "899", os.path.join(self.tree, "names"))
        self.assertEqual(r.returncode, 1)
        _, rows = read_rows(r.stdout, from_text=True)
        self.assertTrue(all(row[-1] == "image is 30x30 = 900 pixels, over the limit of 899 (--max-pixels)" for row in rows))

    def test_shards_cover_every_input_exactly_once(self):
        _, full_rows = read_rows(self.full.stdout, from_text=True)
        union = []
        for i in range(3):
            r = self.classify("-k", "2", "--shard", f"{i}/3", self.tree)
            self.assertIn(r.returncode, (0, 1), r.stderr)
            _, rows = read_rows(r.stdout, from_text=True)
            self.assertGreater(len(rows), len(full_rows) // 5)
            union += rows
        self.assertEqual(sorted(map(tuple, union)), sorted(map(tuple, full_rows)))
        bad = self.classify("--shard", "3/3", self.tree)
        self.assertEqual(bad.returncode, 2)

    def test_nul_separated_stdin_and_odd_names_survive_byte_for_byte(self):
        names_dir = os.path.join(os.fsencode(self.tree), b"names")
        names = sorted(os.path.join(names_dir, n) for n in os.listdir(names_dir))
        self.assertEqual(len(names), 6)
        r = self.classify("-0", "-", stdin=b"".join(n + b"\0" for n in names), binary=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        _, rows = read_rows(r.stdout.decode("utf-8", "surrogateescape"), from_text=True)
        self.assertEqual([os.fsencode(row[0]) for row in rows], names)
        # The same through a file, as a user's script would read it.
        out = os.path.join(self.tmp.name, "names.csv")
        self.classify("--output", out, os.fsdecode(names_dir))
        _, rows = read_rows(out)
        self.assertEqual(sorted(os.fsencode(row[0]) for row in rows), names)
        # JSON Lines: invalid UTF-8 bytes come back through json + os.fsencode.
        j = self.classify("--format", "jsonl", os.fsdecode(names_dir))
        self.assertEqual(j.returncode, 0, j.stderr)
        records = [json.loads(line) for line in j.stdout.splitlines()]
        self.assertEqual(sorted(os.fsencode(rec["path"]) for rec in records), names)
        self.assertTrue(all(rec["error"] is None and len(rec["predictions"]) == 5 for rec in records))

    def test_jsonl_resume_and_rows_match_csv(self):
        out = os.path.join(self.tmp.name, "run.jsonl")
        good = os.path.join(self.tree, "good", "00")
        first = self.classify("--format", "jsonl", "-k", "2", "--output", out, good)
        self.assertEqual(first.returncode, 0, first.stderr)
        with open(out) as f:
            lines = f.readlines()
        with open(out, "w") as f:
            f.writelines(lines[:40])
            f.write(lines[40][:25])  # torn
        again = self.classify("--format", "jsonl", "-k", "2", "--output", out, "--resume", good)
        self.assertEqual(again.returncode, 0, again.stderr)
        with open(out) as f:
            self.assertEqual(sorted(f.readlines()), sorted(lines))
        _, csv_rows = read_rows(self.full.stdout, from_text=True)
        by_path = {r[0]: r for r in csv_rows}
        for line in lines:
            rec = json.loads(line)
            row = by_path[rec["path"]]
            self.assertEqual([rec["predictions"][0]["index"], rec["predictions"][0]["prob"]], [int(row[1]), float(row[3])])


if __name__ == "__main__":
    unittest.main(verbosity=2)
