"""Benchmarks of graphc against onnxruntime, tract and onnx's ReferenceEvaluator: ``python -m graphc.bench``.

``python -m graphc.bench --quick`` runs two small workloads in a few seconds; the full run (no option) writes
the tables that bench/RESULTS.md holds. See bench/runner.py and bench/worker.py for how it measures.
"""
