"""A batch's `details`: its tasks' details summed up, key by key, as Meilisearch's `DetailsView::accumulate`.

Each known key follows one rule (a sum, a sum where a number beats null, the first value set,
`&`-joined filters, appended swaps); any other key is a setting, merged with a later task winning.
Keys come out in Meilisearch's `DetailsView` order, the settings between `function` and `swaps`.
Once a batch ended its null keys are dropped (Meilisearch stores the batch and reads it back without
them); settings keep their nulls (a reset).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

SUMMED = frozenset({"receivedDocuments", "providedIds", "matchedTasks"})
NULLABLE_SUMS = frozenset({"indexedDocuments", "editedDocuments", "deletedDocuments", "canceledTasks", "deletedTasks"})
JOINED = frozenset({"originalFilter"})
APPENDED = frozenset({"swaps"})
BEFORE_SETTINGS = (
    "receivedDocuments",
    "indexedDocuments",
    "editedDocuments",
    "primaryKey",
    "providedIds",
    "deletedDocuments",
    "matchedTasks",
    "canceledTasks",
    "deletedTasks",
    "originalFilter",
    "dumpUid",
    "context",
    "function",
)
AFTER_SETTINGS = (
    "swaps",
    "upgradeFrom",
    "upgradeTo",
    "url",
    "apiKey",
    "payloadSize",
    "indexes",
    "oldIndexUid",
    "newIndexUid",
    "preCompactionSize",
    "postCompactionSize",
    "movedDocuments",
    "message",
    "rule",
    "updatedRules",
)
KNOWN = frozenset(BEFORE_SETTINGS + AFTER_SETTINGS)


def _merge(key: str, old: Any, new: Any) -> Any:
    if key in SUMMED:
        return (old or 0) + (new or 0)
    if key in NULLABLE_SUMS:
        return old if new is None else (new if old is None else old + new)
    if key in JOINED:
        return old if new is None else (new if old is None else f"{old}&{new}")
    if key in APPENDED:
        return [*(old or []), *(new or [])]
    return new if old is None else old  # the first value set wins


def accumulate(all_details: Iterable[dict[str, Any] | None], *, ended: bool) -> dict[str, Any]:
    """The details of a batch whose tasks have these details, in uid order."""
    known: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    for details in all_details:
        for key, value in (details or {}).items():
            if key not in KNOWN:
                settings[key] = value
            elif key in known:
                known[key] = _merge(key, known[key], value)
            else:
                known[key] = list(value) if key in APPENDED and value is not None else value
    out: dict[str, Any] = {}
    for keys in (BEFORE_SETTINGS, None, AFTER_SETTINGS):
        if keys is None:
            out.update(settings)
            continue
        for key in keys:
            if key in known and not (ended and known[key] is None):
                out[key] = known[key]
    return out
