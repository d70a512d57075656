"""The store thread's executor: one thread, jobs in order, `submit_first` jobs ahead of waiting ones."""

from __future__ import annotations

import threading

import pytest

from taskhub.server.rules.store_thread import StoreThread


def held(executor: StoreThread) -> threading.Event:
    """Occupies the thread until the answered event is set; returns once the hold has begun."""
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    executor.submit(hold)
    assert started.wait(10)
    return release


def test_jobs_run_in_order_with_first_ones_ahead_of_waiting_ones():
    executor = StoreThread("test-store")
    ran: list[str] = []
    release = held(executor)
    futures = [
        executor.submit(ran.append, "a"),
        executor.submit(ran.append, "b"),
        executor.submit_first(ran.append, "first-1"),
        executor.submit_first(ran.append, "first-2"),
    ]
    release.set()
    for future in futures:
        future.result(10)
    assert ran == ["first-1", "first-2", "a", "b"]
    executor.shutdown()


def test_results_and_errors_reach_the_caller_on_one_thread():
    executor = StoreThread("test-store")
    assert executor.submit(lambda: threading.current_thread().name).result(10) == "test-store"
    assert executor.submit_first(sum, [1, 2, 3]).result(10) == 6
    with pytest.raises(ZeroDivisionError):
        executor.submit(lambda: 1 / 0).result(10)
    assert executor.submit(str, 5).result(10) == "5"  # an error does not end the thread
    executor.shutdown()


def test_shutdown_runs_what_was_submitted_then_refuses_more():
    executor = StoreThread("test-store")
    ran: list[int] = []
    release = held(executor)
    futures = [executor.submit(ran.append, n) for n in range(3)]
    threading.Timer(0.05, release.set).start()
    executor.shutdown(wait=True)
    assert ran == [0, 1, 2] and all(f.done() for f in futures)
    with pytest.raises(RuntimeError):
        executor.submit(ran.append, 3)


def test_shutdown_can_cancel_what_waits():
    executor = StoreThread("test-store")
    release = held(executor)
    waiting = [executor.submit(print, "never"), executor.submit_first(print, "never either")]
    executor.shutdown(wait=False, cancel_futures=True)
    release.set()
    executor._thread.join(10)
    assert all(f.cancelled() for f in waiting) and not executor._thread.is_alive()


def test_a_canceled_job_is_skipped():
    executor = StoreThread("test-store")
    ran: list[str] = []
    release = held(executor)
    skipped = executor.submit(ran.append, "skipped")
    kept = executor.submit(ran.append, "kept")
    assert skipped.cancel()
    release.set()
    kept.result(10)
    assert ran == ["kept"]
    executor.shutdown()
