"""Tools that are not the compiler, each runnable with ``python -m``: ``graphc.tools.conformance`` (the ONNX
node test cases), ``graphc.tools.fuzz`` (the mutation fuzzer) and ``graphc.tools.optable`` (README.md's
operator table). They sit at the top of the layers (pyproject.toml's import-linter contract): they may use
the facade, the CLI and every layer below, and nothing in the library imports them.
"""
