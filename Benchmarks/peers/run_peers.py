#!/usr/bin/env python3
"""Kiln vs nnabla, JAX, PyTorch (NCHW and channels_last) and onnxruntime on the same networks, batch sizes,
thread counts and solver; prints one table, then Kiln's time against each peer's and against the best.

Networks: LeNet (conv5x5 16, maxpool2, relu, conv5x5 16, maxpool2, relu, affine 50, relu, affine 10, inputs
/255) and ResNet-20 (CIFAR-style, BN, 1x1 projection shortcuts), exactly as Sources/Kiln/Models/Zoo.swift
builds them (nnabla_bench.py and jax_bench.py rebuild them layer for layer). Training = forward, backward
and an Adam(1e-3) update of mean softmax cross-entropy on random data; inference = one forward pass.

Thread pinning, the same for every peer (T = 1 or 2):
  taskset -c 0 (T=1) / taskset -c 0,1 (T=2)      every process is confined to T cores
  OMP_NUM_THREADS=T OPENBLAS_NUM_THREADS=T MKL_NUM_THREADS=T
  XLA_FLAGS: T=1 "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
             T=2 "--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=2"
  PyTorch: torch.set_num_threads(T); onnxruntime: intra-op threads T, inter-op 1, sequential execution
  Kiln: `kiln bench ... --threads T`
Peers per case: onnxruntime runs the inference cases only (it has no training); nnabla and PyTorch do not run
the "-half" cases.
OPENBLAS_CORETYPE is left as the environment has it (all peers see the same value).

Peak RSS is measured from outside by /usr/bin/time -v ("Maximum resident set size"), for every peer alike
(it includes each runtime's own footprint: the Python interpreter and the framework's libraries for nnabla
and JAX). Times are the median over the timed iterations after a warm-up, measured inside each process
around one step (jax: until block_until_ready). Kiln's arena_bytes (its planned scratch arena: activations,
intermediate gradients, workspaces) is shown next to XLA's compiled.memory_analysis() temp bytes (XLA's
scratch arena for the same jitted step).

Mixed precision (the "-half" cases): Kiln runs `--precision half` (float16 activations and gradients, float32
parameters and solver state, loss scale 8); JAX casts parameters and images to float16 inside the jitted step
and computes the loss in float32 with the same loss scale (the usual mixed-precision recipe); nnabla is not
run for them.

Usage: run_peers.py [--kiln PATH] [--baseline PATH] [--venvs DIR] [--threads 1,2] [--cases all|NAME,...]
                    [--peers kiln,nnabla,jax,torch,torch-cl,ort]
                    [--iterations N] [--warmup N] [--json OUT] [--speedup-pairs N] [--rounds R]
After the table: Kiln's time as a fraction of each peer's, its arena against XLA's temp arena, and Kiln's
2-thread speed-up on the training cases, timed by `kiln bench --threads 2 --speedup` (1-thread and 2-thread
iterations alternating in one process; 3 runs per case by default).
Case names: lenet-train-64 resnet20-train-32 resnet20-train-128 lenet-infer-256 resnet20-infer-256
            lenet-infer-1 resnet20-infer-1 (batch-1 latency) resnet20-train-32-half resnet20-train-128-half,
            and networks outside the zoo: resnet18-64-train-32 resnet18-64-infer-64 mobilenetv2-infer-8
            mobilenetv2-infer-1 mobilenetv2-train-8.
Networks outside the zoo (torch_models.py: ResNet-18 on 64x64 images, MobileNetV2 on 224x224) are exported by
PyTorch to ONNX once per batch size (into $KILN_PEERS_VENV/models); Kiln and onnxruntime run that file, PyTorch
the same module eagerly; nnabla and JAX do not run them.
"""
import argparse
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# name, model, mode, batch, default timed iterations (resnet train 128 is ~2 s/step under nnabla), precision
CASES = [
    ("lenet-train-64", "lenet", "training", 64, 50, "float"),
    ("resnet20-train-32", "resnet20", "training", 32, 10, "float"),
    ("resnet20-train-128", "resnet20", "training", 128, 5, "float"),
    ("lenet-infer-256", "lenet", "inference", 256, 30, "float"),
    ("resnet20-infer-256", "resnet20", "inference", 256, 5, "float"),
    ("lenet-infer-1", "lenet", "inference", 1, 200, "float"),
    ("resnet20-infer-1", "resnet20", "inference", 1, 100, "float"),
    ("resnet20-train-32-half", "resnet20", "training", 32, 10, "half"),
    ("resnet20-train-128-half", "resnet20", "training", 128, 5, "half"),
    ("resnet18-64-train-32", "resnet18-64", "training", 32, 5, "float"),
    ("resnet18-64-infer-64", "resnet18-64", "inference", 64, 5, "float"),
    ("mobilenetv2-infer-8", "mobilenetv2-224", "inference", 8, 5, "float"),
    ("mobilenetv2-infer-1", "mobilenetv2-224", "inference", 1, 30, "float"),
    ("mobilenetv2-train-8", "mobilenetv2-224", "training", 8, 3, "float"),
]
# Networks outside the zoo (torch_models.py) and the peers that run them.
EXPORTED = {"resnet18-64", "mobilenetv2-224"}
EXPORTED_PEERS = {"kiln", "baseline", "torch", "torch-cl", "ort"}
# Peers that run mixed-precision cases.
HALF_PEERS = {"kiln", "jax", "baseline"}
PEERS = ["kiln", "nnabla", "jax", "torch", "torch-cl", "ort"]
LABELS = {"kiln": "Kiln", "nnabla": "nnabla", "jax": "JAX", "torch": "PyTorch", "torch-cl": "PyTorch CL",
          "ort": "onnxruntime", "baseline": "baseline"}
