import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from taskhub.v1 import errors_pb2 as _errors_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATUS_UNSPECIFIED: _ClassVar[TaskStatus]
    TASK_STATUS_ENQUEUED: _ClassVar[TaskStatus]
    TASK_STATUS_PROCESSING: _ClassVar[TaskStatus]
    TASK_STATUS_SUCCEEDED: _ClassVar[TaskStatus]
    TASK_STATUS_FAILED: _ClassVar[TaskStatus]
    TASK_STATUS_CANCELED: _ClassVar[TaskStatus]

class TaskType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_TYPE_UNSPECIFIED: _ClassVar[TaskType]
    TASK_TYPE_INDEX_CREATION: _ClassVar[TaskType]
    TASK_TYPE_INDEX_UPDATE: _ClassVar[TaskType]
    TASK_TYPE_INDEX_DELETION: _ClassVar[TaskType]
    TASK_TYPE_INDEX_SWAP: _ClassVar[TaskType]
    TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE: _ClassVar[TaskType]
    TASK_TYPE_DOCUMENT_DELETION: _ClassVar[TaskType]
    TASK_TYPE_SETTINGS_UPDATE: _ClassVar[TaskType]
    TASK_TYPE_DUMP_CREATION: _ClassVar[TaskType]
    TASK_TYPE_TASK_CANCELATION: _ClassVar[TaskType]
    TASK_TYPE_TASK_DELETION: _ClassVar[TaskType]
    TASK_TYPE_SNAPSHOT_CREATION: _ClassVar[TaskType]
TASK_STATUS_UNSPECIFIED: TaskStatus
TASK_STATUS_ENQUEUED: TaskStatus
TASK_STATUS_PROCESSING: TaskStatus
TASK_STATUS_SUCCEEDED: TaskStatus
TASK_STATUS_FAILED: TaskStatus
TASK_STATUS_CANCELED: TaskStatus
TASK_TYPE_UNSPECIFIED: TaskType
TASK_TYPE_INDEX_CREATION: TaskType
TASK_TYPE_INDEX_UPDATE: TaskType
TASK_TYPE_INDEX_DELETION: TaskType
TASK_TYPE_INDEX_SWAP: TaskType
TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE: TaskType
TASK_TYPE_DOCUMENT_DELETION: TaskType
TASK_TYPE_SETTINGS_UPDATE: TaskType
TASK_TYPE_DUMP_CREATION: TaskType
TASK_TYPE_TASK_CANCELATION: TaskType
TASK_TYPE_TASK_DELETION: TaskType
TASK_TYPE_SNAPSHOT_CREATION: TaskType

