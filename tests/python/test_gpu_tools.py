"""scripts/gpu_kernel_shares.py, the summary of scripts/gpu_profile.sh, on Nsight Compute's own
CSV (rows as ncu 2025.3 wrote them on an H200, its warnings and ==PROF== lines included): the
kernels summed by name without their argument lists, shares of the total, heaviest first, per
batch; other metrics and ncu's messages ignored; an empty profile is an error."""

import os
import subprocess
import sys
import tempfile
import unittest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "gpu_kernel_shares.py")
HEADER = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size",'
          '"Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"')


def row(i, kernel, value, unit="ns", metric="gpu__time_duration.sum"):
    return (f'"{i}","7765","vitbatch","127.0.0.1","{kernel}","1","13","(128, 1, 1)","(4, 768, 1)","0","9.0",'
            f'"Command line profiler metrics","{metric}","{unit}","{value}"')


ATTENTION = ("void cuda_backend::<unnamed>::attention_kernel<__nv_bfloat16, __nv_bfloat16, __nv_bfloat16>"
             "(const T3 *, T4 *, long, long, float)")
GEMM = "nvjet_sm90_tss_192x192_64x4_1x2_h_bx_coopB_bias_TNN"


def shares(lines, *args):
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    try:
        return subprocess.run([sys.executable, SCRIPT, f.name, *args], capture_output=True, text=True)
    finally:
        os.unlink(f.name)


class KernelShares(unittest.TestCase):
    def test_sums_by_kernel_heaviest_first(self):
        lines = ["==WARNING== Note: Running with uncontrolled GPU caches.",
                 "==PROF== Connected to process 7765 (/work/main/.gpu/bin/vitbatch)", HEADER,
                 row(0, ATTENTION, "93,184"), row(1, GEMM, "36,000"), row(2, ATTENTION, "94,304"),
                 row(3, GEMM, "0.1", unit="ms"), row(4, GEMM, "12", metric="sm__cycles_elapsed.avg"),
                 "==PROF== Disconnected from process 7765"]
        r = shares(lines, "--batches", "2", "--title", "ti")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.splitlines()
        # 93.184 + 94.304 us of attention, 36 + 100 us of the GEMM: 323.488 us, 0.162 ms a batch.
        self.assertEqual(out[0], "== ti: 4 kernels, 0.162 ms of kernel time a batch")
        self.assertEqual(len(out), 3)
        self.assertTrue(out[1].endswith("cuda_backend::<unnamed>::attention_kernel<__nv_bfloat16, __nv_bfloat16, __nv_bfloat16>"),
                        out[1])
        self.assertIn(" 58.0%", " " + out[1])  # 187.488 / 323.488
        self.assertIn("0.094 ms", out[1])
        self.assertIn("x  1.0", out[1])
        self.assertTrue(out[2].endswith(GEMM), out[2])
        self.assertIn(" 42.0%", " " + out[2])

    def test_no_durations_is_an_error(self):
        r = shares(["==PROF== Connected to process 1", HEADER, row(0, GEMM, "5", metric="sm__cycles_elapsed.avg")])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no kernel durations", r.stderr)


if __name__ == "__main__":
    unittest.main()
