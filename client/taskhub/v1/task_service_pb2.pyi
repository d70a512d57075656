import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from taskhub.v1 import batch_pb2 as _batch_pb2
from taskhub.v1 import task_pb2 as _task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListTasksRequest(_message.Message):
    __slots__ = ("filter", "limit", "reverse")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    REVERSE_FIELD_NUMBER: _ClassVar[int]
    filter: _task_pb2.TaskFilter
    limit: int
    reverse: bool
    def __init__(self, filter: _Optional[_Union[_task_pb2.TaskFilter, _Mapping]] = ..., limit: _Optional[int] = ..., reverse: _Optional[bool] = ..., **kwargs) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("results", "total", "limit", "next")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[_task_pb2.Task]
    total: int
    limit: int
    next: int
    def __init__(self, results: _Optional[_Iterable[_Union[_task_pb2.Task, _Mapping]]] = ..., total: _Optional[int] = ..., limit: _Optional[int] = ..., next: _Optional[int] = ..., **kwargs) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("uid",)
    UID_FIELD_NUMBER: _ClassVar[int]
    uid: int
    def __init__(self, uid: _Optional[int] = ...) -> None: ...

class GetTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ...) -> None: ...

class EnqueueTaskRequest(_message.Message):
    __slots__ = ("type", "index_uid", "details", "type_name", "custom_metadata", "run_at", "retry", "idempotency_key")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    INDEX_UID_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_METADATA_FIELD_NUMBER: _ClassVar[int]
    RUN_AT_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    type: _task_pb2.TaskType
    index_uid: str
    details: _task_pb2.TaskDetails
    type_name: str
    custom_metadata: str
    run_at: _timestamp_pb2.Timestamp
    retry: _task_pb2.RetryPolicy
    idempotency_key: str
    def __init__(self, type: _Optional[_Union[_task_pb2.TaskType, str]] = ..., index_uid: _Optional[str] = ..., details: _Optional[_Union[_task_pb2.TaskDetails, _Mapping]] = ..., type_name: _Optional[str] = ..., custom_metadata: _Optional[str] = ..., run_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retry: _Optional[_Union[_task_pb2.RetryPolicy, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class EnqueueTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.TaskSummary
    def __init__(self, task: _Optional[_Union[_task_pb2.TaskSummary, _Mapping]] = ...) -> None: ...

class EnqueueTasksRequest(_message.Message):
    __slots__ = ("tasks", "idempotency_key")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[EnqueueTaskRequest]
    idempotency_key: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[EnqueueTaskRequest, _Mapping]]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class EnqueueTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_task_pb2.TaskSummary]
    def __init__(self, tasks: _Optional[_Iterable[_Union[_task_pb2.TaskSummary, _Mapping]]] = ...) -> None: ...

class CancelTasksRequest(_message.Message):
    __slots__ = ("filter", "original_filter")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: _task_pb2.TaskFilter
    original_filter: str
    def __init__(self, filter: _Optional[_Union[_task_pb2.TaskFilter, _Mapping]] = ..., original_filter: _Optional[str] = ...) -> None: ...

class CancelTasksResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.TaskSummary
    def __init__(self, task: _Optional[_Union[_task_pb2.TaskSummary, _Mapping]] = ...) -> None: ...

class DeleteTasksRequest(_message.Message):
    __slots__ = ("filter", "original_filter")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: _task_pb2.TaskFilter
    original_filter: str
    def __init__(self, filter: _Optional[_Union[_task_pb2.TaskFilter, _Mapping]] = ..., original_filter: _Optional[str] = ...) -> None: ...

class DeleteTasksResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.TaskSummary
    def __init__(self, task: _Optional[_Union[_task_pb2.TaskSummary, _Mapping]] = ...) -> None: ...

class RequeueTasksRequest(_message.Message):
    __slots__ = ("filter",)
    FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: _task_pb2.TaskFilter
    def __init__(self, filter: _Optional[_Union[_task_pb2.TaskFilter, _Mapping]] = ...) -> None: ...

class RequeueTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_task_pb2.Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[_task_pb2.Task, _Mapping]]] = ...) -> None: ...

class WatchTaskRequest(_message.Message):
    __slots__ = ("uid",)
    UID_FIELD_NUMBER: _ClassVar[int]
    uid: int
    def __init__(self, uid: _Optional[int] = ...) -> None: ...

class WatchTaskResponse(_message.Message):
    __slots__ = ("task", "sequence")
    TASK_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    sequence: int
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., sequence: _Optional[int] = ...) -> None: ...

class WatchTasksRequest(_message.Message):
    __slots__ = ("filter", "after")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    filter: _task_pb2.TaskFilter
    after: int
    def __init__(self, filter: _Optional[_Union[_task_pb2.TaskFilter, _Mapping]] = ..., after: _Optional[int] = ...) -> None: ...

class WatchTasksResponse(_message.Message):
    __slots__ = ("sequence", "task", "deleted")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    task: _task_pb2.Task
    deleted: bool
    def __init__(self, sequence: _Optional[int] = ..., task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., deleted: _Optional[bool] = ...) -> None: ...

class GetVersionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetVersionResponse(_message.Message):
    __slots__ = ("commit_sha", "commit_date", "pkg_version")
    COMMIT_SHA_FIELD_NUMBER: _ClassVar[int]
    COMMIT_DATE_FIELD_NUMBER: _ClassVar[int]
    PKG_VERSION_FIELD_NUMBER: _ClassVar[int]
    commit_sha: str
    commit_date: _timestamp_pb2.Timestamp
    pkg_version: str
    def __init__(self, commit_sha: _Optional[str] = ..., commit_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pkg_version: _Optional[str] = ...) -> None: ...

class ListBatchesRequest(_message.Message):
    __slots__ = ("filter", "limit", "reverse")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    REVERSE_FIELD_NUMBER: _ClassVar[int]
    filter: _task_pb2.TaskFilter
    limit: int
    reverse: bool
    def __init__(self, filter: _Optional[_Union[_task_pb2.TaskFilter, _Mapping]] = ..., limit: _Optional[int] = ..., reverse: _Optional[bool] = ..., **kwargs) -> None: ...

class ListBatchesResponse(_message.Message):
    __slots__ = ("results", "total", "limit", "next")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[_batch_pb2.Batch]
    total: int
    limit: int
    next: int
    def __init__(self, results: _Optional[_Iterable[_Union[_batch_pb2.Batch, _Mapping]]] = ..., total: _Optional[int] = ..., limit: _Optional[int] = ..., next: _Optional[int] = ..., **kwargs) -> None: ...

class GetBatchRequest(_message.Message):
    __slots__ = ("uid",)
    UID_FIELD_NUMBER: _ClassVar[int]
    uid: int
    def __init__(self, uid: _Optional[int] = ...) -> None: ...

class GetBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: _batch_pb2.Batch
    def __init__(self, batch: _Optional[_Union[_batch_pb2.Batch, _Mapping]] = ...) -> None: ...
