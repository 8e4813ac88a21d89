"""The installed layout: everything under the one name ``graphc``, whatever the user's folder holds."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = {"graphc": "graphc", "runtime": "graphc.runtime", "frontends": "graphc.frontends",
           "models": "graphc.models", "bench": "graphc.bench"}


def _declared_packages() -> set[str]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomli = pytest.importorskip("tomli")
        tomllib = tomli
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return set(tomllib.load(f)["tool"]["setuptools"]["packages"])


def test_pyproject_lists_every_package_folder():
    found = set()
    for folder, name in FOLDERS.items():
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, folder)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            if "__init__.py" in filenames:
                rel = os.path.relpath(dirpath, os.path.join(ROOT, folder))
                found.add(name if rel == "." else name + "." + rel.replace(os.sep, "."))
    assert found == _declared_packages()


def test_no_code_imports_the_folders_as_top_level_packages():
    import re

    pattern = re.compile(r"^\s*(from|import)\s+(runtime|frontends|models|bench)\b", re.M)
    bad = []
    for top in ("graphc", "runtime", "frontends", "models", "bench", "tests", "scripts"):
        for dirpath, _, filenames in os.walk(os.path.join(ROOT, top)):
            for fn in filenames:
                if fn.endswith(".py"):
                    path = os.path.join(dirpath, fn)
                    with open(path, encoding="utf-8") as f:
                        if pattern.search(f.read()):
                            bad.append(os.path.relpath(path, ROOT))
    assert not bad, f"import the graphc.* names instead: {bad}"


def test_a_project_with_its_own_runtime_frontends_and_models_changes_nothing(tmp_path):
    (tmp_path / "runtime.py").write_text("raise ImportError('the user project runtime.py was imported')\n")
    for pkg in ("frontends", "models", "bench"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(f"raise ImportError('the user project {pkg}/ was imported')\n")
    script = textwrap.dedent(f"""
        import numpy as np
        import graphc as gc
        g = gc.import_onnx({os.path.join(ROOT, 'models', 'data', 'tiny_cnn.onnx')!r})
        (p,) = gc.prepare(g).run({{"image": np.zeros((2, 1, 28, 28), np.float32)}})
        print(p.shape)
        from graphc.models import light
        print(len(light.NAMES))
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["(2, 10)", "9"]
    r = subprocess.run([sys.executable, "-m", "graphc.models.light", "squeezenet"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip().endswith("light_squeezenet.onnx"), r.stderr


def test_nothing_in_the_repository_points_outside_it():
    """docs/architecture.md is the architecture a user reads; no file may send readers to ../shared."""
    import subprocess as sp

    files = sp.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    bad = []
    for rel in files:
        if rel.endswith((".py", ".md", ".toml", ".sh", ".txt", ".cfg")) or rel == ".ci/run":
            with open(os.path.join(ROOT, rel), encoding="utf-8", errors="replace") as f:
                if "../shared" in f.read().replace("tests/test_layout.py", ""):
                    bad.append(rel)
    bad = [b for b in bad if b != "tests/test_layout.py"]
    assert not bad, bad
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        assert "docs/architecture.md" in f.read()
