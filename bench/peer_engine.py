#!/usr/bin/env python3
"""One peer engine, in its own process (bench/side_by_side.py runs it): times a model on a
batch, or predicts top-1 over a set of inputs, or makes the peer's own static int8 model.

    python peer_engine.py time    ENGINE MODEL BATCH SECONDS INPUTS.npy     -> {"images_per_second": x}
    python peer_engine.py predict ENGINE MODEL INPUTS.npy                   -> {"top1": [...]}
    python peer_engine.py quantize ENGINE MODEL.onnx CALIBRATION.npy OUT    (ort: OUT.onnx; openvino: OUT.xml)

ENGINE: torch (MODEL: a timm model folder; runs in the timm venv), ort / ort-int8 (MODEL: an
ONNX file, all graph optimisations), openvino-f32 / openvino (its default precision, bf16 on
CPUs with AVX512_BF16 or AMX) / openvino-int8 (MODEL: an ONNX or IR file). Two threads each;
OpenVINO with the LATENCY hint (one stream, one request: a batch at a time, as the others).
openvino-f32-tput / openvino-int8-tput: OpenVINO's own throughput mode, what it offers for a
batch job (the THROUGHPUT hint: as many streams as it picks for the 2 threads, and its
optimal number of requests in flight, each request a whole batch), the counterpart of
vitbatch's lanes.
"""
import json
import sys
import time

import numpy as np

THREADS = 2


def make_runner(engine, model):
    if engine == "torch":
        from timm_quiet import timm
        import torch
        from safetensors.torch import load_file
        torch.set_num_threads(THREADS)
        with open(model + "/config.json") as f:
            config = json.load(f)
        net = timm.create_model(config["architecture"], pretrained=False, num_classes=config.get("num_classes", 1000))
        net.load_state_dict(load_file(model + "/model.safetensors"))
        net.eval()

        def run(x):
            with torch.inference_mode():
                return net(torch.from_numpy(x)).numpy()
        return run
    if engine.startswith("ort"):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    if engine.startswith("openvino"):
        import openvino as ov
        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": THREADS, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if engine.startswith("openvino-f32"):
            config["INFERENCE_PRECISION_HINT"] = "f32"
        compiled = core.compile_model(core.read_model(model), "CPU", config)
        request = compiled.create_infer_request()

        def run(x):
            request.infer({0: x})
            return request.get_output_tensor(0).data.copy()
        return run
    raise SystemExit(f"unknown engine {engine}")


def time_throughput(engine, model, batch, seconds, inputs):
    """OpenVINO's throughput mode: requests in flight on its streams, counted as they finish."""
    import openvino as ov
    x = np.ascontiguousarray(np.load(inputs)[:batch])
    config = {"INFERENCE_NUM_THREADS": THREADS, "PERFORMANCE_HINT": "THROUGHPUT"}
    if engine.startswith("openvino-f32"):
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = ov.Core().compile_model(model, "CPU", config)
    queue = ov.AsyncInferQueue(compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    done = [0]
    finite = [True]

    def finished(request, _):
        done[0] += 1
        finite[0] = finite[0] and bool(np.isfinite(request.get_output_tensor(0).data).all())
    queue.set_callback(finished)
    for _ in range(len(queue)):  # warm-up: each request once
        queue.start_async({0: x})
    queue.wait_all()
    if not finite[0]:
        raise SystemExit(f"{engine}: logits are not finite")
    done[0] = 0
    start = time.perf_counter()
    submitted = 0
    while submitted < 3 or time.perf_counter() - start < seconds:
        queue.start_async({0: x})  # waits for a free request
        submitted += 1
    queue.wait_all()
    return {"images_per_second": done[0] * batch / (time.perf_counter() - start),
            "streams": compiled.get_property("NUM_STREAMS"), "requests": len(queue)}


def time_engine(engine, model, batch, seconds, inputs):
    if engine.endswith("-tput"):
        return time_throughput(engine, model, batch, seconds, inputs)
    x = np.ascontiguousarray(np.load(inputs)[:batch])
    run = make_runner(engine, model)
    out = run(x)
    if not np.isfinite(out).all():
        raise SystemExit(f"{engine}: logits are not finite")
    n, start = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - start < seconds:
        run(x)
        n += 1
    return {"images_per_second": n * batch / (time.perf_counter() - start)}


def predict(engine, model, inputs):
    x = np.load(inputs)
    run = make_runner(engine, model)
    top1 = []
    for i in range(0, len(x), 16):
        top1 += run(np.ascontiguousarray(x[i:i + 16])).argmax(axis=1).tolist()
    return {"top1": top1}


def quantize(engine, onnx_path, calibration, out):
    data = np.load(calibration)
    if engine == "ort-int8":
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.items = iter([{"x": data[i:i + 1]} for i in range(len(data))])

            def get_next(self):
                return next(self.items, None)
        prepared = out + ".pre.onnx"
        quant_pre_process(onnx_path, prepared)
        # ORT's documented CPU recipe: QDQ, per-channel s8 weights, u8 activations, calibrated by
        # percentiles (99.999; MinMax kept slightly fewer of ViT-Ti's top-1s in a trial); the
        # matmuls and the patch convolution only (as vitbatch and NNCF quantise): with every op
        # quantised (its default) the model's top-1 no longer follows fp32 at all.
        quantize_static(prepared, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["MatMul", "Gemm", "Conv"], calibrate_method=CalibrationMethod.Percentile)
        return {"model": out}
    if engine == "openvino-int8":
        import nncf
        import openvino as ov
        model = ov.Core().read_model(onnx_path)
        # NNCF's post-training quantisation with its transformer preset (SmoothQuant where it
        # helps, the sensitive ops left in float), on the same calibration images.
        quantized = nncf.quantize(model, nncf.Dataset([data[i:i + 1] for i in range(len(data))]),
                                  model_type=nncf.ModelType.TRANSFORMER, subset_size=len(data))
        ov.save_model(quantized, out)
        return {"model": out}
    raise SystemExit(f"no int8 path for {engine}")


def main():
    mode, engine = sys.argv[1], sys.argv[2]
    if mode == "time":
        result = time_engine(engine, sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
    elif mode == "predict":
        result = predict(engine, sys.argv[3], sys.argv[4])
    else:
        result = quantize(engine, sys.argv[3], sys.argv[4], sys.argv[5])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
