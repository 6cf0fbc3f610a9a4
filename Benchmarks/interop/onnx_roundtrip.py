"""Kiln -> ONNX -> onnxruntime: each zoo model is exported twice by `kiln export` (kiln-graph/1 and ONNX,
the same seeded weights), run by `kiln run` and by onnxruntime on the same random input, and the largest
difference printed. Also runs each exported ONNX model back through `kiln run` (ONNX import).

Usage: python onnx_roundtrip.py KILN_BINARY  (in a virtualenv with onnxruntime and numpy; make bench-peers
sets one up). Never run in CI."""
import json, os, subprocess, sys, tempfile

import numpy as np
import onnxruntime as ort

kiln = sys.argv[1]
cases = [("lenet", [1, 28, 28]), ("resnet20", [3, 32, 32])]
worst = 0.0
with tempfile.TemporaryDirectory() as d:
    for name, shape in cases:
        for batch in (1, 8):
            onnx_path, json_path = f"{d}/{name}.onnx", f"{d}/{name}.json"
            for out in (onnx_path, json_path):
                subprocess.run([kiln, "export", name, "-o", out, "--batch-size", str(batch)], check=True, capture_output=True)
            x = np.random.default_rng(0).uniform(0, 1, size=[batch] + shape).astype(np.float32)
            with open(f"{d}/in.json", "w") as f:
                json.dump({"x": {"shape": list(x.shape), "data": x.ravel().tolist()}}, f)
            results = {}
            for label, graph in (("kiln", json_path), ("kiln-onnx-import", onnx_path)):
                subprocess.run([kiln, "run", graph, "--inputs", f"{d}/in.json", "--outputs", f"{d}/out.json"], check=True)
                with open(f"{d}/out.json") as f:
                    results[label] = np.array(json.load(f)["y"]["data"], dtype=np.float32)
            sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
            results["onnxruntime"] = sess.run(None, {"x": x})[0].ravel()
            ref = results["kiln"]
            for label in ("onnxruntime", "kiln-onnx-import"):
                diff = float(np.max(np.abs(results[label] - ref)))
                worst = max(worst, diff)
                print(f"{name} batch {batch}: {label} vs kiln: max |diff| = {diff:.3g}")
print(f"worst {worst:.3g}: {'within' if worst <= 1e-4 else 'ABOVE'} 1e-4")
sys.exit(0 if worst <= 1e-4 else 1)
