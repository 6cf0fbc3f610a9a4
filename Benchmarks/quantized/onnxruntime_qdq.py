#!/usr/bin/env python3
"""Kiln's int8 plans against onnxruntime's, on one network quantized by onnxruntime (`make bench-qdq`).

ResNet-20 (Kiln's zoo model, random weights unless --params gives trained ones) is exported to ONNX, then
quantized by onnxruntime's static quantization tool as a QDQ model (per-channel int8 weights, uint8 activations,
calibrated on random images over 0...255). The same files then run in both engines, alternating round by round
on the same thread count: onnxruntime float32 and QDQ, Kiln float32 and the QDQ model imported (its integer
plan), and Kiln's own fixed-point int8 plan (`kiln quantize`, nnabla's format) for reference. Prints the CPU and
Kiln's integer path first, the medians and the per-round ratios, the arenas, and how closely Kiln's and
onnxruntime's QDQ outputs agree on one batch. Needs the peers' onnxruntime virtualenv (Benchmarks/peers).
"""
import argparse, json, os, platform, statistics, tempfile, time

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from compare import bench, run  # Kiln's side, as the int8-against-float comparison runs it


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class RandomImages(CalibrationDataReader):
    def __init__(self, name, shape, batches, seed):
        rng = np.random.default_rng(seed)
        self.batches = [{name: rng.uniform(0, 255, shape).astype(np.float32)} for _ in range(batches)]

    def get_next(self):
        return self.batches.pop() if self.batches else None


def ort_session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ort_bench(session, feed, iterations):
    session.run(None, feed)
    session.run(None, feed)
    times = []
    for _ in range(iterations):
        t = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kiln")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--calibration-batches", type=int, default=2)
    p.add_argument("--params", help="trained ResNet-20 weights (.safetensors, .h5, .protobuf)")
    a = p.parse_args()
    b = a.batch_size
    weights = ["--params", a.params] if a.params else []
    print(f"CPU: {cpu_model()}")
    print(run([a.kiln, "--version"]).strip())
    print(f"onnxruntime {ort.__version__}; ResNet-20, batch {b}, {a.threads} thread(s), "
          f"{a.rounds} alternating rounds of {a.iterations} iterations\n")
    with tempfile.TemporaryDirectory() as tmp:
        f32 = os.path.join(tmp, "resnet20.onnx")
        pre = os.path.join(tmp, "resnet20-pre.onnx")
        qdq = os.path.join(tmp, "resnet20-qdq.onnx")
        fixed = os.path.join(tmp, "resnet20-fixed-point.json")
        run([a.kiln, "export", "resnet20", "--batch-size", str(b), "-o", f32] + weights)
        quant_pre_process(f32, pre)
        shape = (b, 3, 32, 32)
        quantize_static(pre, qdq, RandomImages("x", shape, a.calibration_batches, 1), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        run([a.kiln, "quantize", "resnet20", "--batch-size", str(b), "--batches", str(a.calibration_batches),
             "--dataset", "random", "-o", fixed] + weights)
        plan = json.loads(run([a.kiln, "plan", qdq, "--format", "json"]))
        integer_steps = sum(1 for s in plan["steps"] if s["op"].startswith("Quantized"))
        float_arena = json.loads(run([a.kiln, "plan", f32, "--format", "json"]))["arena_bytes"]

        feed = {"x": np.random.default_rng(7).uniform(0, 255, shape).astype(np.float32)}
        sessions = {"ort f32": ort_session(f32, a.threads), "ort qdq": ort_session(qdq, a.threads)}
        times = {k: [] for k in ["ort f32", "ort qdq", "kiln f32", "kiln qdq", "kiln fixed-point"]}
        for r in range(a.rounds):
            times["ort f32"].append(ort_bench(sessions["ort f32"], feed, a.iterations))
            times["kiln f32"].append(bench(a.kiln, f32, [], a.iterations, a.threads))
            times["ort qdq"].append(ort_bench(sessions["ort qdq"], feed, a.iterations))
            times["kiln qdq"].append(bench(a.kiln, qdq, [], a.iterations, a.threads))
            times["kiln fixed-point"].append(bench(a.kiln, fixed, [], a.iterations, a.threads))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} ms" for k, v in times.items()), flush=True)

        # Agreement on one batch: Kiln's integer plan of the QDQ model against onnxruntime's.
        x = os.path.join(tmp, "x.npy")
        y = os.path.join(tmp, "y.npy")
        np.save(x, feed["x"])
        run([a.kiln, "run", qdq, "--inputs", x, "--outputs", y])
        kiln_out = np.load(y)
        ort_out = sessions["ort qdq"].run(None, feed)[0]
        ref_out = sessions["ort f32"].run(None, feed)[0]

    print(f"\n{'engine':18} {'median ms':>10}")
    for k, v in times.items():
        print(f"{k:18} {statistics.median(v):10.1f}")

    def ratio(num, den):
        return statistics.median([n / d for n, d in zip(times[num], times[den])])

    print("\nper-round ratios (median; above 1: the second is faster)")
    print(f"  kiln qdq vs ort qdq:        ort qdq / kiln qdq = {ratio('ort qdq', 'kiln qdq'):.2f}")
    print(f"  kiln qdq vs kiln f32:       kiln f32 / kiln qdq = {ratio('kiln f32', 'kiln qdq'):.2f}")
    print(f"  kiln fixed-point vs f32:    kiln f32 / kiln fixed-point = {ratio('kiln f32', 'kiln fixed-point'):.2f}")
    print(f"  kiln f32 vs ort f32:        ort f32 / kiln f32 = {ratio('ort f32', 'kiln f32'):.2f}")
    print(f"\nKiln's plan of the QDQ model: {integer_steps} integer steps, arena {plan['arena_bytes'] / 2**20:.1f} MiB "
          f"({plan['arena_bytes'] / float_arena:.2f} of the float plan's {float_arena / 2**20:.1f} MiB)")
    scale = float(np.abs(ort_out).max()) or 1.0
    print(f"QDQ outputs, Kiln against onnxruntime: largest difference {float(np.abs(kiln_out - ort_out).max()):.4g} "
          f"(outputs up to {scale:.4g}); same top-1 class on {float((kiln_out.argmax(1) == ort_out.argmax(1)).mean()) * 100:.1f}% "
          f"of {b} images; onnxruntime's QDQ against its float32: top-1 {float((ort_out.argmax(1) == ref_out.argmax(1)).mean()) * 100:.1f}%")


if __name__ == "__main__":
    main()
