"""The real ViT-Ti on every shared photo: vitbatch's executor (reference backend) and an
independent torch.nn ViT, fed the same input tensors, agree to max |logit diff| <= 1e-3."""

import os
import tempfile
import unittest

import numpy as np

import vitref


class RealModelParity(unittest.TestCase):
    def test_logits_match_torch_on_every_photo(self):
        paths, x, expected = vitref.torch_logits_on_photos()
        self.assertGreaterEqual(len(paths), 10)
        with tempfile.TemporaryDirectory() as tmp:
            got = vitref.vitbatch_logits(vitref.MODEL_DIR, x.numpy(), tmp)
        self.assertEqual(got.shape, expected.shape)
        diff = np.abs(got - expected).max(axis=1)
        for p, d in zip(paths, diff):
            print(f"{os.path.basename(p):24s} max|dlogit| = {d:.2e}")
        self.assertLessEqual(float(diff.max()), 1e-3)
        np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))
        names = [os.path.basename(p) for p in paths]
        self.assertEqual(int(got[names.index("chelsea.png")].argmax()), 285)
        self.assertEqual(int(got[names.index("coffee.png")].argmax()), 967)


if __name__ == "__main__":
    unittest.main(verbosity=2)
