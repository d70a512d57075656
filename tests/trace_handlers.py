"""Handlers for the trace test's worker: each runs within the span the worker starts for it."""

from __future__ import annotations

from opentelemetry import trace


def documents(job):
    # A span of the handler's own: it must land under the worker's span for the task.
    with trace.get_tracer("trace-handlers").start_as_current_span("index the documents"):
        return {"indexedDocuments": job.details["receivedDocuments"]}


HANDLERS = {"documentAdditionOrUpdate": documents}
