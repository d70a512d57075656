"""A `TaskIndex` saved whole to one file and read back, so that a start need not rebuild it from the rows.

The file, in order:

- a prefix: magic, format version, the header's length and the header's CRC-32;
- the header, JSON: the change-log position it stands for (`seq`, `epoch`), the columns'
  base, length and room, the index names, and each bitmap's kind, key and byte length;
- the bitmaps, each in roaring's portable serialization, one after another;
- the per-uid columns, raw little-endian numbers, one after another;
- a CRC-32 of the bitmaps and columns.

`load` checks the version, the header's CRC, the file's length against the header and the
data's CRC before it trusts anything, and answers None for any file that fails (a torn
write, a flipped byte, another version): the caller then builds the index from the rows.
`save` writes a temporary file beside the target, syncs it and renames it over the
target, so the path holds either the old snapshot or the new one, never a part.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taskhub.server.index.columns import COLUMNS, NONE
from taskhub.server.index.state import IndexState
from taskhub.server.index.task_index import TaskIndex

log = logging.getLogger(__name__)

MAGIC = b"THINDEX\x00"
VERSION = 1  # bumped whenever the layout or the meaning of a field changes
PREFIX = struct.Struct("<8sIQI")  # magic, version, header length, header CRC-32
TRAILER = struct.Struct("<I")  # CRC-32 of the bitmaps and the columns
DTYPES = {name: np.dtype(dtype).newbyteorder("<") for name, dtype in COLUMNS}

_saving = threading.Lock()  # one save at a time: they share the temporary file's name


@dataclass(frozen=True)
class Snapshot:
    """An index as saved, and the change-log position (`seq` in `epoch`) it holds every change up to."""

    index: TaskIndex
    seq: int
    epoch: str


class BadSnapshot(Exception):
    """Why a file is not a snapshot this code can load."""


def save(index: TaskIndex | IndexState, path: str | os.PathLike, *, seq: int, epoch: str) -> None:
    """Writes `index` to `path` atomically, standing for every change up to `seq` in `epoch`.

    Given a `TaskIndex`, copies it first (`to_state`): the caller keeps writers out for the
    whole save. Given the copy, taken while writers waited, it writes with no lock held.
    Raises OSError if the file cannot be written; `path` then still holds what it held.
    """
    state = index.to_state() if isinstance(index, TaskIndex) else index
    path = Path(path)
    header = json.dumps(
        {
            "seq": seq,
            "epoch": epoch,
            "base": state.base,
            "used": state.used,
            "capacity": state.capacity,
            "names": state.names,
            "maps": [[kind, key, len(data)] for kind, key, data in state.maps],
            "columns": [[name, DTYPES[name].str] for name, _ in COLUMNS],
        },
        separators=(",", ":"),
    ).encode()
    # Named by process: two processes saving beside one database never write the same temporary file.
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with _saving:
        try:
            with open(temporary, "wb") as out:
                out.write(PREFIX.pack(MAGIC, VERSION, len(header), zlib.crc32(header)))
                out.write(header)
                # Few big calls: each one that lets go of the GIL (checksums and writes of big
                # buffers) waits to get it back while other threads run, up to the switch interval.
                bitmaps = b"".join(data for _, _, data in state.maps)
                crc = zlib.crc32(bitmaps)
                out.write(bitmaps)
                del bitmaps
                for name, _ in COLUMNS:
                    # `.data`, a memoryview: numpy's stubs call an array a buffer only from Python 3.12 on.
                    data = np.ascontiguousarray(state.columns[name][: state.used], DTYPES[name]).data
                    crc = zlib.crc32(data, crc)
                    out.write(data)
                out.write(TRAILER.pack(crc))
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    _sync_folder(path.parent)
    _remove_leftovers(path)


def _remove_leftovers(path: Path) -> None:
    """Temporary files of saves cut short by a crash: those whose process is gone."""
    for leftover in path.parent.glob(f"{path.name}.*.tmp"):
        pid = leftover.name[len(path.name) + 1 : -len(".tmp")]
        if pid.isdigit() and not _alive(int(pid)):
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sync_folder(folder: Path) -> None:
    """Makes a rename in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(path: str | os.PathLike) -> Snapshot | None:
    """The snapshot at `path`, or None (with a log line saying why) if it is missing or cannot be trusted."""
    try:
        with open(path, "rb", buffering=0) as source:
            return _read(source, os.fstat(source.fileno()).st_size)
    except FileNotFoundError:
        log.debug("no index snapshot at %s: the index is built from the stored tasks", path)
    except BadSnapshot as exc:
        log.warning("index snapshot %s not loaded: %s", path, exc)
    except (OSError, ValueError, KeyError, TypeError, MemoryError) as exc:
        log.warning("index snapshot %s not loaded: %s: %s", path, type(exc).__name__, exc)
    return None


def _read(source, size: int) -> Snapshot:
    prefix = _exactly(source, PREFIX.size, "the prefix")
    magic, version, header_size, header_crc = PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise BadSnapshot("not an index snapshot (its first bytes are not the snapshot's magic)")
    if version != VERSION:
        raise BadSnapshot(f"format version {version}; this server reads version {VERSION}")
    if PREFIX.size + header_size + TRAILER.size > size:
        raise BadSnapshot(f"truncated: {size} bytes cannot hold a header of {header_size}")
    header = _exactly(source, header_size, "the header")
    if zlib.crc32(header) != header_crc:
        raise BadSnapshot("the header's checksum does not match (a damaged file)")
    meta = json.loads(header)
    used, capacity = meta["used"], meta["capacity"]
    if not 0 <= used <= capacity:
        raise BadSnapshot(f"columns of {used} uids in room for {capacity}")
    if meta["columns"] != [[name, DTYPES[name].str] for name, _ in COLUMNS]:
        raise BadSnapshot(f"its columns are {meta['columns']}, not this server's")
    bitmaps = sum(length for _, _, length in meta["maps"])
    expected = PREFIX.size + header_size + bitmaps + used * sum(t.itemsize for t in DTYPES.values()) + TRAILER.size
    if size != expected:
        raise BadSnapshot(f"{'truncated' if size < expected else 'overlong'}: {size} bytes, the header says {expected}")
    blob = bytearray(bitmaps)
    _fill(source, memoryview(blob))
    crc = zlib.crc32(blob)
    columns = {}
    for name, dtype in DTYPES.items():
        column = np.empty(capacity, dtype)
        _fill(source, column[:used].data.cast("B"))
        crc = zlib.crc32(column[:used].data, crc)
        column[used:] = NONE
        columns[name] = column
    (stored,) = TRAILER.unpack(_exactly(source, TRAILER.size, "the trailer"))
    if crc != stored:
        raise BadSnapshot("the data's checksum does not match (a damaged file)")
    maps: list[tuple[str, object, bytes | memoryview]] = []
    at, view = 0, memoryview(blob)
    for kind, key, length in meta["maps"]:
        maps.append((kind, key, view[at : at + length]))
        at += length
    state = IndexState(base=meta["base"], used=used, capacity=capacity, names=meta["names"], maps=maps, columns=columns)
    return Snapshot(TaskIndex.from_state(state), meta["seq"], meta["epoch"])


def _exactly(source, count: int, what: str) -> bytes:
    data = source.read(count)
    if len(data) != count:
        raise BadSnapshot(f"truncated in {what}")
    return data


def _fill(source, view: memoryview) -> None:
    """Reads into all of `view`, which a short read would leave part unfilled."""
    while view:
        read = source.readinto(view)
        if not read:
            raise BadSnapshot("truncated in the data")
        view = view[read:]
