"""onnxruntime side of the peer comparison: LeNet and ResNet-20 (inference) as Kiln's Zoo.swift builds them,
written as ONNX graphs with onnx.helper and run by onnxruntime's CPU provider.

Usage: python ort_bench.py MODEL inference BATCH ITERATIONS WARMUP
MODEL is lenet, resnet20, or an .onnx file (the networks of torch_models.py, exported by PyTorch).
Session: all graph optimisations (onnxruntime fuses Conv+BatchNormalization+Add+Relu and picks its blocked
NCHWc layout itself), sequential execution, intra-op threads = OMP_NUM_THREADS, inter-op threads 1.
Weights are random (the same shapes as the zoo; values do not change the work). BatchNormalization runs in
inference mode with its running statistics. Prints `key: value` lines like the other peers.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
import onnxruntime as ort
from measure import report, resident_bytes, time_steps


class Builder:
    def __init__(self, rng):
        self.rng, self.nodes, self.inits, self.count = rng, [], [], 0

    def name(self, base):
        self.count += 1
        return "%s_%d" % (base, self.count)

    def const(self, base, array):
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array, np.float32), n))
        return n

    def node(self, op, inputs, **attrs):
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv(self, x, cin, cout, k, stride=1, pad=0, bias=True):
        w = self.const("W", self.rng.normal(0, (2.0 / (k * k * cin)) ** 0.5, (cout, cin, k, k)))
        ins = [x, w] + ([self.const("b", np.zeros(cout))] if bias else [])
        return self.node("Conv", ins, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)

    def bn(self, x, c):
        ps = [self.const(n, v) for n, v in [("gamma", np.ones(c)), ("beta", np.zeros(c)),
                                            ("mean", np.zeros(c)), ("var", np.ones(c))]]
        return self.node("BatchNormalization", [x] + ps, epsilon=1e-5)

    def affine(self, x, cin, cout):
        w = self.const("W", self.rng.normal(0, (1.0 / cin) ** 0.5, (cin, cout)))
        return self.node("Add", [self.node("MatMul", [x, w]), self.const("b", np.zeros(cout))])


def lenet(b):
    h = b.node("Mul", ["x", b.const("scale", np.float32(1.0 / 255))])
    h = b.node("Relu", [b.node("MaxPool", [b.conv(h, 1, 16, 5)], kernel_shape=[2, 2], strides=[2, 2])])
    h = b.node("Relu", [b.node("MaxPool", [b.conv(h, 16, 16, 5)], kernel_shape=[2, 2], strides=[2, 2])])
    h = b.node("Flatten", [h], axis=1)
    h = b.node("Relu", [b.affine(h, 256, 50)])
    return b.affine(h, 50, 10)


def resnet20(b):
    def conv_bn(x, cin, cout, k, stride):
        return b.bn(b.conv(x, cin, cout, k, stride, k // 2, bias=False), cout)

    h = b.node("Relu", [conv_bn("x", 3, 16, 3, 1)])
    cin = 16
    for s, maps in enumerate([16, 32, 64]):
        for i in range(3):
            stride = 2 if s > 0 and i == 0 else 1
            r = b.node("Relu", [conv_bn(h, cin, maps, 3, stride)])
            r = conv_bn(r, maps, maps, 3, 1)
            shortcut = h if stride == 1 and cin == maps else conv_bn(h, cin, maps, 1, stride)
            h = b.node("Relu", [b.node("Add", [r, shortcut])])
            cin = maps
    h = b.node("Flatten", [b.node("GlobalAveragePool", [h])], axis=1)
    return b.affine(h, 64, 10)


def main():
    model, mode, batch, iterations, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    if mode != "inference":
        sys.exit("ort_bench.py: onnxruntime runs inference only")
    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    baseline_rss = resident_bytes()
    rng = np.random.RandomState(0)
    if model.endswith(".onnx"):
        onnx_model = onnx.load(model)
        c, hw = [d.dim_value for d in onnx_model.graph.input[0].type.tensor_type.shape.dim][1:3]
    else:
        build, hw, c = {"lenet": (lenet, 28, 1), "resnet20": (resnet20, 32, 3)}[model]
        b = Builder(rng)
        y = build(b)
        graph = helper.make_graph(b.nodes, model, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, c, hw, hw])],
                                  [helper.make_tensor_value_info(y, TensorProto.FLOAT, [batch, 10])], b.inits)
        # IR version 8 (opset 17): what onnxruntime releases of the last years all read.
        onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        onnx.checker.check_model(onnx_model)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = rng.uniform(0, 255, (batch, c, hw, hw)).astype(np.float32)

    def step():
        session.run(None, {"x": x})

    report("onnxruntime %s (%d intra-op threads)" % (ort.__version__, threads), time_steps(step, warmup, iterations),
           batch, baseline_rss)


if __name__ == "__main__":
    main()
