from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class TaskError(_message.Message):
    __slots__ = ("message", "code", "type", "link")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    LINK_FIELD_NUMBER: _ClassVar[int]
    message: str
    code: str
    type: str
    link: str
    def __init__(self, message: _Optional[str] = ..., code: _Optional[str] = ..., type: _Optional[str] = ..., link: _Optional[str] = ...) -> None: ...
