"""Real models for accuracy tests and benchmarks, built from the frameworks on PyPI and exported
into a cache folder (``$ONNXFAST_MODEL_CACHE`` or ``~/.cache/onnxfast/models``), with inputs and
the source framework's outputs saved beside each model. Nothing is downloaded: weights are random
with fixed seeds (BatchNorm statistics calibrated so activations stay in range).

    python -m benchmarks.models.zoo            # export every model (skips those cached)
    python -m benchmarks.models.zoo resnet50   # one model

Each entry: name -> Spec(build, slow). ``get(name)`` returns a Cached(path, inputs, expected).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

ZOO_VERSION = "1"


def cache_root() -> pathlib.Path:
    root = os.environ.get("ONNXFAST_MODEL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "onnxfast",
                                                                    "models")
    p = pathlib.Path(root) / f"v{ZOO_VERSION}"
    p.mkdir(parents=True, exist_ok=True)
    return p


@dataclass
class Cached:
    name: str
    path: pathlib.Path
    inputs: dict  # name -> array (batch 1 for benchmarks is sliced from these)
    expected: list  # the source framework's outputs, in model output order
    kind: str  # a FAMILY_MODULES key: "torch" | "tf" | "sklearn" | "lightgbm"


@dataclass
class Spec:
    build: Callable[[pathlib.Path], None]  # writes model.onnx, inputs.npz, expected.npz into the folder
    slow: bool
    family: str
    batch_axis: bool = True  # inputs have a dynamic batch axis 0


# ---------------------------------------------------------------------------------------------
# torch models


def _torch():
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(2)
    return torch


def _resnet50():
    torch = _torch()
    from torch import nn

    class Bottleneck(nn.Module):
        def __init__(self, cin, mid, stride, down):
            super().__init__()
            self.c1 = nn.Conv2d(cin, mid, 1, bias=False)
            self.b1 = nn.BatchNorm2d(mid)
            self.c2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False)
            self.b2 = nn.BatchNorm2d(mid)
            self.c3 = nn.Conv2d(mid, mid * 4, 1, bias=False)
            self.b3 = nn.BatchNorm2d(mid * 4)
            self.down = nn.Sequential(nn.Conv2d(cin, mid * 4, 1, stride, bias=False),
                                      nn.BatchNorm2d(mid * 4)) if down else None

        def forward(self, x):
            y = torch.relu(self.b1(self.c1(x)))
            y = torch.relu(self.b2(self.c2(y)))
            y = self.b3(self.c3(y))
            return torch.relu(y + (self.down(x) if self.down is not None else x))

    class ResNet50(nn.Module):
        def __init__(self, classes=1000):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                      nn.MaxPool2d(3, 2, 1))
            layers, cin = [], 64
            for mid, n, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
                for i in range(n):
                    layers.append(Bottleneck(cin, mid, stride if i == 0 else 1, i == 0))
                    cin = mid * 4
            self.layers = nn.Sequential(*layers)
            self.fc = nn.Linear(2048, classes)

        def forward(self, x):
            x = self.layers(self.stem(x))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    return ResNet50()


def _mobilenet_v2():
    torch = _torch()
    from torch import nn

    def cbr(cin, cout, k, s, groups=1):
        return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
                             nn.ReLU6())

    class Inverted(nn.Module):
        def __init__(self, cin, cout, s, t):
            super().__init__()
            hid = cin * t
            layers = [cbr(cin, hid, 1, 1)] if t != 1 else []
            layers += [cbr(hid, hid, 3, s, groups=hid), nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
            self.body = nn.Sequential(*layers)
            self.res = s == 1 and cin == cout

        def forward(self, x):
            return x + self.body(x) if self.res else self.body(x)

    class MobileNetV2(nn.Module):
        def __init__(self, classes=1000):
            super().__init__()
            cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                   (6, 320, 1, 1)]
            layers, cin = [cbr(3, 32, 3, 2)], 32
            for t, c, n, s in cfg:
                for i in range(n):
                    layers.append(Inverted(cin, c, s if i == 0 else 1, t))
                    cin = c
            layers.append(cbr(cin, 1280, 1, 1))
            self.features = nn.Sequential(*layers)
            self.fc = nn.Linear(1280, classes)

        def forward(self, x):
            x = self.features(x)
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    return MobileNetV2()


def _calibrate_bn(model, example):
    """Set BatchNorm running statistics from batches of random data, so activations stay in range."""
    torch = _torch()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn_like(example))
    model.eval()


def _export_torch(model, args: tuple, names: list[str], out_names: list[str], dynamic: dict, folder: pathlib.Path,
                  dynamo: bool):
    torch = _torch()
    path = folder / "model.onnx"
    if dynamo:
        dims = {}
        for n, axes in dynamic.items():
            dims[n] = {ax: torch.export.Dim(f"{n}_{d}" if d != "batch" else "batch", min=1, max=4096)
                       for ax, d in axes.items()}
        # one Dim object per symbolic name, shared across inputs
        shared = {}
        for n, axes in dynamic.items():
            for ax, d in axes.items():
                shared.setdefault(d, torch.export.Dim(d, min=1, max=4096))
                dims[n][ax] = shared[d]
        torch.onnx.export(model, args, str(path), dynamo=True, opset_version=18, input_names=names,
                          output_names=out_names, dynamic_shapes=tuple(dims.get(n) for n in names),
                          external_data=False)
    else:
        dyn_axes = {n: dict(axes) for n, axes in dynamic.items()}
        for o in out_names:
            dyn_axes[o] = {0: "batch"}
        torch.onnx.export(model, args, str(path), dynamo=False, opset_version=18, input_names=names,
                          output_names=out_names, dynamic_axes=dyn_axes)
    import onnx

    m = onnx.load(str(path), load_external_data=True)
    onnx.save(m, str(path), save_as_external_data=False)
    for f in folder.glob("*.data"):
        f.unlink()


def _save(folder: pathlib.Path, inputs: dict, expected: list) -> None:
    np.savez(folder / "inputs.npz", **inputs)
    np.savez(folder / "expected.npz", *expected)


def _build_cnn(factory, dynamo: bool, folder: pathlib.Path):
    torch = _torch()
    model = factory()
    example = torch.randn(8, 3, 224, 224)
    _calibrate_bn(model, example)
    x = torch.randn(8, 3, 224, 224)
    with torch.no_grad():
        y = model(x).numpy()
    _export_torch(model, (x[:2],), ["input"], ["logits"], {"input": {0: "batch"}}, folder, dynamo)
    _save(folder, {"input": x.numpy()}, [y])


def _bert_inputs(batch: int, seq: int, vocab: int):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, vocab, size=(batch, seq)).astype(np.int64)
    mask = np.ones((batch, seq), np.int64)
    mask[1:, seq - seq // 4:] = 0  # padded rows
    return ids, mask


# all-MiniLM-L6-v2's shape: a 6-layer BERT encoder of width 384 (sentence embeddings)
MINILM = dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)


def _build_bert(dynamo: bool, folder: pathlib.Path, config: dict | None = None):
    torch = _torch()
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(**(config or {})), add_pooling_layer=True).eval()
    ids, mask = _bert_inputs(8, 128, 30522)

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            o = self.m(input_ids=input_ids, attention_mask=attention_mask)
            return o.last_hidden_state, o.pooler_output

    w = Wrap(model).eval()
    with torch.no_grad():
        hs, pooled = w(torch.from_numpy(ids), torch.from_numpy(mask))
    ex = (torch.from_numpy(ids[:2, :16]), torch.from_numpy(mask[:2, :16]))
    _export_torch(w, ex, ["input_ids", "attention_mask"], ["last_hidden_state", "pooler_output"],
                  {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}},
                  folder, dynamo)
    _save(folder, {"input_ids": ids, "attention_mask": mask}, [hs.numpy(), pooled.numpy()])


def _build_gpt2(folder: pathlib.Path, dynamo: bool = True):
    # (No TorchScript variant: transformers 5's GPT-2 uses aten::diff, which that exporter cannot export.)
    torch = _torch()
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(use_cache=False)).eval()

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return self.m(input_ids=input_ids, use_cache=False).logits

    w = Wrap(model).eval()
    ids = np.random.default_rng(0).integers(0, 50257, size=(8, 64)).astype(np.int64)
    with torch.no_grad():
        logits = w(torch.from_numpy(ids)).numpy()
    _export_torch(w, (torch.from_numpy(ids[:2, :16]),), ["input_ids"], ["logits"],
                  {"input_ids": {0: "batch", 1: "sequence"}}, folder, dynamo)
    _save(folder, {"input_ids": ids}, [logits])


def _build_mlp(dynamo: bool, folder: pathlib.Path):
    """A tabular / embedding-head MLP: Linear layers with ReLU, GELU and LayerNorm, softmax output."""
    torch = _torch()
    from torch import nn

    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.GELU(), nn.LayerNorm(512),
                          nn.Linear(512, 128), nn.ReLU(), nn.Linear(128, 10), nn.Softmax(dim=-1)).eval()
    x = torch.randn(64, 256)
    with torch.no_grad():
        y = model(x).numpy()
    _export_torch(model, (x[:2],), ["input"], ["probabilities"], {"input": {0: "batch"}}, folder, dynamo)
    _save(folder, {"input": x.numpy()}, [y])


def _build_lstm(folder: pathlib.Path):
    torch = _torch()

    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(64, 128, num_layers=2, batch_first=True)
            self.fc = torch.nn.Linear(128, 10)

        def forward(self, x):
            y, _ = self.lstm(x)
            return self.fc(y)

    model = Tagger().eval()
    x = torch.randn(8, 50, 64)
    with torch.no_grad():
        y = model(x).numpy()
    _export_torch(model, (x[:2],), ["input"], ["scores"], {"input": {0: "batch"}}, folder, True)
    _save(folder, {"input": x.numpy()}, [y])


def _build_keras_cnn(folder: pathlib.Path):
    """A small Keras CNN (Conv + BatchNorm + ReLU, depthwise Conv + BatchNorm + ReLU6, pooling, Dense
    head) converted by tf2onnx, NHWC input as Keras has it: tf2onnx folds the BatchNorms after the
    bias-free convolutions into them and writes those after the depthwise ones as Mul + Add, which
    onnxfast's ConvMulFusion / ConvAddFusion fold."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    import tf2onnx

    tf.random.set_seed(0)
    layers = tf.keras.layers
    inp = tf.keras.Input((64, 64, 3), name="image")
    x = inp
    for f in (16, 32, 64):
        x = layers.Conv2D(f, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.DepthwiseConv2D(3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU(6.0)(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dropout(0.2)(x)
    out = layers.Dense(10, activation="softmax", name="probabilities")(x)
    model = tf.keras.Model(inp, out)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # statistics away from the identity, so that folding them is tested
        if isinstance(layer, layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.normal(0, 0.1, n),
                               rng.uniform(0.5, 1.5, n)])
    spec = (tf.TensorSpec((None, 64, 64, 3), tf.float32, name="image"),)
    onx, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    (folder / "model.onnx").write_bytes(onx.SerializeToString())
    x = rng.standard_normal((8, 64, 64, 3)).astype(np.float32)
    _save(folder, {"image": x}, [model(x, training=False).numpy()])


# ---------------------------------------------------------------------------------------------
# scikit-learn / LightGBM


def _tabular(n=2000, features=20, seed=0):
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=n, n_features=features, n_informative=10, n_classes=3, random_state=seed)
    return x.astype(np.float32), y


def _build_sklearn(kind: str, folder: pathlib.Path):
    from skl2onnx import to_onnx
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _tabular()
    if kind == "logreg":
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    elif kind == "random_forest":
        model = RandomForestClassifier(n_estimators=50, max_depth=10, random_state=0)
    else:
        model = GradientBoostingClassifier(n_estimators=50, max_depth=3, random_state=0)
    model.fit(x, y)
    onx = to_onnx(model, x[:1], target_opset={"": 18, "ai.onnx.ml": 3}, options={"zipmap": False})
    (folder / "model.onnx").write_bytes(onx.SerializeToString())
    xt = x[:256]
    _save(folder, {"X": xt}, [model.predict(xt).astype(np.int64), model.predict_proba(xt).astype(np.float32)])


def _build_lightgbm(folder: pathlib.Path):
    import lightgbm
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    x, y = _tabular()
    model = lightgbm.LGBMClassifier(n_estimators=60, num_leaves=31, random_state=0, verbose=-1).fit(x, y)
    onx = convert_lightgbm(model, initial_types=[("X", FloatTensorType([None, x.shape[1]]))], zipmap=False,
                           target_opset=15)
    (folder / "model.onnx").write_bytes(onx.SerializeToString())
    xt = x[:256]
    _save(folder, {"X": xt}, [model.predict(xt).astype(np.int64), model.predict_proba(xt).astype(np.float32)])


ZOO: dict[str, Spec] = {
    "resnet50": Spec(lambda f: _build_cnn(_resnet50, True, f), slow=True, family="torch"),
    "resnet50_torchscript": Spec(lambda f: _build_cnn(_resnet50, False, f), slow=True, family="torch"),
    "mobilenet_v2": Spec(lambda f: _build_cnn(_mobilenet_v2, True, f), slow=True, family="torch"),
    "bert_base": Spec(lambda f: _build_bert(True, f), slow=True, family="torch"),
    "bert_base_torchscript": Spec(lambda f: _build_bert(False, f), slow=True, family="torch"),
    "mobilenet_v2_torchscript": Spec(lambda f: _build_cnn(_mobilenet_v2, False, f), slow=True, family="torch"),
    "gpt2": Spec(_build_gpt2, slow=True, family="torch"),
    "minilm": Spec(lambda f: _build_bert(True, f, MINILM), slow=True, family="torch"),
    "minilm_torchscript": Spec(lambda f: _build_bert(False, f, MINILM), slow=True, family="torch"),
    "mlp": Spec(lambda f: _build_mlp(True, f), slow=False, family="torch"),
    "mlp_torchscript": Spec(lambda f: _build_mlp(False, f), slow=False, family="torch"),
    "lstm": Spec(_build_lstm, slow=False, family="torch"),
    "keras_cnn": Spec(_build_keras_cnn, slow=False, family="tf"),
    "sklearn_logreg": Spec(lambda f: _build_sklearn("logreg", f), slow=False, family="sklearn"),
    "sklearn_random_forest": Spec(lambda f: _build_sklearn("random_forest", f), slow=False, family="sklearn"),
    "sklearn_gradient_boosting": Spec(lambda f: _build_sklearn("gradient_boosting", f), slow=False,
                                      family="sklearn"),
    "lightgbm": Spec(_build_lightgbm, slow=False, family="lightgbm"),
}


# the Python packages each family needs to build its models
FAMILY_MODULES = {
    "torch": ["torch", "onnxscript"],
    "tf": ["tensorflow", "tf2onnx"],
    "sklearn": ["sklearn", "skl2onnx"],
    "lightgbm": ["lightgbm", "onnxmltools"],
}


def build_once(folder: pathlib.Path, build: Callable[[pathlib.Path], None]) -> pathlib.Path:
    """Run ``build`` into a sibling ``<name>.tmp`` folder and move it to ``folder``, unless ``folder``
    already holds a finished build (its expected.npz, which every build writes)."""
    if not (folder / "expected.npz").exists():
        tmp = folder.with_name(folder.name + ".tmp")
        if tmp.exists():
            for f in tmp.iterdir():
                f.unlink()
        tmp.mkdir(parents=True, exist_ok=True)
        build(tmp)
        if folder.exists():
            for f in folder.iterdir():
                f.unlink()
            folder.rmdir()
        tmp.rename(folder)
    return folder


def get(name: str) -> Cached:
    """Build (once) and load a zoo model."""
    spec = ZOO[name]
    folder = build_once(cache_root() / name, spec.build)
    inputs = dict(np.load(folder / "inputs.npz"))
    exp = np.load(folder / "expected.npz")
    expected = [exp[f"arr_{i}"] for i in range(len(exp.files))]
    return Cached(name, folder / "model.onnx", inputs, expected, spec.family)


def build_cli(argv, description: str, names: list[str], load) -> int:
    """The zoos' command line: build (once) the named models, or all, and say where each is."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("names", nargs="*", help=f"models (default: all): {', '.join(names)}")
    args = p.parse_args(argv)
    for name in args.names or names:
        if name not in names:
            print(f"unknown model '{name}'", file=sys.stderr)
            return 2
        t = time.perf_counter()
        c = load(name)
        print(f"{name}: {c.path} ({c.path.stat().st_size / 1e3:.1f} kB, {time.perf_counter() - t:.2f} s)")
    return 0


def main(argv=None) -> int:
    return build_cli(argv, "Export the real-model zoo into the cache folder.", list(ZOO), get)


if __name__ == "__main__":
    sys.exit(main())
