"""nnabla side of the peer comparison: LeNet and ResNet-20 exactly as Kiln's Zoo.swift builds them.

Usage: python nnabla_bench.py MODEL MODE BATCH ITERATIONS WARMUP
  MODEL lenet|resnet20, MODE training|inference.
Training step: solver.zero_grad(); loss.forward(clear_no_need_grad=True); loss.backward(clear_buffer=True);
solver.update() with Adam(1e-3) on mean(softmax_cross_entropy). Inference: y.forward(clear_buffer=True).
Random images in [0, 255) and labels in [0, 10), set once. Threads are fixed by the caller (taskset,
OMP_NUM_THREADS, OPENBLAS_NUM_THREADS); see run_peers.py. Prints `key: value` lines.
"""
import sys

import numpy as np
from measure import report, resident_bytes, time_steps
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
import nnabla.solvers as S


def lenet(x):
    h = F.mul_scalar(x, 1.0 / 255)
    h = PF.convolution(h, 16, (5, 5), name="conv1")
    h = F.relu(F.max_pooling(h, (2, 2)))
    h = PF.convolution(h, 16, (5, 5), name="conv2")
    h = F.relu(F.max_pooling(h, (2, 2)))
    h = F.relu(PF.affine(h, 50, name="fc3"))
    return PF.affine(h, 10, name="fc4")


def resnet20(x, training):
    def conv_bn(x, maps, kernel, stride, name):
        with nn.parameter_scope(name):
            p = kernel // 2
            c = PF.convolution(x, maps, (kernel, kernel), pad=(p, p), stride=(stride, stride), with_bias=False)
            return PF.batch_normalization(c, batch_stat=training)

    def block(x, maps, stride, name):
        with nn.parameter_scope(name):
            h = F.relu(conv_bn(x, maps, 3, stride, "conv1"))
            h = conv_bn(h, maps, 3, 1, "conv2")
            shortcut = x if stride == 1 and x.shape[1] == maps else conv_bn(x, maps, 1, stride, "shortcut")
            return F.relu(F.add2(h, shortcut))

    h = F.relu(conv_bn(x, 16, 3, 1, "stem"))
    for s, maps in enumerate([16, 32, 64]):
        for b in range(3):
            h = block(h, maps, 2 if s > 0 and b == 0 else 1, "stage%d/block%d" % (s + 1, b + 1))
    h = F.global_average_pooling(h)
    return PF.affine(h, 10, name="fc")


def main():
    model, mode, batch, iterations, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    training = mode == "training"
    # Baseline: nnabla imported and its CPU context ready, nothing of the network built yet.
    baseline_rss = resident_bytes()
    shape = {"lenet": (1, 28, 28), "resnet20": (3, 32, 32)}[model]
    rng = np.random.RandomState(0)
    x = nn.Variable((batch,) + shape)
    t = nn.Variable((batch, 1))
    x.d = rng.uniform(0, 255, x.shape)
    t.d = rng.randint(0, 10, t.shape)
    y = lenet(x) if model == "lenet" else resnet20(x, training)
    if training:
        loss = F.mean(F.softmax_cross_entropy(y, t))
        solver = S.Adam(1e-3)
        solver.set_parameters(nn.get_parameters())

        def step():
            solver.zero_grad()
            loss.forward(clear_no_need_grad=True)
            loss.backward(clear_buffer=True)
            solver.update()
    else:
        def step():
            y.forward(clear_buffer=True)

    report("nnabla %s" % nn.__version__, time_steps(step, warmup, iterations), batch, baseline_rss)


if __name__ == "__main__":
    main()
