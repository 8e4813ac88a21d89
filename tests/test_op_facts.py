"""The op is the unit: what graphc knows about an op lives on its OpDef (graphc/ops), nowhere else.

Three checks on the source:

1. **No list of op-type names outside graphc/ops.** Scanned: graphc/ (but graphc/ops), runtime/, frontends/.
   A *name collection* is a set, list or tuple literal (or the keys of a dict literal) holding two or more
   string constants that are registered op types, or ``(domain, op type)`` pairs of them. One is refused
   unless it is a registration or a dispatch branch:

   - a dict literal keyed by op type whose values are not all one constant: a table of what this component
     does per op (a kernel, a code emitter, a C expression, a cost rule) is a registration, not a fact;
   - the iterable of a ``for`` loop whose body is one call to a ``register...`` function (each op is
     registered with the same lowering);
   - the right-hand side of ``in``/``not in`` inside a function, naming at most ``MAX_BRANCH_NAMES`` ops:
     the branch of one kernel, lowering or rewrite pattern among the few ops it handles;
   - ``__all__``, and the module-level names in ``ALLOWED`` below (each says why it is a registration).

   Everything else (which ops are random, views, commutative, value-sized, ...) is an OpDef flag set with
   ``set_facts`` beside the family's registrations, read with ``has_fact``/``ops_with``.
2. **No import of a private name across packages**: ``from X import _y`` only within one package.
3. **No file under graphc/ (or the packages installed as graphc.*) over MAX_LINES lines.**
"""
from __future__ import annotations

import ast
import pathlib

import pytest

import graphc.ops
from graphc.ir import Node
from graphc.ops import REGISTRY, has_fact, lookup, ops_with, set_facts

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCANNED = ("graphc", "runtime", "frontends")
PACKAGES = {"graphc": "graphc", "runtime": "graphc.runtime", "frontends": "graphc.frontends",
            "models": "graphc.models", "bench": "graphc.bench"}
MAX_BRANCH_NAMES = 4
MAX_LINES = 1100

#: (file, module-level name): why that collection of op names is a registration.
ALLOWED = {
    ("runtime/codegen/rows.py", "REDUCE_OPS"): "the ops generate_reduction implements (its registration)",
    ("runtime/codegen/rows.py", "ROW_OPS"): "the ops generate_row_op implements (its registration)",
    ("runtime/codegen/lowering.py", "PART_2_OPS"): "the ops the CUDA backend's next part will lower (an error hint)",
}

OP_NAMES = {name for (_, name) in REGISTRY}


def _py_files(roots):
    for root in roots:
        for p in sorted((ROOT / root).rglob("*.py")):
            yield p, p.relative_to(ROOT).as_posix()


def _op_names(elts) -> list[str]:
    names = []
    for e in elts:
        if isinstance(e, ast.Constant) and isinstance(e.value, str) and e.value in OP_NAMES:
            names.append(e.value)
        elif (isinstance(e, ast.Tuple) and len(e.elts) == 2
              and all(isinstance(x, ast.Constant) and isinstance(x.value, str) for x in e.elts)
              and e.elts[1].value in OP_NAMES):
            names.append(e.elts[1].value)
    return names


def _parents(tree):
    parent = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parent[child] = node
    return parent


def _allowed(node, parent, rel, n_names) -> bool:
    up = parent.get(node)
    if isinstance(node, ast.Dict):
        values = [ast.dump(v) for v in node.values]
        return not (len(set(values)) == 1 and isinstance(node.values[0], ast.Constant))
    if isinstance(up, ast.Compare) and node in up.comparators and n_names <= MAX_BRANCH_NAMES:
        if any(isinstance(op, (ast.In, ast.NotIn)) for op in up.ops):
            p = up
            while p is not None and not isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                p = parent.get(p)
            if p is not None:
                return True
    if isinstance(up, ast.For) and up.iter is node and len(up.body) == 1:
        stmt = up.body[0]
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            fn = stmt.value.func
            name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
            if name.startswith("register"):
                return True
    # a module-level assignment: __all__ or an ALLOWED name
    while up is not None and isinstance(up, ast.Call):  # frozenset({...})
        up = parent.get(up)
    if isinstance(up, (ast.Assign, ast.AnnAssign)):
        targets = up.targets if isinstance(up, ast.Assign) else [up.target]
        for t in targets:
            if isinstance(t, ast.Name) and (t.id == "__all__" or (rel, t.id) in ALLOWED):
                return True
    return False


def name_collections(source: str, rel: str) -> list[str]:
    """The refused op-name collections of one file, as 'file:line: names'."""
    tree = ast.parse(source)
    parent = _parents(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Set, ast.Tuple, ast.List)):
            elts = node.elts
        elif isinstance(node, ast.Dict):
            elts = [k for k in node.keys if k is not None]
        else:
            continue
        names = _op_names(elts)
        if len(names) >= 2 and not _allowed(node, parent, rel, len(names)):
            found.append(f"{rel}:{node.lineno}: {', '.join(names)}")
    return found