class Task(_message.Message):
    __slots__ = ("uid", "index_uid", "status", "type", "canceled_by", "details", "error", "duration", "enqueued_at", "started_at", "finished_at", "batch_uid", "type_name", "custom_metadata", "run_at", "attempts", "last_error", "requeued_from", "trace_context", "worker")
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    UID_FIELD_NUMBER: _ClassVar[int]
    INDEX_UID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CANCELED_BY_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    ENQUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    BATCH_UID_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_METADATA_FIELD_NUMBER: _ClassVar[int]
    RUN_AT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    REQUEUED_FROM_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    uid: int
    index_uid: str
    status: TaskStatus
    type: TaskType
    canceled_by: int
    details: TaskDetails
    error: _errors_pb2.TaskError
    duration: _duration_pb2.Duration
    enqueued_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    batch_uid: int
    type_name: str
    custom_metadata: str
    run_at: _timestamp_pb2.Timestamp
    attempts: int
    last_error: _errors_pb2.TaskError
    requeued_from: int
    trace_context: _containers.ScalarMap[str, str]
    worker: str
    def __init__(self, uid: _Optional[int] = ..., index_uid: _Optional[str] = ..., status: _Optional[_Union[TaskStatus, str]] = ..., type: _Optional[_Union[TaskType, str]] = ..., canceled_by: _Optional[int] = ..., details: _Optional[_Union[TaskDetails, _Mapping]] = ..., error: _Optional[_Union[_errors_pb2.TaskError, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., enqueued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., batch_uid: _Optional[int] = ..., type_name: _Optional[str] = ..., custom_metadata: _Optional[str] = ..., run_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempts: _Optional[int] = ..., last_error: _Optional[_Union[_errors_pb2.TaskError, _Mapping]] = ..., requeued_from: _Optional[int] = ..., trace_context: _Optional[_Mapping[str, str]] = ..., worker: _Optional[str] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("attempts", "initial_delay", "max_delay", "multiplier", "jitter")
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_DELAY_FIELD_NUMBER: _ClassVar[int]
    MAX_DELAY_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    attempts: int
    initial_delay: _duration_pb2.Duration
    max_delay: _duration_pb2.Duration
    multiplier: float
    jitter: float
    def __init__(self, attempts: _Optional[int] = ..., initial_delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., multiplier: _Optional[float] = ..., jitter: _Optional[float] = ...) -> None: ...

class TaskSummary(_message.Message):
    __slots__ = ("task_uid", "index_uid", "status", "type", "enqueued_at", "type_name")
    TASK_UID_FIELD_NUMBER: _ClassVar[int]
    INDEX_UID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ENQUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    task_uid: int
    index_uid: str
    status: TaskStatus
    type: TaskType
    enqueued_at: _timestamp_pb2.Timestamp
    type_name: str
    def __init__(self, task_uid: _Optional[int] = ..., index_uid: _Optional[str] = ..., status: _Optional[_Union[TaskStatus, str]] = ..., type: _Optional[_Union[TaskType, str]] = ..., enqueued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., type_name: _Optional[str] = ...) -> None: ...

class TaskDetails(_message.Message):
    __slots__ = ("document_addition_or_update", "document_deletion", "index_creation", "index_update", "index_deletion", "index_swap", "settings_update", "dump_creation", "task_cancelation", "task_deletion", "custom_json")
    DOCUMENT_ADDITION_OR_UPDATE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_DELETION_FIELD_NUMBER: _ClassVar[int]
    INDEX_CREATION_FIELD_NUMBER: _ClassVar[int]
    INDEX_UPDATE_FIELD_NUMBER: _ClassVar[int]
    INDEX_DELETION_FIELD_NUMBER: _ClassVar[int]
    INDEX_SWAP_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_UPDATE_FIELD_NUMBER: _ClassVar[int]
    DUMP_CREATION_FIELD_NUMBER: _ClassVar[int]
    TASK_CANCELATION_FIELD_NUMBER: _ClassVar[int]
    TASK_DELETION_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_JSON_FIELD_NUMBER: _ClassVar[int]
    document_addition_or_update: DocumentAdditionOrUpdateDetails
    document_deletion: DocumentDeletionDetails
    index_creation: IndexDetails
    index_update: IndexDetails
    index_deletion: IndexDeletionDetails
    index_swap: IndexSwapDetails
    settings_update: SettingsUpdateDetails
    dump_creation: DumpCreationDetails
    task_cancelation: TaskCancelationDetails
    task_deletion: TaskDeletionDetails
    custom_json: str
    def __init__(self, document_addition_or_update: _Optional[_Union[DocumentAdditionOrUpdateDetails, _Mapping]] = ..., document_deletion: _Optional[_Union[DocumentDeletionDetails, _Mapping]] = ..., index_creation: _Optional[_Union[IndexDetails, _Mapping]] = ..., index_update: _Optional[_Union[IndexDetails, _Mapping]] = ..., index_deletion: _Optional[_Union[IndexDeletionDetails, _Mapping]] = ..., index_swap: _Optional[_Union[IndexSwapDetails, _Mapping]] = ..., settings_update: _Optional[_Union[SettingsUpdateDetails, _Mapping]] = ..., dump_creation: _Optional[_Union[DumpCreationDetails, _Mapping]] = ..., task_cancelation: _Optional[_Union[TaskCancelationDetails, _Mapping]] = ..., task_deletion: _Optional[_Union[TaskDeletionDetails, _Mapping]] = ..., custom_json: _Optional[str] = ...) -> None: ...

class DocumentAdditionOrUpdateDetails(_message.Message):
    __slots__ = ("received_documents", "indexed_documents")
    RECEIVED_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    INDEXED_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    received_documents: int
    indexed_documents: int
    def __init__(self, received_documents: _Optional[int] = ..., indexed_documents: _Optional[int] = ...) -> None: ...

class DocumentDeletionDetails(_message.Message):
    __slots__ = ("provided_ids", "deleted_documents", "original_filter")
    PROVIDED_IDS_FIELD_NUMBER: _ClassVar[int]
    DELETED_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FILTER_FIELD_NUMBER: _ClassVar[int]
    provided_ids: int
    deleted_documents: int
    original_filter: str
    def __init__(self, provided_ids: _Optional[int] = ..., deleted_documents: _Optional[int] = ..., original_filter: _Optional[str] = ...) -> None: ...

class IndexDetails(_message.Message):
    __slots__ = ("primary_key",)
    PRIMARY_KEY_FIELD_NUMBER: _ClassVar[int]
    primary_key: str
    def __init__(self, primary_key: _Optional[str] = ...) -> None: ...

class IndexDeletionDetails(_message.Message):
    __slots__ = ("deleted_documents",)
    DELETED_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    deleted_documents: int
    def __init__(self, deleted_documents: _Optional[int] = ...) -> None: ...

class IndexSwapDetails(_message.Message):
    __slots__ = ("swaps",)
    SWAPS_FIELD_NUMBER: _ClassVar[int]
    swaps: _containers.RepeatedCompositeFieldContainer[IndexSwap]
    def __init__(self, swaps: _Optional[_Iterable[_Union[IndexSwap, _Mapping]]] = ...) -> None: ...

class IndexSwap(_message.Message):
    __slots__ = ("indexes",)
    INDEXES_FIELD_NUMBER: _ClassVar[int]
    indexes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, indexes: _Optional[_Iterable[str]] = ...) -> None: ...

class SettingsUpdateDetails(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: _struct_pb2.Struct
    def __init__(self, settings: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class DumpCreationDetails(_message.Message):
    __slots__ = ("dump_uid",)
    DUMP_UID_FIELD_NUMBER: _ClassVar[int]
    dump_uid: str
    def __init__(self, dump_uid: _Optional[str] = ...) -> None: ...

class TaskCancelationDetails(_message.Message):
    __slots__ = ("matched_tasks", "canceled_tasks", "original_filter")
    MATCHED_TASKS_FIELD_NUMBER: _ClassVar[int]
    CANCELED_TASKS_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FILTER_FIELD_NUMBER: _ClassVar[int]
    matched_tasks: int
    canceled_tasks: int
    original_filter: str
    def __init__(self, matched_tasks: _Optional[int] = ..., canceled_tasks: _Optional[int] = ..., original_filter: _Optional[str] = ...) -> None: ...

class TaskDeletionDetails(_message.Message):
    __slots__ = ("matched_tasks", "deleted_tasks", "original_filter")
    MATCHED_TASKS_FIELD_NUMBER: _ClassVar[int]
    DELETED_TASKS_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FILTER_FIELD_NUMBER: _ClassVar[int]
    matched_tasks: int
    deleted_tasks: int
    original_filter: str
    def __init__(self, matched_tasks: _Optional[int] = ..., deleted_tasks: _Optional[int] = ..., original_filter: _Optional[str] = ...) -> None: ...

class TaskFilter(_message.Message):
    __slots__ = ("uids", "index_uids", "statuses", "types", "canceled_by", "before_enqueued_at", "after_enqueued_at", "before_started_at", "after_started_at", "before_finished_at", "after_finished_at", "batch_uids")
    UIDS_FIELD_NUMBER: _ClassVar[int]
    INDEX_UIDS_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    CANCELED_BY_FIELD_NUMBER: _ClassVar[int]
    BEFORE_ENQUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    AFTER_ENQUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    AFTER_STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    BATCH_UIDS_FIELD_NUMBER: _ClassVar[int]
    uids: UidSet
    index_uids: IndexUidSet
    statuses: StatusSet
    types: TypeSet
    canceled_by: UidSet
    before_enqueued_at: _timestamp_pb2.Timestamp
    after_enqueued_at: _timestamp_pb2.Timestamp
    before_started_at: _timestamp_pb2.Timestamp
    after_started_at: _timestamp_pb2.Timestamp
    before_finished_at: _timestamp_pb2.Timestamp
    after_finished_at: _timestamp_pb2.Timestamp
    batch_uids: UidSet
    def __init__(self, uids: _Optional[_Union[UidSet, _Mapping]] = ..., index_uids: _Optional[_Union[IndexUidSet, _Mapping]] = ..., statuses: _Optional[_Union[StatusSet, _Mapping]] = ..., types: _Optional[_Union[TypeSet, _Mapping]] = ..., canceled_by: _Optional[_Union[UidSet, _Mapping]] = ..., before_enqueued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., after_enqueued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., before_started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., after_started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., before_finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., after_finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., batch_uids: _Optional[_Union[UidSet, _Mapping]] = ...) -> None: ...

class UidSet(_message.Message):
    __slots__ = ("uids",)
    UIDS_FIELD_NUMBER: _ClassVar[int]
    uids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, uids: _Optional[_Iterable[int]] = ...) -> None: ...

class IndexUidSet(_message.Message):
    __slots__ = ("index_uids",)
    INDEX_UIDS_FIELD_NUMBER: _ClassVar[int]
    index_uids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, index_uids: _Optional[_Iterable[str]] = ...) -> None: ...

class StatusSet(_message.Message):
    __slots__ = ("statuses",)
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedScalarFieldContainer[TaskStatus]
    def __init__(self, statuses: _Optional[_Iterable[_Union[TaskStatus, str]]] = ...) -> None: ...

class TypeSet(_message.Message):
    __slots__ = ("types", "type_names")
    TYPES_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAMES_FIELD_NUMBER: _ClassVar[int]
    types: _containers.RepeatedScalarFieldContainer[TaskType]
    type_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, types: _Optional[_Iterable[_Union[TaskType, str]]] = ..., type_names: _Optional[_Iterable[str]] = ...) -> None: ...
