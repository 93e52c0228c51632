#!/usr/bin/env python3
"""vitbatch vs PyTorch vs ONNX Runtime, side by side in one run on this machine.

    bash bench/side_by_side.sh [--seconds 6]      (sets up ONNX Runtime in bench/.venv)

Models: ViT-Ti/16 with the real weights (../shared), ViT-S/16 and ViT-B/16 with synthetic
weights of the real shapes (the same file for all three engines). Each engine gets 2
threads. PyTorch runs the torch.nn ViT of tests/python/vitref.py with
OPENBLAS_CORETYPE=SkylakeX so OpenBLAS picks its AVX-512 kernels; ONNX Runtime runs that
same model exported with torch.onnx (opset 14), all graph optimisations on. vitbatch runs
`vitbatch bench` on the onednn backend, which also measures its GEMM ceiling."""

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "python"))

MODELS = [  # name, dim, heads, mlp, real weights?
    ("ViT-Ti/16", 192, 3, 768, True),
    ("ViT-S/16", 384, 6, 1536, False),
    ("ViT-B/16", 768, 12, 3072, False),
]

# Runs in a child process so that OPENBLAS_CORETYPE is set before torch loads OpenBLAS.
ENGINE_SCRIPT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np, torch, vitref
engine, path, dim, heads, mlp, batch, seconds, onnx_path = sys.argv[2:10]
dim, heads, mlp, batch, seconds = int(dim), int(heads), int(mlp), int(batch), float(seconds)
torch.set_num_threads(2)
model = vitref.TorchViT(dim=dim, heads=heads, mlp=mlp).load_timm(vitref.read_safetensors(path))
x = torch.randn(batch, 3, 224, 224)
if engine == "torch":
    def step():
        with torch.inference_mode():
            model(x)
else:
    import onnxruntime as ort
    torch.onnx.export(model, x, onnx_path, opset_version=14, input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}})
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}
    def step():
        session.run(None, feed)
step()
n, t = 0, time.perf_counter()
while n < 3 or time.perf_counter() - t < seconds:
    step()
    n += 1
print(json.dumps({"images_per_second": n * batch / (time.perf_counter() - t)}))
"""


def run_engine(engine, path, dim, heads, mlp, batch, seconds, workdir):
    env = dict(os.environ, OPENBLAS_CORETYPE="SkylakeX", OMP_NUM_THREADS="2")
    env.pop("OPENBLAS_L2_SIZE", None)
    out = subprocess.run([sys.executable, "-c", ENGINE_SCRIPT, os.path.join(HERE, "..", "tests", "python"), engine,
                          path, str(dim), str(heads), str(mlp), str(batch), str(seconds),
                          os.path.join(workdir, "model.onnx")], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_second"]


def run_vitbatch(vitbatch, path, batch, seconds, precision="fp32"):
    out = subprocess.run([vitbatch, "bench", "--model", path, "--backend", "onednn", "--precision", precision,
                          "--threads", "2", "--batch-size", str(batch), "--seconds", str(seconds), "--json"],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.path.join(HERE, "..", "build", "bin"))
    parser.add_argument("--shared", default=os.environ.get("VITBATCH_SHARED", os.path.join(HERE, "..", "..", "shared")))
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    import vitref  # noqa: E402  (imports torch)

    vitbatch = os.path.join(args.bin, "vitbatch")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, dim, heads, mlp, real in MODELS:
            if real:
                path = os.path.join(args.shared, "models", "vit_tiny_patch16_224.augreg_in21k_ft_in1k", "model.safetensors")
            else:
                path = os.path.join(tmp, f"{dim}.safetensors")
                vitref.write_safetensors(path, vitref.random_timm_state(0, image=224, patch=16, dim=dim, depth=12,
                                                                        mlp=mlp, classes=1000))
            for batch in (1, 16):
                ours = run_vitbatch(vitbatch, path, batch, args.seconds)
                torch_ips = run_engine("torch", path, dim, heads, mlp, batch, args.seconds, tmp)
                ort_ips = run_engine("ort", path, dim, heads, mlp, batch, args.seconds, tmp)
                rows.append((name, batch, ours, torch_ips, ort_ips))
                print(f"{name} batch {batch}: vitbatch {ours['images_per_second']:.2f}, PyTorch {torch_ips:.2f}, "
                      f"ONNX Runtime {ort_ips:.2f} img/s", file=sys.stderr, flush=True)
            if name == "ViT-B/16":
                extra = {p: run_vitbatch(vitbatch, path, 16, args.seconds, p) for p in ("bf16", "int8")}
            if not real:
                os.remove(path)
    print("| model | batch | vitbatch fp32 img/s | % of GEMM ceiling | PyTorch img/s | ONNX Runtime img/s | vs PyTorch | vs ONNX Runtime |")
    print("|---|---|---|---|---|---|---|---|")
    for name, batch, ours, torch_ips, ort_ips in rows:
        ips = ours["images_per_second"]
        print(f"| {name} | {batch} | {ips:.2f} | {100 * ours['ceiling_fraction']:.0f}% of {ours['gemm_gflops']:.0f} GFLOP/s "
              f"| {torch_ips:.2f} | {ort_ips:.2f} | {ips / torch_ips:.2f}x | {ips / ort_ips:.2f}x |")
    fp32 = next(r[2] for r in rows if r[0] == "ViT-B/16" and r[1] == 16)
    print()
    print("| ViT-B/16, batch 16 | img/s | vs fp32 | % of its GEMM ceiling | peak RSS MiB | startup s (load + first batch) |")
    print("|---|---|---|---|---|---|")
    for precision, r in (("fp32", fp32), ("bf16", extra["bf16"]), ("int8", extra["int8"])):
        print(f"| {precision} | {r['images_per_second']:.2f} | {r['images_per_second'] / fp32['images_per_second']:.2f}x "
              f"| {100 * r['ceiling_fraction']:.0f}% of {r['gemm_gflops']:.0f} | {r['peak_rss_mib']:.0f} "
              f"| {r['load_seconds']:.2f} + {r['first_batch_seconds']:.2f} |")


if __name__ == "__main__":
    main()
