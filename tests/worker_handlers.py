"""Handlers for worker subprocess tests: each run is logged as a JSON line, with a configurable pause."""

from __future__ import annotations

import json
import os
import time


def _log(job, event: str) -> None:
    line = json.dumps(
        {"uid": job.uid, "index": job.index_uid, "pid": os.getpid(), "event": event, "at": time.monotonic()}
    )
    # One write per line with O_APPEND: lines from several processes never interleave.
    fd = os.open(os.environ["TASKHUB_TEST_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def documents(job):
    _log(job, "start")
    time.sleep(float(os.environ.get("TASKHUB_TEST_SLEEP", "0.02")))
    _log(job, "end")
    return {"indexedDocuments": job.details["receivedDocuments"]}


def create_index(job):
    _log(job, "start")
    time.sleep(float(os.environ.get("TASKHUB_TEST_SLEEP", "0.02")))
    _log(job, "end")


HANDLERS = {"documentAdditionOrUpdate": documents, "indexCreation": create_index}
