#!/usr/bin/env python3
"""vitbatch against PyTorch, ONNX Runtime and OpenVINO, side by side in one run on this machine.

    bash bench/side_by_side.sh [--seconds 4] [--rounds 2]     (makes both venvs, then runs this)

Models: ViT-Ti/16 with its real weights (../shared), ViT-S/16 and ViT-B/16 as
timm.create_model(..., pretrained=False) builds them: timm's own initialisation (trunc-normal
0.02, LayerNorm 1/0), so activations stay realistic (each model's largest |activation| over
the blocks is printed, and non-finite logits stop the run). Each engine gets 2 threads and the
same preprocessed photos as input (crops/flips/rescales of the shared ones,
bench/augment_photos.py); the engines alternate within each round, every round, and each cell
is the best (and median) images/s over the rounds.

Engines: vitbatch (`vitbatch bench`, onednn, fp32/bf16/int8 with ranges from `vitbatch
calibrate`); PyTorch (Debian's torch running timm's model, inference mode); ONNX Runtime and
OpenVINO on the same ONNX export (OpenVINO both with INFERENCE_PRECISION_HINT=f32 and at its
default, which is bf16 on CPUs with AVX512_BF16); the peers' own static int8: ONNX Runtime
quantize_static (QDQ, per-channel weights) and OpenVINO + NNCF post-training quantisation
(transformer preset), calibrated on the same images as vitbatch's. For ViT-Ti (real weights)
each int8 engine's top-1 is compared with its own fp32 on photos disjoint from the
calibration set.

Where build/bin/vitbatch_instruction_peak exists (x86), the CPU's own matmul instruction peak
is measured before and after the rounds, and each engine's best rate is given as a share of
its precision's peak.

At batch 16 also: vitbatch with --lanes 1 (every thread on each op of the whole batch, as
before lanes) and OpenVINO in its throughput mode (the counterpart of lanes).

With --contention: ViT-Ti/16 at batch 16, each engine quiet and beside one CPU-bound process
(`yes > /dev/null`), alternating, and the share of its quiet rate each keeps; vitbatch fp32
and int8, with lanes (the default) and with --lanes 1.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")

import numpy as np
from timm_quiet import timm
import torch
from PIL import Image
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
TI_DIR_NAME = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
MODELS = [("ViT-Ti/16", "vit_tiny_patch16_224", True), ("ViT-S/16", "vit_small_patch16_224", False),
          ("ViT-B/16", "vit_base_patch16_224", False)]
FP32_PEERS = ["torch", "ort", "openvino-f32", "openvino"]
INT8_PEERS = ["ort-int8", "openvino-int8"]
OURS = ["vitbatch-fp32", "vitbatch-bf16", "vitbatch-int8", "vitbatch-int8fc2"]
# Batches of 2+ only: the same engines with images side by side (OpenVINO's throughput
# mode) or without (vitbatch --lanes 1, what it did before lanes).
BATCH_ONLY = ["vitbatch-fp32-lanes1", "vitbatch-int8-lanes1", "openvino-f32-tput", "openvino-int8-tput"]
NAMES = {"vitbatch-fp32": "vitbatch fp32", "vitbatch-bf16": "vitbatch bf16", "vitbatch-int8": "vitbatch int8",
         "vitbatch-int8fc2": "vitbatch int8, fc2 in bf16",
         "torch": "PyTorch", "ort": "ORT fp32", "openvino-f32": "OpenVINO f32", "openvino": "OpenVINO default",
         "ort-int8": "ORT int8", "openvino-int8": "OpenVINO int8 (NNCF)",
         "vitbatch-fp32-lanes1": "vitbatch fp32, lanes 1", "vitbatch-int8-lanes1": "vitbatch int8, lanes 1",
         "openvino-f32-tput": "OpenVINO f32, throughput mode", "openvino-int8-tput": "OpenVINO int8 (NNCF), throughput mode"}


def cpu_model():
    """lscpu's model name, and its family and model numbers: these machines' lscpu says only
    "AMD EPYC", and EPYCs of different generations (family 25: Zen 3/4, 26: Zen 5) have come
    and gone between runs, with different int8 and bf16 rates."""
    fields = {}
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    name = fields.get("Model name") or platform.processor()
    if "CPU family" in fields and "Model" in fields:
        name += f" (family {fields['CPU family']}, model {fields['Model']})"
    return name


def load_average():
    return os.getloadavg()[0]


def json_out(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


class Bench:
    def __init__(self, args, work):
        self.args, self.work = args, work
        self.vitbatch = os.path.join(args.bin, "vitbatch")
        self.dump = os.path.join(args.bin, "vitbatch_dump")
        self.peers = args.peers_python

    def photos(self, seed, count):
        folder = os.path.join(self.work, f"photos_{seed}")
        if not os.path.isdir(folder):
            subprocess.run([sys.executable, os.path.join(HERE, "augment_photos.py"), "--shared", self.args.shared,
                            "--count", str(count), "--seed", str(seed), folder], check=True)
        return folder

    def prepare(self, label, arch, real):
        """The model folder, its ONNX export, the preprocessed inputs, its int8 files."""
        folder = os.path.join(self.work, arch)
        os.makedirs(folder, exist_ok=True)
        if real:
            src = os.path.join(self.args.shared, "models", TI_DIR_NAME)
            for name in ("model.safetensors", "config.json"):
                if not os.path.exists(os.path.join(folder, name)):
                    os.symlink(os.path.abspath(os.path.join(src, name)), os.path.join(folder, name))
            model = timm.create_model(arch, pretrained=False)
            from safetensors.torch import load_file
            model.load_state_dict(load_file(os.path.join(folder, "model.safetensors")))
            config = json.load(open(os.path.join(folder, "config.json")))
            data_config = timm.data.resolve_data_config(config.get("pretrained_cfg", {}), model=model)
        else:
            torch.manual_seed(0)
            model = timm.create_model(arch, pretrained=False)
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(folder, "model.safetensors"))
            with open(os.path.join(folder, "config.json"), "w") as f:
                json.dump({"architecture": arch, "num_classes": 1000}, f)
            data_config = timm.data.resolve_data_config({}, model=model)
        model.eval()
        transform = timm.data.create_transform(**data_config)

        def tensors(folder_, limit):
            files = sorted(os.listdir(folder_))[:limit]
            return np.stack([transform(Image.open(os.path.join(folder_, f)).convert("RGB")).numpy() for f in files])
        cal_dir = self.photos(2, self.args.calibration_images)
        m = {"label": label, "arch": arch, "folder": folder, "real": real, "cal_dir": cal_dir}
        m["cal"] = os.path.join(self.work, f"{arch}_cal.npy")
        np.save(m["cal"], tensors(cal_dir, self.args.calibration_images).astype(np.float32))
        m["eval"] = os.path.join(self.work, f"{arch}_eval.npy")
        x_eval = tensors(self.photos(1, self.args.eval_images), self.args.eval_images).astype(np.float32)
        np.save(m["eval"], x_eval)
        # Realistic activations: the largest |x| leaving any block, and finite logits.
        peak = [0.0]
        hooks = [b.register_forward_hook(lambda mod, i, o: peak.__setitem__(0, max(peak[0], o.abs().max().item())))
                 for b in model.blocks]
        with torch.no_grad():
            logits = model(torch.from_numpy(x_eval[:16]))
        for h in hooks:
            h.remove()
        if not torch.isfinite(logits).all():
            raise SystemExit(f"{label}: logits are not finite")
        m["peak_activation"] = peak[0]
        m["onnx"] = os.path.join(self.work, f"{arch}.onnx")
        torch.onnx.export(model, torch.from_numpy(x_eval[:1]), m["onnx"], opset_version=17, input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
        m["scales"] = os.path.join(self.work, f"{arch}_int8_scales.safetensors")
        subprocess.run([self.vitbatch, "calibrate", "--model", folder, cal_dir, "--max-images",
                        str(self.args.calibration_images), "-o", m["scales"]], check=True, capture_output=True)
        # The same ranges with the MLPs' fc2 left in float (--keep-float mlp.fc2; bf16 here), as
        # vitbatch's int8 ran before fc2 was quantised per token.
        m["scales_fc2"] = os.path.join(self.work, f"{arch}_int8_fc2.safetensors")
        subprocess.run([self.vitbatch, "calibrate", "--model", folder, cal_dir, "--max-images",
                        str(self.args.calibration_images), "--keep-float", "mlp.fc2", "-o", m["scales_fc2"]], check=True,
                       capture_output=True)
        m["ort-int8"] = os.path.join(self.work, f"{arch}_int8.onnx")
        m["openvino-int8"] = os.path.join(self.work, f"{arch}_int8.xml")
        if not self.args.no_int8_peers:
            for engine in INT8_PEERS:
                print(f"  {label}: {engine} quantising...", file=sys.stderr, flush=True)
                json_out([self.peers, os.path.join(HERE, "peer_engine.py"), "quantize", engine, m["onnx"], m["cal"],
                          m[engine]])
        print(f"{label}: largest |activation| leaving a block {m['peak_activation']:.1f}", file=sys.stderr, flush=True)
        return m

    def model_path(self, m, engine):
        if engine == "torch":
            return m["folder"]
        engine = engine.removesuffix("-tput")
        if engine in INT8_PEERS:
            return m[engine]
        return m["onnx"]

    def time(self, m, engine, batch, env=None):
        if engine.startswith("vitbatch"):
            precision = engine.split("-")[1]
            extra = ["--int8-scales", m["scales"]] if precision == "int8" else []
            if engine.endswith("-lanes1"):
                extra.append("--lanes=1")
            if precision == "int8fc2":
                precision, extra = "int8", ["--int8-scales", m["scales_fc2"]]
            r = json_out([self.vitbatch, "bench", "--model", m["folder"], "--backend", "onednn", "--precision", precision,
                          *extra, "--threads", "2", "--batch-size", str(batch), "--seconds", str(self.args.seconds),
                          "--json"], env=env)
            return r["images_per_second"], r
        python = sys.executable if engine == "torch" else self.peers
        env = dict(os.environ, OMP_NUM_THREADS="2")
        r = json_out([python, os.path.join(HERE, "peer_engine.py"), "time", engine, self.model_path(m, engine),
                      str(batch), str(self.args.seconds), m["eval"]], env=env)
        return r["images_per_second"], r

    def top1(self, m, engine):
        if engine.startswith("vitbatch"):
            precision = engine.split("-")[1]
            if precision == "int8":
                precision = "int8:" + m["scales"]
            elif precision == "int8fc2":
                precision = "int8:" + m["scales_fc2"]
            x = np.load(m["eval"])
            src, dst = os.path.join(self.work, "in.f32"), os.path.join(self.work, "out.f32")
            x.tofile(src)
            subprocess.run([self.dump, "logits", m["folder"], src, str(len(x)), dst, "onednn", precision], check=True)
            return np.fromfile(dst, dtype=np.float32).reshape(len(x), -1).argmax(1).tolist()
        python = sys.executable if engine == "torch" else self.peers
        return json_out([python, os.path.join(HERE, "peer_engine.py"), "predict", engine, self.model_path(m, engine),
                         m["eval"]])["top1"]


def instruction_peak(bin_dir):
    """Each precision's fastest matmul instruction this CPU has and its GFLOP/s on all cores
    (bench/instruction_peak.cpp: zmm where there is AVX-512, else fp32's ymm), or {} where the
    tool is not built (not x86)."""
    tool = os.path.join(bin_dir, "vitbatch_instruction_peak")
    if not os.path.exists(tool):
        return {}
    peak = {}
    for i in json_out([tool, "--json"])["instructions"]:
        if i["available"] and i["gflops_all_cores"] > peak.get(i["precision"], ("", 0.0))[1]:
            peak[i["precision"]] = (i["instruction"], i["gflops_all_cores"])
    return peak


def versions(peers_python):
    code = ("import json, onnxruntime, openvino, nncf; print(json.dumps({'onnxruntime': onnxruntime.__version__, "
            "'openvino': openvino.__version__.split('-')[0], 'nncf': nncf.__version__}))")
    v = json_out([peers_python, "-c", code])
    v["torch"] = torch.__version__
    v["timm"] = timm.__version__
    v["vitbatch"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                   text=True).stdout.strip()
    return v


def contention(bench, m, args, v):
    """Each engine quiet, then beside `yes > /dev/null`, alternating, args.rounds times."""
    engines = [("vitbatch fp32", "vitbatch-fp32", None), ("vitbatch fp32, --lanes 1", "vitbatch-fp32-lanes1", None),
               ("vitbatch int8", "vitbatch-int8", None), ("vitbatch int8, --lanes 1", "vitbatch-int8-lanes1", None),
               ("ORT fp32", "ort", None), ("OpenVINO f32", "openvino-f32", None),
               ("OpenVINO f32, throughput mode", "openvino-f32-tput", None)]
    quiet, busy = {}, {}
    for r in range(args.rounds):
        for label, engine, env in engines:
            quiet.setdefault(label, []).append(bench.time(m, engine, 16, env)[0])
            hog = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL)
            try:
                busy.setdefault(label, []).append(bench.time(m, engine, 16, env)[0])
            finally:
                hog.kill()
                hog.wait()
            print(f"round {r + 1}: {label}: quiet {quiet[label][-1]:.1f}, busy {busy[label][-1]:.1f} img/s",
                  file=sys.stderr, flush=True)
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; ViT-Ti/16 batch 16, 2 threads per engine; {args.rounds} rounds "
          f"of {args.seconds:g} s per cell. Versions: " + ", ".join(f"{k} {v[k]}" for k in ("vitbatch", "onnxruntime", "openvino")))
    print()
    print("| engine | quiet img/s | beside one busy process | share kept (medians) |")
    print("|---|---|---|---|")
    for label, _, _ in engines:
        q, b = statistics.median(quiet[label]), statistics.median(busy[label])
        print(f"| {label} | {cell(quiet[label])} | {cell(busy[label])} | {100 * b / q:.0f}% |")


def cell(values):
    return f"{max(values):.2f} ({statistics.median(values):.2f})" if values else "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    parser.add_argument("--shared", default=os.environ.get("VITBATCH_SHARED", os.path.join(ROOT, "..", "shared")))
    parser.add_argument("--peers-python", default=os.path.join(HERE, ".venv-peers", "bin", "python"))
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--models", default="ViT-Ti/16,ViT-S/16,ViT-B/16")
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--eval-images", type=int, default=256)
    parser.add_argument("--no-int8-peers", action="store_true", help="skip ONNX Runtime's and OpenVINO's int8")
    parser.add_argument("--contention", action="store_true", help="ViT-Ti quiet and beside a busy process")
    args = parser.parse_args()
    if args.contention:
        args.no_int8_peers = True
        with tempfile.TemporaryDirectory() as work:
            bench = Bench(args, work)
            v = versions(args.peers_python)
            contention(bench, bench.prepare(*MODELS[0]), args, v)
        return
    batches = [int(b) for b in args.batches.split(",")]
    engines = OURS + FP32_PEERS + ([] if args.no_int8_peers else INT8_PEERS)
    engines += [e for e in BATCH_ONLY if not (args.no_int8_peers and e == "openvino-int8-tput")]
    with tempfile.TemporaryDirectory() as work:
        bench = Bench(args, work)
        v = versions(args.peers_python)
        load_before = load_average()
        models = [bench.prepare(label, arch, real) for label, arch, real in MODELS if label in args.models.split(",")]
        peaks = [instruction_peak(args.bin)]  # before the rounds and after them: the clock drifts
        results = {}  # (model, batch, engine) -> [images/s per round]
        ceilings = {}
        for r in range(args.rounds):
            for m in models:
                for batch in batches:
                    for engine in engines:
                        if batch == 1 and engine in BATCH_ONLY:
                            continue
                        ips, raw = bench.time(m, engine, batch)
                        results.setdefault((m["label"], batch, engine), []).append(ips)
                        if engine == "vitbatch-fp32":
                            ceilings.setdefault((m["label"], batch), []).append(raw["ceiling_fraction"])
                            m["gflop_per_image"] = raw["gflop_per_image"]
                        print(f"round {r + 1}: {m['label']} batch {batch} {engine}: {ips:.2f} img/s", file=sys.stderr,
                              flush=True)
        peaks.append(instruction_peak(args.bin))
        agreement = {}
        for m in models:
            if not m["real"]:
                continue
            top1 = {e: bench.top1(m, e) for e in ["torch"] + [e for e in engines if e not in ("vitbatch-bf16", *BATCH_ONLY)] +
                    ["vitbatch-bf16"]}
            pairs = [("vitbatch-fp32", "torch"), ("vitbatch-bf16", "vitbatch-fp32"), ("vitbatch-int8", "vitbatch-fp32"),
                     ("vitbatch-int8fc2", "vitbatch-fp32"),
                     ("ort", "torch"), ("openvino-f32", "torch"), ("openvino", "openvino-f32")]
            if not args.no_int8_peers:
                pairs += [("ort-int8", "ort"), ("openvino-int8", "openvino-f32")]
            for a, b in pairs:
                same = sum(x == y for x, y in zip(top1[a], top1[b]))
                agreement[(m["label"], a, b)] = (same, len(top1[a]))
        load_after = load_average()

    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; 2 threads per engine; load average {load_before:.2f} before, "
          f"{load_after:.2f} after; {args.rounds} rounds of {args.seconds:g} s per cell, engines interleaved.")
    print("Versions: " + ", ".join(f"{k} {v[k]}" for k in ("vitbatch", "torch", "timm", "onnxruntime", "openvino", "nncf")))
    print("Largest |activation| leaving a block: " + ", ".join(f"{m['label']} {m['peak_activation']:.1f}" for m in models))
    print()
    print("Images/s, best of the rounds (median in brackets).")
    print()
    print("| model | batch | " + " | ".join(NAMES[e] for e in engines) + " |")
    print("|---|---|" + "---|" * len(engines))
    for m in models:
        for batch in batches:
            print(f"| {m['label']} | {batch} | " + " | ".join(cell(results.get((m['label'], batch, e))) for e in engines) + " |")
    print()
    print("| model | batch | vitbatch fp32 % of its GEMM ceiling | fp32: vitbatch / best fp32 peer | best precision: vitbatch / "
          "best peer | int8: vitbatch / OpenVINO NNCF (its faster mode) | int8, fc2 in bf16: vitbatch / OpenVINO NNCF | "
          "int8: vitbatch / ORT | vitbatch int8 / fp32 | lanes: default / --lanes 1, fp32 and int8 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m in models:
        for batch in batches:
            best = {e: max(results[(m['label'], batch, e)]) for e in engines if (m['label'], batch, e) in results}
            fp32_peer = max([e for e in FP32_PEERS + ["openvino-f32-tput"] if e in best and e != "openvino"], key=lambda e: best[e])
            any_peer = max([e for e in best if not e.startswith("vitbatch")], key=lambda e: best[e])
            ours_best = max(OURS, key=lambda e: best[e])
            nncf = max([e for e in ("openvino-int8", "openvino-int8-tput") if e in best], key=lambda e: best[e], default=None)
            row = [f"{100 * max(ceilings[(m['label'], batch)]):.0f}%",
                   f"{best['vitbatch-fp32'] / best[fp32_peer]:.2f}x ({NAMES[fp32_peer]})",
                   f"{best[ours_best] / best[any_peer]:.2f}x ({NAMES[ours_best]} / {NAMES[any_peer]})"]
            if args.no_int8_peers:
                row += ["-", "-", "-"]
            else:
                row += [f"{best['vitbatch-int8'] / best[nncf]:.2f}x ({NAMES[nncf]})",
                        f"{best['vitbatch-int8fc2'] / best[nncf]:.2f}x",
                        f"{best['vitbatch-int8'] / best['ort-int8']:.2f}x"]
            row.append(f"{best['vitbatch-int8'] / best['vitbatch-fp32']:.2f}x")
            row.append(f"{best['vitbatch-fp32'] / best['vitbatch-fp32-lanes1']:.2f}x, "
                       f"{best['vitbatch-int8'] / best['vitbatch-int8-lanes1']:.2f}x" if batch > 1 else "-")
            print(f"| {m['label']} | {batch} | " + " | ".join(row) + " |")
    # The higher of the two measurements of each instruction: the smaller, safer fraction.
    peak = {k: max(p[k][1] for p in peaks if k in p) for k in ("fp32", "bf16", "int8") if all(k in p for p in peaks)}
    if peak:
        print()
        print(f"The CPU's own peak (vitbatch_instruction_peak, all {os.cpu_count()} cores, the higher of a run before "
              "and after the rounds): " + ", ".join(f"{k} {peaks[0][k][0]} {peak[k]:.0f} GFLOP/s" for k in peak) + ".")
        print("Each engine's best images/s as operations a second (vitbatch's count of the model's multiply-adds, "
              "x 2), as a share of the peak of the instruction its precision runs on (fp32 engines against "
              "fp32's, int8 ones against int8's):")
        print()
        shares = [e for e in engines if e in OURS or e in ("ort", "openvino-f32", "ort-int8", "openvino-int8")]
        print("| model | batch | " + " | ".join(NAMES[e] for e in shares) + " |")
        print("|---|---|" + "---|" * len(shares))
        for m in models:
            for batch in batches:
                row = []
                for e in shares:
                    kind = "bf16" if e == "vitbatch-bf16" else "int8" if "int8" in e else "fp32"
                    rates = results.get((m["label"], batch, e))
                    row.append(f"{100 * max(rates) * m['gflop_per_image'] / peak[kind]:.0f}%" if rates and kind in peak
                               else "-")
                print(f"| {m['label']} | {batch} | " + " | ".join(row) + " |")
    if agreement:
        print()
        print(f"Top-1 agreement on {args.eval_images} photos disjoint from the {args.calibration_images} calibration photos "
              "(ViT-Ti/16, real weights):")
        print()
        print("| engine | against | same top-1 |")
        print("|---|---|---|")
        for (label, a, b), (same, n) in agreement.items():
            print(f"| {NAMES[a]} | {NAMES[b]} | {same}/{n} = {100 * same / n:.1f}% |")


if __name__ == "__main__":
    main()
