import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListLeasesRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListLeasesResponse(_message.Message):
    __slots__ = ("leases", "total")
    LEASES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    leases: _containers.RepeatedCompositeFieldContainer[HeldLease]
    total: int
    def __init__(self, leases: _Optional[_Iterable[_Union[HeldLease, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class HeldLease(_message.Message):
    __slots__ = ("worker", "batch_uid", "since", "deadline", "tasks")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    BATCH_UID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    worker: str
    batch_uid: int
    since: _timestamp_pb2.Timestamp
    deadline: _timestamp_pb2.Timestamp
    tasks: _containers.RepeatedCompositeFieldContainer[LeasedTask]
    def __init__(self, worker: _Optional[str] = ..., batch_uid: _Optional[int] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[LeasedTask, _Mapping]]] = ...) -> None: ...

class LeasedTask(_message.Message):
    __slots__ = ("uid", "index_uid", "type_name", "attempts")
    UID_FIELD_NUMBER: _ClassVar[int]
    INDEX_UID_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    uid: int
    index_uid: str
    type_name: str
    attempts: int
    def __init__(self, uid: _Optional[int] = ..., index_uid: _Optional[str] = ..., type_name: _Optional[str] = ..., attempts: _Optional[int] = ...) -> None: ...

class GetActivityRequest(_message.Message):
    __slots__ = ("seconds",)
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    seconds: int
    def __init__(self, seconds: _Optional[int] = ...) -> None: ...

class GetActivityResponse(_message.Message):
    __slots__ = ("since", "succeeded", "failed", "canceled", "indexes")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELED_FIELD_NUMBER: _ClassVar[int]
    INDEXES_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    succeeded: _containers.RepeatedScalarFieldContainer[int]
    failed: _containers.RepeatedScalarFieldContainer[int]
    canceled: _containers.RepeatedScalarFieldContainer[int]
    indexes: _containers.RepeatedCompositeFieldContainer[IndexCounts]
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., succeeded: _Optional[_Iterable[int]] = ..., failed: _Optional[_Iterable[int]] = ..., canceled: _Optional[_Iterable[int]] = ..., indexes: _Optional[_Iterable[_Union[IndexCounts, _Mapping]]] = ...) -> None: ...

class IndexCounts(_message.Message):
    __slots__ = ("index_uid", "enqueued", "processing", "succeeded", "failed", "canceled")
    INDEX_UID_FIELD_NUMBER: _ClassVar[int]
    ENQUEUED_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELED_FIELD_NUMBER: _ClassVar[int]
    index_uid: str
    enqueued: int
    processing: int
    succeeded: int
    failed: int
    canceled: int
    def __init__(self, index_uid: _Optional[str] = ..., enqueued: _Optional[int] = ..., processing: _Optional[int] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., canceled: _Optional[int] = ...) -> None: ...
