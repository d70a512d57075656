"""Delivering the webhook outbox: finished tasks POSTed as Meilisearch does, at least once.

Each webhook has its own loop (an asyncio task): it reads the entries after its cursor, renders those tasks
as Meilisearch's task objects, one per line (`application/x-ndjson`, gzipped, `Content-Encoding: gzip`, as
Meilisearch sends them), POSTs them, and moves its cursor past them once the endpoint answers 2xx. A failure
(refused target, no connection, timeout, any other status) is retried with exponential backoff; the cursor
is in the store, so a restart resumes where deliveries stopped, and an entry may go twice (a POST answered
but its cursor not yet written), never zero times while the outbox keeps it.

A slow, dead or silent endpoint holds only its own loop: POSTs run on the event loop under one deadline each,
the store thread only reads entries and writes a cursor. Webhooks and their settings are read from the store
on every round (nothing cached), so a change made through another server on the same database applies.

`start()` is the one entry point: on replicas, only the leader should call it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import hmac
import json
import logging
import random
from urllib.parse import urlsplit

from taskhub.gateway import render
from taskhub.server import webhook_http
from taskhub.server.edge import convert
from taskhub.server.model import Task
from taskhub.server.rules.units import Units
from taskhub.server.rules.webhooks import FINISHED, NIL, Webhooks
from taskhub.server.storage.contract import Changes, Reader, Transaction, WebhookRecord
from taskhub.server.version import this_server
from taskhub.v1 import task_pb2

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Taskhub-Signature"
# Tasks in one POST at most (Meilisearch sends a batch's tasks in one; ours come as the outbox has them).
BATCH = 100
# One POST's deadline, as Meilisearch's client (30 s, the whole exchange).
TIMEOUT = 30.0
# Backoff after a failure: from FIRST_DELAY, doubling, at most MAX_DELAY, with jitter.
FIRST_DELAY = 1.0
MAX_DELAY = 60.0
# How often webhooks and their outbox are read again without a wake-up (commits made by another server).
POLL = 1.0


def signature(secret: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of the body as sent (gzipped) under the webhook's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def ndjson(tasks: list[Task]) -> bytes:
    lines = []
    for task in tasks:
        message = task_pb2.Task()
        convert.fill_task(message, task)
        lines.append(json.dumps(render.task(message), ensure_ascii=False, separators=(",", ":")) + "\n")
    return "".join(lines).encode()


def _entries(reader: Reader, after: int, limit: int) -> tuple[list[tuple[int, int]], list[Task]]:
    entries = reader.webhooks.outbox_after(after, limit)
    by_uid = {task.uid: task for task in reader.tasks.get_many([uid for _, uid in entries])}
    # In the order they finished; tasks deleted since are not sent.
    return entries, [by_uid[uid] for uid in dict.fromkeys(uid for _, uid in entries) if uid in by_uid]


class Delivery:
    """The delivery loops of every stored webhook, and their supervisor."""

    def __init__(
        self,
        webhooks: Webhooks,
        units: Units,
        *,
        timeout: float = TIMEOUT,
        first_delay: float = FIRST_DELAY,
        max_delay: float = MAX_DELAY,
        poll: float = POLL,
    ) -> None:
        self.webhooks = webhooks
        self.units = units
        self.timeout = timeout
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.poll = poll
        self.counts = webhooks.counts
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._wakes: dict[str, asyncio.Event] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False  # stopped for good: the server is stopping
        self._woken = asyncio.Event()
        self._user_agent = f"taskhub/{this_server().package_version or 'dev'}"

    def start(self) -> None:
        """Starts delivering (on the running loop), unless stopped for good. The one place to gate on leadership."""
        if self._supervisor is None and not self._closed:
            self._closing = False
            self._supervisor = asyncio.create_task(self._supervise(), name="taskhub-webhooks")

    @property
    def running(self) -> bool:
        """Whether the deliveries run now (on replicas: while this server leads)."""
        return self._supervisor is not None

    def halt(self, *, for_good: bool = False) -> list[asyncio.Task[None]]:
        """Stops delivering at once (the loops cancelled, let go); `start` may begin again right after (a lead
        taken back), unless `for_good` (shutdown). Answers the cancelled tasks, for whoever waits for them."""
        self._closing = True
        self._closed = self._closed or for_good
        tasks = [t for t in (self._supervisor, *self._loops.values()) if t is not None]
        self._supervisor = None
        self._loops.clear()
        self._wakes.clear()
        for task in tasks:
            task.cancel()
        return tasks

    async def stop(self, *, for_good: bool = False) -> None:
        """`halt`, then waits until the loops have ended (a POST in flight is cut short)."""
        for task in self.halt(for_good=for_good):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def committed(self, changes: Changes) -> None:
        """On the loop after each commit: a commit that finished tasks wakes every loop."""
        if any(t.status in FINISHED for t in changes.tasks):
            self._woken.set()
            for wake in self._wakes.values():
                wake.set()

    async def _supervise(self) -> None:
        while not self._closing:
            try:
                records = await self.units.read(_all)
            except Exception:
                log.exception("reading the webhooks failed")
                records = []
            wanted = {r.uuid for r in records if r.uuid != NIL or self.webhooks.reserved_url is not None}
            for uuid in set(self._loops) - wanted:
                self._loops.pop(uuid).cancel()
                self._wakes.pop(uuid, None)
            for uuid in wanted - set(self._loops):
                self._wakes[uuid] = asyncio.Event()
                self._loops[uuid] = asyncio.create_task(self._deliver(uuid), name=f"taskhub-webhook-{uuid}")
            self._woken.clear()
            await _wait(self._woken, self.poll)

    async def _deliver(self, uuid: str) -> None:
        """One webhook's loop: its entries in order, each batch until it is delivered or dropped."""
        delay = self.first_delay
        wake = self._wakes[uuid]
        while not self._closing:
            wake.clear()
            try:
                sent = await self._round(uuid)
            except Exception as error:  # the store unreachable, or a task we cannot render: try again later
                log.warning("webhook %s: delivery failed: %s", uuid, error)
                sent = False
            if sent is None:  # nothing owed: wait for a commit, or look again after a while
                delay = self.first_delay
                await _wait(wake, self.poll)
            elif sent:
                delay = self.first_delay
            else:
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.max_delay)

    async def _round(self, uuid: str) -> bool | None:
        """One POST of the next entries: True when delivered, False when it failed, None when none is owed."""
        record = await self.units.read(_one, uuid)
        if record is None:
            return None
        entries, tasks = await self.units.read(_entries, record.delivered, BATCH)
        if not entries:
            return None
        last = entries[-1][0]
        if tasks:  # tasks deleted since they finished are not sent
            target = self.webhooks.target(record)
            if not await self._post(target, ndjson(tasks)):
                return False
        await self.units.run_led(_delivered, uuid, last)  # fenced: a replica that lost the lead writes no cursor
        return True

    async def _post(self, target: WebhookRecord, body: bytes) -> bool:
        payload = gzip.compress(body)
        headers = dict(target.headers)
        if target.secret is not None:
            headers[SIGNATURE_HEADER] = signature(target.secret, payload)
        try:
            status = await webhook_http.post(
                target.url,
                headers,
                payload,
                policy=self.webhooks.policy,
                timeout=self.timeout,
                user_agent=self._user_agent,
            )
        except webhook_http.Refused as refused:
            log.warning("webhook %s: not sent to %s: %s", target.uuid, _where(target.url), refused)
        except (OSError, TimeoutError) as error:
            log.warning(
                "webhook %s: %s unreachable: %s", target.uuid, _where(target.url), error or type(error).__name__
            )
        else:
            if 200 <= status < 300:
                self.counts.ok += 1
                return True
            log.warning("webhook %s: %s answered %d", target.uuid, _where(target.url), status)
        self.counts.failed += 1
        return False


def _where(url: str) -> str:
    """A url as logged: scheme and host only, since a path or query may carry a token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Until `event` is set or `seconds` pass. Not `asyncio.wait_for`: on Python 3.11 it can swallow a
    cancelation that comes as the event is set, and `stop` would wait for a loop that never ends."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


def _all(reader: Reader) -> list[WebhookRecord]:
    return reader.webhooks.all_webhooks()


def _one(reader: Reader, uuid: str) -> WebhookRecord | None:
    return reader.webhooks.get_webhook(uuid)


def _delivered(tx: Transaction, uuid: str, upto: int) -> None:
    tx.webhooks.mark_delivered(uuid, upto)
