"""Products of dims: ``3*N`` and ``N*T`` as dims that stay printable, comparable and cancel in division.

A dim is an int or a str symbol; a product of symbols (with an int coefficient) is the str of its
canonical form, coefficient first, then the symbols sorted: ``"3*N"``, ``"N*T"``, ``"2*N*N"``. Such a str is
still a symbol everywhere else (it compares by equality and prints as itself), but ``dim_factors`` reads it
back, so ``Flatten`` of ``[N,4,5]`` then ``Reshape`` to ``[-1,5]`` gives ``[4*N,5]`` and then ``[N,20]`` again.
"""
from __future__ import annotations

from collections import Counter

from .types import Dim


def dim_factors(d: Dim) -> tuple[int, Counter]:
    """A dim as (int coefficient, multiset of symbol factors)."""
    if isinstance(d, int):
        return d, Counter()
    n, syms = 1, Counter()
    for part in d.split("*"):
        part = part.strip()
        if part.isdigit():
            n *= int(part)
        else:
            syms[part] += 1
    if not syms:  # a str made only of numbers is not a product we wrote: keep it a plain symbol
        return 1, Counter({d: 1})
    return n, syms


def product_of(dims) -> tuple[int, Counter]:
    """The product of several dims as (int coefficient, multiset of symbol factors)."""
    n, syms = 1, Counter()
    for d in dims:
        k, s = dim_factors(d)
        n *= k
        syms.update(s)
    return n, syms


def dim_from_factors(n: int, syms: Counter) -> Dim:
    """The canonical dim of ``n * prod(syms)``: an int when no symbol is left, else the product's str."""
    if not syms or n == 0:
        return n
    names = sorted(s for s, k in syms.items() for _ in range(k) if k > 0)
    return "*".join(([str(n)] if n != 1 else []) + names)
