"""Authentication and API keys: who is calling, and what they may do and see.

Off unless a master key is set. With one, every call carries
`authorization: Bearer <key>`: the master key may do everything; an API key
may do its `actions` on its `indexes` (names, `prefix*` patterns or `*`) until
it expires. Enqueueing needs the task type's action (`enqueue_action`: `dumps.create`
for a dump, `snapshots.create` for a snapshot, `tasks.enqueue` otherwise), checked with
each task by the enqueue rules. A key's secret is HMAC-SHA256(master key, uid) as in Meilisearch,
so no secret is stored; lookups go through an in-memory map of digests and
end in a constant-time comparison.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from taskhub.errors import TaskHubError
from taskhub.server.model import KeyRecord, Scope, TaskKind, TaskType, format_time
from taskhub.server.rules.details import valid_index_uid
from taskhub.server.storage.contract import KeyTable

log = logging.getLogger(__name__)

# Meilisearch's names where it has the action (`dumps.create`, `version`, ...); `family.*` covers a family.
ACTIONS = (
    "tasks.get",
    "tasks.enqueue",
    "tasks.cancel",
    "tasks.delete",
    "tasks.requeue",
    "tasks.*",
    "dumps.create",
    "dumps.*",
    "snapshots.create",
    "snapshots.*",
    "version",
    "metrics.get",
    "metrics.*",
    "workers.*",
    "webhooks.get",
    "webhooks.create",
    "webhooks.update",
    "webhooks.delete",
    "webhooks.*",
    "*",
)
# A dump or a snapshot copies the whole queue: as in Meilisearch it has an action of its own, needed
# however it is enqueued (its own route, `POST /tasks`, EnqueueTask or EnqueueTasks).
_ENQUEUE_ACTIONS: dict[TaskKind, str] = {
    TaskType.DUMP_CREATION: "dumps.create",
    TaskType.SNAPSHOT_CREATION: "snapshots.create",
}
# A caller with none of these may enqueue nothing, and is refused before its request is read.
ENQUEUE_ACTIONS = frozenset({"tasks.enqueue", *_ENQUEUE_ACTIONS.values()})
_PATTERN = re.compile(r"[A-Za-z0-9_-]{0,400}\*")


def enqueue_action(type_: TaskKind) -> str:
    """The action enqueueing a task of this type needs."""
    return _ENQUEUE_ACTIONS.get(type_, "tasks.enqueue")


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller: its actions (None: all) and the indexes it may see (None: all, global tasks too).

    `key_uid`: the API key it called with (None for the master key, or when keys are off).
    """

    actions: frozenset[str] | None
    scope: Scope | None
    master: bool = False
    key_uid: str | None = None

    def allows(self, action: str) -> bool:
        if self.actions is None:
            return True
        family = action.split(".", 1)[0] + ".*"
        return bool({action, family, "*"} & self.actions)


EVERYONE = Principal(actions=None, scope=None, master=True)


def scope_of(indexes: list[str]) -> Scope | None:
    if "*" in indexes:
        return None
    return Scope(
        names=frozenset(i for i in indexes if not i.endswith("*")),
        prefixes=tuple(sorted(i[:-1] for i in indexes if i.endswith("*"))),
    )


def _missing_header() -> TaskHubError:
    return TaskHubError(
        "missing_authorization_header",
        "The Authorization header is missing. It must use the bearer authorization method.",
    )


def invalid_key() -> TaskHubError:
    return TaskHubError("invalid_api_key", "The provided API key is invalid.")


