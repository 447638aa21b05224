"""Small PyTorch models exported with torch.onnx.export (dynamo exporter, opset 18) for the
accuracy tests. Exports are cached (see ``cache_dir``); nothing is downloaded."""

from __future__ import annotations

import hashlib
import os
import pathlib

import numpy as np

VERSION = "1"  # bump to invalidate cached exports


def cache_dir() -> pathlib.Path:
    root = os.environ.get("ONNXFAST_TEST_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "onnxfast")
    d = pathlib.Path(root) / "test-models"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _models():
    import torch
    from torch import nn

    class SmallCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 16, 3, padding=1)
            self.b1 = nn.BatchNorm2d(16)
            self.c2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
            self.b2 = nn.BatchNorm2d(32)
            self.c3 = nn.Conv2d(32, 32, 3, padding=1, groups=4)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(32, 10)

        def forward(self, x):
            x = torch.relu(self.b1(self.c1(x)))
            x = torch.relu(self.b2(self.c2(x)))
            x = x + torch.relu(self.c3(x))
            x = self.pool(x)
            x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
            return self.fc(x)

    class Encoder(nn.Module):
        def __init__(self, d=32, heads=4, ff=64, layers=2):
            super().__init__()
            self.heads = heads
            self.layers = nn.ModuleList()
            for _ in range(layers):
                self.layers.append(nn.ModuleDict({
                    "qkv": nn.Linear(d, 3 * d), "proj": nn.Linear(d, d), "ln1": nn.LayerNorm(d),
                    "ff1": nn.Linear(d, ff), "ff2": nn.Linear(ff, d), "ln2": nn.LayerNorm(d),
                }))

        def forward(self, x):
            b, s, d = x.shape
            h = self.heads
            for L in self.layers:
                q, k, v = L["qkv"](x).split(d, dim=-1)
                q = q.reshape(b, s, h, d // h).transpose(1, 2)
                k = k.reshape(b, s, h, d // h).transpose(1, 2)
                v = v.reshape(b, s, h, d // h).transpose(1, 2)
                att = torch.softmax(q @ k.transpose(-1, -2) / (d // h) ** 0.5, dim=-1)
                a = (att @ v).transpose(1, 2).reshape(b, s, d)
                x = L["ln1"](x + L["proj"](a))
                x = L["ln2"](x + L["ff2"](nn.functional.gelu(L["ff1"](x))))
            return x.mean(dim=1)

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 5))

        def forward(self, x):
            return self.net(x)

    class Decoder(nn.Module):
        """Upsampling path of a segmentation / GAN generator: transposed convolution, resizing, instance
        norm and the less common activations, comparisons and Max."""

        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 8, 3, padding=1)
            self.b = nn.BatchNorm2d(8)
            self.inorm = nn.InstanceNorm2d(8, affine=True)
            self.ct = nn.ConvTranspose2d(8, 6, 4, stride=2, padding=1)
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            self.down = nn.Upsample(scale_factor=0.5, mode="nearest")

        def forward(self, x):
            y = self.b(self.c(x))
            y = nn.functional.hardswish(y) + 0.1 * nn.functional.mish(y) + nn.functional.elu(y)
            y = self.inorm(y)
            y = nn.functional.softplus(y) - 0.2 * nn.functional.selu(y)
            y = self.up(self.ct(y))
            y = torch.clamp(y, -1.5, 2.0)
            y = torch.where(y > 0.3, y, torch.maximum(y, -0.5 * y))
            y = self.down(y) + nn.functional.hardsigmoid(y[:, :, ::2, ::2])
            return torch.log(torch.abs(y) + 1e-3) + torch.reciprocal(torch.abs(y) + 1.0)

    return {
        "cnn": (SmallCNN, (2, 3, 16, 16), {0: "batch"}),
        "decoder": (Decoder, (2, 3, 10, 12), {0: "batch"}),
        "encoder": (Encoder, (2, 7, 32), {0: "batch", 1: "seq"}),
        "mlp": (MLP, (4, 20), {0: "batch"}),
    }


MODEL_NAMES = ["cnn", "decoder", "encoder", "mlp"]


def export(name: str) -> tuple[pathlib.Path, "callable"]:
    """Export model ``name``; returns (path to the .onnx, a function running torch on a numpy input)."""
    import torch

    factory, shape, dyn = _models()[name]
    torch.manual_seed(0)
    model = factory().eval()
    with torch.no_grad():  # give BatchNorm non-trivial statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    key = hashlib.sha1(f"{VERSION}-{name}-{torch.__version__}".encode()).hexdigest()[:10]
    path = cache_dir() / f"{name}-{key}.onnx"
    if not path.exists():
        example = torch.randn(*shape)
        dims = {i: torch.export.Dim(n, min=1, max=1024) for i, n in dyn.items()}
        tmp = path.with_suffix(".tmp.onnx")
        torch.onnx.export(model, (example,), str(tmp), dynamo=True, opset_version=18,
                          input_names=["x"], output_names=["y"], dynamic_shapes={"x": dims},
                          external_data=False)
        os.replace(tmp, path)

    def run_torch(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return path, run_torch


def input_shape(name: str) -> tuple:
    return _models()[name][1]
