"""Writes the nnabla interop fixtures with the real nnabla 1.39 (run in the peers' nnabla virtualenv:
~/.cache/kiln-peers/nnabla/bin/python make_fixtures.py, from this folder). For each network: NAME.nnp
(nnabla.utils.save.save, parameters inside as .h5), NAME.h5 and NAME.protobuf (nn.save_parameters), and
NAME.expected.json: the input fed and the outputs nnabla computed."""
import json

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
from nnabla.utils.save import save

rng = np.random.RandomState(1)


def convnet(x):
    h = PF.convolution(x, 4, (3, 3), pad=(1, 1), name="conv1")
    h = PF.batch_normalization(h, batch_stat=False, name="bn1")
    h = F.relu(h)
    h = F.max_pooling(h, (2, 2))
    h = PF.convolution(h, 6, (3, 3), stride=(2, 2), group=2, name="conv2")
    h = F.elu(h, alpha=0.5)
    h = F.average_pooling(h, (2, 2), ignore_border=False)
    h = PF.affine(h, 5, name="fc")
    return F.softmax(h, axis=1)


def mixed(x):
    a = F.tanh(PF.affine(x, 6, name="a"))
    b = F.sigmoid(PF.affine(x, 6, name="b"))
    h = F.concatenate(a, b, axis=1)
    h = F.leaky_relu(h, alpha=0.2)
    h = F.reshape(h, (x.shape[0], 3, 4))
    h = F.transpose(h, (0, 2, 1))
    h = F.slice(h, start=(0, 1, 0), stop=(x.shape[0], 4, 3), step=(1, 1, 2))
    h = F.mul_scalar(F.add_scalar(h, 0.5), 2.0)
    h = F.pad(h, (1, 1), mode="reflect")
    h = F.layer_normalization(h, PF.get_parameter_or_create("ln/beta", (1, 3, 4), need_grad=True),
                              PF.get_parameter_or_create("ln/gamma", (1, 3, 4), need_grad=True), batch_axis=0)
    return F.mean(F.exp(F.abs(h)), axis=2, keepdims=False)


for name, build, shape in [("convnet", convnet, (2, 3, 8, 8)), ("mixed", mixed, (2, 5))]:
    nn.clear_parameters()
    x = nn.Variable(shape)
    y = build(x)
    for k, p in nn.get_parameters(grad_only=False).items():
        p.d = rng.uniform(-1, 1, p.shape) if not k.endswith("/var") else rng.uniform(0.5, 1.5, p.shape)
    x.d = rng.uniform(-1, 1, shape)
    y.forward()
    save(f"{name}.nnp", {
        "networks": [{"name": "net", "batch_size": shape[0], "outputs": {"y": y}, "names": {"x": x}}],
        "executors": [{"name": "runtime", "network": "net", "data": ["x"], "output": ["y"]}],
    })
    nn.save_parameters(f"{name}.h5")
    nn.save_parameters(f"{name}.protobuf")
    with open(f"{name}.expected.json", "w") as f:
        json.dump({"x": {"shape": list(shape), "data": x.d.ravel().tolist()},
                   "y": {"shape": list(y.shape), "data": y.d.ravel().tolist()},
                   "need_grad": {k: bool(v.need_grad) for k, v in nn.get_parameters(grad_only=False).items()}}, f)
    print(name, y.shape, list(nn.get_parameters(grad_only=False).keys()))
