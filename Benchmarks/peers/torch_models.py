"""Networks that are not in Kiln's zoo, written once in PyTorch for the peer comparison and the interop checks:
ResNet-18 (basic blocks, 7x7/2 stem and max pooling, any input size) and MobileNetV2 (inverted residuals,
depthwise 3x3, ReLU6). Kiln and onnxruntime run them from the ONNX file PyTorch exports; PyTorch runs them
eagerly. The models are written here so that no torchvision is needed.

Usage (the torch venv's python): python torch_models.py NAME BATCH OUT.onnx
exports NAME (resnet18-64 or mobilenetv2-224) for BATCH inputs, in evaluation mode with random weights and
non-trivial BatchNormalization statistics. BatchNormalization nodes stay in the file (no folding), so that a
training run of the file (Kiln's `bench --mode training`) trains the same layers as PyTorch."""
import sys

import torch
import torch.nn as nn


class Basic(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        layers, cin = [], 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [Basic(cin, cout, stride), Basic(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))


def cbr(cin, cout, k, s, groups=1):
    return [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()]


class Inverted(nn.Module):
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hidden = cin * t
        layers = [] if t == 1 else cbr(cin, hidden, 1, 1)
        layers += cbr(hidden, hidden, 3, stride, groups=hidden)
        layers += [nn.Conv2d(hidden, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        layers, cin = cbr(3, 32, 3, 2), 32
        for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
            for i in range(n):
                layers.append(Inverted(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += cbr(cin, 1280, 1, 1)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


# name: (constructor, input height and width)
MODELS = {"resnet18-64": (ResNet18, 64), "mobilenetv2-224": (MobileNetV2, 224)}


def build(name, seed=0):
    """The network in evaluation mode, random weights and BN statistics as a trained model has, and its input size."""
    make, hw = MODELS[name]
    torch.manual_seed(seed)
    net = make()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    net.eval()
    return net, hw


def export(name, batch, path, opset=13, fold=False):
    net, hw = build(name)
    torch.onnx.export(net, torch.randn(batch, 3, hw, hw), path, dynamo=False, opset_version=opset,
                      input_names=["x"], output_names=["y"], do_constant_folding=fold,
                      training=torch.onnx.TrainingMode.PRESERVE)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in MODELS:
        sys.exit("usage: torch_models.py %s BATCH OUT.onnx" % "|".join(MODELS))
    export(sys.argv[1], int(sys.argv[2]), sys.argv[3])
