"""Seeded mutation of request bodies, shared by the in-process fuzz test and the hostile-request suite."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

MAX_MUTATION_DEPTH = 6


def mutate(obj: Any, rng: random.Random, *, strings: Sequence[str], values: Sequence[Any], depth: int = 0) -> Any:
    """Replace a random value somewhere in obj with one of `values`, or add an unknown field (named by one of
    `strings`) there. Mutates obj in place and returns it, or returns a replacement for a scalar."""
    if isinstance(obj, dict) and obj and depth < MAX_MUTATION_DEPTH:
        key = rng.choice(list(obj))
        roll = rng.random()
        if roll < 0.2:
            obj[rng.choice(strings) or "unknownField"] = rng.choice(values)
        elif roll < 0.5:
            obj[key] = rng.choice(values)
        else:
            obj[key] = mutate(obj[key], rng, strings=strings, values=values, depth=depth + 1)
        return obj
    if isinstance(obj, list) and obj and depth < MAX_MUTATION_DEPTH:
        index = rng.randrange(len(obj))
        obj[index] = mutate(obj[index], rng, strings=strings, values=values, depth=depth + 1)
        return obj
    return rng.choice(values)
