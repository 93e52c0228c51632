"""Hostile inputs and faults: each case here once crashed, hung, exploded or lost rows.

Malformed checkpoints and configs, NaN answers, decompression and scan bombs, YAML alias
bombs, FIFOs where files are expected, write failures, concurrent writers, resume over
read-only and symlinked outputs, misbehaving plugins, unsafe RUNPATHs, NUL bytes in paths.
Every run must end with a one-line reason and a documented status, never a signal."""

import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
import unittest
import zlib

import numpy as np
from PIL import Image

import edge_cases
import vitref

PHOTO = os.path.join(vitref.IMAGES_DIR, "chelsea.png")


def run(*args, timeout=60, **kw):
    return subprocess.run([vitref.VITBATCH, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


class Hostile(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.model, self.labels = edge_cases.small_model(self.tmp)
        self.state = vitref.random_timm_state(1, image=32, patch=8, dim=48, depth=2, mlp=96, classes=10)
        # Hard links need one filesystem: ../shared may be another (a read-only bind mount).
        self.photo = os.path.join(self.tmp, "photo.png")
        shutil.copy(PHOTO, self.photo)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def checkpoint(self, name, changes=None, config=None):
        folder = os.path.join(self.tmp, name)
        os.makedirs(folder)
        sd = dict(self.state)
        for k, v in (changes or {}).items():
            if v is None:
                sd.pop(k)
            else:
                sd[k] = v
        vitref.write_safetensors(os.path.join(folder, "model.safetensors"), sd)
        shutil.copy(os.path.join(self.model, "config.json"), os.path.join(folder, "config.json"))
        if config is not None:
            with open(os.path.join(folder, "config.json"), "w") as f:
                json.dump(config, f)
        return folder

    def assert_refused(self, r, words, status=2):
        self.assertEqual(r.returncode, status, r.stderr)  # a status, not a signal (negative)
        self.assertIn(words, r.stderr)
        self.assertTrue(r.stderr.startswith("vitbatch: error: "), r.stderr)

    # --- checkpoints -------------------------------------------------------------------
    def test_malformed_checkpoints_are_refused_at_load(self):
        dim = 48
        cases = {
            # 4 channels read past each image (ASan heap-buffer-overflow); 1 mixed images of a batch
            "four_channels": ({"patch_embed.proj.weight": np.zeros((dim, 4, 8, 8), np.float32)}, "takes 4 input channels"),
            "one_channel": ({"patch_embed.proj.weight": np.zeros((dim, 1, 8, 8), np.float32)}, "takes 1 input channels"),
            "zero_channels": ({"patch_embed.proj.weight": np.zeros((dim, 0, 8, 8), np.float32)}, "input channels"),
            "patch_0x0": ({"patch_embed.proj.weight": np.zeros((dim, 3, 0, 0), np.float32)}, "patch size must be positive"),
            "mlp_width_0": ({"blocks.0.mlp.fc1.weight": np.zeros((0, dim), np.float32)},
                            "tensor 'blocks.0.mlp.fc1.weight' has shape [0,48], expected [96,48]"),
            "zero_classes": ({"head.weight": np.zeros((0, dim), np.float32), "head.bias": np.zeros((0,), np.float32)},
                             "at least one class"),
            "pos_embed_empty": ({"pos_embed": np.zeros((1, 0, dim), np.float32)}, "pos_embed"),
        }
        for name, (changes, words) in cases.items():
            with self.subTest(name):
                folder = self.checkpoint(name, changes)
                for command in (["info", "--model", folder], ["classify", "--model", folder, "--labels", self.labels,
                                                              "--backend", "reference", "--batch-size", "2", PHOTO, PHOTO]):
                    self.assert_refused(run(*command), words)

    def test_broken_model_files_and_configs(self):
        loop = os.path.join(self.tmp, "loop")
        os.makedirs(loop)
        os.symlink("model.safetensors", os.path.join(loop, "model.safetensors"))
        self.assert_refused(run("info", "--model", loop), "model.safetensors")
        confdir = self.checkpoint("confdir")
        os.remove(os.path.join(confdir, "config.json"))
        os.mkdir(os.path.join(confdir, "config.json"))
        self.assert_refused(run("info", "--model", confdir), "config.json: is a directory")
        bad_eps = self.checkpoint("bad_eps", config={"num_heads": 3, "layer_norm_eps": -1})
        self.assert_refused(run("info", "--model", bad_eps), "layer_norm_eps -1.000000 (config.json) must be in (0, 1)")
        zero_heads = self.checkpoint("zero_heads", config={"num_heads": 0})
        self.assert_refused(run("info", "--model", zero_heads), "0 heads do not divide dim 48")
        tiny_crop = self.checkpoint("tiny_crop", config={"num_heads": 3, "pretrained_cfg": {"crop_pct": 1e-9}})
        self.assert_refused(run("info", "--model", tiny_crop), "crop_pct must be in [0.1, 4]")
        self.assert_refused(run("classify", "--model", self.checkpoint("c0", {"head.weight": np.zeros((0, 48), np.float32),
                                                                               "head.bias": np.zeros((0,), np.float32)}),
                                "--labels", "/dev/null", PHOTO), "at least one class")

    def test_non_finite_answers_are_error_rows(self):
        bias = self.state["head.bias"].copy()
        bias[3] = np.nan
        folder = self.checkpoint("nan_bias", {"head.bias": bias})
        out = os.path.join(self.tmp, "nan.csv")
        r = run("classify", "--model", folder, "--labels", self.labels, "-o", out, PHOTO)
        self.assertEqual(r.returncode, 1, r.stderr)
        with open(out) as f:
            row = f.read().splitlines()[1]
        self.assertTrue(row.endswith(",non-finite logits (NaN or Inf)"), row)
        # --resume does not keep it as finished: it is tried again.
        r = run("classify", "--model", folder, "--labels", self.labels, "-o", out, "--resume", PHOTO)
        self.assertIn("0 classified, 1 failed, 0 skipped", r.stderr)
        for yaml_text, words in (("preprocess: {std: [.nan, 0.5, 0.5]}\n", "expected a finite number"),
                                 ("preprocess: {mean: [1e39, 0.5, 0.5]}\n", "expected a finite number"),
                                 ("preprocess: {std: [1e-45, 0.5, 0.5]}\n", "at least 1e-6")):
            config = os.path.join(self.tmp, "bad.yaml")
            with open(config, "w") as f:
                f.write(f"model: {self.model}\nlabels: {self.labels}\n" + yaml_text)
            self.assert_refused(run("classify", "--config", config, PHOTO), words)

    # --- bombs and hangs ------------------------------------------------------------------
    def test_png_pixel_limit_holds_when_ihdr_is_not_the_first_chunk(self):
        def chunk(kind, body):
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        w = h = 20000
        comp = zlib.compressobj(9)
        row = b"\0" * (3 * w + 1)
        data = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
        png = (b"\x89PNG\r\n\x1a\n" + chunk(b"vpAg", b"1234") + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
               + chunk(b"IDAT", data) + chunk(b"IEND", b""))
        path = os.path.join(self.tmp, "late_ihdr.png")
        with open(path, "wb") as f:
            f.write(png)
        r = run("classify", "--model", self.model, "--labels", self.labels, path)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("20000x20000 = 400000000 pixels, over the limit", r.stdout)

    def test_yaml_alias_bomb_and_duplicate_keys(self):
        lines = ["backend:", "  name: reference", "  options:", "    a: &a [x, x, x, x, x, x, x, x, x, x]"]
        prev = "a"
        for name in "bcdefghi":
            lines.append(f"    {name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
            prev = name
        bomb = os.path.join(self.tmp, "bomb.yaml")
        with open(bomb, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.assertLess(os.path.getsize(bomb), 1000)
        started = time.time()
        self.assert_refused(run("classify", "--config", bomb, "--model", self.model, PHOTO, timeout=20), "alias bomb")
        self.assertLess(time.time() - started, 10)
        dup = os.path.join(self.tmp, "dup.yaml")
        with open(dup, "w") as f:
            f.write("batch_size: 4\nbatch_size: 8\n")
        self.assert_refused(run("classify", "--config", dup, "--model", self.model, PHOTO), "dup.yaml:2: 'batch_size': key given twice")

    def test_progressive_jpeg_scan_bomb_is_refused(self):
        if not shutil.which("cjpeg"):
            self.skipTest("cjpeg (libjpeg-turbo-progs) is not installed")
        ppm = os.path.join(self.tmp, "src.ppm")
        Image.open(PHOTO).convert("RGB").save(ppm)
        prog = os.path.join(self.tmp, "prog.jpg")
        subprocess.run(["cjpeg", "-progressive", "-outfile", prog, ppm], check=True)
        with open(prog, "rb") as f:
            data = f.read()
        scans = [i for i in range(len(data) - 1) if data[i:i + 2] == b"\xff\xda"]
        end = data.rfind(b"\xff\xd9")
        first_scan = data[scans[0]:scans[1]]  # the DC scan, repeated: each is a pass over the image
        bomb = os.path.join(self.tmp, "scan_bomb.jpg")
        with open(bomb, "wb") as f:
            f.write(data[:end] + first_scan * 1500 + b"\xff\xd9")
        r = run("classify", "--model", self.model, "--labels", self.labels, bomb)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("more than the allowed number of progressive scans (1000)", r.stdout)

    def test_fifos_where_files_are_expected_do_not_block(self):
        def fifo(path):
            if os.path.lexists(path):
                os.remove(path)
            os.mkfifo(path)
            return path
        weights = self.checkpoint("fifo_weights")
        fifo(os.path.join(weights, "model.safetensors"))
        config = self.checkpoint("fifo_config")
        fifo(os.path.join(config, "config.json"))
        labels = fifo(os.path.join(self.tmp, "labels.fifo"))
        yaml_fifo = fifo(os.path.join(self.tmp, "run.yaml"))
        plugins = os.path.join(self.tmp, "plugins")
        os.mkdir(plugins)
        fifo(os.path.join(plugins, "libvitbatch_backend_reference.so"))
        cases = [(["info", "--model", weights], "not a regular file"),
                 (["info", "--model", config], "not a regular file"),
                 (["classify", "--model", self.model, "--labels", labels, PHOTO], "not a regular file"),
                 (["classify", "--config", yaml_fifo, "--model", self.model, PHOTO], "not a regular file")]
        for args, words in cases:
            with self.subTest(args[-1]):
                self.assert_refused(run(*args, timeout=20), words)
        r = run("backends", "--plugin-dir", plugins, timeout=20)
        self.assertEqual(r.returncode, 0)
        self.assertIn("not a regular file", r.stdout)

    # --- data loss ------------------------------------------------------------------------
    def test_write_failures_are_errors_not_a_closed_pipe(self):
        for target in ("/dev/full",):
            r = run("classify", "--model", self.model, "--labels", self.labels, "-o", target, PHOTO)
            self.assertEqual(r.returncode, 4, r.stderr)
            self.assertIn(f"vitbatch: error: {target}: No space left on device", r.stderr)
        # A disk that fills mid-run: complete rows stay, and --resume finishes the file.
        mount = os.path.join(self.tmp, "small")
        os.mkdir(mount)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mount], capture_output=True).returncode:
            self.skipTest("cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN)")
        try:
            tree = os.path.join(self.tmp, "tree")
            os.mkdir(tree)
            for i in range(400):
                os.link(self.photo, os.path.join(tree, f"long_name_to_fill_the_disk_{i:04d}.png"))
            out = os.path.join(mount, "preds.csv")
            r = run("classify", "--model", self.model, "--labels", self.labels, "-o", out, "--batch-size", "8", tree)
            self.assertEqual(r.returncode, 4, r.stderr)
            self.assertIn("No space left on device", r.stderr)
            with open(out) as f:
                text = f.read()
            done = len(text.splitlines()) - 1
            self.assertGreater(done, 0)
            moved = os.path.join(self.tmp, "preds.csv")
            shutil.move(out, moved)
            shutil.move(out + ".meta.json", moved + ".meta.json")
            r = run("classify", "--model", self.model, "--labels", self.labels, "-o", moved, "--resume", tree)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(moved) as f:
                rows = f.read().splitlines()[1:]
            self.assertEqual(len(rows), 400)
            self.assertEqual(len({row.split(",")[0] for row in rows}), 400)
        finally:
            subprocess.run(["umount", "-l", mount])

    def test_a_second_writer_is_refused(self):
        # The first run reads its paths from a pipe held open, so it is certainly still
        # writing when the second one starts (was: 111 of 300 rows survived two writers).
        paths = [os.path.join(self.tmp, f"{i:04d}.png") for i in range(40)]
        for p in paths:
            os.link(self.photo, p)
        out = os.path.join(self.tmp, "preds.csv")
        first = subprocess.Popen([vitref.VITBATCH, "classify", "--model", self.model, "--labels", self.labels,
                                  "--progress", "never", "-o", out, "--resume", "-"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first.stdin.write("".join(p + "\n" for p in paths[:20]).encode())
        first.stdin.flush()
        deadline = time.time() + 30
        def rows_written():
            if not os.path.exists(out):
                return 0
            with open(out) as f:
                return len(f.read().splitlines()) - 1
        while time.time() < deadline and rows_written() < 20:
            time.sleep(0.02)
        second = subprocess.run([vitref.VITBATCH, "classify", "--model", self.model, "--labels", self.labels,
                                 "-o", out, "--resume", "-"], input="".join(p + "\n" for p in paths),
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(second.returncode, 2, second.stderr)
        self.assertIn(f"another vitbatch run is writing this file (pid {first.pid})", second.stderr)
        first.communicate(input="".join(p + "\n" for p in paths[20:]).encode(), timeout=120)
        self.assertEqual(first.returncode, 0)
        with open(out) as f:
            rows = f.read().splitlines()[1:]
        self.assertEqual(sorted(row.split(",")[0] for row in rows), sorted(paths))

    def test_resume_keeps_the_file_it_updates(self):
        out = os.path.join(self.tmp, "preds.csv")
        args = ["classify", "--model", self.model, "--labels", self.labels, "-o", out]
        self.assertEqual(run(*args, PHOTO, "missing.png").returncode, 1)
        os.chmod(out, 0o444)
        self.assert_refused(run(*args, "--resume", PHOTO, "missing.png"), "the file is read-only")
        self.assertEqual(os.stat(out).st_mode & 0o777, 0o444)
        os.chmod(out, 0o640)
        # Symlinked output: the error row is dropped by rewriting the target; the link stays.
        target = os.path.join(self.tmp, "real.csv")
        shutil.move(out, target)
        shutil.move(out + ".meta.json", target + ".meta.json")
        link = os.path.join(self.tmp, "link.csv")
        os.symlink(target, link)
        shutil.copy(target + ".meta.json", link + ".meta.json")
        r = run("classify", "--model", self.model, "--labels", self.labels, "-o", link, "--resume", PHOTO, "missing.png")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertTrue(os.path.islink(link))
        self.assertEqual(os.stat(target).st_mode & 0o777, 0o640)
        with open(target) as f:
            rows = f.read().splitlines()[1:]
        self.assertEqual([row.split(",")[0] for row in rows], [PHOTO, "missing.png"])

    # --- plugins and the binary -------------------------------------------------------------
    def test_crashing_plugin_does_not_take_vitbatch_down(self):
        plugins = os.path.join(self.tmp, "plugins")
        os.mkdir(plugins)
        shutil.copy(os.path.join(vitref.TEST_PLUGIN_DIR, "libvitbatch_backend_crash.so"), plugins)
        r = run("backends", "--plugin-dir", plugins)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("crashed while loading (signal 11", r.stdout)
        r = run("classify", "--plugin-dir", plugins, "--model", self.model, "--labels", self.labels, PHOTO)
        self.assertEqual(r.returncode, 0, r.stderr)  # the crashing plugin is never loaded for this
        self.assert_refused(run("classify", "--plugin-dir", plugins, "--backend", "crash", "--model", self.model,
                                "--labels", self.labels, PHOTO), "crashed while loading")

    def test_no_built_binary_searches_an_empty_or_relative_runpath(self):
        files = [os.path.join(vitref.BIN, f) for f in os.listdir(vitref.BIN) if f.endswith(".so") or f.startswith("vitbatch")]
        self.assertGreater(len(files), 3)
        for path in files:
            dynamic = subprocess.run(["readelf", "-d", path], capture_output=True, text=True).stdout
            for line in dynamic.splitlines():
                if "RUNPATH" in line or "RPATH" in line:
                    entries = line.split("[", 1)[1].rsplit("]", 1)[0].split(":")
                    for entry in entries:
                        self.assertTrue(entry.startswith("/") or entry.startswith("$ORIGIN"), f"{path}: {line}")

    def test_nul_inside_a_stdin_record_is_an_error_row(self):
        r = subprocess.run([vitref.VITBATCH, "classify", "--model", self.model, "--labels", self.labels, "-"],
                           input=(PHOTO + "\0junk\n" + PHOTO + "\n").encode(), capture_output=True)
        self.assertEqual(r.returncode, 1, r.stderr)
        rows = r.stdout.decode().splitlines()[1:]
        self.assertEqual(len(rows), 2)
        self.assertTrue(rows[0].startswith(PHOTO + "\\0junk,"), rows[0])
        self.assertTrue(rows[0].endswith("it holds a NUL byte (use -0 for NUL-separated input)"))
        self.assertTrue(rows[1].startswith(PHOTO + ",") and rows[1].endswith(","))


if __name__ == "__main__":
    unittest.main(verbosity=2)
