"""No code path can execute model content: the package never unpickles, evals or execs anything.

The scan reads the syntax tree of every module of the shipped packages (graphc, runtime, frontends,
models), so a word in a comment or a method named ``eval`` does not count, but a real call does.
"""
from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("graphc", "runtime", "frontends", "models")

#: Modules whose import alone means deserializing code or objects.
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib", "jsonpickle"}
#: Builtins that run code given as data.
UNSAFE_BUILTINS = {"eval", "exec", "__import__"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def unsafe_uses(source: str, filename: str = "<source>") -> list[str]:
    """Each unsafe use in ``source``, as 'file:line: what'."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in UNSAFE_MODULES:
                    found.append(f"{where}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in UNSAFE_MODULES:
                found.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            keywords = {k.arg: k.value for k in node.keywords}
            if name in UNSAFE_BUILTINS or name in {f"builtins.{b}" for b in UNSAFE_BUILTINS}:
                found.append(f"{where}: {name}(...)")
            elif name in ("np.load", "numpy.load"):
                flag = keywords.get("allow_pickle")
                if not (isinstance(flag, ast.Constant) and flag.value is False):
                    found.append(f"{where}: {name} without allow_pickle=False")
            elif name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "torch.load"):
                found.append(f"{where}: {name}(...)")
    return found


def package_files() -> list[str]:
    out = []
    for pkg in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, pkg)):
            out.extend(os.path.join(folder, f) for f in files if f.endswith(".py"))
    return sorted(out)


def test_package_has_no_unsafe_calls():
    files = package_files()
    assert len(files) > 20, "the scan found too few modules: wrong root?"
    found = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            found += unsafe_uses(f.read(), os.path.relpath(path, ROOT))
    assert not found, "unsafe code in the package:\n" + "\n".join(found)


@pytest.mark.parametrize("snippet", [
    "import pickle", "from marshal import loads", "import cloudpickle as cp",
    "eval(text)", "exec(code)", "__import__(name)", "builtins.eval(s)",
    "np.load(path)", "np.load(path, allow_pickle=True)", "numpy.load(p, allow_pickle=flag)",
    "yaml.load(stream)", "torch.load(f)",
])
def test_scanner_finds_unsafe_use(snippet):
    assert unsafe_uses(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "np.load(path, allow_pickle=False)", "op.eval(node, x)", "def _relu_eval(node, x): pass",
    "x = 'pickle eval( exec('", "# import pickle", "yaml.safe_load(stream)", "re.compile('a')",
])
def test_scanner_ignores_safe_code(snippet):
    assert not unsafe_uses(snippet), snippet
