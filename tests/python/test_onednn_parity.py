"""The onednn backend on the real ViT-Ti and every shared photo, fed the same input tensors
as an independent torch.nn ViT: fp32 as tight as the reference backend (max |logit diff|
<= 1e-3); bf16 with the same top-1 as fp32 on every photo, on oneDNN's matmuls and on
vitbatch's own AVX512_BF16 kernel (where the CPU has it); int8 with the same top-1 as fp32
wherever fp32's top-1 probability is above 0.5 (agreement on the rest is printed)."""

import os
import tempfile
import unittest

import numpy as np
import torch
from PIL import Image

import vitref


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class OnednnParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        sd = vitref.read_safetensors(os.path.join(vitref.MODEL_DIR, "model.safetensors"))
        crop, to_tensor = vitref.model_eval_transform(vitref.MODEL_DIR)
        cls.paths = vitref.photos()
        x = torch.stack([to_tensor(crop(Image.open(p).convert("RGB"))) for p in cls.paths])
        with torch.no_grad():
            cls.torch_logits = vitref.TorchViT().load_timm(sd)(x).numpy()
        cls.inputs = x.numpy()
        cls.logits = {}
        with tempfile.TemporaryDirectory() as tmp:
            for precision in ("fp32", "bf16", "int8"):
                cls.logits[precision] = vitref.vitbatch_logits(vitref.MODEL_DIR, cls.inputs, tmp, "onednn", precision)
            cls.logits["bf16 onednn"] = vitref.vitbatch_logits(vitref.MODEL_DIR, cls.inputs, tmp,
                                                               "onednn,bf16_gemm=onednn", "bf16")
            if "avx512_bf16" in open("/proc/cpuinfo").read():
                cls.logits["bf16 own"] = vitref.vitbatch_logits(vitref.MODEL_DIR, cls.inputs, tmp,
                                                                "onednn,bf16_gemm=own", "bf16")

    def report(self, precision):
        got, ref = self.logits[precision], self.logits["fp32"]
        agree = (got.argmax(1) == ref.argmax(1))
        print(f"\n{precision}: max |logit - fp32 logit| = {np.abs(got - ref).max():.3f}, "
              f"top-1 agreement with fp32 {agree.sum()}/{len(agree)}")
        for p, a, g, r in zip(self.paths, agree, got.argmax(1), softmax(ref)):
            print(f"  {os.path.basename(p):24s} fp32 top-1 {r.argmax():4d} (p={r.max():.3f})  {precision} {g:4d}"
                  f"{'' if a else '  DIFFERENT'}")
        return agree

    def test_fp32_matches_torch(self):
        diff = np.abs(self.logits["fp32"] - self.torch_logits).max()
        print(f"\nfp32: max |logit diff| to torch = {diff:.2e}")
        self.assertLessEqual(float(diff), 1e-3)

    def test_bf16_keeps_every_top1(self):
        agree = self.report("bf16")
        self.assertTrue(agree.all())

    def test_bf16_on_each_matmul_kernel_keeps_every_top1(self):
        if "bf16 own" not in self.logits:
            self.skipTest("this CPU has no AVX512_BF16 for vitbatch's own bf16 kernel")
        for kernel in ("bf16 onednn", "bf16 own"):
            self.assertTrue(self.report(kernel).all(), kernel)
        # The two kernels differ only in rounding: their logits within bf16's reach of each other.
        diff = np.abs(self.logits["bf16 own"] - self.logits["bf16 onednn"]).max()
        print(f"\nbf16 own kernel against oneDNN's: max |logit diff| = {diff:.3f}")
        self.assertLess(float(diff), 0.5)

    def test_int8_keeps_confident_top1(self):
        agree = self.report("int8")
        confident = softmax(self.logits["fp32"]).max(axis=1) > 0.5
        self.assertGreaterEqual(int(confident.sum()), 5)
        self.assertTrue(agree[confident].all())


if __name__ == "__main__":
    unittest.main(verbosity=2)
