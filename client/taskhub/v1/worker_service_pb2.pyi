import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from taskhub.v1 import batch_pb2 as _batch_pb2
from taskhub.v1 import errors_pb2 as _errors_pb2
from taskhub.v1 import task_pb2 as _task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LeaseTasksRequest(_message.Message):
    __slots__ = ("worker", "types", "index_uids", "wait", "lease_duration", "max_tasks")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    INDEX_UIDS_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    MAX_TASKS_FIELD_NUMBER: _ClassVar[int]
    worker: str
    types: _task_pb2.TypeSet
    index_uids: _task_pb2.IndexUidSet
    wait: _duration_pb2.Duration
    lease_duration: _duration_pb2.Duration
    max_tasks: int
    def __init__(self, worker: _Optional[str] = ..., types: _Optional[_Union[_task_pb2.TypeSet, _Mapping]] = ..., index_uids: _Optional[_Union[_task_pb2.IndexUidSet, _Mapping]] = ..., wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., lease_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_tasks: _Optional[int] = ...) -> None: ...

class LeaseTasksResponse(_message.Message):
    __slots__ = ("lease", "tasks")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    lease: Lease
    tasks: _containers.RepeatedCompositeFieldContainer[_task_pb2.Task]
    def __init__(self, lease: _Optional[_Union[Lease, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[_task_pb2.Task, _Mapping]]] = ...) -> None: ...

class Lease(_message.Message):
    __slots__ = ("token", "deadline", "batch_uid")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    BATCH_UID_FIELD_NUMBER: _ClassVar[int]
    token: str
    deadline: _timestamp_pb2.Timestamp
    batch_uid: int
    def __init__(self, token: _Optional[str] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., batch_uid: _Optional[int] = ...) -> None: ...

class RenewLeaseRequest(_message.Message):
    __slots__ = ("token", "lease_duration", "progress")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    token: str
    lease_duration: _duration_pb2.Duration
    progress: _batch_pb2.BatchProgress
    def __init__(self, token: _Optional[str] = ..., lease_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., progress: _Optional[_Union[_batch_pb2.BatchProgress, _Mapping]] = ...) -> None: ...

class RenewLeaseResponse(_message.Message):
    __slots__ = ("deadline", "canceled")
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    CANCELED_FIELD_NUMBER: _ClassVar[int]
    deadline: _timestamp_pb2.Timestamp
    canceled: bool
    def __init__(self, deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., canceled: _Optional[bool] = ...) -> None: ...

class TaskOutcome(_message.Message):
    __slots__ = ("uid", "details", "error", "retryable", "retry_after")
    UID_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    uid: int
    details: _task_pb2.TaskDetails
    error: _errors_pb2.TaskError
    retryable: bool
    retry_after: _duration_pb2.Duration
    def __init__(self, uid: _Optional[int] = ..., details: _Optional[_Union[_task_pb2.TaskDetails, _Mapping]] = ..., error: _Optional[_Union[_errors_pb2.TaskError, _Mapping]] = ..., retryable: _Optional[bool] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class CompleteTasksRequest(_message.Message):
    __slots__ = ("token", "outcomes")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    token: str
    outcomes: _containers.RepeatedCompositeFieldContainer[TaskOutcome]
    def __init__(self, token: _Optional[str] = ..., outcomes: _Optional[_Iterable[_Union[TaskOutcome, _Mapping]]] = ...) -> None: ...

class CompleteTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_task_pb2.Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[_task_pb2.Task, _Mapping]]] = ...) -> None: ...

class ReleaseLeaseRequest(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class ReleaseLeaseResponse(_message.Message):
    __slots__ = ("released_tasks",)
    RELEASED_TASKS_FIELD_NUMBER: _ClassVar[int]
    released_tasks: int
    def __init__(self, released_tasks: _Optional[int] = ...) -> None: ...
