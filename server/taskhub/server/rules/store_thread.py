"""The store's one writing thread: an executor with two lanes, group commits ahead of the rest.

Producers wait on group commits (an enqueue is answered once it is durable), while leases,
reports and other writes are waited on by far fewer callers. Letting a waiting commit go
first cuts the producers' round trip and so raises end-to-end throughput (bench/README.md,
Defaults chosen by measurement). Nothing starves: the scheduler keeps at most one
group commit queued or running, so between two of them the other lane always gets a turn.
The first lane also takes the few short reads that must keep their order with commits
(`Scheduler.call_in_commit_order`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# A job as queued: its future, the function, and the arguments to call it with.
_Job = tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class StoreThread(concurrent.futures.Executor):
    """One thread running jobs in order, except that `submit_first` jobs go before any waiting `submit` job."""

    def __init__(self, name: str) -> None:
        self._first: collections.deque[_Job] = collections.deque()
        self._rest: collections.deque[_Job] = collections.deque()
        self._ready = threading.Condition()
        self._closed = False
        # A daemon: a server that dies without `shutdown` must still exit. Every write is one
        # SQLite transaction, so one cut short is rolled back, as after a crash.
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> concurrent.futures.Future[T]:
        return self._put(self._rest, fn, args, kwargs)

    def submit_first(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> concurrent.futures.Future[T]:
        """Like `submit`, but the job runs as soon as the one running now ends."""
        return self._put(self._first, fn, args, kwargs)

    @property
    def pending(self) -> int:
        """Jobs waiting to run (read without the lock: a gauge, not a decision)."""
        return len(self._first) + len(self._rest)

    def _put(
        self,
        lane: collections.deque[_Job],
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            lane.append((future, fn, args, kwargs))
            self._ready.notify()
        return future

    def _work(self) -> None:
        while True:
            with self._ready:
                while not (self._first or self._rest or self._closed):
                    self._ready.wait()
                if not (self._first or self._rest):
                    return  # closed, and everything submitted has run
                future, fn, args, kwargs = (self._first or self._rest).popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as error:  # as ThreadPoolExecutor: the caller gets it
                future.set_exception(error)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new jobs; those already submitted still run (or are canceled); `wait` joins the thread."""
        with self._ready:
            self._closed = True
            if cancel_futures:
                for lane in (self._first, self._rest):
                    while lane:
                        lane.popleft()[0].cancel()
            self._ready.notify()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()
