"""Bounded `IN (...)` lists of a few fixed lengths.

SQLite prepares a statement for each distinct SQL text, and an `IN` list of n values is a
text with n placeholders; Python's sqlite3 keeps the last 128 prepared statements of each
connection. Asked with lists of every length (a pass's candidates, 400 at a time, with a
different remainder for every outlet), a connection kept one statement per length: 80
lengths of 300-340 URLs held 8 MB in SQLite. Each chunk is padded, by repeating its last
value (which changes no answer), to the next of 8, 16, 32 ... up to the chunk size, so a
query has at most eight shapes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

SMALLEST = 8


def padded(values: Sequence[T], limit: int) -> list[T]:
    """`values` (at most `limit`) repeated at the end to the next length of SMALLEST times a
    power of two, or to `limit`."""
    n = len(values)
    if n > limit:
        raise ValueError(f"an IN list of {n} values is over its limit of {limit}")
    size = SMALLEST
    while size < n:
        size *= 2
    size = min(size, limit)
    out = list(values)
    if out:
        out.extend(out[-1:] * (size - n))
    return out


def chunks(values: Sequence[T], size: int) -> Iterator[list[T]]:
    """`values` in order, `size` at a time, each chunk padded (see padded)."""
    for i in range(0, len(values), size):
        yield padded(values[i:i + size], size)
