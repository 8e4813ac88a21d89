"""The pass manager: runs named passes over a graph in order, records each one's effect, and checks it.

A pass is a plain function ``fn(graph) -> bool`` (True when it changed the graph), registered under a
name with ``@register_pass``. ``PassManager(passes).run(graph)`` applies them in the declared order,
repeating the whole list until nothing changes when ``fixed_point`` is set, and returns a ``PassReport``
with one ``PassRecord`` per application.

With ``verify`` on (``GRAPHC_VERIFY=1`` in the environment, or ``verify=True``), every pass is followed by
``graph.verify()`` and a numeric spot check: the graph runs on seeded random feeds through the reference
interpreter and its outputs must match those of the graph before the pass. A failure names the pass.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

import numpy as np

from ..errors import GraphcError, InvalidGraphError
from ..ir import DType, Graph, TensorType
from ..ops.registry import has_fact

PassFn = Callable[[Graph], bool]

#: Every registered pass, by name.
PASSES: dict[str, PassFn] = {}


def register_pass(name: str) -> Callable[[PassFn], PassFn]:
    """Decorator: make ``fn(graph) -> bool`` available to pass lists under ``name``."""

    def deco(fn: PassFn) -> PassFn:
        if name in PASSES and PASSES[name] is not fn:
            raise ValueError(f"pass '{name}' registered twice")
        PASSES[name] = fn
        fn.pass_name = name  # type: ignore[attr-defined]
        return fn

    return deco


def verify_from_env() -> bool:
    return os.environ.get("GRAPHC_VERIFY", "") not in ("", "0")


@dataclass
class PassRecord:
    """One application of one pass."""

    name: str
    nodes_before: int
    nodes_after: int
    seconds: float
    changed: bool
    note: str = ""


@dataclass
class PassReport:
    """What a pipeline did: one record per pass application, in order."""

    records: list[PassRecord] = field(default_factory=list)
    #: Notes that concern the whole run (e.g. why a spot check was skipped).
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.records)

    @property
    def changed(self) -> bool:
        return any(r.changed for r in self.records)

    @property
    def nodes_before(self) -> int | None:
        return self.records[0].nodes_before if self.records else None

    @property
    def nodes_after(self) -> int | None:
        return self.records[-1].nodes_after if self.records else None

    def by_pass(self) -> dict[str, tuple[int, float, int]]:
        """name -> (applications that changed the graph, total seconds, net nodes removed)."""
        out: dict[str, list] = {}
        for r in self.records:
            e = out.setdefault(r.name, [0, 0.0, 0])
            e[0] += int(r.changed)
            e[1] += r.seconds
            e[2] += r.nodes_before - r.nodes_after
        return {k: (a, b, c) for k, (a, b, c) in out.items()}

    def summary(self) -> str:
        if not self.records:
            return "no passes ran"
        lines = [f"{'pass':32s} {'changed':>7s} {'seconds':>8s} {'nodes -':>8s}"]
        for name, (changed, secs, removed) in self.by_pass().items():
            lines.append(f"{name:32s} {changed:7d} {secs:8.3f} {removed:8d}")
        lines.append(f"{self.nodes_before} -> {self.nodes_after} nodes in {self.seconds:.3f} s "
                     f"({len(self.records)} pass applications)")
        lines.extend(self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


PassSpec = Union[str, PassFn]


def _resolve(spec: PassSpec) -> tuple[str, PassFn]:
    if isinstance(spec, str):
        if spec not in PASSES:
            raise GraphcError(f"unknown pass '{spec}'; registered passes: {', '.join(sorted(PASSES))}")
        return spec, PASSES[spec]
    return getattr(spec, "pass_name", getattr(spec, "__name__", "pass")), spec


class PassManager:
    """Runs passes in the declared order (to a fixed point when ``fixed_point``), recording each one."""

    def __init__(self, passes: Sequence[PassSpec], verify: bool | None = None, fixed_point: bool = False,
                 max_rounds: int = 8, spot_check: bool = True):
        self.passes = [_resolve(p) for p in passes]
        self.verify = verify_from_env() if verify is None else verify
        self.fixed_point = fixed_point
        self.max_rounds = max_rounds
        self.spot_check = spot_check

    def run(self, graph: Graph, report: PassReport | None = None) -> PassReport:
        report = report if report is not None else PassReport()
        checker = SpotCheck(graph) if self.verify and self.spot_check else None
        if checker is not None and checker.skipped:
            report.notes.append(f"spot check skipped: {checker.skipped}")
        for _ in range(self.max_rounds if self.fixed_point else 1):
            round_changed = False
            for name, fn in self.passes:
                before = len(graph.nodes)
                t0 = time.perf_counter()
                changed = bool(fn(graph))
                secs = time.perf_counter() - t0
                report.records.append(PassRecord(name, before, len(graph.nodes), secs, changed))
                round_changed |= changed
                if self.verify:
                    self._check(graph, name, changed, checker)
            if not round_changed:
                break
        return report

    @staticmethod
    def _check(graph: Graph, name: str, changed: bool, checker: "SpotCheck | None") -> None:
        try:
            graph.verify()
        except GraphcError as e:
            raise InvalidGraphError(f"pass '{name}' broke the graph: {e}") from e
        if checker is not None and changed:
            checker.check(graph, name)


# ---- numeric spot check ---------------------------------------------------------------------------


def random_feeds(graph: Graph, seed: int = 0, symbol_size: int = 2, int_high: int = 3) -> dict[str, np.ndarray]:
    """Seeded feeds for every input; each symbolic dim is ``symbol_size`` (the same symbol, the same size).
    Floats are standard normal, booleans fair coins, integers in [0, ``int_high``) (small, so that they
    stay valid as indices).

    Raises GraphcError when an input's type is not a tensor of known rank and element type.
    """
    rng = np.random.default_rng(seed)
    feeds = {}
    for v in graph.inputs:
        t = v.type
        if not isinstance(t, TensorType) or t.shape is None or t.dtype is None:
            raise GraphcError(f"input '{v.name}' has type {t}: cannot make random values for it")
        shape = tuple(d if isinstance(d, int) else symbol_size for d in t.shape)
        if t.dtype.is_float:
            x = rng.standard_normal(shape).astype(t.dtype.np)
        elif t.dtype is DType.bool:
            x = rng.random(shape) < 0.5
        elif t.dtype.is_int:
            x = rng.integers(0, int_high, size=shape).astype(t.dtype.np)
        else:
            raise GraphcError(f"input '{v.name}' has type {t}: cannot make random values for it")
        feeds[v.name] = x
    return feeds


def outputs_differ(got: list, want: list, rtol: float = 1e-3, atol: float = 1e-4) -> str | None:
    """Why two lists of outputs disagree, or None. ``atol`` scales with each output's largest magnitude."""
    if len(got) != len(want):
        return f"{len(got)} outputs vs {len(want)}"
    for k, (g, w) in enumerate(zip(got, want)):
        if not (isinstance(g, np.ndarray) and isinstance(w, np.ndarray)):
            continue
        if g.shape != w.shape or g.dtype != w.dtype:
            return f"output {k}: {g.dtype}{list(g.shape)} vs {w.dtype}{list(w.shape)} before"
        if w.dtype.kind in "fc":
            finite = np.isfinite(w)
            scale = float(np.abs(w[finite]).max()) if finite.any() else 1.0
            ok = np.isclose(g, w, rtol=rtol, atol=atol * max(1.0, scale), equal_nan=True)
            if not ok.all():
                i = np.unravel_index(int(np.argmin(ok)), ok.shape) if ok.ndim else ()
                return f"output {k} at {tuple(int(x) for x in i)}: {g[i]} vs {w[i]} before"
        elif w.dtype != object and not np.array_equal(g, w):
            return f"output {k}: values differ"
    return None


