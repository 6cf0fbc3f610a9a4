#!/usr/bin/env python3
"""Predicts data-parallel step time and efficiency past one machine from figures `kiln bench --distributed`
measured on one (docs/DISTRIBUTED.md explains the model).

    mpirun -np 2 kiln bench resnet20 --mode training --batch-size 32 --distributed > resnet20.txt
    python3 Benchmarks/distributed/scaling_model.py resnet20.txt [--latency-us 20] [--global-batch 1024]

Model, per step: compute C = forward + backward + update (the measured step without exchange); a ring
all-reduce of S gradient bytes in k buckets costs k * 2(N-1) * a + 2(N-1)/N * S / B (a: per-message latency,
B: link bandwidth in bytes/s); Rabenseifner's (recursive halving then doubling, which Open MPI's tuned
component picks for mid-sized messages) costs k * 2 log2(N) * a + 2(N-1)/N * S / B. Without overlap the whole all-reduce follows backward. With overlap, bucket i
(of k equal ones) is ready i/k of the way through backward and the buckets are reduced one after another,
so only what is left after backward ends is exposed. Efficiency = C / step time (throughput per rank against
one rank without communication). With --global-batch G, each rank's batch is G/N and compute scales with it
(strong scaling); otherwise each rank keeps the measured batch (weak scaling).
"""
import argparse
import math


def read_figures(path):
    figures = {}
    with open(path) as f:
        for line in f:
            if ":" in line:
                key, value = line.split(":", 1)
                figures[key.strip()] = value.strip()
    return figures


def allreduce_ms(ranks, gradient_bytes, buckets, gbit, latency_us, algorithm="ring"):
    if ranks == 1:
        return 0.0
    bandwidth = gbit * 1e9 / 8
    messages = 2 * (ranks - 1) if algorithm == "ring" else 2 * math.ceil(math.log2(ranks))
    return buckets * messages * latency_us / 1e3 + 2 * (ranks - 1) / ranks * gradient_bytes / bandwidth * 1e3


def exposed_ms(total_ms, buckets, backward_ms, overlap):
    if not overlap:
        return total_ms
    each = total_ms / buckets
    finish = 0.0
    for i in range(1, buckets + 1):
        ready = backward_ms * i / buckets
        finish = max(finish, ready) + each
    return max(0.0, finish - backward_ms)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("figures", help="output of kiln bench --distributed")
    p.add_argument("--latency-us", type=float, default=20.0, help="per-message latency (TCP over Ethernet: 10-30)")
    p.add_argument("--global-batch", type=int, default=None, help="strong scaling: split this batch over the ranks")
    p.add_argument("--ranks", default="2,4,8,16,32,64,128,256")
    p.add_argument("--gbits", default="10,25,100")
    a = p.parse_args()
    f = read_figures(a.figures)
    batch = int(f["batch_size_per_rank"])
    forward, backward = float(f["forward_ms"]), float(f["backward_ms"])
    compute = float(f["step_ms_compute_only"])
    update = max(0.0, compute - forward - backward)
    size = int(f["gradient_bytes"])
    buckets = int(f["gradient_buckets"])
    gbits = [float(g) for g in a.gbits.split(",")]
    print(f"model {f['model']}: {size} gradient bytes in {buckets} bucket(s); measured per rank at batch {batch}: "
          f"forward {forward:.1f} ms, backward {backward:.1f} ms, step {compute:.1f} ms; latency {a.latency_us:g} us")
    slowest = gbits[0]
    header = "| ranks | batch/rank | compute ms | " + " | ".join(f"ring {g:g} Gbit/s" for g in gbits) + \
        f" | ring {slowest:g} Gbit/s, no overlap | Rabenseifner {slowest:g} Gbit/s |"
    print()
    print("Step ms (efficiency); buckets reduced while backward runs unless said.")
    print()
    print(header)
    print("|" + "---|" * (5 + len(gbits)))
    for n in [int(r) for r in a.ranks.split(",")]:
        if a.global_batch:
            per_rank = a.global_batch / n
            if per_rank < 1:
                continue
            scale = per_rank / batch
        else:
            per_rank, scale = batch, 1.0
        fwd, bwd = forward * scale, backward * scale
        c = fwd + bwd + update
        def cell(g, overlap=True, algorithm="ring"):
            t = allreduce_ms(n, size, buckets, g, a.latency_us, algorithm)
            step = c + exposed_ms(t, buckets, bwd, overlap)
            return f"{step:.1f} ({c / step:.0%})"
        cells = [cell(g) for g in gbits] + [cell(slowest, overlap=False), cell(slowest, algorithm="rabenseifner")]
        print(f"| {n} | {per_rank:g} | {c:.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
