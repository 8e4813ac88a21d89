"""graphc.bench.distributed's report: the section it writes into bench/RESULTS.md is appended once, then replaced."""
from __future__ import annotations

import argparse

from graphc.bench.distributed import BEGIN, END, markdown, write_section


def _args():
    return argparse.Namespace(ranks=2, steps=10, workers=[1, 2], repeat=2, images=100, size=32, batch_size=50)


def _report() -> str:
    ranks = [{"rank": r, "size": 2, "steps": 10, "step_median_s": 0.001, "step_total_s": 0.01, "allreduce_s": 0.002,
              "allreduce_calls": 10, "other_calls": {}, "bytes_per_step": 4096, "grad_bytes": 4096,
              "pure_allreduce_median_s": 1e-5} for r in range(2)]
    ray = [{"workers": w, "images": 100, "seconds": s, "images_per_s": 100 / s, "first_batch_s": 0.5,
            "steady_images_per_s": 200 / s} for w, s in ((1, 2.0), (2, 1.0), (1, 2.2), (2, 1.2))]
    return markdown({128: 0.0011, 64: 0.0009}, ranks, ray, _args(), "1.00, 1.00, 1.00", "2.00, 1.00, 1.00", 12.0)


def test_report_states_the_call_count_and_the_ray_ratio():
    text = _report()
    assert text.startswith(BEGIN) and text.rstrip().endswith(END)
    assert "One packed all-reduce per step: 1, 1 MPI_Allreduce call(s) per step" in text
    # medians of 100/1.0, 100/1.2 against 100/2.0, 100/2.2 images/s; bests 100 against 50
    assert "| 2 | 2 | 1.10 | 92 | 100 | 1.92x | 2.00x | 183 | 1.92x |" in text


def test_section_is_appended_then_replaced(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# results\n\nother tables\n")
    write_section(str(path), _report())
    once = path.read_text()
    write_section(str(path), _report().replace("12 s in all", "13 s in all"))
    twice = path.read_text()
    assert once.startswith("# results\n\nother tables\n\n" + BEGIN)
    assert twice.count(BEGIN) == 1 and "13 s in all" in twice and "12 s in all" not in twice
