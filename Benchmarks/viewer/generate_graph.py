#!/usr/bin/env python3
"""Writes a kiln-graph/1 file of N functions (N/4 blocks of Affine -> ReLU -> Concatenate(skip) -> Affine),
the graph the viewer benchmark renders. Usage: generate_graph.py N OUT.json"""
import json
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
out = sys.argv[2] if len(sys.argv) > 2 else "graph.json"
variables = [{"name": "x", "shape": [1, 8], "kind": "input"}]
functions = []
h = "x"
for i in range(n // 4):
    for p, shape in (("a/W", [8, 8]), ("a/b", [8]), ("c/W", [16, 8]), ("c/b", [8])):
        variables.append({"name": f"b{i}/{p}", "shape": shape, "kind": "parameter"})
    functions += [
        {"name": f"affine{i}a", "type": "Affine", "inputs": [h, f"b{i}/a/W", f"b{i}/a/b"], "outputs": [f"a{i}"]},
        {"name": f"relu{i}", "type": "ReLU", "inputs": [f"a{i}"], "outputs": [f"r{i}"]},
        {"name": f"concat{i}", "type": "Concatenate", "inputs": [h, f"r{i}"], "outputs": [f"c{i}"], "args": {"axis": 1}},
        {"name": f"affine{i}c", "type": "Affine", "inputs": [f"c{i}", f"b{i}/c/W", f"b{i}/c/b"], "outputs": [f"h{i}"]},
    ]
    h = f"h{i}"
with open(out, "w") as f:
    json.dump({"format": "kiln-graph/1", "variables": variables, "functions": functions, "outputs": [h]}, f)
