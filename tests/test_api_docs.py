"""Discoverability: dir(gc) and gc.__all__ list every public name (the lazily imported ones too), every public
function and class of the facade and the DSL has a docstring, and the API reference builds from them with
pdoc (scripts/build_api_docs.py, as CI runs it) without a warning."""
from __future__ import annotations

import inspect
import os
import subprocess
import sys

import graphc as gc
import graphc.frontends.dsl as dsl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_dir_and_all_list_the_lazy_names():
    names = dir(gc)
    for n in ("Graph", "placeholder", "placeholder_with_default", "Session", "nn", "layers", "optim", "losses",
              "gradients", "custom_gradient", "stop_gradient", "prepare", "import_onnx", "export_onnx"):
        assert n in names and n in gc.__all__, n
    assert set(gc._DSL) == set(dsl.__all__)  # the facade's static list follows the DSL
    for n in gc.__all__:
        getattr(gc, n)  # every listed name resolves


def _public(mod):
    for n in mod.__all__:
        obj = getattr(mod, n)
        if inspect.ismodule(obj):
            continue
        if callable(obj):
            yield f"{mod.__name__}.{n}", obj


def test_every_public_function_and_class_has_a_docstring():
    missing = []
    for mod in (gc, dsl, dsl.nn, dsl.layers, dsl.losses, dsl.optim, dsl.initializers):
        for name, obj in _public(mod):
            if not (inspect.getdoc(obj) or "").strip():
                missing.append(name)
            if inspect.isclass(obj) and obj.__module__.startswith("graphc.frontends.dsl"):
                for m, f in vars(obj).items():
                    if not m.startswith("_") and inspect.isfunction(f) and not (inspect.getdoc(f) or "").strip():
                        missing.append(f"{name}.{m}")
    assert not missing, f"public names without a docstring: {sorted(set(missing))}"
    for f in (gc.nn.conv2d, gc.layers.dense, gc.one_hot, gc.argmax, gc.stack):
        assert "None" not in (f.__doc__ or "None")[:4]


def test_api_reference_builds_with_pdoc(tmp_path):
    out = tmp_path / "api"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "build_api_docs.py"), "-o", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    facade = (out / "graphc.html").read_text()
    for n in ("placeholder_with_default", "custom_gradient", "Session", "prepare"):
        assert n in facade, n
    assert "conv2d_transpose" in (out / "graphc" / "frontends" / "dsl" / "nn.html").read_text()
    assert "GRUCell" in (out / "graphc" / "frontends" / "dsl" / "layers.html").read_text()
