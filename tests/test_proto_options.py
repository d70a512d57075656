"""Every proto names its package for Go and Java, so protoc-gen-go and protoc's java generator work
from the protos as they are (docs/other-languages.md); read from the descriptors the stubs carry."""

from __future__ import annotations

import pytest

from taskhub.v1 import (
    errors_pb2,
    key_service_pb2,
    metrics_service_pb2,
    operations_service_pb2,
    task_pb2,
    task_service_pb2,
    webhook_service_pb2,
    worker_service_pb2,
)

FILES = [
    errors_pb2,
    key_service_pb2,
    metrics_service_pb2,
    operations_service_pb2,
    task_pb2,
    task_service_pb2,
    webhook_service_pb2,
    worker_service_pb2,
]


@pytest.mark.parametrize("module", FILES, ids=lambda m: m.DESCRIPTOR.name)
def test_language_options(module):
    options = module.DESCRIPTOR.GetOptions()
    stem = module.DESCRIPTOR.name.rsplit("/", 1)[-1].removesuffix(".proto")
    assert options.go_package == "github.com/taskhub/taskhub/gen/go/taskhub/v1;taskhubv1"
    assert options.java_package == "io.github.taskhub.v1"
    assert options.java_multiple_files is True
    assert options.java_outer_classname == "".join(w.capitalize() for w in stem.split("_")) + "Proto"
