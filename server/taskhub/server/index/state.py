"""A `TaskIndex`'s contents as plain data, what a snapshot holds: its bitmaps serialized, keyed as JSON holds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pyroaring import BitMap

from taskhub.server.model import STATUS_OF, TYPE_OF


@dataclass
class IndexState:
    """A copy of a `TaskIndex`'s contents, apart from the index's own: what a snapshot holds.

    Bitmaps are in roaring's portable serialization (a copy made faster than `BitMap.copy`,
    and what a file holds) and keys are plain (ints, strings and lists of them) so that they
    write as JSON. Caches are left out: the hours' order and stats are rebuilt from the
    buckets, and edge hours are sorted again when asked twice.
    """

    base: int  # the uid at position 0 of the columns
    used: int  # positions of the columns holding values; past it they hold NONE
    capacity: int  # the columns' length in the index: room for uids before the next growth
    names: list[str]  # index uids by their id in the "index" column
    maps: list[tuple[str, object, bytes | memoryview]]  # (kind, key, uids): "all", a set, a date column by hour
    columns: dict[str, np.ndarray]  # by name (`COLUMNS`), each at least `used` long


def plain_key(kind: str, key: Any) -> object:
    """A bitmap's key as JSON holds it: enums as ints, tuples as lists."""
    if kind == "index":
        return key
    if kind in ("index_status", "index_status_type"):
        return [key[0], *map(int, key[1:])]
    return None if key is None else int(key)


def _type(code: int) -> Any:
    """Meilisearch's type of a code, or a registered type's code (32 to 127) as it is."""
    if code in TYPE_OF:
        return TYPE_OF[code]
    if not isinstance(code, int) or not 32 <= code <= 127:
        raise ValueError(f"no task type has the code {code!r}")
    return code


def typed_key(kind: str, key: Any) -> Any:
    """`plain_key` undone; a key of the wrong shape raises (KeyError, TypeError or ValueError).

    Typed Any: what it answers (a status, a type, a tuple, a name or a number) depends on `kind`.
    """
    if kind == "status":
        return STATUS_OF[key]
    if kind == "type":
        return _type(key)
    if kind == "index_status":
        name, status = key
        return str(name), STATUS_OF[status]
    if kind == "index_status_type":
        name, status, type_ = key
        return str(name), STATUS_OF[status], _type(type_)
    if not isinstance(key, str if kind == "index" else int):
        raise TypeError(f"a {kind} key must not be {key!r}")
    return key


def serialized(
    everything: BitMap, tables: dict[str, dict[Any, BitMap]]
) -> list[tuple[str, object, bytes | memoryview]]:
    """`IndexState.maps` of an index's bitmaps: `everything` (its `all`) and `tables`, each kind's by key."""
    maps: list[tuple[str, object, bytes | memoryview]] = [("all", None, everything.serialize())]
    for kind, table in tables.items():
        maps += [(kind, plain_key(kind, key), bits.serialize()) for key, bits in table.items()]
    return maps


def deserialized(maps: list[tuple[str, object, bytes | memoryview]], tables: dict[str, dict[Any, BitMap]]) -> BitMap:
    """`serialized` undone: puts each bitmap in its kind's table of `tables` and answers the "all" one.

    A kind not in `tables` or a key not of its kind raises ValueError.
    """
    everything = BitMap()
    try:
        for kind, key, data in maps:
            # pyroaring's stub says bytes; it reads any buffer, as the snapshot's memoryview slices.
            bits = BitMap.deserialize(data)  # type: ignore[arg-type]
            if kind == "all":
                everything = bits
            else:
                tables[kind][typed_key(kind, key)] = bits
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"a bitmap, its kind or its key is not one of an index: {exc!r}") from exc
    return everything
