"""An example handler module for `taskhub worker examples/handlers.py`.

Each handler gets a `Job` (`job.task`, `job.uid`, `job.index_uid`, `job.details`,
`job.canceled`) and answers the details to report, or None. Raising `TaskFailed`
fails the task with that error; plain functions run in a thread, coroutines on
the worker's event loop.
"""

import time

from taskhub.client.worker import TaskFailed


def add_documents(job):
    received = job.details["receivedDocuments"]
    for _ in range(received):
        if job.canceled.is_set():  # a cancelation stopped the batch: stop early
            return None
        time.sleep(0.01)  # index one document
    return {"indexedDocuments": received}


def create_index(job):
    if job.index_uid.startswith("tmp"):
        raise TaskFailed(f"Index `{job.index_uid}` is reserved.", code="index_reserved")


HANDLERS = {
    "documentAdditionOrUpdate": add_documents,
    "indexCreation": create_index,
}
