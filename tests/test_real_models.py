"""Real models (scripts/real_models.py) against onnxruntime: every model present in the cache folder
(~/.cache/graphc/real_models or $GRAPHC_REAL_MODELS; ``python scripts/real_models.py --fetch`` fills it) runs
through gc.compile -O2 + gc.prepare and through the ONNX backend API, and must match within 1e-4 of each
output's scale. Models graphc gets wrong are xfail(strict) with the cause (real_models.FAILS).

On a fresh machine the cache is empty, so one model is always fetched: silero-vad 5.1.2 is a 5 MB wheel on
PyPI (its VAD has an If on the sample rate, an STFT as Conv and an LSTM cell), cheap enough to download into a
temporary cache at test time, and skipped with pip's message where PyPI cannot be reached. The exported
models need torch, transformers and the tree libraries (the `real-models` extra, far too large for the test
extra), so they are tested only where they have been built into the cache.
"""
from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("real_models", os.path.join(ROOT, "scripts", "real_models.py"))
rm = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("real_models", rm)  # dataclasses look their module up there
_spec.loader.exec_module(rm)

TOL = 1e-4


def check(result):
    assert not result.error, f"{result.name}: {result.error}"
    assert result.err_o2 <= TOL and result.err_backend <= TOL, (result.name, result.err_o2, result.err_backend)
    assert result.spread is not None and result.spread > 1e-3, f"{result.name}: outputs too flat to prove much"


def _params():
    out = []
    for spec in rm.SPECS:
        marks = [pytest.mark.xfail(strict=True, reason=rm.FAILS[spec.name])] if spec.name in rm.FAILS else []
        out.append(pytest.param(spec.name, marks=marks, id=spec.name))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", _params())
def test_cached_real_model_matches_onnxruntime(name):
    if not os.path.exists(rm.model_path(name)):
        pytest.skip(f"{name} is not in {rm.cache_dir()} (python scripts/real_models.py --fetch)")
    check(rm.compare(rm.BY_NAME[name]))


def test_silero_vad_from_pypi_matches_onnxruntime(tmp_path):
    spec = rm.BY_NAME["silero_vad"]
    try:
        rm.fetch(spec, str(tmp_path))
    except RuntimeError as e:
        pytest.skip(f"PyPI not reachable for {spec.wheel[0]}: {e}")
    assert rm.sha256(rm.model_path("silero_vad", str(tmp_path))) == spec.wheel[2]  # fetch checked it too
    check(rm.compare(spec, str(tmp_path)))
    # both branches of its If (a chunk and the context before it: 256 + 32 at 8 kHz, 512 + 64 at 16 kHz), with
    # a state carried over as the streaming loop passes it
    for sr, n in ((8000, 288), (16000, 576)):
        feeds = {"input": rm.speech(n, 2, seed=sr), "sr": np.array(sr, np.int64),
                 "state": np.random.default_rng(sr).standard_normal((2, 2, 128)).astype(np.float32)}
        path = rm.model_path("silero_vad", str(tmp_path))
        want = rm.ort_session(path).run(None, feeds)
        o2, api, _ = rm.graphc_outputs(path, feeds)
        assert rm.relative_error(o2, want) <= TOL and rm.relative_error(api, want) <= TOL


def test_relative_error_is_strict_about_shapes_dtypes_and_integers():
    a = np.array([[1.0, -2.0]], np.float32)
    assert rm.relative_error([a], [a]) == 0.0
    assert rm.relative_error([a + np.float32(1e-3)], [a]) == pytest.approx(5e-4, rel=1e-3)
    assert rm.relative_error([np.array([1, 2])], [np.array([1, 3])]) == float("inf")
    with pytest.raises(AssertionError, match="float32"):
        rm.relative_error([a.astype(np.float64)], [a])
    with pytest.raises(AssertionError, match="outputs"):
        rm.relative_error([a, a], [a])
    maps = [{0: 0.25, 1: 0.75}]
    assert rm.relative_error([maps], [[{0: 0.25, 1: 0.5}]]) == pytest.approx(0.5)  # 0.25 off, scale 0.5
    with pytest.raises(AssertionError, match="keys"):
        rm.relative_error([maps], [[{0: 0.25, 2: 0.75}]])


def test_doc_table_lists_every_model():
    with open(rm.DOC, encoding="utf-8") as f:
        doc = f.read()
    table = doc.split(rm.BEGIN, 1)[1].split(rm.END, 1)[0]
    rows = {line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")}
    assert rows - {"model"} == set(rm.BY_NAME), "run python scripts/real_models.py --fetch --write-doc"
    assert len(rm.SPECS) >= 10
