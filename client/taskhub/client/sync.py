"""`TaskHubClient`: the blocking client over one gRPC channel.

Every method answers typed results (`Task`, `TaskSummary`, `TaskPage`) and raises
`TaskHubError` with the public code, never a raw gRPC error. `AsyncTaskHubClient`
in `aio.py` is the same API for asyncio; shared rules live in `calls.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import grpc

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


class TaskHubClient:
    """A blocking taskhub client; use it as a context manager to close its channel.

    `target` is one server or several replicas (`10.0.0.1:7701,10.0.0.2:7701`, gRPC's
    `ipv4:...` list, or a DNS name with several addresses): calls are spread over them
    and a call that hits UNAVAILABLE goes again to another (see `taskhub.channels`).
    `timeout` bounds every unary call (seconds), its retries included; `retry` is gRPC's
    retry policy for the calls safe to repeat (reads, enqueues: they carry an idempotency
    key) and the pause before a broken watch resumes; `api_key` is sent as
    `authorization: Bearer <key>`. Pass `channel` to bring your own (it is then yours to
    close, and retries are what its options say: `taskhub.channels.channel_options()`),
    or `credentials` for TLS, or `tls_ca`, a CA file (PEM) to verify the server's certificate with.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy = DEFAULT_RETRY,
        credentials: grpc.ChannelCredentials | None = None,
        channel: grpc.Channel | None = None,
        options: Sequence[tuple[str, Any]] = (),
        tls_ca: str | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.retry = retry
        self._owns_channel = channel is None
        if channel is None:
            credentials = credentials or tls_credentials(tls_ca)
            channel = channels.channel(target, credentials, retry=retry, message_limit=MAX_MESSAGE, options=options)
        self._channel = channel
        self._stub = task_service_pb2_grpc.TaskServiceStub(channel)
        self._keys = key_service_pb2_grpc.KeyServiceStub(channel)
        self._operations = operations_service_pb2_grpc.OperationsServiceStub(channel)
        self._webhooks = webhook_service_pb2_grpc.WebhookServiceStub(channel)
        self._metadata = metadata(api_key)

    def __enter__(self) -> TaskHubClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel if this client opened it."""
        if self._owns_channel:
            self._channel.close()

    def _call(self, rpc: Callable, request: Any) -> Any:
        # Retried, when safe, by the channel itself (taskhub.channels.RETRIED); never here as well.
        try:
            return rpc(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise to_error(error) from error

    # -- tasks ------------------------------------------------------------

    def enqueue(
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
        return TaskSummary.from_proto(self._call(self._stub.EnqueueTask, request).task)

    def enqueue_tasks(self, tasks: Iterable[Sequence[Any]], *, idempotency_key: str | None = None) -> list[TaskSummary]:
        """Enqueues 1 to 1,000 tasks at once, all or none, with consecutive uids.

        Each task is a tuple `(type, index_uid, details, custom_metadata, run_at, retry)`, all but the type
        optional. Retried as `enqueue` is, under one idempotency key for the whole batch.
        """
        request = enqueue_tasks_request(tasks)
        request.idempotency_key = idempotency_key_for(idempotency_key)
        response = self._call(self._stub.EnqueueTasks, request)
        return [TaskSummary.from_proto(task) for task in response.tasks]

    def get_task(self, uid: int) -> Task:
        """The task `uid`; `TaskHubError("task_not_found")` if there is none."""
        response = self._call(self._stub.GetTask, pb.GetTaskRequest(uid=uid))
        return Task.from_proto(response.task)

    def list_tasks(
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
        return TaskPage.from_proto(self._call(self._stub.ListTasks, request))

    def iter_tasks(
        self,
        filter: TaskFilter | None = None,
        *,
        page_size: int | None = None,
        from_: int | None = None,
        reverse: bool = False,
        **filters: Any,
    ) -> Iterator[Task]:
        """Every matching task, fetching pages of `page_size` as it goes by following `next`."""
        task_filter = TaskFilter.of(filter, **filters)
        while True:
            page = self.list_tasks(task_filter, limit=page_size, from_=from_, reverse=reverse)
            yield from page.results
            if page.next is None:
                return
            from_ = page.next

    def cancel_tasks(self, filter: TaskFilter | None = None, **filters: Any) -> TaskSummary:
        """Enqueues a `taskCancelation` of the matching tasks; at least one filter is required."""
        request = pb.CancelTasksRequest(filter=TaskFilter.of(filter, **filters).to_proto())
        return TaskSummary.from_proto(self._call(self._stub.CancelTasks, request).task)

    def delete_tasks(self, filter: TaskFilter | None = None, **filters: Any) -> TaskSummary:
        """Enqueues a `taskDeletion` of the matching finished tasks; at least one filter is required."""
        request = pb.DeleteTasksRequest(filter=TaskFilter.of(filter, **filters).to_proto())
        return TaskSummary.from_proto(self._call(self._stub.DeleteTasks, request).task)

    def requeue_tasks(self, filter: TaskFilter | None = None, **filters: Any) -> list[Task]:
        """Enqueues again, as new tasks, the failed or canceled tasks matching the filter (at most 1,000 at once);
        each new `Task` has `requeued_from`. At least one filter is required; never retried."""
        request = pb.RequeueTasksRequest(filter=TaskFilter.of(filter, **filters).to_proto())
        response = self._call(self._stub.RequeueTasks, request)
        return [Task.from_proto(task) for task in response.tasks]

    # -- the server ---------------------------------------------------------

    def get_version(self) -> ServerVersion:
        """Which taskhub the server is: its package version and, when it knows it, the commit it runs from."""
        return ServerVersion.from_proto(self._call(self._stub.GetVersion, pb.GetVersionRequest()))

    # -- the workers in view -------------------------------------------------

    def list_leases(self, *, limit: int | None = None) -> LeaseList:
        """The leases held now, oldest first (the server's 100, or `limit`), and how many in all: which worker
        holds which tasks, since and until when."""
        request = opb.ListLeasesRequest(limit=limit)
        return LeaseList.from_proto(self._call(self._operations.ListLeases, request))

    def get_activity(self, *, seconds: int | None = None) -> Activity:
        """Tasks finished per second by status over the last `seconds` (the server's 15 minutes when None),
        and each index's tasks by status."""
        request = opb.GetActivityRequest(seconds=seconds)
        return Activity.from_proto(self._call(self._operations.GetActivity, request))

    # -- batches ----------------------------------------------------------

    def get_batch(self, uid: int) -> Batch:
        """The batch `uid`; `TaskHubError("batch_not_found")` if there is none."""
        response = self._call(self._stub.GetBatch, pb.GetBatchRequest(uid=uid))
        return Batch.from_proto(response.batch)

    def list_batches(
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
        return BatchPage.from_proto(self._call(self._stub.ListBatches, request))

    def iter_batches(
        self,
        filter: TaskFilter | None = None,
        *,
        page_size: int | None = None,
        from_: int | None = None,
        reverse: bool = False,
        **filters: Any,
    ) -> Iterator[Batch]:
        """Every matching batch, fetching pages of `page_size` as it goes by following `next`."""
        batch_filter = TaskFilter.of(filter, **filters)
        while True:
            page = self.list_batches(batch_filter, limit=page_size, from_=from_, reverse=reverse)
            yield from page.results
            if page.next is None:
                return
            from_ = page.next

    # -- API keys (the master key only) -----------------------------------

    def create_key(
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
        return ApiKey.from_proto((self._call(self._keys.CreateKey, request)).key)

    def list_keys(self, *, offset: int = 0, limit: int | None = None) -> KeyPage:
        """One page of keys, newest first (`limit` 20 by default)."""
        request = keys.list_request(offset, limit)
        return KeyPage.from_proto(self._call(self._keys.ListKeys, request))

    def get_key(self, uid_or_key: str) -> ApiKey:
        """The key with this uid or secret; `TaskHubError("api_key_not_found")` if there is none."""
        request = kpb.GetKeyRequest(key=uid_or_key)
        return ApiKey.from_proto((self._call(self._keys.GetKey, request)).key)

    def update_key(
        self, uid_or_key: str, *, name: str | None = None, description: str | None = None, clear: Iterable[str] = ()
    ) -> ApiKey:
        """Changes a key's name or description (None leaves it as it is; `clear=["name"]` sets it to null).

        Its rights never change.
        """
        request = keys.update_request(uid_or_key, name, description, clear)
        return ApiKey.from_proto((self._call(self._keys.UpdateKey, request)).key)

    def delete_key(self, uid_or_key: str) -> None:
        """Deletes a key; it stops working at once."""
        self._call(self._keys.DeleteKey, kpb.DeleteKeyRequest(key=uid_or_key))

    # -- webhooks (the `webhooks.*` actions) ------------------------------

    def list_webhooks(self) -> list[Webhook]:
        """Every webhook by uuid; the reserved one (`--task-webhook-url`, the nil uuid) first."""
        request = wpb.ListWebhooksRequest()
        return webhooks.results(self._call(self._webhooks.ListWebhooks, request))

    def get_webhook(self, uuid: str) -> Webhook:
        """One webhook; `TaskHubError("webhook_not_found")` if there is none."""
        request = wpb.GetWebhookRequest(uuid=uuid)
        return Webhook.from_proto((self._call(self._webhooks.GetWebhook, request)).webhook)

    def create_webhook(
        self, url: str, *, headers: Mapping[str, str] | None = None, secret: str | None = None
    ) -> Webhook:
        """Registers an endpoint every finished task is POSTed to; never retried.

        `secret` signs each POST: `X-Taskhub-Signature: sha256=<hex HMAC-SHA256 of the body as sent>`.
        """
        request = webhooks.create_request(url, headers, secret)
        return Webhook.from_proto((self._call(self._webhooks.CreateWebhook, request)).webhook)

    def update_webhook(
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
        return Webhook.from_proto((self._call(self._webhooks.UpdateWebhook, request)).webhook)

    def delete_webhook(self, uuid: str) -> None:
        """Deletes a webhook; what it was owed is dropped."""
        self._call(self._webhooks.DeleteWebhook, wpb.DeleteWebhookRequest(uuid=uuid))

    # -- watching ---------------------------------------------------------

    def watch_task(self, uid: int, *, timeout: float | None = None) -> Iterator[Task]:
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
                for response in call:
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
            time.sleep(delay)

    def watch_tasks(
        self, filter: TaskFilter | None = None, *, after: int | None = None, **filters: Any
    ) -> Iterator[TaskChange]:
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
                follow.opened(call.initial_metadata())
                for response in call:
                    change = TaskChange.from_proto(response)
                    if follow.fresh(change):
                        yield change
                delay = follow.after_end()
            except grpc.RpcError as error:
                delay = follow.after_error(error)
            finally:
                call.cancel()  # frees the stream when the caller stops iterating
            time.sleep(delay)

    def wait_for_task(self, uid: int, timeout: float | None = None) -> Task:
        """Blocks until the task is succeeded, failed or canceled and answers it; no polling.

        Raises `TaskTimeoutError` (code `timeout`, also a `TimeoutError`) after `timeout` seconds.
        """
        last = None
        for last in self.watch_task(uid, timeout=timeout):  # noqa: B007 - the last one is the answer
            pass
        return last
