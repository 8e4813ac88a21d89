"""`graphc compile` writes a plan that `graphc run` and `graphc show` take; outputs match the unoptimized graph."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

from graphc.frontends.onnx import import_model
from graphc.cli import main
from graphc.plan import PLAN_FORMAT, load_plan
from graphc.models import light
from graphc.runtime import get_backend


def _outputs(folder: str) -> dict[str, np.ndarray]:
    return {f: np.load(os.path.join(folder, f)) for f in sorted(os.listdir(folder))}


def _compile_and_run(src: str, tmp_path, *compile_args: str) -> tuple[str, dict]:
    out = str(tmp_path / "plan.onnx")
    assert main(["compile", src, "-o", out, *compile_args]) == 0
    onnx.checker.check_model(onnx.load(out))
    assert main(["run", out, "--random-inputs", "--output-dir", str(tmp_path / "got")]) == 0
    return out, _outputs(str(tmp_path / "got"))


def _reference(src: str, tmp_path) -> dict:
    assert main(["run", src, "--random-inputs", "--output-dir", str(tmp_path / "want")]) == 0
    return _outputs(str(tmp_path / "want"))


def test_compile_run_and_explain(tmp_path, capsys):
    src = light.path("squeezenet")
    out, got = _compile_and_run(src, tmp_path, "--explain-fusion")
    text = capsys.readouterr().out
    assert "fusion: 26 groups" in text and "unfused edges:" in text
    assert "[out_fusable]: Conv + Relu" in text
    assert "-> Concat" in text and ": kind: Concat" in text  # each unfused edge with its reason
    want = _reference(src, tmp_path)
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-7)
    plan = load_plan(out)
    assert plan.source == "light_squeezenet.onnx" and plan.level == 2


@pytest.mark.parametrize("level, fused", [("-O0", False), ("-O1", False), ("-O2", True)])
def test_levels(tmp_path, capsys, level, fused):
    out, _ = _compile_and_run(light.path("squeezenet"), tmp_path, level, "--explain-fusion")
    plan = load_plan(out)
    assert plan.level == int(level[-1])
    assert any(n.op_type == "FusedGroup" for n in plan.graph.nodes) == fused
    assert bool(plan.passes) == (level != "-O0")
    if not fused:
        assert f"fusion does not run at {level}" in capsys.readouterr().out


def test_a_symbolic_plan_runs_with_any_binding(tmp_path, tiny_cnn_path, capsys):
    out = str(tmp_path / "tiny.gc.onnx")
    assert main(["compile", tiny_cnn_path, "-o", out]) == 0
    assert "memory: planned per binding of N" in capsys.readouterr().out
    for n in ("1", "3"):
        folder = str(tmp_path / f"n{n}")
        assert main(["run", out, "--set", f"N={n}", "--random-inputs", "--check-memory", "--output-dir", folder]) == 0
        assert main(["run", tiny_cnn_path, "--set", f"N={n}", "--random-inputs", "--output-dir", folder + "r"]) == 0
        got, want = _outputs(folder), _outputs(folder + "r")
        for k in want:
            assert got[k].shape[0] == int(n)
            np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-6)


def test_input_shape_fixes_the_plan(tmp_path, tiny_cnn_path, capsys):
    out = str(tmp_path / "tiny2.gc.onnx")
    assert main(["compile", tiny_cnn_path, "-o", out, "--input-shape", "image=2,1,28,28"]) == 0
    plan = load_plan(out)
    assert plan.symbols == [] and plan.memory.peak_bytes > 0
    assert plan.options["input_shapes"] == {"image": [2, 1, 28, 28]}
    capsys.readouterr()
    assert main(["run", out, "--input-shape", "image=3,1,28,28", "--random-inputs"]) == 2
    assert "give --input-shape to `graphc compile` instead" in capsys.readouterr().err


def test_show_stages_and_saved_plans(tmp_path, capsys):
    src = light.path("squeezenet")
    assert main(["show", src, "--stage", "fused"]) == 0
    text = capsys.readouterr().out
    assert "graphc.FusedGroup" in text and "stage fused:" in text and "fusion: 26 groups" in text
    assert main(["show", src, "--stage", "planned"]) == 0
    text = capsys.readouterr().out
    assert "memory: peak" in text and "offset" in text and "38-end" in text  # the output lives to the end
    out = str(tmp_path / "sq.onnx")
    assert main(["compile", src, "-o", out]) == 0
    capsys.readouterr()
    assert main(["show", out]) == 0
    text = capsys.readouterr().out
    assert "graphc.FusedGroup" in text and "plan of light_squeezenet.onnx: -O2" in text and "memory: peak" in text


def test_a_plan_of_another_format_is_refused(tmp_path, capsys):
    out = str(tmp_path / "p.onnx")
    assert main(["compile", light.path("squeezenet"), "-o", out]) == 0
    model = onnx.load(out)
    for p in model.metadata_props:
        if p.key == "graphc.plan.format":
            p.value = "0"
    onnx.save(model, out)
    capsys.readouterr()
    assert main(["run", out, "--random-inputs"]) == 2
    err = capsys.readouterr().err
    assert f"in plan format 0, but this graphc" in err and f"reads plan format {PLAN_FORMAT} only" in err


def test_resnet50_compiles_in_under_two_seconds(tmp_path):
    """The acceptance bound, measured as the CPU time of a fresh process's second compile (the first warms its
    imports and onnx's schemas), so that neither other load nor what earlier tests left in this process counts:
    the compiler's full cycle collection (compiler._release_replaced) costs in proportion to every object the
    process holds, which took an xdist worker late in the suite past 2 s (2.2-2.4 s CPU; 0.25-1.0 s fresh)."""
    import subprocess
    import sys
    import textwrap

    out = str(tmp_path / "r50.onnx")
    script = textwrap.dedent(f"""
        import time
        from graphc.cli import main
        from graphc.models import light
        main(["compile", light.path("resnet50"), "-o", {out!r}])
        t0 = time.process_time()
        code = main(["compile", light.path("resnet50"), "-o", {out!r}])
        print("cpu", code, time.process_time() - t0)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, code, seconds = next(line for line in proc.stdout.splitlines()[::-1] if line.startswith("cpu ")).split()
    assert int(code) == 0
    assert float(seconds) < 2.0, f"{seconds} s of CPU"
    plan = load_plan(out)
    assert plan.memory.peak_bytes * 3 <= plan.memory.naive_bytes


@pytest.mark.slow
@pytest.mark.parametrize("name", light.NAMES)
def test_every_light_cnn_round_trips(name, tmp_path):
    """Compiled, saved, loaded and run: the outputs of the unoptimized graph (rtol 1e-4)."""
    model = onnx.load(light.path(name))
    feeds = light.light_inputs(model)
    out = str(tmp_path / f"{name}.gc.onnx")
    assert main(["compile", light.path(name), "-o", out]) == 0
    onnx.checker.check_model(onnx.load(out))
    plan = load_plan(out)
    assert plan.fusion.groups and plan.memory.peak_bytes < plan.memory.naive_bytes
    graph = import_model(model)
    want = get_backend("numpy").prepare(graph).run(feeds)
    got = get_backend("numpy").prepare(plan).run(feeds)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