class Keyring:
    """The master key and the API keys, cached in memory; changes go through the store first.

    `follow`: where other servers on the database (replicas) write keys too. Each call then
    reads the keys' version there first (one point read), and the cache is read again when it
    moved: a key deleted through another replica is refused at the next call here.
    """

    def __init__(
        self,
        master_key: str | None,
        run: Callable[..., Awaitable[Any]],
        clock: Callable[[], int],
        follow: KeyTable | None = None,
    ) -> None:
        self.master_key = master_key or None
        self._run = run  # runs `fn(tx, *args)` in a unit of work (`Units.run`)
        self._clock = clock
        self._follow = follow
        self._version: int | None = None  # the keys' version the cache holds
        self._by_digest: dict[bytes, tuple[str, KeyRecord]] = {}

    @property
    def enabled(self) -> bool:
        return self.master_key is not None

    def secret(self, uid: str) -> str:
        assert self.master_key is not None
        return hmac.new(self.master_key.encode(), uid.encode(), hashlib.sha256).hexdigest()

    async def load(self) -> None:
        records, version = await self._run(lambda tx: (tx.keys.all_keys(), tx.keys.version()))
        self._fill(records, version)

    def _fill(self, records: list[KeyRecord], version: int | None) -> None:
        self._by_digest = {}
        for record in records:
            self._remember(record)
        self._version = version

    def _refresh(self) -> None:
        """Reads the keys again if another replica changed them since the cache was filled."""
        if self._follow is not None:
            version = self._follow.version()
            if version != self._version:
                self._fill(self._follow.all_keys(), version)

    def _remember(self, record: KeyRecord) -> None:
        if not self.enabled:  # without a master key, keys have no secret and grant nothing
            return
        secret = self.secret(record.uid)
        self._by_digest[hashlib.sha256(secret.encode()).digest()] = (secret, record)

    # -- checking calls ---------------------------------------------------

    def authenticate(self, header: str | None) -> Principal:
        """Who sent this `authorization` value; raises the public auth errors."""
        if self.master_key is None:  # not enabled
            return EVERYONE
        self._refresh()
        if not header:
            raise _missing_header()
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _missing_header()
        token = token.strip()
        if hmac.compare_digest(token.encode(), self.master_key.encode()):
            return EVERYONE
        found = self._by_digest.get(hashlib.sha256(token.encode()).digest())
        if found is None or not hmac.compare_digest(found[0].encode(), token.encode()):
            raise invalid_key()
        record = found[1]
        if record.expires_at is not None and record.expires_at <= self._clock():
            raise invalid_key()
        return Principal(actions=frozenset(record.actions), scope=scope_of(record.indexes), key_uid=record.uid)

    def require(self, header: str | None, action: str) -> Principal:
        principal = self.authenticate(header)
        if not principal.allows(action):
            raise invalid_key()
        return principal

    def require_any(self, header: str | None, actions: Iterable[str]) -> Principal:
        """The caller, if it may do at least one of `actions`; raises the public auth errors."""
        principal = self.authenticate(header)
        if not any(principal.allows(action) for action in actions):
            raise invalid_key()
        return principal

    def require_master(self, header: str | None) -> None:
        if not self.enabled:
            raise TaskHubError(
                "missing_master_key",
                "taskhub is running without a master key. To access this API endpoint, you must have set a master"
                " key at launch.",
            )
        if not self.authenticate(header).master:
            raise invalid_key()

    # -- managing keys ----------------------------------------------------

    def _find(self, uid_or_key: str) -> KeyRecord:
        for secret, record in self._by_digest.values():
            if record.uid == uid_or_key or hmac.compare_digest(secret.encode(), uid_or_key.encode()):
                return record
        raise TaskHubError("api_key_not_found", f"API key `{uid_or_key}` not found.")

    async def create(
        self,
        *,
        name: str | None,
        description: str | None,
        actions: list[str],
        indexes: list[str],
        expires_at: int | None,
        uid: str | None,
    ) -> KeyRecord:
        if not actions:
            raise TaskHubError("invalid_api_key_actions", "`actions` needs at least one action.")
        for action in actions:
            if action not in ACTIONS:
                raise TaskHubError(
                    "invalid_api_key_actions",
                    f"Unknown value `{action}` at `.actions`: expected one"
                    " of " + ", ".join(f"`{a}`" for a in ACTIONS) + ".",
                )
        if not indexes:
            raise TaskHubError("invalid_api_key_indexes", "`indexes` needs at least one index, pattern or `*`.")
        for index in indexes:
            if index != "*" and not valid_index_uid(index) and not _PATTERN.fullmatch(index):
                raise TaskHubError(
                    "invalid_api_key_indexes",
                    f"`{index}` is not a valid index uid pattern. Use an index uid, a prefix ending in `*`, or `*`.",
                )
        now = self._clock()
        if expires_at is not None and expires_at <= now:
            raise TaskHubError("invalid_api_key_expires_at", f"`expiresAt` ({format_time(expires_at)}) is in the past.")
        if uid is None:
            uid = str(uuid.uuid4())
        else:
            try:
                uid = str(uuid.UUID(uid))
            except ValueError:
                raise TaskHubError("invalid_api_key_uid", f"`{uid}` is not a valid UUID.") from None
        record = KeyRecord(
            uid=uid,
            name=name,
            description=description,
            actions=list(dict.fromkeys(actions)),
            indexes=list(dict.fromkeys(indexes)),
            expires_at=expires_at,
            created_at=now,
            updated_at=now,
        )
        if not await self._run(lambda tx: tx.keys.insert_key(record)):
            raise TaskHubError("api_key_already_exists", f"An API key with uid `{uid}` already exists.")
        self._remember(record)
        return record

    def list(self) -> list[KeyRecord]:
        return sorted((r for _, r in self._by_digest.values()), key=lambda r: (-r.created_at, r.uid))

    def get(self, uid_or_key: str) -> KeyRecord:
        return self._find(uid_or_key)

    async def update(self, uid_or_key: str, fields: dict[str, Any]) -> KeyRecord:
        record = self._find(uid_or_key)
        updated: KeyRecord | None = await self._run(
            lambda tx, now: tx.keys.update_key(record.uid, fields, now), self._clock()
        )
        if updated is None:
            raise TaskHubError("api_key_not_found", f"API key `{uid_or_key}` not found.")
        self._remember(updated)
        return updated

    async def delete(self, uid_or_key: str) -> None:
        record = self._find(uid_or_key)
        await self._run(lambda tx: tx.keys.delete_key(record.uid))
        self._by_digest = {d: (s, r) for d, (s, r) in self._by_digest.items() if r.uid != record.uid}
