"""The SQLite `task_types` table: the code each registered task type is stored under, given once.

`codes` is what rows are decoded with: Meilisearch's types and this database's, by code. A code
it lacks (another server on the database registered a type since) is read again from the table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from taskhub.server.storage.rows import TypeCodes
from taskhub.server.task_types import FIRST_CODE, LAST_CODE


class SqliteTaskTypes:
    """The `TaskTypeTable` of the contract on one connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.codes = TypeCodes(self.all)

    def all(self) -> list[tuple[int, str]]:
        try:
            return self.conn.execute("SELECT code, name FROM task_types ORDER BY code").fetchall()
        except sqlite3.OperationalError:  # a database of an older schema, opened read-only before its migration
            return []

    def register(self, names: Iterable[str]) -> list[tuple[int, str]]:
        # By name in any case, as callers name types: `sendemail` is `sendEmail`, under its first code.
        known = {name.lower(): code for code, name in self.all()}
        fresh = [name for name in names if name.lower() not in known]
        if fresh:
            free = [code for code in range(FIRST_CODE, LAST_CODE + 1) if code not in known.values()]
            if len(fresh) > len(free):
                raise ValueError(
                    f"no room for {len(fresh)} more task types: this database has given"
                    f" {len(known)} of {LAST_CODE - FIRST_CODE + 1} codes"
                )
            self.conn.executemany("INSERT INTO task_types (code, name) VALUES (?, ?)", list(zip(free, fresh)))
        self.codes.reload()
        return self.all()
