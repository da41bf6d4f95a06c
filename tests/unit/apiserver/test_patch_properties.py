"""Properties of the three patch types over random JSON, from a seeded generator (reproducible, no hypothesis).

- the empty patch of each type ({} merge, {} strategic, [] JSON patch) is the identity;
- no patch mutates the object it is given;
- a JSON merge patch is idempotent, and on fields without a patch strategy a strategic merge patch
  (without directives) means exactly what the same body means as a JSON merge patch;
- kubectl apply's shape of list patch ($setElementOrder naming every wanted item) yields exactly that list.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from control.apiserver.patch import JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, PatchError, apply_patch

SEEDS = range(300)
# Keys include ones that look like directives and ones the strategic patch has merge keys for, so that
# the identity properties meet them in originals.
KEYS = ["a", "b", "c", "name", "metadata", "finalizers", "spec", "containers", "$patch", "$retainKeys",
        "$setElementOrder/containers", "$deleteFromPrimitiveList/finalizers", "é", ""]
PLAIN_KEYS = ["a", "b", "c", "name", "spec", "containers", "x y", "é"]


def scalar(rng: random.Random) -> Any:
    return rng.choice([None, True, False, 0, 1, -7, 2.5, 1e300, "", "s", "ü", "80"])


def value(rng: random.Random, depth: int, keys: list[str], lists_of_maps: bool = True) -> Any:
    roll = rng.random()
    if depth <= 0 or roll < 0.4:
        return scalar(rng)
    if roll < 0.75:
        return obj(rng, depth - 1, keys, lists_of_maps)
    if lists_of_maps:
        return [value(rng, depth - 1, keys) for _ in range(rng.randrange(4))]
    return [scalar(rng) for _ in range(rng.randrange(4))]


def obj(rng: random.Random, depth: int, keys: list[str], lists_of_maps: bool = True) -> dict[str, Any]:
    return {rng.choice(keys): value(rng, depth, keys, lists_of_maps) for _ in range(rng.randrange(5))}


def patch(original: dict[str, Any], body: Any, content_type: str, kind: str = "ConfigMap") -> dict[str, Any]:
    before = copy.deepcopy(original)
    result = apply_patch(original, json.dumps(body).encode(), content_type, kind)
    assert original == before, "the patch mutated its input"
    assert result is not original
    return result


@pytest.mark.parametrize("seed", SEEDS)
def test_empty_patches_are_identities(seed: int) -> None:
    rng = random.Random(seed)
    original = obj(rng, 4, KEYS)
    for kind in ("ConfigMap", "Pod", "Deployment"):
        assert patch(original, {}, MERGE_PATCH, kind) == original
        assert patch(original, {}, STRATEGIC_MERGE_PATCH, kind) == original
        assert patch(original, [], JSON_PATCH, kind) == original


@pytest.mark.parametrize("seed", SEEDS)
def test_results_are_fresh_objects(seed: int) -> None:
    # The result shares nothing with the input: changing it leaves the input alone.
    rng = random.Random(seed)
    original = obj(rng, 4, KEYS) | {"a": {"b": [{"c": 1}]}}
    before = copy.deepcopy(original)
    for content_type, body in ((MERGE_PATCH, {}), (STRATEGIC_MERGE_PATCH, {}), (JSON_PATCH, [])):
        result = patch(original, body, content_type)
        result["a"]["b"][0]["c"] = 2
        result["a"]["b"].append(3)
        assert original == before


@pytest.mark.parametrize("seed", SEEDS)
def test_strategic_patch_without_strategies_is_a_merge_patch(seed: int) -> None:
    # ConfigMap has merge keys only under metadata; PLAIN_KEYS never names it nor a directive. Lists in the
    # patch hold scalars: a strategic patch cleans nulls and directives out of maps inside lists.
    rng = random.Random(seed)
    original = obj(rng, 4, PLAIN_KEYS)
    body = obj(rng, 3, PLAIN_KEYS, lists_of_maps=False)
    merged = patch(original, body, MERGE_PATCH)
    assert patch(original, body, STRATEGIC_MERGE_PATCH) == merged
    assert patch(merged, body, MERGE_PATCH) == merged  # RFC 7386 patches are idempotent


@pytest.mark.parametrize("seed", SEEDS)
def test_apply_shaped_list_patch_yields_the_ordered_list(seed: int) -> None:
    # kubectl apply, when the live list holds only what was applied, names every wanted container in
    # $setElementOrder, sends the changed and new ones (in that order), and deletes the rest.
    rng = random.Random(seed)
    pool = [f"c{i}" for i in range(8)]
    live = [{"name": n, "image": f"{n}:1"} for n in rng.sample(pool, rng.randrange(6))]
    wanted = rng.sample(pool, rng.randrange(6))
    live_names = {item["name"] for item in live}
    changed = [n for n in wanted if n not in live_names or rng.random() < 0.5]
    deleted = [item["name"] for item in live if item["name"] not in wanted]
    body: dict[str, Any] = {"$setElementOrder/containers": [{"name": n} for n in wanted],
                            "containers": [{"name": n, "image": f"{n}:2"} for n in changed] +
                                          [{"name": n, "$patch": "delete"} for n in deleted]}
    result = patch({"spec": {"containers": live}}, {"spec": body}, STRATEGIC_MERGE_PATCH, "Pod")
    got = result["spec"]["containers"]
    assert [item["name"] for item in got] == wanted
    for item in got:
        assert item["image"] == (f"{item['name']}:2" if item["name"] in changed else f"{item['name']}:1")


FUZZ_KEYS = ["spec", "containers", "name", "env", "ports", "containerPort", "metadata", "finalizers", "strategy",
             "volumes", "$patch", "$retainKeys", "$setElementOrder/containers", "$setElementOrder/finalizers",
             "$deleteFromPrimitiveList/finalizers", "$setElementOrder", "$deleteFromPrimitiveList/"]
FUZZ_SCALARS = [None, "delete", "replace", "merge", "name", "a", 80, True, "spec"]


def fuzz(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth <= 0 or roll < 0.3:
        return rng.choice(FUZZ_SCALARS)
    if roll < 0.65:
        return {rng.choice(FUZZ_KEYS): fuzz(rng, depth - 1) for _ in range(rng.randrange(5))}
    return [fuzz(rng, depth - 1) for _ in range(rng.randrange(4))]


@pytest.mark.parametrize("seed", range(2000))
def test_any_body_gives_an_object_or_a_patch_error(seed: int) -> None:
    # The apiserver answers whatever apply_patch raises with its Status; anything but a PatchError would
    # be a 500. Directive-laden random bodies over directive-shaped random objects.
    rng = random.Random(seed)
    original = fuzz(rng, 5)
    if not isinstance(original, dict):
        original = {"spec": original}
    body = {"spec": fuzz(rng, 5), rng.choice(FUZZ_KEYS): fuzz(rng, 3)}
    for kind in ("Pod", "Deployment", "ConfigMap"):
        for content_type in (STRATEGIC_MERGE_PATCH, MERGE_PATCH):
            try:
                result = patch(original, body, content_type, kind)
            except PatchError:
                continue
            assert isinstance(result, dict)