# Each peer's virtualenv and script (setup.sh makes the venvs), and any extra argument.
SCRIPTS = {"nnabla": ("nnabla", "nnabla", []), "jax": ("jax", "jax", []), "torch": ("torch", "torch", []),
           "torch-cl": ("torch", "torch", ["channels_last"]), "ort": ("ort", "ort", [])}
# With --baseline PATH, a second kiln binary (an earlier build) runs as the peer "baseline" in the same rotation,
# so a change is compared with the last build in one run, against the same peers and the same load.


def environment(threads):
    env = dict(os.environ)
    t = str(threads)
    env.update(OMP_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t, MKL_NUM_THREADS=t)
    if threads == 1:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    else:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=%d" % threads
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def exported(args, model, batch):
    """The ONNX file of a network outside the zoo at this batch size, exported by PyTorch on first use."""
    directory = os.path.join(args.venvs, "models")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "%s-b%d.onnx" % (model, batch))
    if not os.path.exists(path):
        python = os.path.join(args.venvs, "torch", "bin", "python")
        subprocess.run([python, os.path.join(HERE, "torch_models.py"), model, str(batch), path + ".tmp"], check=True,
                       capture_output=True)
        os.replace(path + ".tmp", path)
    return path


def command(peer, args, model, mode, batch, iterations, warmup, threads, precision):
    if model in EXPORTED and peer in ("kiln", "baseline", "ort"):
        model = exported(args, model, batch)
    if peer in ("kiln", "baseline"):
        return [args.kiln if peer == "kiln" else args.baseline, "bench", model, "--mode", mode, "--batch-size", str(batch),
                "--iterations", str(iterations), "--warmup", str(warmup), "--threads", str(threads),
                "--precision", precision]
    venv, script, extra = SCRIPTS[peer]
    python = os.path.join(args.venvs, venv, "bin", "python")
    script = os.path.join(HERE, "%s_bench.py" % script)
    return [python, script, model, mode, str(batch), str(iterations), str(warmup)] + (
        [precision] if precision != "float" else []) + extra


