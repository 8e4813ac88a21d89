"""The layers hold: pyproject.toml's import-linter contracts are kept, graphc's modules import each other
without cycles, and no module imports a ``_private`` name from another package.

lint-imports builds its graph from the files of the root package, and graphc's subpackages runtime/,
frontends/, models/ and bench/ live beside graphc/ in the repository (setuptools maps them in), so the test
copies the sources into the installed layout first and runs lint-imports there.
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys

import networkx as nx
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = {"graphc": "graphc", "runtime": "graphc.runtime", "frontends": "graphc.frontends",
           "models": "graphc.models", "bench": "graphc.bench"}

#: Import cycles allowed (each a set of modules importing each other): none left; keep it so.
KNOWN_CYCLES: list = []

#: (importing module, imported module, name): private names imported across packages (none left; keep it so).
KNOWN_PRIVATE_IMPORTS: set = set()


def _modules() -> dict[str, str]:
    """Every graphc module, by its installed name -> its file."""
    out = {}
    for folder, pkg in FOLDERS.items():
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, folder)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            rel = os.path.relpath(dirpath, os.path.join(ROOT, folder))
            base = pkg if rel == "." else pkg + "." + rel.replace(os.sep, ".")
            for fn in filenames:
                if fn.endswith(".py"):
                    out[base if fn == "__init__.py" else f"{base}.{fn[:-3]}"] = os.path.join(dirpath, fn)
    return out


def _imports(modules: dict[str, str]):
    """(importer, imported module, imported name or None, line, at module level) for every import statement
    in ``modules``, at any depth (function-level imports count), of a graphc module."""
    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    for mod, path in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        top = {id(n) for n in tree.body}
        is_pkg = path.endswith("__init__.py")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    target = resolve(a.name)
                    if target:
                        yield mod, target, None, node.lineno, id(node) in top
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod if is_pkg else mod.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        base = base.rpartition(".")[0]
                    full = base + ("." + node.module if node.module else "")
                else:
                    full = node.module
                for a in node.names:
                    sub = f"{full}.{a.name}"
                    if sub in modules:  # `from package import module`
                        yield mod, sub, None, node.lineno, id(node) in top
                    elif resolve(full):
                        yield mod, resolve(full), a.name, node.lineno, id(node) in top


def _graph() -> nx.DiGraph:
    modules = _modules()
    g = nx.DiGraph()
    g.add_nodes_from(modules)
    for a, b, _, _, _ in _imports(modules):
        if a != b:
            g.add_edge(a, b)
    return g


def _installed_tree(dest) -> str:
    """The sources copied as they install (graphc/runtime, graphc/frontends...), for lint-imports."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "data")
    shutil.copytree(os.path.join(ROOT, "graphc"), os.path.join(dest, "graphc"), ignore=skip)
    for folder, pkg in FOLDERS.items():
        if folder != "graphc":
            shutil.copytree(os.path.join(ROOT, folder), os.path.join(dest, *pkg.split(".")), ignore=skip)
    return str(dest)


def _lint_imports(tree: str) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports is not installed: pip install -e '.[test]' (import-linter)")
    env = {**os.environ, "PYTHONPATH": tree}
    return subprocess.run([exe, os.path.join(ROOT, "pyproject.toml"), "--no-cache"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)


def test_lint_imports_keeps_every_contract(tmp_path):
    proc = _lint_imports(_installed_tree(tmp_path))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize("module,source", [
    ("graphc/ir/types.py", "from graphc.runtime import get_backend"),                # a lower layer importing up
    ("graphc/plan.py", "import graphc"),                                             # a layer importing the facade
    ("graphc/runtime/numpy/program.py", "from graphc.runtime.cuda import lowering"),  # one backend the other
    ("graphc/runtime/numpy/kernels/registry.py", "from graphc.runtime.numpy import program"),  # kernels up
])
def test_lint_imports_reports_a_broken_contract(tmp_path, module, source):
    tree = _installed_tree(tmp_path)
    with open(os.path.join(tree, module), "a") as f:
        f.write(f"\n\ndef probe():\n    {source}\n")  # function-level imports count too
    proc = _lint_imports(tree)
    assert proc.returncode != 0 and "BROKEN" in proc.stdout, proc.stdout[-3000:]


def test_graphc_modules_import_each_other_without_cycles():
    cycles = [set(c) for c in nx.strongly_connected_components(_graph()) if len(c) > 1]
    new = [sorted(c) for c in cycles if c not in KNOWN_CYCLES]
    assert not new, f"import cycles among graphc modules: {new}"
    assert len(cycles) <= len(KNOWN_CYCLES)


def test_the_cycle_counter_sees_a_cycle():
    g = _graph()
    g.add_edge("graphc.ir", "graphc.cli")  # cli imports ir (through its passes) already
    assert any(len(c) > 1 and "graphc.ir" in c for c in nx.strongly_connected_components(g))


def _package(mod: str, modules: dict[str, str]) -> str:
    return mod if modules[mod].endswith("__init__.py") else mod.rpartition(".")[0]


def test_no_module_imports_a_private_name_of_another_package():
    modules = _modules()
    found = set()
    for importer, target, name, line, _ in _imports(modules):
        private = name is not None and name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
        if private and _package(importer, modules) != _package(target, modules):
            found.add((importer, target, name))
    assert not found - KNOWN_PRIVATE_IMPORTS, sorted(found - KNOWN_PRIVATE_IMPORTS)


def test_the_facade_imports_only_the_bottom_layers_at_module_level():
    """Every ``import graphc.X`` runs graphc/__init__.py first: what it imports at module level is imported by
    every module, so it must be the bottom layers only; the rest it offers is imported on first use."""
    modules = _modules()
    eager = {t for m, t, _, _, top in _imports(modules) if m == "graphc" and top}
    assert eager <= {"graphc.errors", "graphc.ir", "graphc.ir.dtypes", "graphc.version"}, eager