def test_no_op_name_collections_outside_ops():
    found = []
    for path, rel in _py_files(SCANNED):
        if rel.startswith("graphc/ops/"):
            continue
        found += name_collections(path.read_text(), rel)
    assert not found, ("lists of op types outside graphc/ops (make them OpDef facts, see set_facts):\n"
                       + "\n".join(found))


@pytest.mark.parametrize("source, refused", [
    ('RANDOM = {"RandomNormal", "Bernoulli"}', True),
    ('VIEWS = frozenset({"Reshape", "Flatten"})', True),
    ('def f(n):\n    return n.op_type in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")', True),
    ('EFFECTS = {("graphc", "Assign"), ("", "Identity")}', True),
    ('AS_SET = {"Add": True, "Mul": True}', True),
    ('for op in ("Add", "Mul"):\n    print(op)', True),
    ('def f(n):\n    return n.op_type in ("ArgMax", "ArgMin")', False),
    ('KERNELS = {"Add": add_kernel, "Mul": mul_kernel}', False),
    ('for op in ("CumSum", "CumProd"):\n    register_lowering(op, scan)', False),
    ('__all__ = ["Add", "Mul"]', False),
    ('x = ("Add",)', False),
])
def test_the_scan_tells_facts_from_registrations(source, refused):
    assert bool(name_collections(source, "runtime/x.py")) == refused


def _package_of(rel: str) -> str:
    """The dotted package a source file belongs to (graphc/ops/conv.py -> graphc.ops)."""
    parts = rel[:-3].split("/")[:-1]
    return ".".join([PACKAGES[parts[0]]] + parts[1:])


def _package_of_module(dotted: str) -> str:
    """The package of a dotted module: itself when it is a package folder, else its parent."""
    parts = dotted.split(".")
    top = {v: k for k, v in PACKAGES.items()}
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in top:
            folder = ROOT / top[".".join(parts[:n])] / "/".join(parts[n:])
            return dotted if (folder / "__init__.py").is_file() else ".".join(parts[:-1])
    return dotted


def test_no_private_import_across_packages():
    found = []
    for path, rel in _py_files(PACKAGES):
        pkg = _package_of(rel)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__") \
                        and _package_of_module(target) != pkg:
                    found.append(f"{rel}:{node.lineno}: from {target} import {alias.name}")
    assert not found, "private names imported across packages (make them public):\n" + "\n".join(found)


def test_no_oversized_file():
    big = [f"{rel}: {n} lines" for path, rel in _py_files(PACKAGES)
           if (n := len(path.read_text().splitlines())) > MAX_LINES]
    assert not big, f"files over {MAX_LINES} lines (split them by family):\n" + "\n".join(big)


# ---- the facts themselves ------------------------------------------------------------------------------
def _node(op_type, domain=""):
    return Node(op_type, [], [], name="n", domain=domain)


def test_facts_are_on_the_opdefs():
    assert set(ops_with("random")) == {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                                       "Bernoulli", "Multinomial"}
    assert all(lookup("", n).nondeterministic for n in ops_with("random"))
    assert lookup("", "Dropout").nondeterministic and not lookup("", "Dropout").random
    assert ops_with("nondeterministic", "graphc") == ("AllReduce",)
    assert ops_with("effectful", "graphc") == ("Assign",) and not ops_with("effectful")
    assert set(ops_with("view")) == {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}
    assert set(ops_with("layout")) == set(ops_with("view")) | {"Transpose"}
    assert set(ops_with("reshape")) == set(ops_with("view")) - {"Identity"}
    assert lookup("", "Conv").weight_inputs == {1, 2}
    assert has_fact(_node("Add"), "commutative") and not has_fact(_node("Sub"), "commutative")
    assert has_fact(_node("Reshape", "ai.onnx"), "view")
    assert not has_fact(_node("NoSuchOp"), "view")


def test_bad_facts_are_named():
    with pytest.raises(ValueError, match="unknown op fact 'fast'"):
        set_facts(fast=("Add",))
    with pytest.raises(ValueError, match="no operator 'NoSuchOp'"):
        set_facts(view=("NoSuchOp",))
    with pytest.raises(ValueError, match="unknown op fact 'viewish'"):
        has_fact(_node("Add"), "viewish")


def test_every_flag_is_a_registered_fact():
    assert graphc.ops.registry.FACTS
    for fact in graphc.ops.registry.FACTS:
        assert hasattr(lookup("", "Add"), fact)


def test_gradient_rules_have_one_place():
    """Gradient rules and non-differentiability reasons are set by each family module's set_grads table,
    never in an OpDef(...) call (graphc/ops/__init__.py says why)."""
    found = []
    for path, rel in _py_files(["graphc/ops"]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "OpDef":
                found += [f"{rel}:{node.lineno}: OpDef(..., {k.arg}=...)" for k in node.keywords
                          if k.arg in ("grad", "no_grad")]
    assert not found, "gradient facts outside set_grads:\n" + "\n".join(found)
    assert lookup("graphc", "AllReduce").no_grad.startswith("a collective across processes")
