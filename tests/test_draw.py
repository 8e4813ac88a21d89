"""Pictures of the compiler at work: graphc show --format dot|svg and graphc compile --memory-chart."""
from __future__ import annotations

import os
import re

import pytest

import graphc as gc
from graphc import draw
from graphc.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "models", "data", "tiny_cnn.onnx")
needs_dot = pytest.mark.skipif(not draw.dot_available(), reason="Graphviz's dot program or the graphviz package "
                               "is not installed (apt install graphviz; pip install 'graphc[viz]')")


@pytest.fixture(scope="module")
def tiny_plan():
    return gc.compile(gc.import_onnx(TINY), level=2, sets={"N": 1})


def test_dot_draws_each_group_as_a_box_coloured_by_kind_around_its_ops(tiny_plan):
    text = draw.graph_dot(tiny_plan.graph, tiny_plan.fusion)
    clusters = re.findall(r'subgraph "cluster_([^"]+)" \{(.*?)\n  \}', text, re.S)
    assert {name for name, _ in clusters} == {g.name for g in tiny_plan.fusion.groups} == {"fused_relu1", "fused_relu2"}
    for name, body in clusters:
        assert draw.KIND_COLOURS["out_fusable"] in body and "[out_fusable]" in body
        assert len(re.findall(r"op\d+ \[label=", body)) == 2  # Conv and Relu inside the box
    assert 'label="Conv\\nconv1"' in text and 'label="MaxPool\\npool1"' in text


def test_dot_labels_edges_with_shapes_and_every_unfused_edge_with_its_reason(tiny_plan):
    text = draw.graph_dot(tiny_plan.graph, tiny_plan.fusion)
    edges = re.findall(r"(\w+) -> (\w+) \[label=\"([^\"]*)\"", text)
    assert edges and all(re.match(r"float32\[[\d,]+\]", label) for _, _, label in edges)
    dashed = [label for _, _, label in re.findall(r"(\w+) -> (\w+) \[label=\"([^\"]*)\", color=\"#b2182b\"", text)]
    assert len(dashed) == len(tiny_plan.fusion.unfused) == 6
    for e in tiny_plan.fusion.unfused:
        first_words = e.detail.split()[:3]
        assert any(e.reason in lab and " ".join(first_words) in lab.replace("\\n", " ") for lab in dashed), e
    assert 'op1 -> op2 [label="float32[1,8,28,28]\\nkind: MaxPool' in text  # relu1 (in a group) -> pool1


def test_dot_of_an_unfused_stage_has_no_boxes():
    text = draw.graph_dot(gc.compile(gc.import_onnx(TINY), level=0, sets={"N": 2}).graph)
    assert "cluster_" not in text and "#b2182b" not in text
    assert text.count(" -> ") == 10  # 8 op-to-op edges, the input edge and the output edge


def test_show_format_dot_to_stdout(capsys):
    assert main(["show", TINY, "--set", "N=1", "--stage", "fused", "--format", "dot"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('digraph "tiny_cnn: stage fused"') and "cluster_fused_relu1" in out


def test_svg_without_graphviz_says_how_to_get_it_and_keeps_the_dot(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(draw.shutil, "which", lambda name: None)
    out = tmp_path / "g.svg"
    assert main(["show", TINY, "--set", "N=1", "--stage", "fused", "--format", "svg", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "apt install graphviz" in err
    assert (tmp_path / "g.dot").read_text().startswith("digraph") and not out.exists()


@needs_dot
def test_show_format_svg_lays_out_with_graphviz(tmp_path):
    out = tmp_path / "g.svg"
    assert main(["show", TINY, "--set", "N=1", "--stage", "fused", "--format", "svg", "-o", str(out)]) == 0
    svg = out.read_text()
    assert svg.lstrip().startswith("<?xml") or "<svg" in svg[:400]
    assert "fused_relu1 [out_fusable]" in svg and "MaxPool" in svg


def test_memory_chart_draws_one_row_per_buffer_and_marks_the_peak(tmp_path, tiny_plan):
    out = tmp_path / "mem.svg"
    assert main(["compile", TINY, "--set", "N=1", "-o", str(tmp_path / "p.onnx"), "--memory-chart", str(out)]) == 0
    svg = out.read_text()
    mem = tiny_plan.memory
    bars = re.findall(r"<rect x=[^>]*><title>([^:]+): steps (\d+)-(\d+), (\d+) bytes", svg)
    assert sorted(b[0] for b in bars) == sorted(mem.lifetimes)
    for name, a, b, size in bars:
        assert (int(a), int(b)) == tuple(mem.lifetimes[name]) and int(size) == mem.sizes[name]
    assert "peak " in svg and 'stroke="#d62728"' in svg
    import xml.dom.minidom

    xml.dom.minidom.parseString(svg)  # well-formed


def test_memory_chart_of_a_symbolic_plan_is_a_clear_error(tmp_path, capsys):
    rc = main(["compile", TINY, "-o", str(tmp_path / "p.onnx"), "--memory-chart", str(tmp_path / "m.svg")])
    assert rc == 2 and "--set N=1" in capsys.readouterr().err


def test_readme_picture_commands_run(tmp_path):
    import shutil
    import subprocess
    import sys

    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    block = text.split("### Pictures of the compiler at work", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    os.symlink(os.path.join(ROOT, "models"), tmp_path / "models")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    assert shutil.which("graphc", path=env["PATH"]), "the graphc console script is not installed"
    lines = block.strip().splitlines()
    assert len(lines) == 2
    for cmd in lines:
        if not draw.dot_available():  # the same drawing as DOT text (the SVG needs Graphviz)
            cmd = cmd.replace("--format svg", "--format dot")
        r = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"README command failed: {cmd}\n{r.stderr}"
    assert (tmp_path / "tiny_cnn_fused.dot").exists() and (tmp_path / "tiny_cnn_memory.svg").exists()
