"""Handlers for the retry subprocess test: one that needs a third try, one that never makes it."""

from __future__ import annotations

from taskhub.client.worker import Retry, TaskFailed


def documents(job):
    # The worker sees the attempts that failed so far: two tries fail, the third succeeds.
    if (job.task.attempts or 0) < 2:
        raise Retry("the search engine is warming up", after=0.2)
    return {"indexedDocuments": job.details["receivedDocuments"]}


def create_index(job):
    raise TaskFailed(f"disk busy (attempt {(job.task.attempts or 0) + 1})", code="disk_busy", retry=True)


HANDLERS = {"documentAdditionOrUpdate": documents, "indexCreation": create_index}
