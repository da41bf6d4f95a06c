"""Pause Python's cyclic garbage collector while a bulk step runs.

A full sync at 10k Services allocates hundreds of thousands of small objects (plans, fragments, element
strings). Each allocation burst triggers collections that walk every live object, which measured ~0.2 s
of a 10k x 5 plan+render. The objects made here are not cyclic garbage, so the collector is paused
for the step and resumes (and catches up) after it. Nesting is safe: only the outermost call resumes it.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def gc_paused(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():  # an outer step (or the embedding program) already paused it
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()
    return wrapper
