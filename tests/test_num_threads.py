"""graphc's one thread count (runtime/numpy/threads.py): ``gc.set_num_threads`` and GRAPHC_NUM_THREADS set the
BLAS's pool (as threadpoolctl reports it) and the CPU backend's launches read it; a library loaded after the count
was set gets it too, and bad values are refused with a clear error. The CPU backend runs on its own pool and loads
no OpenMP runtime; once it runs its matrix products (split over that pool, each piece a one-thread BLAS call), the
BLAS stays at one thread."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController

import graphc as gc
from graphc.errors import GraphcError
from graphc.runtime.cpu import available as cpu_available
from graphc.runtime.numpy import threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _counts(api: str) -> list[int]:
    """num_threads of every library of one threadpoolctl user_api loaded in this process."""
    return [lib.num_threads for lib in ThreadpoolController().select(user_api=api).lib_controllers]


@pytest.fixture(autouse=True)
def restore_thread_count(monkeypatch):
    """Each test leaves graphc's count, every pool's count and the env flag as it found them."""
    count, single = threads._count, threads._blas_single
    pools = {lib.filepath: lib.num_threads for lib in ThreadpoolController().lib_controllers}
    monkeypatch.setattr(threads, "_env_applied", threads._env_applied)
    threads._blas_single = False  # each test starts as a process that has not run a CPU-backend GEMM yet
    yield
    threads._count, threads._blas_single = count, single
    threads._blas = None
    for lib in ThreadpoolController().lib_controllers:
        if lib.filepath in pools and lib.num_threads != pools[lib.filepath]:
            lib.set_num_threads(pools[lib.filepath])


def _graph(n: int = 256):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [n, n], name="x")
        y = gc.tanh(x @ x) * 2.0 + x  # a GEMM (the BLAS) and a fused elementwise kernel (the pool on the CPU backend)
    g.outputs = [y.value]
    return g


def _want(x):
    return np.tanh(x @ x) * 2.0 + x


def test_set_num_threads_sets_the_blas_pool():
    if not _counts("blas"):
        pytest.skip("NumPy carries no BLAS threadpoolctl knows")
    for n in (1, 3, np.int64(2)):  # a NumPy integer is a count too
        gc.set_num_threads(n)
        assert gc.get_num_threads() == n and type(gc.get_num_threads()) is int
        assert _counts("blas") and set(_counts("blas")) == {n}


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", None, True])
def test_bad_thread_counts_are_refused(bad):
    before = gc.get_num_threads()
    with pytest.raises(GraphcError, match=r"thread count must be a positive integer.*got " + repr(bad).replace(".", r"\.")):
        gc.set_num_threads(bad)
    assert gc.get_num_threads() == before  # nothing changed


@pytest.mark.parametrize("raw", ["two", "0", "-1", "1.5"])
def test_a_bad_graphc_num_threads_is_refused_when_a_backend_prepares(monkeypatch, raw):
    monkeypatch.setenv(threads.ENV_VAR, raw)
    monkeypatch.setattr(threads, "_env_applied", False)
    with pytest.raises(GraphcError, match=f"GRAPHC_NUM_THREADS must be a positive integer.*GRAPHC_NUM_THREADS='{raw}'"):
        gc.prepare(_graph(4), backend="numpy")
    with pytest.raises(GraphcError, match="GRAPHC_NUM_THREADS"):  # refused again, not once then ignored
        threads.apply_env()


def test_graphc_num_threads_applies_in_process(monkeypatch):
    monkeypatch.setenv(threads.ENV_VAR, " 3 ")
    monkeypatch.setattr(threads, "_env_applied", False)
    gc.prepare(_graph(4), backend="numpy")
    assert gc.get_num_threads() == 3
    if _counts("blas"):
        assert set(_counts("blas")) == {3}


cpu = pytest.mark.skipif(not cpu_available(), reason="the CPU backend needs a C++ compiler")


@cpu
def test_the_cpu_backend_follows_set_num_threads():
    from graphc.runtime.cpu import default_host_device

    x = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32) / 16
    exe = gc.prepare(_graph(), backend="cpu")
    np.testing.assert_allclose(exe.run([x])[0], _want(x), rtol=1e-4, atol=1e-4)
    dev = default_host_device()
    for n in (1, 3, 2):
        gc.set_num_threads(n)
        assert dev.threads == n  # the most threads every launch takes from the pool
        if _counts("blas"):  # the GEMM splits over the team: each piece a one-thread BLAS call
            assert set(_counts("blas")) == {1}
        np.testing.assert_allclose(exe.run([x])[0], _want(x), rtol=1e-4, atol=1e-4)


@cpu
def test_the_cpu_backend_keeps_the_blas_at_one_thread_and_the_count_where_it_was():
    """The first CPU-backend GEMM sets the BLAS to one thread for good; graphc's count, when nobody set it, keeps
    the BLAS's former count (the pool then has that many threads); the NumPy backend's products stay right."""
    from graphc.runtime.cpu import default_host_device

    if not _counts("blas"):
        pytest.skip("NumPy carries no BLAS threadpoolctl knows")
    threads._count, threads._blas_single = None, False
    for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
        lib.set_num_threads(2)
    x = np.random.default_rng(1).standard_normal((256, 256)).astype(np.float32) / 16
    gc.prepare(_graph(), backend="cpu").run([x])
    assert threads._blas_single and set(_counts("blas")) == {1}
    assert gc.get_num_threads() == 2
    gc.set_num_threads(3)  # later counts drive the CPU backend's pool, not the BLAS
    assert set(_counts("blas")) == {1} and default_host_device().threads == 3
    np.testing.assert_allclose(gc.prepare(_graph(), backend="numpy").run([x])[0], _want(x), rtol=1e-4, atol=1e-4)


_CHILD = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    from threadpoolctl import threadpool_info
    import graphc as gc
    from graphc.runtime.cpu import available, default_host_device

    def pools(api):
        return sorted({d["num_threads"] for d in threadpool_info() if d["user_api"] == api})

    out = {"before": gc.get_num_threads()}
    if sys.argv[1] == "set":
        gc.set_num_threads(int(sys.argv[2]))  # before the BLAS is driven, or a kernel library loaded
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [64, 64], name="x")
        y = gc.tanh(x @ x) + x
    g.outputs = [y.value]
    gc.prepare(g, backend="numpy").run([np.ones((64, 64), np.float32)])
    out["numpy"] = {"count": gc.get_num_threads(), "blas": pools("blas")}
    if available():
        gc.prepare(g, backend="cpu").run([np.ones((64, 64), np.float32)])
        out["cpu"] = {"count": gc.get_num_threads(), "blas": pools("blas"), "openmp": pools("openmp"),
                      "launch": default_host_device().threads}
    print(json.dumps(out))
""")


