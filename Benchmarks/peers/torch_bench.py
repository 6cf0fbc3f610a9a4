"""PyTorch side of the peer comparison: LeNet and ResNet-20 as Kiln's Zoo.swift builds them, and the networks of
torch_models.py (ResNet-18 on 64x64, MobileNetV2), eager CPU.

Usage: python torch_bench.py MODEL MODE BATCH ITERATIONS WARMUP [channels_last]
The same layers, sizes, loss (mean softmax cross-entropy) and solver as jax_bench.py (Adam 1e-3; PyTorch's
Adam differs from nnabla's only in where epsilon sits, which costs the same). BN in training uses batch
statistics and updates running statistics (momentum 0.1, nnabla's decay 0.9). `channels_last` stores images
and activations NHWC (oneDNN's preferred layout on CPU); without it, PyTorch's default NCHW. Threads follow
OMP_NUM_THREADS (torch.set_num_threads is called with it). Prints `key: value` lines like the other peers.
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from measure import report, resident_bytes, time_steps
import torch_models


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5)
        self.conv2 = nn.Conv2d(16, 16, 5)
        self.fc3 = nn.Linear(256, 50)
        self.fc4 = nn.Linear(50, 10)

    def forward(self, x):
        h = x * (1.0 / 255)
        h = F.relu(F.max_pool2d(self.conv1(h), 2))
        h = F.relu(F.max_pool2d(self.conv2(h), 2))
        h = F.relu(self.fc3(h.flatten(1)))
        return self.fc4(h)


def conv_bn(cin, cout, k, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 3, stride)
        self.conv2 = conv_bn(cout, cout, 3, 1)
        self.shortcut = None if stride == 1 and cin == cout else conv_bn(cin, cout, 1, stride)

    def forward(self, x):
        r = self.conv2(F.relu(self.conv1(x)))
        return F.relu(r + (x if self.shortcut is None else self.shortcut(x)))


class ResNet20(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 16, 3, 1)
        blocks, cin = [], 16
        for s, maps in enumerate([16, 32, 64]):
            for b in range(3):
                blocks.append(Block(cin, maps, 2 if s > 0 and b == 0 else 1))
                cin = maps
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        h = self.blocks(F.relu(self.stem(x)))
        return self.fc(h.mean(dim=(2, 3)))


def main():
    model, mode, batch, iterations, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    channels_last = len(sys.argv) > 6 and sys.argv[6] == "channels_last"
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    baseline_rss = resident_bytes()
    torch.manual_seed(0)
    rng = np.random.RandomState(0)
    if model in torch_models.MODELS:
        net, hw = torch_models.build(model)
        c = 3
    else:
        net, hw, c = {"lenet": (LeNet, 28, 1), "resnet20": (ResNet20, 32, 3)}[model]
        net = net()
    x = torch.from_numpy(rng.uniform(0, 255, (batch, c, hw, hw)).astype(np.float32))
    t = torch.from_numpy(rng.randint(0, 10, (batch,)).astype(np.int64))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    training = mode == "training"
    net.train(training)
    if training:
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), t).backward()
            opt.step()
    else:
        def step():
            with torch.inference_mode():
                net(x)

    times = time_steps(step, warmup, iterations)
    report("torch %s (%s, %d threads)" % (torch.__version__, "channels_last" if channels_last else "NCHW", torch.get_num_threads()),
           times, batch, baseline_rss)


if __name__ == "__main__":
    main()
