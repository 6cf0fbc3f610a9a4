"""JAX side of the peer comparison: LeNet and ResNet-20 as Kiln's Zoo.swift builds them, jitted.

Usage: python jax_bench.py MODEL MODE BATCH ITERATIONS WARMUP [half]
The same layers, sizes, loss (mean softmax cross-entropy) and solver (Adam 1e-3 with nnabla's update rule:
alpha_t = alpha*sqrt(1-b2^t)/(1-b1^t), p -= alpha_t*m/(sqrt(v)+eps)). BN in training uses batch statistics
and updates running mean/variance (decay 0.9) as nnabla does. Activations are NHWC (XLA's CPU convolutions
are NHWC; asking for NCHW only adds transposes): the arithmetic is the same. One training step is one jitted
function (forward, backward, update) with parameters and solver state donated, so XLA updates in place.
With `half` (training only): mixed precision as usually done in JAX: float32 parameters and Adam state,
parameters and images cast to float16 inside the step, logits back to float32 for the loss, static loss
scale 8 (the gradient is unscaled before the update), like Kiln's `--precision half`.
Prints `key: value` lines, including `temp_bytes` from `compiled.memory_analysis()` (XLA's scratch arena,
the counterpart of Kiln's arena_bytes) and the argument/output sizes.
"""
import sys

import numpy as np
from measure import report, resident_bytes, time_steps
import jax
import jax.numpy as jnp
from jax import lax

BN_EPS = 1e-5
BN_DECAY = 0.9


