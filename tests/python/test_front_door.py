"""The front door: what a new user meets on the command line.

Each test here was a defect once: a default that changed answers without a word, a flag
that aborted, a message from the argument parser instead of from vitbatch, a progress bar
that swallowed rows, a resume or shard that matched paths by spelling."""

import csv
import io
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import vitref

MODEL = vitref.MODEL_DIR
IMAGES = vitref.IMAGES_DIR
GOOD = [os.path.join(IMAGES, n) for n in ("chelsea.png", "coffee.png", "kite.jpg", "dog.jpg")]


def run(*args, cwd=None, stdin=None):
    return subprocess.run([vitref.VITBATCH, *args], capture_output=True, text=True, cwd=cwd,
                          stdin=subprocess.DEVNULL if stdin is None else None, input=stdin)


def rows_of(text):
    return list(csv.reader(io.StringIO(text)))[1:]


class FrontDoor(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.tmp)

    # --- what runs, and which defaults -------------------------------------------------
    def test_defaults_and_backend_are_said(self):
        bare = os.path.join(self.tmp, "bare")
        os.mkdir(bare)
        os.symlink(os.path.abspath(os.path.join(MODEL, "model.safetensors")), os.path.join(bare, "model.safetensors"))
        # Bare weights do not say how many heads: refused, with how to give them.
        r = run("classify", "--model", bare, GOOD[0])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("the number of attention heads is not known", r.stderr)
        self.assertIn("give it with --heads N", r.stderr)
        r = run("classify", "--model", bare, "--heads", "3", GOOD[0])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("no config.json beside the weights", r.stderr)
        for default in ("mean 0.485, 0.456, 0.406 (ImageNet)", "crop_pct 0.875", "interpolation bicubic"):
            self.assertIn(default, r.stderr)
        self.assertRegex(r.stderr, r"running on (onednn|reference) fp32, \d+ threads?")
        self.assertRegex(r.stderr.splitlines()[-1], r"images/s, (onednn|reference) fp32")
        # With the real config.json nothing is guessed, so nothing is said about defaults.
        r = run("classify", "--model", MODEL, GOOD[0])
        self.assertNotIn("defaults are used", r.stderr)
        # auto without onednn falls back to reference, and says so.
        plugins = os.path.join(self.tmp, "plugins")
        os.mkdir(plugins)
        shutil.copy(os.path.join(vitref.BIN, "libvitbatch_backend_reference.so"), plugins)
        env = dict(os.environ)
        r = subprocess.run([os.path.join(self.tmp, "vitbatch"), "classify", "--model", MODEL, GOOD[0]],
                           capture_output=True, text=True, env=env) if False else None
        exe = os.path.join(plugins, "vitbatch")
        shutil.copy(vitref.VITBATCH, exe)
        r = subprocess.run([exe, "classify", "--model", MODEL, GOOD[0]], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("backend auto: running on reference", r.stderr)
        self.assertIn("onednn plugin is not installed", r.stderr)

    def test_bench_says_when_lanes_run(self):
        def bench(*extra):
            r = run("bench", "--model", MODEL, "--backend", "onednn", "--threads", "2", "--seconds", "0.05",
                    "--gemm", "64", "64", "64", *extra)
            self.assertEqual(r.returncode, 0, r.stderr)
            return r.stdout
        self.assertEqual(json.loads(bench("--batch-size", "2", "--json"))["lanes"], 2)
        self.assertIn("lanes        2: each image of a batch alone", bench("--batch-size", "2"))
        self.assertEqual(json.loads(bench("--batch-size", "2", "--lanes", "1", "--json"))["lanes"], 1)
        self.assertEqual(json.loads(bench("--batch-size", "1", "--json"))["lanes"], 1)  # one image: all threads
        self.assertNotIn("lanes ", bench("--batch-size", "1"))

    def test_bench_reports_cpu_time_per_image(self):
        # Two threads busy at most: between a sliver of one core and two cores' worth of the
        # wall time an image takes (steal time makes wall time longer, never CPU time).
        r = run("bench", "--model", MODEL, "--backend", "onednn", "--threads", "2", "--seconds", "0.5",
                "--batch-size", "4", "--gemm", "64", "64", "64", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        result = json.loads(r.stdout)
        self.assertGreater(result["cpu_ms_per_image"], 0.05 * result["ms_per_image"])
        self.assertLess(result["cpu_ms_per_image"], 2.2 * result["ms_per_image"])

    def test_config_directory_and_non_safetensors_model_are_errors(self):
        r = run("classify", "--config", self.tmp, "--model", MODEL, GOOD[0])
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr.strip(), f"vitbatch: error: {self.tmp}: is a directory, not a YAML config file")
        r = run("classify", "--model", GOOD[0], GOOD[0])
        self.assertEqual(r.returncode, 2)
        self.assertIn("not a safetensors file (it is an image)", r.stderr)
        r = run("classify", "--model", os.path.join(MODEL, "config.json"), GOOD[0])
        self.assertEqual(r.returncode, 2)
        self.assertIn("is a JSON config, not weights: pass the directory", r.stderr)

    def test_output_format_follows_the_extension(self):
        for name, expect_json in (("p.jsonl", True), ("p.ndjson", True), ("p.csv", False), ("p.txt", False)):
            out = os.path.join(self.tmp, name)
            r = run("classify", "--model", MODEL, "-o", out, GOOD[0])
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(out) as f:
                first = f.readline()
            self.assertEqual(first.startswith("{"), expect_json, name)
        out = os.path.join(self.tmp, "forced.jsonl")
        run("classify", "--model", MODEL, "-o", out, "--format", "csv", GOOD[0])
        with open(out) as f:
            self.assertTrue(f.readline().startswith("path,"))

    # --- formats in folders, nothing silently skipped ---------------------------------
    def test_folder_formats_ignored_files_and_empty_inputs(self):
        from PIL import Image
        folder = os.path.join(self.tmp, "folder")
        os.mkdir(folder)
        im = Image.open(GOOD[0]).convert("RGB")
        for ext in ("webp", "bmp", "tif", "gif", "jpe", "jfif"):
            im.save(os.path.join(folder, f"cat.{ext}"), format={"jpe": "JPEG", "jfif": "JPEG", "tif": "TIFF"}.get(ext, ext.upper()))
        im.save(os.path.join(folder, "camera_no_extension"), format="JPEG")
        with open(os.path.join(folder, "notes.txt"), "w") as f:
            f.write("not an image")
        r = run("classify", "--model", MODEL, "-k", "1", folder)
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = rows_of(r.stdout)
        self.assertEqual(len(rows), 7, r.stdout)
        for row in rows:
            self.assertEqual(row[1], "285", row)  # every one the Egyptian cat
        self.assertIn("1 file in the directories and archives ignored: not images by extension or content (.txt 1)", r.stderr)
        empty = os.path.join(self.tmp, "empty")
        os.mkdir(empty)
        r = run("classify", "--model", MODEL, empty)
        self.assertEqual(r.returncode, 1)
        self.assertIn("nothing was classified: no image found", r.stderr)
        r = run("classify", "--model", MODEL, "-", stdin="")
        self.assertEqual(r.returncode, 1)

    # --- sizes ------------------------------------------------------------------------
    def test_sizes_are_bounded_and_memory_follows_the_images(self):
        for flag, value, words in (("--batch-size", "100000", "an integer from 1 to 4096"),
                                   ("--decode-threads", "100000", "an integer from 1 to 256"),
                                   ("-k", "2000000000", "an integer from 1 to 100000"),
                                   ("--top-k", "0", "an integer from 1 to 100000"),
                                   ("--threads", "0", "an integer from 1 to 1024"),
                                   ("--lanes", "0", "an integer from 1 to 1024")):
            r = run("classify", "--model", MODEL, flag, value, GOOD[0])
            self.assertEqual(r.returncode, 2, flag)
            self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
            self.assertTrue(r.stderr.startswith("vitbatch: error: "), r.stderr)
            self.assertIn(words, r.stderr)
        # Lanes share the threads out, and run only where the backend allows it.
        r = run("classify", "--model", MODEL, "--threads", "2", "--lanes", "3", GOOD[0])
        self.assertEqual((r.returncode, r.stderr), (2, "vitbatch: error: lanes (3) cannot be more than threads (2): "
                                                       "each lane runs on threads of its own\n"))
        if os.path.exists(os.path.join(os.path.dirname(vitref.VITBATCH), "libvitbatch_backend_blas.so")):
            r = run("classify", "--model", MODEL, "--backend", "blas", "--threads", "2", "--lanes", "2", GOOD[0])
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("lanes 2: backend 'blas' cannot run images side by side", r.stderr)
            r = run("classify", "--model", MODEL, "--backend", "blas", "--threads", "2", GOOD[0])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("running on blas fp32, 2 threads\n", r.stderr)
        config = os.path.join(self.tmp, "huge.yaml")
        with open(config, "w") as f:
            f.write(f"model: {os.path.abspath(MODEL)}\nbatch_size: 2147483647\n")
        r = run("classify", "--config", config, GOOD[0])
        self.assertEqual(r.returncode, 2)
        self.assertIn("'batch_size': expected an integer from 1 to 4096", r.stderr)
        # --top-k past the class count: all classes, said once.
        r = run("classify", "--model", MODEL, "-k", "1001", GOOD[0])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("--top-k 1001 is more than the model's 1000 classes", r.stderr)
        row = rows_of(r.stdout)[0]
        self.assertEqual(len(row), 2 + 3 * 1000)
        self.assertNotIn("", row[1:-1])
        # A batch whose activations cannot fit is refused before anything is allocated, with
        # the estimate (here the address space is capped to 3 GB, as `ulimit -v` does).
        import resource
        cap = lambda: resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        r = subprocess.run([vitref.VITBATCH, "classify", "--model", MODEL, "--batch-size", "4096", GOOD[0]],
                           capture_output=True, text=True, preexec_fn=cap)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertRegex(r.stderr, r"^vitbatch: error: --batch-size 4096 needs about [0-9.]+ GiB of activations "
                                   r"\([0-9]+ MiB an image\) and [0-9.]+ GiB is available: use --batch-size [0-9]+ or less")
        r = subprocess.run([vitref.VITBATCH, "classify", "--model", MODEL, GOOD[0]], capture_output=True, text=True,
                           preexec_fn=cap)
        self.assertEqual(r.returncode, 0, r.stderr)
        # A big batch over one image allocates for one image (was 1.27 GB).
        # (peak RSS of that one child, measured by a fresh Python that runs only it)
        probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True); "
                 "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        r = subprocess.run([sys.executable, "-c", probe, vitref.VITBATCH, "classify", "--model", MODEL,
                            "--batch-size", "1024", GOOD[0]], capture_output=True, text=True)
        status, peak_kib = map(int, r.stdout.split())
        self.assertEqual(status, 0)
        self.assertLess(peak_kib, 400 * 1024, "peak RSS with --batch-size 1024 and one image")

    # --- the command line ---------------------------------------------------------------
    def test_usage_errors_read_like_git(self):
        cases = [(["classiffy", "x"], "vitbatch: error: unknown command 'classiffy' (did you mean 'classify'?)"),
                 (["classify", "--modle", "m", "x"], "vitbatch: error: unknown option '--modle' for 'vitbatch classify' (did you mean '--model'?)"),
                 (["classify", "--top-k", "0", "x"], "vitbatch: error: --top-k: expected an integer from 1 to 100000, got '0'"),
                 ([], "vitbatch: error: no command given")]
        for args, start in cases:
            r = run(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
            self.assertTrue(r.stderr.startswith(start), r.stderr)
            self.assertLess(len(r.stderr), 300, r.stderr)  # no 309-digit range

    def test_help_and_version(self):
        r = run("classify", "--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("Exit status:", r.stdout)
        self.assertIn("Examples:", r.stdout)
        self.assertIn("default 16", r.stdout)
        r = run("--version")
        self.assertEqual(r.returncode, 0)
        for word in ("vitbatch ", "plugin ABI", "libjpeg-turbo", "libpng", "libwebp", "libtiff", "giflib"):
            self.assertIn(word, r.stdout)

    def test_info_and_backends(self):
        info = json.loads(run("info", "--model", MODEL, "--json").stdout)
        self.assertEqual(info["architecture"]["dim"], 192)
        self.assertEqual(info["defaults_used"], {})
        text = run("info", "--model", MODEL).stdout
        self.assertNotIn("= attention(", text)  # the graph only with --graph
        self.assertIn("= attention(", run("info", "--model", MODEL, "--graph").stdout)
        backends = json.loads(run("backends", "--json").stdout)
        names = {b["name"]: b for b in backends["backends"]}
        self.assertEqual(names["reference"]["precisions"], ["fp32"])
        self.assertTrue(names[backends["auto"]]["auto"])
        if "onednn" in names:
            self.assertEqual(names["onednn"]["precisions"], ["fp32", "bf16", "int8"])
        self.assertIn("* = what --backend auto runs on", run("backends").stdout)

    def test_summary_rate_counts_classified_images_only(self):
        missing = [os.path.join(self.tmp, f"missing{i}.jpg") for i in range(200)]
        r = run("classify", "--model", MODEL, GOOD[0], *missing)
        self.assertEqual(r.returncode, 1)
        line = r.stderr.splitlines()[-1]
        seconds = float(line.split(" in ")[1].split(" s ")[0])
        rate = float(line.split("(")[1].split(" images/s")[0])
        self.assertIn("1 classified, 200 failed", line)
        if seconds >= 0.2:  # at 0.1 s resolution, only then is the rate's rounding small
            self.assertAlmostEqual(rate, 1 / seconds, delta=0.6 / seconds)

    # --- the terminal ---------------------------------------------------------------------
    def test_progress_bar_never_glues_rows_and_first_ctrl_c_is_answered(self):
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(vitref.VITBATCH, [vitref.VITBATCH, "classify", "--model", MODEL, "--backend", "reference",
                                       "--batch-size", "2", "--progress", "always", "-k", "1", *GOOD, *GOOD])
        out = b""
        deadline = time.time() + 120
        sent = False
        while time.time() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            if not sent and out.count(b".png,") + out.count(b".jpg,") >= 2:
                os.kill(pid, signal.SIGINT)
                sent = True
        _, status = os.waitpid(pid, 0)
        text = out.decode(errors="replace")
        self.assertTrue(sent, text)
        self.assertEqual(os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1, 130, text)
        self.assertIn("stopping after the", text)
        self.assertIn("Ctrl-C again to quit", text)
        # Every row starts a line of its own once the bar's "clear line" sequences are applied.
        screen_lines = [line.split("\r")[-1] for line in text.replace("\x1b[K", "").split("\n")]
        for line in screen_lines:
            if ".png," in line or ".jpg," in line:
                self.assertTrue(line.startswith(IMAGES), repr(line))

    # --- resume and shards by what the path means, not how it is spelled ---------------
    def test_resume_across_spellings_and_shards_across_spellings(self):
        tree = os.path.join(self.tmp, "photos")
        os.makedirs(os.path.join(tree, "sub"))
        for i, p in enumerate(GOOD):
            shutil.copy(p, os.path.join(tree, "sub" if i % 2 else "", f"{i}_" + os.path.basename(p)))
        out = os.path.join(self.tmp, "preds.csv")
        r = run("classify", "--model", MODEL, "-o", out, "photos", cwd=self.tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out + ".meta.json") as f:
            meta = json.load(f)
        self.assertEqual(meta["precision"], "fp32")
        r = run("classify", "--model", MODEL, "-o", out, "--resume", tree, cwd=self.tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("0 classified, 0 failed, 4 skipped", r.stderr)
        with open(out) as f:
            self.assertEqual(len(rows_of(f.read())), 4, "duplicates")
        # Another backend or precision is refused, and the file is untouched.
        for extra in (["--backend", "reference"], ["--precision", "bf16"]):
            r = run("classify", "--model", MODEL, "-o", out, "--resume", *extra, tree)
            self.assertEqual(r.returncode, 2, extra)
            self.assertIn("cannot resume", r.stderr)
        # Shards given different spellings of one directory cover every file exactly once.
        seen = []
        for index, spelling in ((0, "photos"), (1, tree + "/"), (2, "./photos/../photos")):
            r = run("classify", "--model", MODEL, "--shard", f"{index}/3", spelling, cwd=self.tmp)
            seen += [os.path.basename(row[0]) for row in rows_of(r.stdout)]
        self.assertEqual(sorted(seen), sorted(f"{i}_" + os.path.basename(p) for i, p in enumerate(GOOD)))
        # --absolute-paths writes what the path means.
        r = run("classify", "--model", MODEL, "--absolute-paths", "photos/sub", cwd=self.tmp)
        for row in rows_of(r.stdout):
            self.assertTrue(row[0].startswith(tree + "/sub/"), row[0])


if __name__ == "__main__":
    unittest.main(verbosity=2)
