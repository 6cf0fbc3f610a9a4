"""Every function Kiln exports to ONNX, checked against onnxruntime: a kiln-graph/1 file chaining them is
exported by `kiln export`, run by `kiln run` and by onnxruntime on the same input, and the largest difference
printed. Usage: python onnx_functions.py KILN_BINARY (virtualenv with onnxruntime and numpy). Never in CI."""
import json, subprocess, sys, tempfile

import numpy as np
import onnxruntime as ort

kiln = sys.argv[1]
rng = np.random.default_rng(1)
variables = [{"name": "x", "shape": [2, 3, 4, 5], "kind": "input"}]
functions = []


def param(name, shape, low=-1.0, high=1.0, dtype="float32"):
    data = rng.uniform(low, high, size=shape).astype(np.float32).ravel().tolist()
    variables.append({"name": name, "shape": shape, "kind": "parameter", "data": data, "dtype": dtype})
    return name


def f(type_, inputs, args=None):
    out = f"v{len(functions)}"
    functions.append({"name": f"{type_}_{len(functions)}", "type": type_, "inputs": inputs, "outputs": [out], "args": args or {}})
    return out


h = f("Pad", ["x"], {"pad_width": [1, 1, 0, 2], "mode": "reflect"})
h = f("PReLU", [h, param("slope", [3])], {"base_axis": 1})
h = f("LayerNormalization", [h, param("ln_beta", [1, 1, 6, 7]), param("ln_gamma", [1, 1, 6, 7])], {"batch_axis": [0, 1]})
h = f("InstanceNormalization", [h, param("in_beta", [1, 3, 1, 1]), param("in_gamma", [1, 3, 1, 1])], {"eps": 1e-3})
h = f("LRN", [h], {"size": 3})
normalized = h
a = f("SELU", [f("Exp", [f("MinimumScalar", [h], {"val": 0.5})])])
b = f("SoftPlus", [f("HardSwish", [f("Erf", [h])])])
h = f("Maximum2", [a, f("Pow2", [f("Abs", [b]), f("HardSigmoid", [h])])])
h = f("Log", [f("AddScalar", [f("SoftSign", [f("ReLU6", [h])])], {"val": 1.0})])
h = f("Minimum2", [h, f("MaximumScalar", [f("Floor", [h])], {"val": -0.25})])
m = f("Max", [h], {"axes": [3], "keep_dims": True})
variables.append({"name": "idx", "shape": [2], "kind": "parameter", "dtype": "int32", "data": [5, 0], "need_grad": False})
g = f("Gather", [h, "idx"], {"axis": 2})
r = f("Reshape", [g], {"shape": [6, 2, 7]})
mm = f("BatchMatmul", [r, r], {"transpose_b": True})
out = f("Min", [mm], {"axes": [1]})
outputs = [out, m, normalized, a, b]
graph = {"format": "kiln-graph/1", "variables": variables, "functions": functions, "outputs": outputs}

with tempfile.TemporaryDirectory() as d:
    with open(f"{d}/g.json", "w") as fh:
        json.dump(graph, fh)
    subprocess.run([kiln, "export", f"{d}/g.json", "-o", f"{d}/g.onnx"], check=True, capture_output=True)
    x = rng.uniform(-2, 2, size=[2, 3, 4, 5]).astype(np.float32)
    with open(f"{d}/in.json", "w") as fh:
        json.dump({"x": {"shape": list(x.shape), "data": x.ravel().tolist()}}, fh)
    subprocess.run([kiln, "run", f"{d}/g.json", "--inputs", f"{d}/in.json", "--outputs", f"{d}/out.json"], check=True)
    with open(f"{d}/out.json") as fh:
        kiln_out = json.load(fh)
    sess = ort.InferenceSession(f"{d}/g.onnx", providers=["CPUExecutionProvider"])
    ort_out = sess.run(None, {"x": x})
    worst = 0.0
    for name, got in zip(outputs, ort_out):
        ref = np.array(kiln_out[name]["data"], dtype=np.float32)
        diff = float(np.max(np.abs(got.ravel() - ref)))
        worst = max(worst, diff)
        print(f"{name}: onnxruntime vs kiln max |diff| = {diff:.3g}")
print(f"worst {worst:.3g}: {'within' if worst <= 1e-4 else 'ABOVE'} 1e-4")
sys.exit(0 if worst <= 1e-4 else 1)
