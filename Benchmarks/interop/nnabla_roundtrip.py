"""Kiln -> nnabla: LeNet and ResNet-20 exported by `kiln export` as .nnp and as .h5, loaded by the real
nnabla 1.39 (NnpLoader, nn.load_parameters) and run on the input `kiln run` ran on: the largest difference
from Kiln's outputs, and whether the .h5 holds the .nnp's parameters under the same names and need_grad.

Usage: python nnabla_roundtrip.py KILN_BINARY (nnabla's virtualenv, `Benchmarks/peers/setup.sh`). Never in CI."""
import json, subprocess, sys, tempfile

import numpy as np
import nnabla as nn
from nnabla.utils.nnp_graph import NnpLoader

kiln = sys.argv[1]
worst = 0.0
with tempfile.TemporaryDirectory() as d:
    for name, shape in [("lenet", [2, 1, 28, 28]), ("resnet20", [2, 3, 32, 32])]:
        nnp, h5 = f"{d}/{name}.nnp", f"{d}/{name}.h5"
        subprocess.run([kiln, "export", name, "-o", nnp, "--batch-size", "2"], check=True, capture_output=True)
        subprocess.run([kiln, "export", name, "-o", h5], check=True, capture_output=True)
        x = np.random.default_rng(0).uniform(0, 1, size=shape).astype(np.float32)
        with open(f"{d}/in.json", "w") as f:
            json.dump({"x": {"shape": shape, "data": x.ravel().tolist()}}, f)
        subprocess.run([kiln, "run", nnp, "--inputs", f"{d}/in.json", "--outputs", f"{d}/out.json"], check=True)
        with open(f"{d}/out.json") as f:
            got = np.array(json.load(f)["y"]["data"], dtype=np.float32)

        nn.clear_parameters()
        loader = NnpLoader(nnp)
        net = loader.get_network(loader.get_network_names()[0], batch_size=2)
        net.inputs["x"].d = x
        y = net.outputs["y"]
        y.forward()
        diff = float(np.max(np.abs(y.d.ravel() - got)))
        from_nnp = {k: v.d.copy() for k, v in nn.get_parameters(grad_only=False).items()}

        nn.clear_parameters()
        nn.load_parameters(h5)
        from_h5 = nn.get_parameters(grad_only=False)
        same = set(from_h5) == set(from_nnp) and all(np.array_equal(from_h5[k].d, from_nnp[k]) for k in from_nnp)
        worst = max(worst, diff)
        print(f"{name}: nnabla on Kiln's .nnp vs kiln run: max |diff| = {diff:.3g}; "
              f".h5 holds the same {len(from_h5)} parameters: {same}")
        if not same:
            worst = float("inf")
print(f"worst {worst:.3g}: {'within' if worst <= 1e-4 else 'ABOVE'} 1e-4")
sys.exit(0 if worst <= 1e-4 else 1)