def _child(env_extra: dict, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GRAPHC_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                        "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(env_extra)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run([sys.executable, "-c", _CHILD, *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# OpenBLAS caps OPENBLAS_NUM_THREADS at the CPUs it sees, so the children start the BLAS at 1 thread and graphc's
# counts go above it (set_num_threads takes any count).


def test_graphc_num_threads_sets_blas_and_the_cpu_backend_in_a_fresh_process():
    got = _child({"GRAPHC_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "1"}, "env")
    assert got["before"] in (1, os.cpu_count())  # not applied before a backend prepares: the BLAS's own count
    assert got["numpy"]["count"] == 3
    if got["numpy"]["blas"]:
        assert got["numpy"]["blas"] == [3]
    if "cpu" in got:
        c = got["cpu"]
        assert (c["count"], c["launch"], c["openmp"]) == (3, 3, []), c  # no OpenMP runtime: graphc's own pool
        assert c["blas"] in ([], [1])  # the CPU backend's GEMMs: one-thread BLAS


def test_a_library_loaded_after_set_num_threads_gets_the_count():
    got = _child({"OPENBLAS_NUM_THREADS": "1"}, "set", "3")
    assert got["numpy"]["count"] == 3
    if "cpu" in got:  # the first kernel library loaded after the count was set
        c = got["cpu"]
        assert (c["count"], c["launch"], c["openmp"]) == (3, 3, []), c


def test_by_default_the_cpu_backend_agrees_with_the_blas():
    got = _child({"OPENBLAS_NUM_THREADS": "1"}, "default")
    if not got["numpy"]["blas"]:
        pytest.skip("NumPy carries no BLAS threadpoolctl knows")
    assert got["before"] == 1 and got["numpy"] == {"count": 1, "blas": [1]}
    if "cpu" in got:  # the BLAS's count (1 here), not every CPU
        c = got["cpu"]
        assert (c["count"], c["launch"], c["openmp"], c["blas"]) == (1, 1, [], [1]), c


def test_bench_load_processes_spin_and_are_killed_also_on_errors():
    """``python -m bench --load N``: the busy processes run during the block and are gone after it, even when it
    raises."""
    from graphc.bench.runner import busy_load

    procs = []
    with pytest.raises(RuntimeError, match="boom"):
        with busy_load(2, pin=True) as load:
            assert load["processes"] == 2 and len(load["pinned_cpus"]) == 2
            pids = [int(p) for p in subprocess.run(["pgrep", "-P", str(os.getpid()), "-f", "getppid"],
                                                    capture_output=True, text=True).stdout.split()]
            procs += pids
            for pid in pids:  # running, not sleeping: the scheduler reports state R
                with open(f"/proc/{pid}/stat") as f:
                    assert f.read().rsplit(")", 1)[1].split()[0] == "R"
            raise RuntimeError("boom")
    assert len(procs) == 2
    for pid in procs:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
