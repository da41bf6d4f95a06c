from __future__ import annotations

import pytest

from control.store._types import prefix_end


@pytest.mark.parametrize(
    ("prefix", "end"),
    [
        ("/registry/pods/", "/registry/pods0"),
        ("a", "b"),
        ("a\U0010ffff", "b"),  # the last code point cannot grow: carry into the one before
        ("\U0010ffff", None),
        ("", None),
        ("x\ud7ff", "x\ue000"),  # surrogates do not exist in UTF-8: skip over them
    ],
)
def test_prefix_end(prefix: str, end: str | None) -> None:
    assert prefix_end(prefix) == end
    if end is not None:
        assert prefix < end
        assert (prefix + "\U0010ffff" * 3) < end
