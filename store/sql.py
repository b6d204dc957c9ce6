"""Small SQL helpers shared by the store's hot paths."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")

#: IN-list sizes a padded list is rounded up to (beyond the last: multiples of it)
_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def in_list(values: Iterable[T]) -> list[T]:
    """``values`` (distinct, in first-seen order) padded with its last value to a bucket size.

    ``col.in_(xs)`` renders one bound parameter per value, so every distinct length is a
    distinct SQL text: PostgreSQL (asyncpg) prepares each one anew and the statement cache
    churns. Padding keeps the number of texts per query shape small; repeating a value does
    not change what IN matches. An empty input stays empty."""
    out = list(dict.fromkeys(values))
    if not out:
        return out
    n = len(out)
    size = next((b for b in _BUCKETS if b >= n), None)
    if size is None:
        size = -(-n // _BUCKETS[-1]) * _BUCKETS[-1]
    return out + [out[-1]] * (size - n)
