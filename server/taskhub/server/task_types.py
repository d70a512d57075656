"""Task types registered at the server (`--task-types sendEmail,resizeImage`): names, codes, lookups.

A registered type is stored as a small integer code beside Meilisearch's 11 (the in-memory
index holds types in one byte). Codes are given once per database by its `task_types` table,
so they hold across restarts and across servers on one database; `TaskTypes` is what the
rules and the edge look names up in. Config checks names with `check_names`; the storage
assigns codes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from taskhub.server.model import TYPE_BY_LABEL, TYPE_OF, CustomType, TaskKind, TaskType

NAME = re.compile(r"[a-z][A-Za-z0-9]{0,63}")
NAME_RULE = "a lower-case letter, then up to 63 letters and digits (`sendEmail`)"
# Codes of registered types: Meilisearch's are 1 to 11 (and room is left for its newer ones);
# the index stores a type in one signed byte.
FIRST_CODE = 32
LAST_CODE = 127


def check_names(names: Iterable[str]) -> list[str]:
    """The names to register, in order without repeats; ValueError says what is wrong with one."""
    reserved = {label.lower(): label for label in TYPE_BY_LABEL}
    seen: dict[str, str] = {}
    for name in names:
        if not NAME.fullmatch(name):
            raise ValueError(f"task type `{name}` is not a valid name: {NAME_RULE}")
        if name.lower() in reserved:
            raise ValueError(f"task type `{name}` is Meilisearch's `{reserved[name.lower()]}`; choose another name")
        other = seen.setdefault(name.lower(), name)
        if other != name:
            raise ValueError(f"task types `{other}` and `{name}` differ only in case")
    if len(seen) > LAST_CODE - FIRST_CODE + 1:
        raise ValueError(f"at most {LAST_CODE - FIRST_CODE + 1} task types can be registered, not {len(seen)}")
    return list(seen.values())


class TaskTypes:
    """Every type one database knows (Meilisearch's and the codes of its `task_types` table), and which
    of them this server registered: only those are enqueued; every known one can be filtered on."""

    def __init__(self, known: Iterable[tuple[int, str]] = (), registered: Iterable[str] = ()) -> None:
        self.of: dict[int, TaskKind] = dict(TYPE_OF)
        self.by_name: dict[str, TaskKind] = {label.lower(): t for label, t in TYPE_BY_LABEL.items()}
        for code, name in known:
            self.of[code] = self.by_name[name.lower()] = CustomType(code, name)
        wanted = {name.lower() for name in registered}
        self.registered: tuple[CustomType, ...] = tuple(
            t for t in self.of.values() if isinstance(t, CustomType) and t.label.lower() in wanted
        )
        self._enqueued = {t.label.lower(): t for t in self.registered}
        # Where other servers on the database (replicas) register types too: a name not known here is looked
        # up there again before it is unknown.
        self.reread: Callable[[], Iterable[tuple[int, str]]] | None = None

    def learn(self, kind: CustomType) -> None:
        """A type another server on the database registered after this one started: it can be filtered on."""
        self.of[int(kind)] = self.by_name[kind.label.lower()] = kind

    def named(self, name: str) -> TaskKind | None:
        """Any type this database knows by its name (case-insensitive, as Meilisearch reads `types=`)."""
        if not name.isascii():
            return None
        found = self.by_name.get(name.lower())
        if found is None and self.reread is not None:
            for code, label in self.reread():
                if code not in self.of:
                    self.learn(CustomType(code, label))
            found = self.by_name.get(name.lower())
        return found

    def enqueueable(self, name: str) -> TaskKind | None:
        """A type one may enqueue by its name: Meilisearch's or one this server registered."""
        found = self.named(name)
        if isinstance(found, CustomType):
            return self._enqueued.get(name.lower())
        return found

    def listing(self) -> str:
        """The types for an `invalid_task_types` message: Meilisearch's, then the registered ones."""
        return ", ".join(f"`{t.label}`" for t in (*TaskType, *self.registered))
