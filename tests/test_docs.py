"""The README stays true: its operator table matches the registry, and its examples run."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from graphc.tools import optable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", readme(), flags=re.S)


def test_readme_op_table_is_current():
    text = readme()
    assert optable.BEGIN in text and optable.END in text
    assert optable.splice(text, optable.render()) == text, "run `python -m graphc.tools.optable` to regenerate"


def test_readme_python_examples_run(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("GRAPHC_BACKEND", raising=False)  # the default a reader gets (tests/conftest.py sets it)
    code = blocks("python")
    assert code, "README has no python example"
    for snippet in code:
        exec(compile(snippet, "README.md", "exec"), {"__name__": "__readme__"})


def test_readme_tour_commands_run(tmp_path):
    text = readme()
    tour = text.split("<!-- tour -->", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    os.symlink(os.path.join(ROOT, "models"), tmp_path / "models")
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = ROOT
    env.pop("GRAPHC_BACKEND", None)  # the default a reader gets (tests/conftest.py sets it)
    if shutil.which("graphc", path=env["PATH"]) is None:
        pytest.fail("the graphc console script is not installed next to this Python")
    for line in tour.strip().splitlines():
        cmd = line.split("  #")[0].strip()
        r = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"README command failed: {cmd}\n{r.stderr}"
