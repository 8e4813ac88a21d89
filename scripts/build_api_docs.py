"""Build the API reference (HTML) from the docstrings with pdoc (the `test` extra installs it):

    python scripts/build_api_docs.py [-o build/api]

It documents the facade (``import graphc as gc``: gc.Graph, gc.placeholder, gc.prepare...), the DSL's modules
(gc.nn, gc.layers, gc.losses, gc.optim, gc.initializers, gradients), the Session, autodiff and the errors.
The facade imports most of its names on first use; they are resolved first so that pdoc sees them all.
A name pdoc cannot resolve is an error (tests/test_api_docs.py builds the reference in CI).
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import warnings

#: What the reference covers; pdoc adds the public submodules of the packages named here.
MODULES = ["graphc", "!graphc\\..*", "graphc.frontends.dsl", "graphc.runtime.session", "graphc.autodiff",
           "graphc.errors"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default="build/api", help="the folder to write (default: build/api)")
    args = ap.parse_args(argv)
    import pdoc
    import pdoc.render

    import graphc

    for name in graphc.__all__:  # the lazily imported names, into the facade's namespace
        getattr(graphc, name)
    pdoc.render.configure(docformat="restructuredtext", footer_text=f"graphc {graphc.__version__}")
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        pdoc.pdoc(*MODULES, output_directory=pathlib.Path(args.output))
    if warned:
        print(f"build_api_docs: pdoc warned {len(warned)} time(s):", *(str(w.message) for w in warned), sep="\n  ",
              file=sys.stderr)
        return 1
    print(f"build_api_docs: wrote {args.output}/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
