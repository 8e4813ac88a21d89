"""The Session: runs the part of a DSL graph that fetches need, and owns the graph's variable state.

``sess.run(fetches, feed_dict)`` prunes the graph to what the fetches need (stopping at fed tensors),
checks that every placeholder on the way is fed (listing all missing ones at once, each with the fetch
that needs it), compiles that subgraph once per (fetches, feed signature), runs it with the variables'
current values fed in, and writes the results of ``Assign`` nodes back into the state after the run.
State is saved as ``.npz`` without pickle. On a backend with a variable store (CUDA: runtime/cuda/state.py)
the state lives where the plans run: variables are read and updated on the device, and copied to the
host only when read (``variable``, ``save``, ``state[name]``).

``sess.run`` is safe to call from several threads: the runs of one session take turns (a lock), so
each sees the variables as the previous run left them and its updates are never lost or mixed with
another's. A run re-entered from its own thread (a Python op or callback calling ``sess.run`` on the
session that is running it) raises a GraphcError instead of waiting for itself.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Iterable, Mapping

import numpy as np

from graphc.errors import FeedError, GraphcError
from graphc.ir import Graph as IRGraph
from graphc.ir import TensorType, Value

from .feeds import check_value

#: How many compiled plans (one per set of fetches and feed signature) a Session keeps; a Session fed ever new
#: shapes on a backend that compiles per shape (cpu, cuda) would otherwise grow without bound.
MAX_PLANS = 64


def _is_tensor(x: Any) -> bool:
    return hasattr(x, "value") and hasattr(x, "graph") and isinstance(getattr(x, "value"), Value)


def _is_operation(x: Any) -> bool:
    return hasattr(x, "assigns") and hasattr(x, "graph")


def _flatten(fetches: Any, out: list) -> Any:
    """Collect the leaves (tensors, operations) of a nested fetch structure; returns its template."""
    if _is_tensor(fetches) or _is_operation(fetches):
        out.append(fetches)
        return len(out) - 1
    if isinstance(fetches, Mapping):
        return {k: _flatten(v, out) for k, v in fetches.items()}
    if isinstance(fetches, (list, tuple)):
        return type(fetches)(_flatten(v, out) for v in fetches)
    raise GraphcError(f"sess.run: cannot fetch a {type(fetches).__name__} ({fetches!r}); fetch tensors, "
                      f"update operations, or lists/tuples/dicts of them")


def _rebuild(template: Any, results: list) -> Any:
    if isinstance(template, int):
        return results[template]
    if isinstance(template, Mapping):
        return {k: _rebuild(v, results) for k, v in template.items()}
    return type(template)(_rebuild(v, results) for v in template)


def _label(x: Any) -> str:
    if _is_operation(x):
        where = f" (created at {x.source})" if getattr(x, "source", None) else ""
        return f"operation '{x.name}'{where}"
    src = x.source
    return f"'{x.name}'" + (f" (created at {src})" if src else "")


class _Plan:
    """One compiled subgraph: what to feed, what comes out, which outputs are variable updates."""

    def __init__(self, executable, input_names: list[str], var_inputs: list[str], n_fetch: int,
                 assign_targets: list[str]):
        self.executable = executable
        self.input_names = input_names
        self.var_inputs = var_inputs
        self.n_fetch = n_fetch
        self.assign_targets = assign_targets


class Session:
    """Runs a DSL graph on a backend and holds its variables' values (initialized from the graph)."""

    def __init__(self, graph: IRGraph, backend: str | None = None, optimize: bool = True, level: int = 2):
        from graphc.runtime import resolve_backend

        self.graph = graph
        #: the backend's name: as given, or the default's (None or "auto": ``graphc.runtime.default_backend``)
        self.backend = resolve_backend(backend)
        #: Compile each subgraph with graphc.compiler (at ``level``) before preparing it.
        self.optimize = optimize
        self.level = level
        initial = getattr(graph, "initial_values", {})
        values = {name: np.array(initial[name]) for name in graph.variables}
        # A backend with a variable store (CUDA: device buffers) keeps the variables where its plans run
        # them; sess.state is then that store (a mapping that copies to the host when read).
        store = getattr(self._backend(), "variable_store", None)
        self._resident = store is not None
        self.state: dict[str, np.ndarray] = store(values) if store is not None else values
        self._plans: dict[tuple, _Plan] = {}  # by fetches and feed signature, least recently run first
        self._nodes_seen = -1
        self._producer_index: dict[int, int] = {}
        self._lock = threading.Lock()  # one run at a time (see the module docstring)
        self._running: int | None = None  # the thread id of the run in progress
        #: Runs so far: fed as the graph's run counter (DSL graphs: dropout draws a new mask each run).
        self.runs = 0
        self._closed = False

    # ---- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Drop the compiled plans and the variables' values; later runs raise. ``with gc.Session(g) as sess:``
        closes at the end of the block."""
        with self._lock:
            self._plans.clear()
            self._closed = True

    def _add_new_variables(self) -> None:
        """Variables created after the session (a layer or optimizer built later: its weights, slots and
        step counter) start from their initial values at the next run."""
        if len(self.state) == len(self.graph.variables):
            return
        initial = getattr(self.graph, "initial_values", {})
        for name in self.graph.variables:
            if name not in self.state:
                if name not in initial:
                    raise GraphcError(f"variable '{name}' of graph '{self.graph.name}' has no initial value")
                self.state[name] = np.array(initial[name])

    # ---- running ------------------------------------------------------------------------------
    def run(self, fetches: Any, feed_dict: Mapping | None = None) -> Any:
        """Evaluate ``fetches`` (a tensor, an update op, or nested lists/tuples/dicts of them).

        Returns the same structure with arrays for tensors and None for operations. Safe from several
        threads at once: runs take turns, each seeing the variables the previous one left.
        """
        if self._running == threading.get_ident():
            raise GraphcError(f"sess.run was called again from inside a run of the same session (graph "
                              f"'{self.graph.name}') on the same thread; a session runs one call at a time, so "
                              f"this call would wait for itself. Use another Session for the inner run")
        with self._lock:
            self._running = threading.get_ident()
            try:
                return self._run(fetches, feed_dict)
            finally:
                self._running = None

    def _run(self, fetches: Any, feed_dict: Mapping | None) -> Any:
        if self._closed:
            raise GraphcError(f"sess.run: this session of graph '{self.graph.name}' is closed (a `with gc.Session(g) "
                              f"as sess:` block ended, or sess.close() was called); make a new gc.Session")
        self._add_new_variables()
        leaves: list = []
        template = _flatten(fetches, leaves)
        for x in leaves:
            if x.graph is not self.graph:
                raise GraphcError(f"sess.run: fetch {_label(x)} belongs to graph '{x.graph.name}', not to this "
                                  f"session's graph '{self.graph.name}'")
        feeds: dict[Value, Any] = {}
        for k, x in (feed_dict or {}).items():
            if not _is_tensor(k):
                raise FeedError(f"sess.run: feed_dict keys must be tensors (placeholders), got {k!r}")
            if k.graph is not self.graph:
                raise FeedError(f"sess.run: fed tensor '{k.name}' belongs to another graph")
            feeds[k.value] = x
        counter = getattr(self.graph, "run_counter", None)
        if counter is not None and counter.value not in feeds:
            feeds[counter.value] = np.float64(self.runs)
        self.runs += 1
        key = (tuple(("t", id(x.value)) if _is_tensor(x) else ("o",) + tuple(id(a) for a in x.assigns)
                     for x in leaves),
               tuple(sorted((id(v), np.shape(x), str(getattr(x, "dtype", type(x).__name__)))
                            for v, x in feeds.items())))
        plan = self._plans.pop(key, None)
        if plan is None:
            plan = self._compile(leaves, feeds)
            while len(self._plans) >= MAX_PLANS:  # the least recently run goes (it is compiled again if needed)
                self._plans.pop(next(iter(self._plans)))
        self._plans[key] = plan  # most recently run last
        fed_by_name = {v.name: x for v, x in feeds.items()}
        args = {}
        for name in plan.input_names:
            args[name] = fed_by_name[name]
        if not self._resident:  # a resident store's variables are read by the plan where they are
            for name in plan.var_inputs:
                args[name] = self.state[name]
        for name, low, high, message in plan.feed_checks:
            _check_range(fed_by_name[name], low, high, message)
        results = plan.executable.run(args)
        for slot, low, high, message in plan.result_checks:
            _check_range(results[slot], low, high, message)
        for name, x in zip(plan.assign_targets, results[plan.n_fetch:]):
            if x is not None:  # None: the backend wrote the new value into its store itself
                self.state[name] = x
        unique = results[: plan.n_fetch]
        out = []
        for i, x in enumerate(leaves):
            out.append(None if _is_operation(x) else unique[plan.fetch_slot[i]])
        return _rebuild(template, out)

    # ---- compiling one subgraph ---------------------------------------------------------------
    def _compile(self, leaves: list, feeds: dict[Value, Any]) -> _Plan:
        g = self.graph
        producer = {id(v): n for n in g.nodes for v in n.outputs if v is not None}
        placeholders = {id(v) for v in g.inputs}
        variables = {id(v): name for name, v in g.variables.items()}
        fed = {id(v) for v in feeds}
        # The values each fetch needs, walking back to fed values, placeholders, variables and constants.
        needed_nodes: set[int] = set()
        missing: dict[str, list[str]] = {}
        need_inputs: dict[int, Value] = {}
        need_vars: dict[str, Value] = {}
        for leaf in leaves:
            roots = [leaf.value] if _is_tensor(leaf) else list(leaf.assigns)
            stack, seen = list(roots), set()
            while stack:
                v = stack.pop()
                if id(v) in seen:
                    continue
                seen.add(id(v))
                if id(v) in fed:
                    need_inputs[id(v)] = v
                    continue
                if id(v) in placeholders:
                    missing.setdefault(v.name, [])
                    if _label(leaf) not in missing[v.name]:
                        missing[v.name].append(_label(leaf))
                    continue
                if id(v) in variables:
                    need_vars[variables[id(v)]] = v
                    continue
                n = producer.get(id(v))
                if n is None:
                    continue  # a constant
                if id(n) not in seen:  # per fetch, so each missing feed lists every fetch that needs it
                    seen.add(id(n))
                    needed_nodes.add(id(n))
                    stack.extend(x for x in n.inputs if x is not None)
                    for sub in n.subgraphs():
                        stack.extend(sub.captures)
        if missing:
            by_name = {v.name: v for v in g.inputs}
            lines = []
            for name, users in missing.items():
                t = by_name[name].type
                src = getattr(g, "sources", {}).get(name)
                where = f", created at {src}" if src else ""
                lines.append(f"  placeholder '{name}' ({t}{where}) is needed by fetch {', '.join(users)}")
            raise FeedError(f"sess.run: {len(missing)} placeholder(s) must be fed but are not in feed_dict:\n"
                            + "\n".join(lines))
        # Check fed values against the placeholders' declared types (named errors, before anything runs).
        bound: dict = {}
        for v, x in feeds.items():
            if id(v) in need_inputs:
                try:
                    feeds[v] = check_value(v, x, bound)
                except FeedError as e:
                    src = getattr(g, "sources", {}).get(v.name) or (v.producer.source if v.producer else None)
                    raise FeedError(f"sess.run: bad value for placeholder {e.args[0].removeprefix('input ')}"
                                    + (f" (placeholder created at {src})" if src else "")) from None
        sub = IRGraph(f"{g.name}_run")
        sub.opset = dict(g.opset)
        input_vals = [v for v in g.inputs if id(v) in need_inputs] + \
                     [v for k, v in need_inputs.items() if k not in placeholders]
        sub.inputs = input_vals + list(need_vars.values())
        nodes = [n for n in g.nodes if id(n) in needed_nodes]
        sub.nodes = nodes
        used = {id(x) for n in nodes for x in n.inputs if x is not None}
        sub.constants = {k: c for k, c in g.constants.items() if id(c) in used}
        fetch_vals: list[Value] = []
        fetch_slot: dict[int, int] = {}
        for i, leaf in enumerate(leaves):
            if _is_tensor(leaf):
                if leaf.value not in fetch_vals:
                    fetch_vals.append(leaf.value)
                fetch_slot[i] = fetch_vals.index(leaf.value)
        assigns: list[Value] = []
        for leaf in leaves:
            if _is_operation(leaf):
                assigns.extend(a for a in leaf.assigns if a not in assigns)
        targets = []
        for a in assigns:
            var = a.producer.inputs[0]
            if id(var) not in variables:
                raise GraphcError(f"{a.producer}: input 0 must be a variable, got '{var.name}'")
            targets.append(variables[id(var)])
        if len(set(targets)) != len(targets):
            dup = sorted({t for t in targets if targets.count(t) > 1})
            raise GraphcError(f"sess.run: variable(s) {', '.join(dup)} are assigned twice in one run")
        # Range checks (class ids of a loss...) of values this run feeds (checked before it) or computes
        # (fetched with it, checked when it returns).
        feed_checks, result_checks = [], []
        for v, low, high, message in getattr(g, "range_checks", ()):
            if id(v) in need_inputs:
                feed_checks.append((v.name, low, high, message))
            elif v.producer is not None and id(v.producer) in needed_nodes:
                if v not in fetch_vals:
                    fetch_vals.append(v)
                result_checks.append((fetch_vals.index(v), low, high, message))
        sub.outputs = fetch_vals + assigns
        sub = sub.copy()  # passes may rewrite the plan's graph; the user's graph stays as built
        for v in sub.inputs:
            v.producer = None
        executable = self._prepare(sub, {v.name: x for v, x in feeds.items() if id(v) in need_inputs},
                                   list(need_vars), {len(fetch_vals) + j: t for j, t in enumerate(targets)})
        plan = _Plan(executable, [v.name for v in input_vals], list(need_vars), len(fetch_vals), targets)
        plan.fetch_slot = fetch_slot
        plan.feed_checks, plan.result_checks = feed_checks, result_checks
        return plan

    def _backend(self):
        from graphc.runtime import get_backend

        return get_backend(self.backend)

    def _prepare(self, sub: IRGraph, feeds: dict[str, Any], variables: list[str], assigns: dict[int, str]):
        """The backend's executable for ``sub``; ``variables`` are its variable inputs, ``assigns`` maps
        output index -> the variable that output updates (used by a backend with a variable store)."""
        backend = self._backend()
        resident = dict(state=self.state, variables=variables, assigns=assigns) if self._resident else {}
        if self.optimize:
            from graphc.compiler import compile as compile_graph
            from graphc.limits import input_bindings

            # The Plan itself, not only its graph: with symbolic dims (a batch size N) the backend then
            # binds the fed sizes and runs a preallocated fast executable per binding. A backend that
            # specializes shapes gets a plan compiled for the fed sizes (each feed signature has its own).
            sets = None
            if getattr(backend, "specialize_shapes", False):
                sets = input_bindings(sub, {v: feeds[v.name] for v in sub.inputs if v.name in feeds}) or None
            return backend.prepare(compile_graph(sub, level=self.level, sets=sets), **resident)
        return backend.prepare(sub, **resident)

    # ---- state --------------------------------------------------------------------------------
    def variable(self, v) -> np.ndarray:
        """The current value of a variable (a Tensor or a name)."""
        self._add_new_variables()
        name = v if isinstance(v, str) else v.name
        if name not in self.state:
            raise GraphcError(f"'{name}' is not a variable of graph '{self.graph.name}'")
        return self.state[name]

    def set_variable(self, v, value) -> None:
        name = v if isinstance(v, str) else v.name
        if name not in self.state:
            self.variable(name)  # the error naming the graph
        # dtype and shape without the value itself (on the CUDA backend that would be a device download)
        dtype, shape = self.state.meta(name) if hasattr(self.state, "meta") else \
            (self.state[name].dtype, self.state[name].shape)
        value = np.asarray(value, dtype=dtype)
        if value.shape != shape:
            raise FeedError(f"variable '{name}' has shape {list(shape)}, got a value of shape {list(value.shape)}")
        self.state[name] = value

    def save(self, path: str | os.PathLike) -> None:
        """Write every variable to an .npz file (arrays only: loadable with allow_pickle=False)."""
        self._add_new_variables()
        with open(path, "wb") as f:
            np.savez(f, **self.state)

    def restore(self, path: str | os.PathLike, var_list: Iterable | None = None) -> None:
        """Load variables saved by ``save``; refuses files whose names, shapes or dtypes do not match.

        ``var_list`` (variables or names) restores only those (the file may hold more: a pretrained part of
        a bigger model); without it the file must hold exactly the graph's variables.
        """
        self._add_new_variables()
        wanted = None
        if var_list is not None:
            wanted = [v if isinstance(v, str) else v.name for v in var_list]
            for name in wanted:
                if name not in self.state:
                    self.variable(name)  # the error naming the graph
        with np.load(path, allow_pickle=False) as data:
            stored = set(data.files)
            names = set(self.state) if wanted is None else set(wanted)
            missing = sorted(names - stored)
            unknown = sorted(stored - set(self.state)) if wanted is None else []
            if missing or unknown:
                parts = []
                if missing:
                    parts.append(f"missing variable(s): {', '.join(missing)}")
                if unknown:
                    parts.append(f"unknown variable(s): {', '.join(unknown)}")
                raise GraphcError(f"restore from '{path}': the file does not match graph '{self.graph.name}': "
                                  + "; ".join(parts))
            new = {}
            for name in (self.state if wanted is None else wanted):
                x = data[name]
                old = self.state[name]
                if x.shape != old.shape or x.dtype != old.dtype:
                    raise GraphcError(f"restore from '{path}': variable '{name}' is {old.dtype}{list(old.shape)} "
                                      f"in the graph but {x.dtype}{list(x.shape)} in the file")
                new[name] = x
        self.state.update(new)


def _check_range(x, low: int, high: int, message: str) -> None:
    a = np.asarray(x)
    bad = a[(a < low) | (a >= high)]
    if bad.size:
        shown = ", ".join(str(v) for v in np.unique(bad)[:5])
        raise FeedError(f"sess.run: {message}; got {shown}" + (" ..." if np.unique(bad).size > 5 else ""))


def progress(iterable: Iterable | int, desc: str = "train", total: int | None = None, disable: bool = False):
    """A tqdm progress bar over ``iterable`` (or ``range(n)``) when tqdm is installed, else the plain iterable.

    The bar's ``set_postfix(loss=...)`` and ``write(msg)`` (a line that does not break the bar) work either way.
    """
    it = range(iterable) if isinstance(iterable, int) else iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Plain(it)
    return tqdm(it, desc=desc, total=total, disable=disable, leave=False)


class _Plain:
    def __init__(self, it):
        self._it = it

    def __iter__(self):
        return iter(self._it)

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def write(self, msg: str) -> None:
        print(msg, flush=True)

    def close(self) -> None:
        pass
