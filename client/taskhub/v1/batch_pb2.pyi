import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from taskhub.v1 import task_pb2 as _task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LeaseState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEASE_STATE_UNSPECIFIED: _ClassVar[LeaseState]
    LEASE_STATE_ACTIVE: _ClassVar[LeaseState]
    LEASE_STATE_COMPLETED: _ClassVar[LeaseState]
    LEASE_STATE_EXPIRED: _ClassVar[LeaseState]
    LEASE_STATE_RELEASED: _ClassVar[LeaseState]
    LEASE_STATE_CANCELED: _ClassVar[LeaseState]
    LEASE_STATE_LOST: _ClassVar[LeaseState]
LEASE_STATE_UNSPECIFIED: LeaseState
LEASE_STATE_ACTIVE: LeaseState
LEASE_STATE_COMPLETED: LeaseState
LEASE_STATE_EXPIRED: LeaseState
LEASE_STATE_RELEASED: LeaseState
LEASE_STATE_CANCELED: LeaseState
LEASE_STATE_LOST: LeaseState

class Batch(_message.Message):
    __slots__ = ("uid", "progress", "details_json", "stats", "duration", "started_at", "finished_at", "batch_strategy", "lease")
    UID_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    BATCH_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    uid: int
    progress: BatchProgress
    details_json: str
    stats: BatchStats
    duration: _duration_pb2.Duration
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    batch_strategy: str
    lease: BatchLease
    def __init__(self, uid: _Optional[int] = ..., progress: _Optional[_Union[BatchProgress, _Mapping]] = ..., details_json: _Optional[str] = ..., stats: _Optional[_Union[BatchStats, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., batch_strategy: _Optional[str] = ..., lease: _Optional[_Union[BatchLease, _Mapping]] = ...) -> None: ...

class BatchLease(_message.Message):
    __slots__ = ("worker", "state")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    worker: str
    state: LeaseState
    def __init__(self, worker: _Optional[str] = ..., state: _Optional[_Union[LeaseState, str]] = ...) -> None: ...

class BatchProgress(_message.Message):
    __slots__ = ("steps", "percentage")
    STEPS_FIELD_NUMBER: _ClassVar[int]
    PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    steps: _containers.RepeatedCompositeFieldContainer[BatchProgressStep]
    percentage: float
    def __init__(self, steps: _Optional[_Iterable[_Union[BatchProgressStep, _Mapping]]] = ..., percentage: _Optional[float] = ...) -> None: ...

class BatchProgressStep(_message.Message):
    __slots__ = ("current_step", "finished", "total")
    CURRENT_STEP_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    current_step: str
    finished: int
    total: int
    def __init__(self, current_step: _Optional[str] = ..., finished: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class BatchStats(_message.Message):
    __slots__ = ("total_nb_tasks", "status", "types", "index_uids")
    class IndexUidsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TOTAL_NB_TASKS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    INDEX_UIDS_FIELD_NUMBER: _ClassVar[int]
    total_nb_tasks: int
    status: _containers.RepeatedCompositeFieldContainer[StatusCount]
    types: _containers.RepeatedCompositeFieldContainer[TypeCount]
    index_uids: _containers.ScalarMap[str, int]
    def __init__(self, total_nb_tasks: _Optional[int] = ..., status: _Optional[_Iterable[_Union[StatusCount, _Mapping]]] = ..., types: _Optional[_Iterable[_Union[TypeCount, _Mapping]]] = ..., index_uids: _Optional[_Mapping[str, int]] = ...) -> None: ...

class StatusCount(_message.Message):
    __slots__ = ("status", "count")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    status: _task_pb2.TaskStatus
    count: int
    def __init__(self, status: _Optional[_Union[_task_pb2.TaskStatus, str]] = ..., count: _Optional[int] = ...) -> None: ...

class TypeCount(_message.Message):
    __slots__ = ("type", "count", "type_name")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    type: _task_pb2.TaskType
    count: int
    type_name: str
    def __init__(self, type: _Optional[_Union[_task_pb2.TaskType, str]] = ..., count: _Optional[int] = ..., type_name: _Optional[str] = ...) -> None: ...
