"""`AsyncTaskHubClient`: the asyncio client over one `grpc.aio` channel.

The same methods as `TaskHubClient` in `sync.py`, as coroutines and async
iterators; the retry, error and watch rules come from `calls.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import grpc
import grpc.aio

from taskhub import channels
from taskhub.client import keys, webhooks
from taskhub.client.batches import Batch, BatchPage
from taskhub.client.calls import (
    DEFAULT_RETRY,
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT,
    MAX_MESSAGE,
    Resubscriber,
    Resumer,
    RetryPolicy,
    batches_request,
    enqueue_request,
    enqueue_tasks_request,
    idempotency_key_for,
    list_request,
    metadata,
    tls_credentials,
    to_error,
)
from taskhub.client.filters import TaskFilter
from taskhub.client.keys import ApiKey, ExpiresAt, KeyPage
from taskhub.client.models import ServerVersion, Task, TaskChange, TaskPage, TaskSummary, TaskType
from taskhub.client.operations import Activity, LeaseList
from taskhub.client.webhooks import Webhook
from taskhub.v1 import (
    key_service_pb2 as kpb,
    key_service_pb2_grpc,
    operations_service_pb2 as opb,
    operations_service_pb2_grpc,
    task_service_pb2 as pb,
    task_service_pb2_grpc,
    webhook_service_pb2 as wpb,
    webhook_service_pb2_grpc,
)


class AsyncTaskHubClient:
    """An asyncio taskhub client; `async with` closes its channel.

    Same options as `TaskHubClient`: `target` one server or several replicas, `timeout`
    per unary call, `retry` for the calls safe to repeat on UNAVAILABLE (gRPC's own
    retry policy) and for resuming a watch, `api_key` as a bearer token, and an optional
    `grpc.aio` `channel` of your own (then yours to close) or `credentials`, or
    `tls_ca`, a CA file (PEM) to verify the server's certificate with.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy = DEFAULT_RETRY,
        credentials: grpc.ChannelCredentials | None = None,
        channel: grpc.aio.Channel | None = None,
        options: Sequence[tuple[str, Any]] = (),
        tls_ca: str | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.retry = retry
        self._owns_channel = channel is None
        if channel is None:
            credentials = credentials or tls_credentials(tls_ca)
            channel = channels.aio_channel(target, credentials, retry=retry, message_limit=MAX_MESSAGE, options=options)
        self._channel = channel
        self._stub = task_service_pb2_grpc.TaskServiceStub(channel)
        self._keys = key_service_pb2_grpc.KeyServiceStub(channel)
        self._operations = operations_service_pb2_grpc.OperationsServiceStub(channel)
        self._webhooks = webhook_service_pb2_grpc.WebhookServiceStub(channel)
        self._metadata = metadata(api_key)

    async def __aenter__(self) -> AsyncTaskHubClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the channel if this client opened it."""
        if self._owns_channel:
            await self._channel.close()

    async def _call(self, rpc: Callable, request: Any) -> Any:
        # Retried, when safe, by the channel itself (taskhub.channels.RETRIED); never here as well.
        try:
            return await rpc(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise to_error(error) from error

    # -- tasks ------------------------------------------------------------

    async def enqueue(
        self,
        type: TaskType | str,
        index_uid: str | None = None,
        details: dict[str, Any] | None = None,
        *,
        custom_metadata: str | None = None,
        idempotency_key: str | None = None,
        run_at: datetime | None = None,
        delay: timedelta | float | None = None,
        retry: dict[str, Any] | None = None,
    ) -> TaskSummary:
        """Enqueues a task (`details` with Meilisearch's keys, e.g. `{"receivedDocuments": 3}`).

        `type` is one of Meilisearch's or one registered at the server (`"sendEmail"`, its details any
        JSON object); `custom_metadata` is any string kept with the task (Meilisearch's `customMetadata`).

        Retried on UNAVAILABLE under an idempotency key (`idempotency_key`, or one made for this call),
        so a retry never makes a second task; the same key with another request raises
        `idempotency_key_conflict`.

        `run_at` (an aware datetime) or `delay` (a timedelta or seconds from now): not run before then.
        `retry`: the task's own retry policy, e.g. `{"attempts": 10, "initialDelay": "30s"}`.
        """
        request = enqueue_request(type, index_uid, details, custom_metadata, run_at, retry, delay=delay)
        request.idempotency_key = idempotency_key_for(idempotency_key)
        return TaskSummary.from_proto((await self._call(self._stub.EnqueueTask, request)).task)

    async def enqueue_tasks(
        self, tasks: Iterable[Sequence[Any]], *, idempotency_key: str | None = None
    ) -> list[TaskSummary]:
        """Enqueues 1 to 1,000 tasks at once, all or none, with consecutive uids.

        Each task is a tuple `(type, index_uid, details, custom_metadata, run_at, retry)`, all but the type
        optional. Retried as `enqueue` is, under one idempotency key for the whole batch.
        """
        request = enqueue_tasks_request(tasks)
        request.idempotency_key = idempotency_key_for(idempotency_key)
        response = await self._call(self._stub.EnqueueTasks, request)
        return [TaskSummary.from_proto(task) for task in response.tasks]

    async def get_task(self, uid: int) -> Task:
        """The task `uid`; `TaskHubError("task_not_found")` if there is none."""
        response = await self._call(self._stub.GetTask, pb.GetTaskRequest(uid=uid))
        return Task.from_proto(response.task)

    async def list_tasks(
        self,
        filter: TaskFilter | None = None,
        *,
        limit: int | None = None,
        from_: int | None = None,
        reverse: bool = False,
        **filters: Any,
    ) -> TaskPage:
        """One page of tasks, newest first (oldest first with `reverse`); filters as `TaskFilter` fields."""
        request = list_request(TaskFilter.of(filter, **filters), limit, from_, reverse)
        return TaskPage.from_proto(await self._call(self._stub.ListTasks, request))

    async def iter_tasks(
        self,
        filter: TaskFilter | None = None,
        *,
        page_size: int | None = None,
        from_: int | None = None,
        reverse: bool = False,
        **filters: Any,
    ) -> AsyncIterator[Task]:
        """Every matching task, fetching pages of `page_size` as it goes by following `next`."""
        task_filter = TaskFilter.of(filter, **filters)
        while True:
            page = await self.list_tasks(task_filter, limit=page_size, from_=from_, reverse=reverse)
            for task in page.results:
                yield task
            if page.next is None:
                return
            from_ = page.next

    async def cancel_tasks(self, filter: TaskFilter | None = None, **filters: Any) -> TaskSummary:
        """Enqueues a `taskCancelation` of the matching tasks; at least one filter is required."""
        request = pb.CancelTasksRequest(filter=TaskFilter.of(filter, **filters).to_proto())
        return TaskSummary.from_proto((await self._call(self._stub.CancelTasks, request)).task)

    async def delete_tasks(self, filter: TaskFilter | None = None, **filters: Any) -> TaskSummary:
        """Enqueues a `taskDeletion` of the matching finished tasks; at least one filter is required."""
        request = pb.DeleteTasksRequest(filter=TaskFilter.of(filter, **filters).to_proto())
        return TaskSummary.from_proto((await self._call(self._stub.DeleteTasks, request)).task)

    async def requeue_tasks(self, filter: TaskFilter | None = None, **filters: Any) -> list[Task]:
        """Enqueues again, as new tasks, the failed or canceled tasks matching the filter (at most 1,000 at once);
        each new `Task` has `requeued_from`. At least one filter is required; never retried."""
        request = pb.RequeueTasksRequest(filter=TaskFilter.of(filter, **filters).to_proto())
        response = await self._call(self._stub.RequeueTasks, request)
        return [Task.from_proto(task) for task in response.tasks]

    # -- the server ---------------------------------------------------------

    async def get_version(self) -> ServerVersion:
        """Which taskhub the server is: its package version and, when it knows it, the commit it runs from."""
        return ServerVersion.from_proto(await self._call(self._stub.GetVersion, pb.GetVersionRequest()))

    # -- the workers in view -------------------------------------------------

    async def list_leases(self, *, limit: int | None = None) -> LeaseList:
        """The leases held now, oldest first (the server's 100, or `limit`), and how many in all: which worker
        holds which tasks, since and until when."""
        request = opb.ListLeasesRequest(limit=limit)
        return LeaseList.from_proto(await self._call(self._operations.ListLeases, request))

    async def get_activity(self, *, seconds: int | None = None) -> Activity:
        """Tasks finished per second by status over the last `seconds` (the server's 15 minutes when None),
        and each index's tasks by status."""
        request = opb.GetActivityRequest(seconds=seconds)
        return Activity.from_proto(await self._call(self._operations.GetActivity, request))

    # -- batches ----------------------------------------------------------

    async def get_batch(self, uid: int) -> Batch:
        """The batch `uid`; `TaskHubError("batch_not_found")` if there is none."""
        response = await self._call(self._stub.GetBatch, pb.GetBatchRequest(uid=uid))
        return Batch.from_proto(response.batch)

    async def list_batches(
        self,
        filter: TaskFilter | None = None,
        *,
        limit: int | None = None,
        from_: int | None = None,
        reverse: bool = False,
        **filters: Any,
    ) -> BatchPage:
        """One page of batches, newest first; a batch matches when it holds a task matching each filter."""
        request = batches_request(TaskFilter.of(filter, **filters), limit, from_, reverse)
        return BatchPage.from_proto(await self._call(self._stub.ListBatches, request))

    async def iter_batches(
        self,
        filter: TaskFilter | None = None,
        *,
        page_size: int | None = None,
        from_: int | None = None,
        reverse: bool = False,
        **filters: Any,
    ) -> AsyncIterator[Batch]:
        """Every matching batch, fetching pages of `page_size` as it goes by following `next`."""
        batch_filter = TaskFilter.of(filter, **filters)
        while True:
            page = await self.list_batches(batch_filter, limit=page_size, from_=from_, reverse=reverse)
            for batch in page.results:
                yield batch
            if page.next is None:
                return
            from_ = page.next

    # -- API keys (the master key only) -----------------------------------

    async def create_key(
        self,
        actions: str | Iterable[str],
        indexes: str | Iterable[str],
        *,
        name: str | None = None,
        description: str | None = None,
        expires_at: ExpiresAt = None,
        uid: str | None = None,
    ) -> ApiKey:
        """Creates an API key; never retried.

        It may do `actions` (`tasks.get`, `tasks.*`, `*`, ...) on `indexes` (names, `prefix*` patterns or `*`)
        until `expires_at` (a datetime, a date or an RFC 3339 string; never when None).
        """
        request = keys.create_request(
            actions, indexes, name=name, description=description, expires_at_=expires_at, uid=uid
        )
        return ApiKey.from_proto((await self._call(self._keys.CreateKey, request)).key)

    async def list_keys(self, *, offset: int = 0, limit: int | None = None) -> KeyPage:
        """One page of keys, newest first (`limit` 20 by default)."""
        request = keys.list_request(offset, limit)
        return KeyPage.from_proto(await self._call(self._keys.ListKeys, request))

    async def get_key(self, uid_or_key: str) -> ApiKey:
        """The key with this uid or secret; `TaskHubError("api_key_not_found")` if there is none."""
        request = kpb.GetKeyRequest(key=uid_or_key)
        return ApiKey.from_proto((await self._call(self._keys.GetKey, request)).key)

    async def update_key(
        self, uid_or_key: str, *, name: str | None = None, description: str | None = None, clear: Iterable[str] = ()
    ) -> ApiKey:
        """Changes a key's name or description (None leaves it as it is; `clear=["name"]` sets it to null).

        Its rights never change.
        """
        request = keys.update_request(uid_or_key, name, description, clear)
        return ApiKey.from_proto((await self._call(self._keys.UpdateKey, request)).key)

    async def delete_key(self, uid_or_key: str) -> None:
        """Deletes a key; it stops working at once."""
        await self._call(self._keys.DeleteKey, kpb.DeleteKeyRequest(key=uid_or_key))

    # -- webhooks (the `webhooks.*` actions) ------------------------------

    async def list_webhooks(self) -> list[Webhook]:
        """Every webhook by uuid; the reserved one (`--task-webhook-url`, the nil uuid) first."""
        request = wpb.ListWebhooksRequest()
        return webhooks.results(await self._call(self._webhooks.ListWebhooks, request))

    async def get_webhook(self, uuid: str) -> Webhook:
        """One webhook; `TaskHubError("webhook_not_found")` if there is none."""
        request = wpb.GetWebhookRequest(uuid=uuid)
        return Webhook.from_proto((await self._call(self._webhooks.GetWebhook, request)).webhook)

    async def create_webhook(
        self, url: str, *, headers: Mapping[str, str] | None = None, secret: str | None = None
    ) -> Webhook:
        """Registers an endpoint every finished task is POSTed to; never retried.

        `secret` signs each POST: `X-Taskhub-Signature: sha256=<hex HMAC-SHA256 of the body as sent>`.
        """
        request = webhooks.create_request(url, headers, secret)
        return Webhook.from_proto((await self._call(self._webhooks.CreateWebhook, request)).webhook)

    async def update_webhook(
        self,
        uuid: str,
        *,
        url: str | None = None,
        headers: Mapping[str, str | None] | None = None,
        clear_headers: bool = False,
        secret: str | Any | None = webhooks.UNSET,
    ) -> Webhook:
        """Changes a webhook: `headers` values set headers, None ones remove them (after `clear_headers`);
        `secret=None` removes the secret."""
        request = webhooks.update_request(uuid, url, headers, secret, clear_headers)
        return Webhook.from_proto((await self._call(self._webhooks.UpdateWebhook, request)).webhook)

    async def delete_webhook(self, uuid: str) -> None:
        """Deletes a webhook; what it was owed is dropped."""
        await self._call(self._webhooks.DeleteWebhook, wpb.DeleteWebhookRequest(uuid=uuid))

    # -- watching ---------------------------------------------------------

    async def watch_task(self, uid: int, *, timeout: float | None = None) -> AsyncIterator[Task]:
        """The task's current state, then each change, ending after a terminal status.

        A broken stream is subscribed again (with backoff) and states already
        seen are not repeated. `timeout` bounds the whole watch (`TaskTimeoutError`).
        """
        follow = Resubscriber(uid, self.retry, timeout)
        while True:
            call = self._stub.WatchTask(
                pb.WatchTaskRequest(uid=uid), timeout=follow.remaining(), metadata=self._metadata
            )
            try:
                async for response in call:
                    task = Task.from_proto(response.task)
                    if follow.fresh(task):
                        yield task
                if follow.done:
                    return
                delay = follow.after_end()
            except grpc.RpcError as error:
                delay = follow.after_error(error)
            finally:
                call.cancel()  # frees the stream when the caller stops iterating early
            await asyncio.sleep(delay)

    async def watch_tasks(
        self, filter: TaskFilter | None = None, *, after: int | None = None, **filters: Any
    ) -> AsyncIterator[TaskChange]:
        """Every committed change of the matching tasks, in commit order, for as long as you iterate.

        Starts after sequence number `after` (the last one an earlier watch saw), else with the
        next change. A stream broken by UNAVAILABLE (a server restart) resumes after the last
        change seen, with backoff: nothing is missed or repeated. Raises `invalid_watch_cursor`
        for an `after` outside the server's kept history, and `watch_too_slow` when the server
        cut off a watcher that fell behind (resume with `after=` the last sequence seen).
        """
        follow = Resumer(TaskFilter.of(filter, **filters), after, self.retry)
        while True:
            call = self._stub.WatchTasks(follow.request(), metadata=self._metadata)
            try:
                follow.opened(await call.initial_metadata())
                async for response in call:
                    change = TaskChange.from_proto(response)
                    if follow.fresh(change):
                        yield change
                delay = follow.after_end()
            except grpc.RpcError as error:
                delay = follow.after_error(error)
            finally:
                call.cancel()  # frees the stream when the caller stops iterating
            await asyncio.sleep(delay)

    async def wait_for_task(self, uid: int, timeout: float | None = None) -> Task:
        """Waits until the task is succeeded, failed or canceled and answers it; no polling.

        Raises `TaskTimeoutError` (code `timeout`, also a `TimeoutError`) after `timeout` seconds.
        """
        last = None
        async for last in self.watch_task(uid, timeout=timeout):  # noqa: B007 - the last one is the answer
            pass
        return last
