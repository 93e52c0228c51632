"""The cuda backend from the outside. Two modes, one ctest entry each:

  no-gpu: on a machine without a usable GPU, the plugin is listed with the reason, --backend
          cuda fails with one line and exit status 2, and auto does not pick it;
  gpu:    on a GPU, the real ViT-Ti on every photo against the independent torch.nn ViT
          (fp32: logits within 1e-3, the same top-1; bf16/fp16: the same top-1).

Each mode exits 77 (ctest's SKIP) with its reason where it cannot run: the plugin was not
built (no CUDA toolkit), or the machine has (no-gpu) or lacks (gpu) a CUDA device."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

import vitref

PLUGIN = os.path.join(vitref.BIN, "libvitbatch_backend_cuda.so")
SKIP = 77


def cuda_entry():
    out = subprocess.run([vitref.VITBATCH, "backends", "--json"], capture_output=True, text=True, check=True).stdout
    for b in json.loads(out)["backends"]:
        if b["name"] == "cuda":
            return b
    return None


class WithoutGpu(unittest.TestCase):
    def test_listed_with_its_reason_refused_in_one_line_never_auto(self):
        entry = cuda_entry()
        self.assertNotIn("rejected", entry)
        self.assertTrue(entry["unavailable"].startswith("no CUDA device"), entry)
        self.assertEqual(entry["score"], 0)
        self.assertFalse(entry["auto"])
        text = subprocess.run([vitref.VITBATCH, "backends"], capture_output=True, text=True).stdout
        self.assertIn("    not available here: no CUDA device", text)
        photo = vitref.photos()[0]
        for extra in ([], ["--precision", "bf16"], ["--backend-option", "tf32=true"]):
            r = subprocess.run([vitref.VITBATCH, "classify", "--backend", "cuda", "-m", vitref.MODEL_DIR, photo] + extra,
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertEqual(r.stdout, "")
            lines = r.stderr.strip().splitlines()
            self.assertEqual(len(lines), 1, r.stderr)
            self.assertTrue(lines[0].startswith("vitbatch: error: backend 'cuda' failed to start: no CUDA device"), lines[0])
        # A list with a CPU backend after it does not get further either: the cuda context is
        # asked for first, and a user who named it wants to hear that it cannot run.
        r = subprocess.run([vitref.VITBATCH, "classify", "--backend", "cuda,onednn", "-m", vitref.MODEL_DIR, photo],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        r = subprocess.run([vitref.VITBATCH, "classify", "-m", vitref.MODEL_DIR, photo], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("cuda", r.stderr)


class OnGpu(unittest.TestCase):
    def test_real_model_against_torch_on_every_photo(self):
        import numpy as np
        paths, x, expected = vitref.torch_logits_on_photos()
        with tempfile.TemporaryDirectory() as tmp:
            for precision in ("fp32", "bf16", "fp16"):
                got = vitref.vitbatch_logits(vitref.MODEL_DIR, x.numpy(), tmp, "cuda", precision)
                diff = float(np.abs(got - expected).max())
                print(f"cuda {precision}: max |logit diff| {diff:.2e}")
                if precision == "fp32":
                    self.assertLessEqual(diff, 1e-3)
                np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))


def main():
    mode = sys.argv.pop(1)
    if not os.path.exists(PLUGIN):
        print("SKIP: the cuda backend was not built (no CUDA toolkit found by CMake)")
        sys.exit(SKIP)
    entry = cuda_entry()
    has_gpu = entry is not None and "unavailable" not in entry
    if mode == "no-gpu" and has_gpu:
        print("SKIP: this machine has a CUDA device (the gpu mode runs here)")
        sys.exit(SKIP)
    if mode == "gpu" and not has_gpu:
        print("SKIP: " + (entry or {}).get("unavailable", "the cuda plugin is not usable"))
        sys.exit(SKIP)
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(WithoutGpu if mode == "no-gpu" else OnGpu)
    sys.exit(0 if unittest.TextTestRunner(verbosity=2).run(suite).wasSuccessful() else 1)


if __name__ == "__main__":
    main()