def run_one(peer, args, case, threads):
    name, model, mode, batch, default_iterations, precision = case
    if precision != "float" and peer not in HALF_PEERS:
        return None
    if peer == "ort" and mode != "inference":
        return None
    if model in EXPORTED and peer not in EXPORTED_PEERS:
        return None
    iterations = args.iterations or default_iterations
    cpus = ",".join(str(i) for i in range(threads))
    cmd = ["taskset", "-c", cpus, "/usr/bin/time", "-v"] + command(peer, args, model, mode, batch, iterations,
                                                                    args.warmup, threads, precision)
    print("[%s t%d %s] %s" % (name, threads, peer, " ".join(cmd)), file=sys.stderr, flush=True)
    try:
        p = subprocess.run(cmd, env=environment(threads), capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": "timed out after %d s" % args.timeout}
    values = {}
    for line in p.stdout.splitlines():
        m = re.match(r"^([a-z_]+): (.*)$", line.strip())
        if m:
            values[m.group(1)] = m.group(2)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    if m:
        values["time_v_peak_rss_bytes"] = int(m.group(1)) * 1024
    if p.returncode != 0 or "ms_per_iteration" not in values:
        tail = [l for l in p.stderr.splitlines() if l.strip() and not l.startswith("\t")][-3:]
        return {"error": "exit %d: %s" % (p.returncode, " | ".join(tail)[-300:])}
    values["iterations"] = iterations
    return values


def fmt_ms(r):
    return "%.2f" % float(r["ms_per_iteration"]) if r and "ms_per_iteration" in r else "error" if r else "-"


def fmt_ips(r):
    return "%.0f" % float(r["images_per_second"]) if r and "images_per_second" in r else "error" if r else "-"


def fmt_growth(r):
    """Peak RSS minus the RSS before the network was built (the framework's own baseline)."""
    if not r or "time_v_peak_rss_bytes" not in r or "baseline_rss_bytes" not in r:
        return "-"
    return "%.1f" % ((float(r["time_v_peak_rss_bytes"]) - float(r["baseline_rss_bytes"])) / 2**20)


def fmt_mib(r, key):
    return "%.1f" % (float(r[key]) / 2 ** 20) if r and key in r else "-"


def ms(r):
    return float(r["ms_per_iteration"]) if r and "ms_per_iteration" in r else None


def print_ratios(results, peers):
    """Kiln's time as a fraction of each peer's and of the fastest peer's (the issues' criteria read these), and
    Kiln's arena against XLA's temp arena."""
    if "kiln" not in peers:
        return
    others = [p for p in peers if p not in ("kiln", "baseline")]
    columns = ["Kiln/%s time" % LABELS[p] for p in others] + ["Kiln/best peer", "best peer", "Kiln arena/XLA temp"]
    if "baseline" in peers:
        columns.append("Kiln/baseline time")
    print()
    print("| case | thr | " + " | ".join(columns) + " |")
    print("|---|---|" + "|".join("---" for _ in columns) + "|")

    def ratio(a, b):
        return "%.2f" % (a / b) if a and b else "-"

    for row in results:
        k = row.get("kiln")
        cells = [ratio(ms(k), ms(row.get(peer))) for peer in others]
        timed = [(ms(row.get(p)), p) for p in others if ms(row.get(p))]
        best = min(timed) if timed else None
        cells += [ratio(ms(k), best[0]) if best else "-", LABELS[best[1]] if best else "-"]
        j = row.get("jax")
        cells.append("%.2f" % (float(k["arena_bytes"]) / float(j["temp_bytes"]))
                     if k and j and "arena_bytes" in k and "temp_bytes" in j and float(j["temp_bytes"]) > 0 else "-")
        if "baseline" in peers:
            cells.append(ratio(ms(k), ms(row.get("baseline"))))
        print("| %s | %d | %s |" % (row["case"], row["threads"], " | ".join(cells)))


def measure_speedups(args, cases, peers, threads):
    """Kiln's 2-thread speed-up on each training case, from `kiln bench --threads 2 --speedup`: one process
    that times iterations on 1 thread and on 2 alternately, so that both see the same load (on a shared machine
    it drifts between the table's separate runs)."""
    if "kiln" not in peers or args.speedup_pairs <= 0 or not {1, 2} <= set(threads):
        return {}
    speedups = {}
    print()
    print("Kiln 2-thread speed-up, 1-thread and 2-thread iterations alternating in one process "
          "(`kiln bench --threads 2 --speedup`, twice the case's iterations, %d runs):" % args.speedup_pairs)
    for case in cases:
        if case[2] != "training":
            continue
        name, model, mode, batch, default_iterations, precision = case
        if model in EXPORTED:
            model = exported(args, model, batch)
        rounds = 2 * (args.iterations or default_iterations)
        runs = []
        for _ in range(args.speedup_pairs):
            cmd = ["taskset", "-c", "0,1", args.kiln, "bench", model, "--mode", mode, "--batch-size", str(batch),
                   "--iterations", str(rounds), "--warmup", str(args.warmup), "--threads", "2", "--precision",
                   precision, "--speedup"]
            print("[%s speed-up] %s" % (name, " ".join(cmd)), file=sys.stderr, flush=True)
            p = subprocess.run(cmd, env=environment(2), capture_output=True, text=True, timeout=args.timeout)
            values = dict(re.findall(r"^([a-z_0-9]+): (.*)$", p.stdout, re.M))
            if p.returncode == 0 and "speedup" in values:
                runs.append((float(values["alternating_ms_1_thread"]), float(values["alternating_ms_2_threads"]),
                             float(values["speedup"])))
        if runs:
            ratios = sorted(r[2] for r in runs)
            median = ratios[len(ratios) // 2] if len(ratios) % 2 else sum(ratios[len(ratios) // 2 - 1:len(ratios) // 2 + 1]) / 2
            speedups[name] = {"runs": runs, "median": median}
            print("  %s: median %.2f (runs, 1-thread ms / 2-thread ms: %s)" % (
                name, median, ", ".join("%.1f/%.1f = %.2f" % r for r in runs)))
    return speedups


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kiln", default=os.path.join(ROOT, ".build", "release", "kiln"))
    ap.add_argument("--venvs", default=os.environ.get("KILN_PEERS_VENV", os.path.expanduser("~/.cache/kiln-peers")))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--cases", default="all")
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--baseline", help="a second kiln binary (an earlier build) to run as the peer 'baseline'")
    ap.add_argument("--iterations", type=int, default=0, help="timed iterations for every case (default: per case)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=3600)
    ap.add_argument("--json", help="also write every raw result here")
    ap.add_argument("--rounds", type=int, default=1,
                    help="runs of every case and peer, rotating through the peers; cells show the median run")
    ap.add_argument("--speedup-pairs", type=int, default=3,
                    help="`kiln bench --speedup` runs per training case for Kiln's 2-thread speed-up (0: none)")
    args = ap.parse_args()

    cases = CASES if args.cases == "all" else [c for c in CASES if c[0] in args.cases.split(",")]
    if not cases:
        ap.error("no case matches --cases %s (known: %s)" % (args.cases, ", ".join(c[0] for c in CASES)))
    peers = [p for p in args.peers.split(",") if p]
    for p in peers:
        if p not in PEERS:
            ap.error("unknown peer %s" % p)
    threads = [int(t) for t in args.threads.split(",")]
    if "kiln" in peers and not os.access(args.kiln, os.X_OK):
        sys.exit("run_peers.py: no kiln binary at %s (make release)" % args.kiln)
    if args.baseline:
        if not os.access(args.baseline, os.X_OK):
            sys.exit("run_peers.py: no kiln binary at %s (--baseline)" % args.baseline)
        peers.append("baseline")

    results = []
    for case in cases:
        for t in threads:
            row = {"case": case[0], "threads": t}
            # Rounds rotate through the peers (kiln, nnabla, jax, kiln, ...) so that each peer's median spans the
            # same stretch of the machine's load; each cell is the run with the median time.
            runs = {peer: [] for peer in peers}
            for _ in range(args.rounds):
                for peer in peers:
                    runs[peer].append(run_one(peer, args, case, t))
            for peer in peers:
                timed = sorted((r for r in runs[peer] if ms(r)), key=ms)
                row[peer] = timed[(len(timed) - 1) // 2] if timed else runs[peer][0]
                if row[peer] is not None and timed:
                    row[peer]["rounds_ms"] = [ms(r) for r in runs[peer] if ms(r)]
            results.append(row)

    def get(row, peer):
        return row.get(peer)

    labels = [LABELS[p] for p in peers]
    header = (["case", "thr"] + ["%s ms" % l for l in labels] + ["%s img/s" % l for l in labels]
              + ["%s RSS MiB" % l for l in labels] + ["%s growth MiB" % l for l in labels]
              + ["Kiln arena MiB", "XLA temp MiB", "iters"])
    lines = []
    for row in results:
        rs = [get(row, p) for p in peers]
        iters = next((r["iterations"] for r in rs if r and "iterations" in r), "-")
        lines.append([row["case"], str(row["threads"])] + [fmt_ms(r) for r in rs] + [fmt_ips(r) for r in rs]
                     + [fmt_mib(r, "time_v_peak_rss_bytes") for r in rs] + [fmt_growth(r) for r in rs]
                     + [fmt_mib(get(row, "kiln"), "arena_bytes"), fmt_mib(get(row, "jax"), "temp_bytes"), str(iters)])
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for l in lines:
        print("| " + " | ".join(l) + " |")
    versions = {}
    for row in results:
        for peer in peers:
            r = row.get(peer)
            if r and "framework" in r:
                versions[peer] = r["framework"]
    print()
    print("ms = median ms per step; RSS = peak resident set (/usr/bin/time -v); growth = peak RSS minus the RSS "
          "after the framework started and before the network was built; arena = Kiln's planned arena; "
          "XLA temp = compiled.memory_analysis().temp_size_in_bytes.")
    if versions:
        print("versions: " + "; ".join(versions[p] for p in peers if p in versions))
    for row in results:
        for peer in peers:
            r = row.get(peer)
            if r and "error" in r:
                print("error: %s t%d %s: %s" % (row["case"], row["threads"], peer, r["error"]))
    print_ratios(results, peers)
    speedups = measure_speedups(args, cases, peers, threads)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "speedups": speedups}, f, indent=1)


if __name__ == "__main__":
    main()
