"""Roaring bitmaps to and from numpy arrays of uids, and their union: what every part of the index uses."""

from __future__ import annotations

import array

import numpy as np
from pyroaring import BitMap


def bitmap(uids: np.ndarray) -> BitMap:
    """A bitmap from a numpy array of uids, through a buffer (a list would make a Python int of each)."""
    values = array.array("I")
    values.frombytes(uids.astype(np.uint32).tobytes())
    return BitMap(values)


def uids_of(bits: BitMap) -> np.ndarray:
    return np.frombuffer(bits.to_array(), dtype=np.uint32).astype(np.int64)


def union(maps: list[BitMap]) -> BitMap:
    """The union of some bitmaps; one alone is answered as itself, not copied (a copy costs O(n))."""
    if len(maps) == 1:
        return maps[0]
    return BitMap.union(BitMap(), *maps)