def conv(x, w, stride=1, pad=0):
    return lax.conv_general_dilated(x, w, (stride, stride), [(pad, pad), (pad, pad)],
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def max_pool2(x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def init_conv(rng, k, cin, cout):
    return jnp.asarray(rng.normal(0, (2.0 / (k * k * cin)) ** 0.5, (k, k, cin, cout)), jnp.float32)


def init_affine(rng, cin, cout):
    return jnp.asarray(rng.normal(0, (1.0 / cin) ** 0.5, (cin, cout)), jnp.float32)


# ---- LeNet ----
def lenet_init(rng):
    return {
        "conv1/W": init_conv(rng, 5, 1, 16), "conv1/b": jnp.zeros(16),
        "conv2/W": init_conv(rng, 5, 16, 16), "conv2/b": jnp.zeros(16),
        "fc3/W": init_affine(rng, 256, 50), "fc3/b": jnp.zeros(50),
        "fc4/W": init_affine(rng, 50, 10), "fc4/b": jnp.zeros(10),
    }, {}


def lenet_apply(p, state, x, training):
    h = x * (1.0 / 255)
    h = conv(h, p["conv1/W"]) + p["conv1/b"]
    h = jax.nn.relu(max_pool2(h))
    h = conv(h, p["conv2/W"]) + p["conv2/b"]
    h = jax.nn.relu(max_pool2(h))
    h = h.reshape(h.shape[0], -1)
    h = jax.nn.relu(h @ p["fc3/W"] + p["fc3/b"])
    return h @ p["fc4/W"] + p["fc4/b"], state


# ---- ResNet-20 ----
def resnet20_layers():
    """(name, cin, cout, kernel, stride) of every conv+BN, in Zoo.swift's order."""
    layers = [("stem", 3, 16, 3, 1)]
    cin = 16
    for s, maps in enumerate([16, 32, 64]):
        for b in range(3):
            stride = 2 if s > 0 and b == 0 else 1
            name = "stage%d/block%d" % (s + 1, b + 1)
            layers.append((name + "/conv1", cin, maps, 3, stride))
            layers.append((name + "/conv2", maps, maps, 3, 1))
            if not (stride == 1 and cin == maps):
                layers.append((name + "/shortcut", cin, maps, 1, stride))
            cin = maps
    return layers


def resnet20_init(rng):
    p, state = {}, {}
    for name, cin, cout, k, _ in resnet20_layers():
        p[name + "/W"] = init_conv(rng, k, cin, cout)
        p[name + "/beta"] = jnp.zeros(cout)
        p[name + "/gamma"] = jnp.ones(cout)
        state[name + "/mean"] = jnp.zeros(cout)
        state[name + "/var"] = jnp.ones(cout)
    p["fc/W"] = init_affine(rng, 64, 10)
    p["fc/b"] = jnp.zeros(10)
    return p, state


def resnet20_apply(p, state, x, training):
    new_state = {}

    def conv_bn(x, name, k, stride):
        c = conv(x, p[name + "/W"], stride, k // 2)
        if training:
            mean = jnp.mean(c, axis=(0, 1, 2))
            var = jnp.mean(jnp.square(c - mean), axis=(0, 1, 2))
            n = c.shape[0] * c.shape[1] * c.shape[2]
            new_state[name + "/mean"] = BN_DECAY * state[name + "/mean"] + (1 - BN_DECAY) * mean
            new_state[name + "/var"] = BN_DECAY * state[name + "/var"] + (1 - BN_DECAY) * var * n / (n - 1)
        else:
            mean, var = state[name + "/mean"], state[name + "/var"]
        return (c - mean) * lax.rsqrt(var + BN_EPS) * p[name + "/gamma"] + p[name + "/beta"]

    h = jax.nn.relu(conv_bn(x, "stem", 3, 1))
    cin = 16
    for s, maps in enumerate([16, 32, 64]):
        for b in range(3):
            stride = 2 if s > 0 and b == 0 else 1
            name = "stage%d/block%d" % (s + 1, b + 1)
            r = jax.nn.relu(conv_bn(h, name + "/conv1", 3, stride))
            r = conv_bn(r, name + "/conv2", 3, 1)
            shortcut = h if stride == 1 and cin == maps else conv_bn(h, name + "/shortcut", 1, stride)
            h = jax.nn.relu(r + shortcut)
            cin = maps
    h = jnp.mean(h, axis=(1, 2))
    return h @ p["fc/W"] + p["fc/b"], (new_state if training else state)


def loss_fn(apply, p, state, x, t, half=False):
    if half:
        p = jax.tree_util.tree_map(lambda a: a.astype(jnp.float16), p)
        x = x.astype(jnp.float16)
    y, new_state = apply(p, state, x, True)
    y = y.astype(jnp.float32)
    logz = jax.nn.logsumexp(y, axis=1)
    picked = jnp.take_along_axis(y, t, axis=1)[:, 0]
    return jnp.mean(logz - picked) * (LOSS_SCALE if half else 1.0), new_state


LOSS_SCALE = 8.0


def adam(p, g, m, v, step, alpha=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    alpha_t = alpha * jnp.sqrt(1 - b2 ** step) / (1 - b1 ** step)
    m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
    v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
    p = jax.tree_util.tree_map(lambda p, m, v: p - alpha_t * m / (jnp.sqrt(v) + eps), p, m, v)
    return p, m, v


def main():
    model, mode, batch, iterations, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    training = mode == "training"
    half = len(sys.argv) > 6 and sys.argv[6] == "half"
    if half and not training:
        sys.exit("jax_bench.py: half is for training only")
    # Baseline: JAX imported and its CPU backend started, nothing of the network built yet.
    jax.devices()
    baseline_rss = resident_bytes()
    rng = np.random.RandomState(0)
    init, apply, hw, c = {"lenet": (lenet_init, lenet_apply, 28, 1), "resnet20": (resnet20_init, resnet20_apply, 32, 3)}[model]
    p, state = init(rng)
    x = jnp.asarray(rng.uniform(0, 255, (batch, hw, hw, c)), jnp.float32)
    t = jnp.asarray(rng.randint(0, 10, (batch, 1)), jnp.int32)

    if training:
        m = jax.tree_util.tree_map(jnp.zeros_like, p)
        v = jax.tree_util.tree_map(jnp.zeros_like, p)

        def train_step(p, state, m, v, step, x, t):
            (loss, new_state), g = jax.value_and_grad(lambda p: loss_fn(apply, p, state, x, t, half), has_aux=True)(p)
            if half:
                g = jax.tree_util.tree_map(lambda g: g.astype(jnp.float32) / LOSS_SCALE, g)
                new_state = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), new_state)
            p, m, v = adam(p, g, m, v, step)
            return p, new_state, m, v, loss

        args = (p, state, m, v, jnp.float32(1), x, t)
        compiled = jax.jit(train_step, donate_argnums=(0, 1, 2, 3)).lower(*args).compile()
        carry = {"p": p, "state": state, "m": m, "v": v, "step": 0}

        def step():
            carry["step"] += 1
            out = compiled(carry["p"], carry["state"], carry["m"], carry["v"], jnp.float32(carry["step"]), x, t)
            carry["p"], carry["state"], carry["m"], carry["v"], loss = out
            jax.block_until_ready(out)
    else:
        compiled = jax.jit(lambda p, state, x: apply(p, state, x, False)[0]).lower(p, state, x).compile()

        def step():
            compiled(p, state, x).block_until_ready()

    times = time_steps(step, warmup, iterations)
    report("jax %s (jaxlib %s)" % (jax.__version__, jax.lib.__version__ if hasattr(jax.lib, "__version__") else "?"),
           times, batch, baseline_rss)
    print("devices: %s" % jax.devices())
    ma = compiled.memory_analysis()
    if ma is not None:
        print("temp_bytes: %d" % ma.temp_size_in_bytes)
        print("argument_bytes: %d" % ma.argument_size_in_bytes)
        print("output_bytes: %d" % ma.output_size_in_bytes)
        print("alias_bytes: %d" % ma.alias_size_in_bytes)


if __name__ == "__main__":
    main()
