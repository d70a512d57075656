"""The taskhub client: `TaskHubClient` (blocking) and `AsyncTaskHubClient` (asyncio) over gRPC.

Results are typed (`Task`, `TaskSummary`, `TaskPage`, `TaskChange`, `ApiKey`, `KeyPage`, `Webhook`, `ServerVersion`);
failures are `TaskHubError` with the public code (`task_not_found`, `unavailable`,
`timeout`, ...). This package speaks gRPC only and never imports `taskhub.server`.
"""

from taskhub.client.aio import AsyncTaskHubClient
from taskhub.client.calls import NO_RETRY, RetryPolicy, TaskTimeoutError
from taskhub.client.filters import TaskFilter
from taskhub.client.keys import ApiKey, KeyPage
from taskhub.client.models import (
    ServerVersion,
    Task,
    TaskChange,
    TaskError,
    TaskPage,
    TaskStatus,
    TaskSummary,
    TaskType,
)
from taskhub.client.sync import TaskHubClient
from taskhub.client.webhooks import Webhook
from taskhub.errors import TaskHubError

__all__ = [
    "ApiKey",
    "AsyncTaskHubClient",
    "KeyPage",
    "NO_RETRY",
    "RetryPolicy",
    "ServerVersion",
    "Task",
    "TaskChange",
    "TaskError",
    "TaskFilter",
    "TaskHubClient",
    "TaskHubError",
    "TaskPage",
    "TaskStatus",
    "TaskSummary",
    "TaskTimeoutError",
    "TaskType",
    "Webhook",
]