class SpotCheck:
    """Runs a graph on fixed random feeds and compares with the previous run (after each changing pass)."""

    def __init__(self, graph: Graph, seed: int = 0):
        self.skipped = ""
        self.reference: list | None = None
        # ops whose results differ from run to run (OpDef.random): such a graph cannot be spot-checked
        random_ops = sorted({n.op_type for n in graph.nodes if has_fact(n, "random")})
        if random_ops:
            self.skipped = f"the graph holds random ops ({', '.join(random_ops)})"
            return
        try:
            self.feeds = random_feeds(graph, seed)
            self.reference = self._run(graph)
        except GraphcError as e:
            self.skipped = f"the graph does not run on random feeds: {' '.join(str(e).split())[:300]}"

    def _run(self, graph: Graph) -> list:
        from ..ops.interpret import run_graph

        by_name = {v.name: v for v in graph.inputs}
        return run_graph(graph, {by_name[k]: x for k, x in self.feeds.items()})

    def check(self, graph: Graph, name: str) -> None:
        if self.reference is None:
            return
        try:
            got = self._run(graph)
        except GraphcError as e:
            raise InvalidGraphError(f"pass '{name}' broke the graph: it no longer runs on the spot-check "
                                    f"feeds: {e}") from e
        why = outputs_differ(got, self.reference)
        if why:
            raise InvalidGraphError(f"pass '{name}' changed the graph's results on the spot-check feeds: {why}")
        self.reference = got
