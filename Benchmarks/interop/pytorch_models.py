"""ResNet-18 and MobileNetV2 written in PyTorch (random weights, eval mode, 224x224), exported to ONNX by
PyTorch, imported by Kiln (`kiln run`) and run by onnxruntime: the largest difference, and median ms per
batch side by side (Kiln's `kiln bench` against onnxruntime with all graph optimisations, sequential
execution, T intra-op threads), for batch 1 and 8. ResNet-18 and MobileNetV2 are ../peers/torch_models.py's (no
torchvision needed).

Usage (make bench-peers sets up the virtualenvs): python pytorch_models.py KILN_BINARY [THREADS]
run with the onnxruntime venv's python; the torch venv's python (KILN_TORCH_PYTHON, default
~/.cache/kiln-peers/torch/bin/python) exports the models. Never run in CI."""
import json, os, re, subprocess, sys, tempfile, time


def export(directory):
    import torch
    import torch.nn as nn

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peers"))
    from torch_models import MobileNetV2, ResNet18

    class Encoder(nn.Module):   # attention, layer norm, GELU-free feed-forward, batched MatMul
        def __init__(self):
            super().__init__()
            self.enc = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True)
            self.fc = nn.Linear(16, 4)

        def forward(self, x):
            return self.fc(self.enc(x).mean(dim=1))

    class Mixed(nn.Module):   # SAME padding, ConvTranspose, PReLU, HardSwish, uneven pooling, Clip, SiLU, GELU
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 8, 3, padding="same")
            self.bn = nn.BatchNorm2d(8)
            self.d = nn.ConvTranspose2d(8, 4, 2, stride=2)
            self.p = nn.PReLU(4)

        def forward(self, x):
            h = self.p(self.d(nn.functional.hardswish(self.bn(self.c(x)))))
            h = nn.functional.avg_pool2d(h, 2, count_include_pad=False, padding=1)
            h = torch.clamp(h, -1, 1) * torch.sigmoid(h) + nn.functional.silu(h) + nn.functional.gelu(h)
            return nn.functional.log_softmax(h.flatten(1), dim=1) + h.flatten(1).max(dim=1, keepdim=True).values

    torch.manual_seed(0)
    for name, net, shape in [("encoder", Encoder(), (2, 5, 16)), ("mixed", Mixed(), (2, 3, 8, 8))]:
        net.eval()
        for opset in (14, 17):
            torch.onnx.export(net, torch.randn(*shape), f"{directory}/small_{name}_op{opset}.onnx", dynamo=False,
                              opset_version=opset, input_names=["x"], output_names=["y"])
    for name, net in [("resnet18", ResNet18()), ("mobilenetv2", MobileNetV2())]:
        net.eval()
        # Non-trivial BN statistics, as a trained model has.
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        for batch in (1, 8):
            torch.onnx.export(net, torch.randn(batch, 3, 224, 224), f"{directory}/{name}_b{batch}.onnx", dynamo=False,
                              opset_version=13, input_names=["x"], output_names=["y"])


if len(sys.argv) > 2 and sys.argv[1] == "--export":
    export(sys.argv[2])
    sys.exit(0)

import numpy as np
import onnxruntime as ort

kiln = sys.argv[1]
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
torch_python = os.environ.get("KILN_TORCH_PYTHON", os.path.expanduser("~/.cache/kiln-peers/torch/bin/python"))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
print(f"CPU: {cpu}; threads {threads}")
worst = 0.0
with tempfile.TemporaryDirectory() as d:
    subprocess.run([torch_python, __file__, "--export", d], check=True, capture_output=True)
    for name in ("resnet18", "mobilenetv2"):
        for batch in (1, 8):
            path = f"{d}/{name}_b{batch}.onnx"
            x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
            with open(f"{d}/in.json", "w") as f:
                json.dump({"x": {"shape": list(x.shape), "data": x.ravel().tolist()}}, f)
            subprocess.run([kiln, "run", path, "--inputs", f"{d}/in.json", "--outputs", f"{d}/out.json"], check=True)
            with open(f"{d}/out.json") as f:
                got = np.array(json.load(f)["y"]["data"], dtype=np.float32)
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.intra_op_num_threads = threads
            sess = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            ref = sess.run(None, {"x": x})[0].ravel()
            diff = float(np.max(np.abs(got - ref) / (1e-3 + np.abs(ref)).clip(min=1)))
            worst = max(worst, diff)
            iters = 20 if batch == 1 else 8
            # Kiln and onnxruntime alternately, three rounds; medians of each.
            kiln_ms, ort_ms = [], []
            for _ in range(3):
                out = subprocess.run([kiln, "bench", path, "--iterations", str(iters), "--threads", str(threads)],
                                     check=True, capture_output=True, text=True).stdout
                kiln_ms.append(float(re.search(r"ms_per_iteration: ([0-9.]+)", out).group(1)))
                times = []
                for _ in range(iters + 2):
                    t0 = time.perf_counter()
                    sess.run(None, {"x": x})
                    times.append((time.perf_counter() - t0) * 1000)
                ort_ms.append(float(np.median(times[2:])))
            k, o = float(np.median(kiln_ms)), float(np.median(ort_ms))
            print(f"{name} batch {batch}: max relative |diff| {diff:.2g}; kiln {k:.1f} ms, onnxruntime {o:.1f} ms, kiln/ort {k / o:.2f}")
    # Small models, correctness only.
    for path in sorted(f for f in os.listdir(d) if f.startswith("small_")):
        sess = ort.InferenceSession(f"{d}/{path}", providers=["CPUExecutionProvider"])
        shape = list(sess.get_inputs()[0].shape)
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        with open(f"{d}/in.json", "w") as f:
            json.dump({"x": {"shape": shape, "data": x.ravel().tolist()}}, f)
        subprocess.run([kiln, "run", f"{d}/{path}", "--inputs", f"{d}/in.json", "--outputs", f"{d}/out.json"], check=True)
        with open(f"{d}/out.json") as f:
            got = np.array(json.load(f)["y"]["data"], dtype=np.float32)
        diff = float(np.max(np.abs(got - sess.run(None, {"x": x})[0].ravel())))
        worst = max(worst, diff)
        print(f"{path[6:-5]}: max |diff| {diff:.2g}")
print(f"worst {worst:.2g}: {'within' if worst <= 1e-3 else 'ABOVE'} 1e-3")
sys.exit(0 if worst <= 1e-3 else 1)
