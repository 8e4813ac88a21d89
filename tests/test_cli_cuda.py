"""`graphc run/bench --backend cuda` and --tf32: on the CPU emulator (GRAPHC_CUDA_EMULATE=1), and the one-sentence
error without PyCUDA."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from graphc.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "models", "data", "tiny_cnn.onnx")


@pytest.fixture
def emulate(monkeypatch):
    monkeypatch.setenv("GRAPHC_CUDA_EMULATE", "1")


@pytest.fixture
def no_pycuda(monkeypatch):
    """As on a machine without PyCUDA, also where it is installed (a None entry makes the import fail)."""
    monkeypatch.delenv("GRAPHC_CUDA_EMULATE", raising=False)
    for name in [m for m in sys.modules if m == "pycuda" or m.startswith("pycuda.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pycuda", None)


def _run(tmp_path, *extra):
    out = tmp_path / "_".join(extra or ("numpy",)).replace("-", "")
    rc = main(["run", TINY, "--random-inputs", "--set", "N=3", "--seed", "5", "--output-dir", str(out), *extra])
    return rc, out


@pytest.mark.parametrize("tf32", [False, True], ids=["fp32", "tf32"])
def test_run_tiny_cnn_on_the_cuda_backend_matches_numpy(tmp_path, emulate, capsys, tf32):
    rc, want_dir = _run(tmp_path)
    assert rc == 0
    rc, got_dir = _run(tmp_path, "--backend", "cuda", *(["--tf32"] if tf32 else []))
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "on backend 'cuda'" in err
    files = sorted(os.listdir(want_dir))
    assert files and files == sorted(os.listdir(got_dir))
    for f in files:  # the emulator runs GEMMs in float32 NumPy: TF32 changes nothing there
        np.testing.assert_allclose(np.load(got_dir / f), np.load(want_dir / f), rtol=1e-3, atol=1e-5)


def test_run_cuda_without_pycuda_is_one_sentence_and_exit_2(no_pycuda, capsys):
    rc = main(["run", TINY, "--random-inputs", "--set", "N=1", "--backend", "cuda"])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("graphc: error: the CUDA backend needs PyCUDA with an NVIDIA driver and the CUDA "
                               "toolkit: install them and run pip install -e '.[cuda]'")
    assert "Traceback" not in err


def test_tf32_belongs_to_the_cuda_backend(capsys):
    assert main(["run", TINY, "--random-inputs", "--set", "N=1", "--tf32"]) == 2
    assert "--tf32 applies to --backend cuda" in capsys.readouterr().err


def test_unknown_backend_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", TINY, "--backend", "tpu"])
    assert e.value.code == 2
    assert "invalid choice: 'tpu'" in capsys.readouterr().err


def test_bench_backend_cuda_runs_the_gpu_models_benchmark(emulate, capsys):
    rc = main(["bench", "--backend", "cuda", "--smoke", "--engines", "graphc"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "CPU emulator" in out and "smoke_cnn b2" in out and "targets not judged" in out


def test_bench_backend_cuda_on_a_model_file(emulate, capsys):
    rc = main(["bench", TINY, "--backend=cuda", "--set", "N=2", "--engines", "graphc,onnxruntime-cuda", "--repeats", "2",
               "--warmup", "1"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "tiny_cnn.onnx" in out


def test_bench_backend_cuda_without_pycuda_exits_2(no_pycuda, capsys):
    assert main(["bench", "--backend", "cuda", "--smoke"]) == 2
    assert "the CUDA backend needs PyCUDA" in capsys.readouterr().err


def test_bench_unknown_backend(capsys):
    assert main(["bench", "--backend", "tpu"]) == 2
    assert "expected numpy or cuda, got 'tpu'" in capsys.readouterr().err


def test_readme_emulated_cuda_command_runs(tmp_path):
    """The README's CUDA section shows a command on the emulator: it runs as written."""
    import re
    import subprocess

    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        section = f.read().split("## CUDA backend", 1)[1].split("\n## ", 1)[0]
    lines = [ln.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)
             for ln in block.splitlines() if ln.startswith("GRAPHC_CUDA_EMULATE=1 ")]
    assert lines, "README's CUDA section has no GRAPHC_CUDA_EMULATE=1 example"
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
               GRAPHC_CACHE_DIR=str(tmp_path / "cache"))
    for line in lines:
        r = subprocess.run(["bash", "-c", line.split("  #")[0]], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, f"{line}\n{r.stderr}"
        assert "probs: shape [4, 10]" in r.stdout, r.stdout
