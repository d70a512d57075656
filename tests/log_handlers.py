"""Handlers for the log tests' worker: `receivedDocuments` picks what the handler does."""

from __future__ import annotations

import time

from taskhub.client.worker import TaskFailed

FAIL, HANG = 13, 99


def documents(job):
    received = job.details["receivedDocuments"]
    if received == FAIL:
        raise TaskFailed("the documents could not be read", code="unreadable_documents")
    if received == HANG:
        time.sleep(600)  # until the test kills the worker
    return {"indexedDocuments": received}


def settings(job):
    raise TaskFailed("the settings store is busy", code="settings_busy", retry=True)


# No handler for indexCreation: the worker warns that such tasks wait.
HANDLERS = {"documentAdditionOrUpdate": documents, "settingsUpdate": settings}
