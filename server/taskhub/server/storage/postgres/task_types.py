"""The PostgreSQL `task_types` table: the code each registered task type is stored under, given once.

Two servers registering at once serialize like any unit of work (the units' advisory lock), so a
name never gets two codes; rows decode with `codes`, which reads the table again for a code it lacks.
"""

from __future__ import annotations

from collections.abc import Iterable

from taskhub.server.storage.postgres.connection import Connection
from taskhub.server.storage.rows import TypeCodes
from taskhub.server.task_types import FIRST_CODE, LAST_CODE


class PostgresTaskTypes:
    """The `TaskTypeTable` of the contract on one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.codes = TypeCodes(self.all)

    def all(self) -> list[tuple[int, str]]:
        exists = self.conn.execute("SELECT to_regclass('task_types') IS NOT NULL").fetchone()
        if not exists or not exists[0]:  # a database not created yet: the storage's opening creates it
            return []
        return [(code, name) for code, name in self.conn.execute("SELECT code, name FROM task_types ORDER BY code")]

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
            with self.conn.cursor() as cursor:
                cursor.executemany("INSERT INTO task_types (code, name) VALUES (%s, %s)", list(zip(free, fresh)))
        self.codes.reload()
        return self.all()
