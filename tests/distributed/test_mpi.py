"""Data-parallel training over real MPI: ``mpiexec -n 2`` from the venv's bin runs tests/distributed/mpi_worker.py.

Two ranks with half of each batch must follow the one-process, whole-batch trajectory step for step, with
one packed all-reduce per step; a rank that raises must end the job with its rank and error, not hang.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.mpi

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "mpi_worker.py")
ROOT = os.path.dirname(os.path.dirname(HERE))
STEPS = 20


def _worker_module():
    spec = importlib.util.spec_from_file_location("graphc_tests_mpi_worker", WORKER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def mpiexec(n: int, *args: str, timeout: float = 120, program: tuple[str, ...] = (WORKER,)) -> subprocess.CompletedProcess:
    """Run the worker (or ``program``) on ``n`` ranks with the mpiexec that the mpich wheel put beside this Python."""
    exe = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    assert os.path.exists(exe), f"no mpiexec beside {sys.executable}: pip install -e '.[dist]' (mpich)"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    try:
        return subprocess.run([exe, "-n", str(n), sys.executable, *program, *args], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"mpiexec -n {n} {' '.join(args)} hung for {timeout} s:\n{e.stderr}")


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mpi")
    r = mpiexec(2, "train", str(out), str(STEPS))
    assert r.returncode == 0, f"mpiexec failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return [dict(np.load(out / f"rank{i}.npz")) for i in range(2)]


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_two_ranks_with_half_batches_match_one_process_step_for_step(two_rank_run, optimizer):
    worker = _worker_module()
    reference = worker.trajectory(optimizer, STEPS, distributed=False)  # one process, whole batches
    rank0, rank1 = two_rank_run
    assert int(rank0["size"]) == 2
    for var, ref in reference.items():
        got0, got1 = rank0[f"{optimizer}/{var}"], rank1[f"{optimizer}/{var}"]
        assert got0.shape == (STEPS, *ref.shape[1:])
        np.testing.assert_array_equal(got0, got1, err_msg=f"ranks disagree on {var}")
        np.testing.assert_allclose(got0, ref, rtol=0, atol=1e-6, err_msg=f"{optimizer}: {var} drifted from "
                                                                        f"the one-process run")
        assert np.abs(ref[-1] - ref[0]).max() > 1e-3, f"{var} barely moved: the comparison would prove little"


def test_one_packed_allreduce_per_step_and_one_broadcast(two_rank_run):
    for rank in two_rank_run:
        for opt in ("sgd", "momentum", "adam"):
            assert int(rank[f"{opt}/calls/allreduce"]) == STEPS  # 4 gradients, one call per step
            assert int(rank[f"{opt}/calls/bcast"]) == 2  # the variables: one float64 buffer + the float32 step
            assert int(rank[f"{opt}/calls/bcast_object"]) == 1  # the check that ranks hold the same variables


def test_a_failing_rank_aborts_the_job_with_its_rank_and_error(tmp_path):
    t0 = time.perf_counter()
    r = mpiexec(2, "fail", str(tmp_path), str(STEPS), timeout=90)
    seconds = time.perf_counter() - t0
    assert r.returncode != 0
    assert "rank 1 of 2 failed: ValueError: rank 1 hit a bad batch at step 3" in r.stderr, r.stderr
    assert "aborting all 2 ranks" in r.stderr
    assert seconds < 60, f"the job took {seconds:.0f} s to end after rank 1 failed"


def test_mlp_digits_trains_data_parallel_and_only_rank_0_reports(tmp_path):
    ckpt = tmp_path / "weights.npz"
    r = mpiexec(2, "--distributed", "--steps", "150", "--checkpoint", str(ckpt), program=("-m", "graphc.models.mlp_digits"))
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    done = [line for line in r.stdout.splitlines() if line.startswith("trained 150 steps on 2 ranks")]
    assert len(done) == 1, r.stdout  # rank 1 prints nothing
    accuracy = float(done[0].rsplit(" ", 1)[1].rstrip("%"))
    assert accuracy > 90, r.stdout
    with np.load(ckpt) as weights:
        assert "fc1/w" in weights.files


def test_ranks_with_different_variables_are_refused_before_any_bytes_move(tmp_path):
    r = mpiexec(2, "mismatch", str(tmp_path), "0", timeout=90)
    assert r.returncode != 0
    assert "rank 1 of 2 failed: DistributedError: broadcast_variables: rank 1's variables differ from rank 0's" \
        in r.stderr, r.stderr
    assert "adam/m" in r.stderr  # names a variable only rank 1 has (Adam's moment of a weight)
