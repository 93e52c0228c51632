"""bench/instruction_peak.cpp (vitbatch_instruction_peak): it runs each matmul instruction this
CPU has and only those (against /proc/cpuinfo's flags: an instruction the CPU lacks would end
the run with SIGILL, one it has must not be reported missing), gives every available one a
positive rate whose GFLOP/s follow from the instruction's operations, and refuses a bad
--seconds with a usage error. No rate is compared with another here: timings belong in
BENCHMARKS.md, not in a test."""

import json
import os
import subprocess
import unittest

TOOL = os.path.join(os.environ.get("VITBATCH_BIN", "build/bin"), "vitbatch_instruction_peak")
OPERATIONS = {"vfmadd231ps zmm": 32, "vfmadd231ps ymm": 16, "vdpbf16ps zmm": 64, "vpdpbusd zmm": 128}
NEEDS = {"vfmadd231ps zmm": {"avx512f"}, "vfmadd231ps ymm": {"avx2", "fma"},
         "vdpbf16ps zmm": {"avx512f", "avx512_bf16"}, "vpdpbusd zmm": {"avx512f", "avx512_vnni"}}


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


class InstructionPeak(unittest.TestCase):
    def test_runs_what_the_cpu_has(self):
        run = subprocess.run([TOOL, "--json", "--seconds", "0.02"], capture_output=True, text=True, timeout=120)
        self.assertEqual(run.returncode, 0, run.stderr)
        report = json.loads(run.stdout)
        self.assertEqual(report["cores"], os.cpu_count())
        flags = cpu_flags()
        names = [i["instruction"] for i in report["instructions"]]
        self.assertEqual(sorted(names), sorted(OPERATIONS))
        for ins in report["instructions"]:
            name = ins["instruction"]
            self.assertEqual(ins["available"], NEEDS[name] <= flags, name)
            if not ins["available"]:
                self.assertNotIn("per_second_one_core", ins)
                continue
            self.assertGreater(ins["per_second_one_core"], 0, name)
            self.assertAlmostEqual(ins["gflops_one_core"], ins["per_second_one_core"] * OPERATIONS[name] / 1e9,
                                   delta=0.1 + 1e-3 * ins["gflops_one_core"], msg=name)
            self.assertGreater(ins["gflops_all_cores"], 0, name)

    def test_table_names_each_instruction(self):
        run = subprocess.run([TOOL, "--seconds", "0.02"], capture_output=True, text=True, timeout=120)
        self.assertEqual(run.returncode, 0, run.stderr)
        for name in OPERATIONS:
            self.assertIn(name, run.stdout)

    def test_bad_seconds_is_a_usage_error(self):
        for bad in (["--seconds", "0"], ["--seconds", "abc"], ["--seconds"], ["--fast"]):
            run = subprocess.run([TOOL, *bad], capture_output=True, text=True, timeout=60)
            self.assertEqual(run.returncode, 2, bad)
            self.assertIn("vitbatch_instruction_peak", run.stderr, bad)
            self.assertEqual(run.stdout, "", bad)


if __name__ == "__main__":
    unittest.main()
