#!/usr/bin/env python3
"""Kiln's int8 plans against its float32 plans, side by side in one run (`make bench-quantized`).

For each model: `kiln quantize` (calibration on random images over 0...255 unless trained parameters are given,
then on Fashion-MNIST), then `kiln bench` of the float model and of the quantized graph, alternating round by
round, and `kiln plan --format json` of both for the arena. Prints the CPU and the integer path first: the
int8 speed depends on it (VNNI dot products, or AVX2 16-bit pairs). Standard library only.
"""
import argparse, json, os, statistics, subprocess, sys, tempfile


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    return r.stdout


def bench(kiln, model, extra, iterations, threads):
    out = run([kiln, "bench", model, "--iterations", str(iterations), "--threads", str(threads)] + extra)
    for line in out.splitlines():
        if line.startswith("ms_per_iteration:"):
            return float(line.split(":")[1])
    sys.exit(f"no ms_per_iteration from {model}")


def arena(kiln, model, extra):
    return json.loads(run([kiln, "plan", model, "--format", "json"] + extra))["arena_bytes"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kiln")
    p.add_argument("--models", default="resnet20,lenet")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--params", action="append", default=[], help="MODEL=FILE: trained weights, calibrated on Fashion-MNIST")
    a = p.parse_args()
    params = dict(x.split("=", 1) for x in a.params)
    version = run([a.kiln, "--version"])
    print(version.strip())
    print(f"batch {a.batch_size}, {a.threads} thread(s), {a.rounds} alternating rounds of {a.iterations} iterations\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in a.models.split(","):
            weights = ["--params", params[model]] if model in params else []
            data = ["--dataset", "fashion-mnist"] if model in params else ["--dataset", "random"]
            q = os.path.join(tmp, f"{model}-int8.json")
            run([a.kiln, "quantize", model, "--batch-size", str(a.batch_size), "--batches", "2", "-o", q] + weights + data)
            floats, ints = [], []
            for _ in range(a.rounds):
                floats.append(bench(a.kiln, model, ["--batch-size", str(a.batch_size)] + weights, a.iterations, a.threads))
                ints.append(bench(a.kiln, q, [], a.iterations, a.threads))
            fa, ia = arena(a.kiln, model, ["--batch-size", str(a.batch_size)] + weights), arena(a.kiln, q, [])
            ratios = [f / i for f, i in zip(floats, ints)]
            rows.append((model, statistics.median(floats), statistics.median(ints), statistics.median(ratios), fa, ia))
    print(f"{'model':10} {'float ms':>9} {'int8 ms':>9} {'float/int8':>11} {'arena float':>12} {'arena int8':>11} {'int8/float':>10}")
    for m, f, i, r, fa, ia in rows:
        print(f"{m:10} {f:9.2f} {i:9.2f} {r:11.2f} {fa / 2**20:10.1f}Mi {ia / 2**20:9.1f}Mi {ia / fa:10.2f}")
    print("\nfloat/int8: median of the per-round ratios (above 1: int8 faster)")


if __name__ == "__main__":
    main()
