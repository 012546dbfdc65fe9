"""A pool whose idle threads end (closing what they hold) and come back with work."""
from __future__ import annotations

import threading

import pytest

from base.idlepool import IdlePool
from base.waiting import wait_until


def test_work_runs_in_parallel_and_results_come_back_in_order():
    both = threading.Barrier(2, timeout=5)

    def meet(n):
        both.wait()          # passes only if two run at once
        return n * n
    pool = IdlePool(4, "t", idle=5.0)
    try:
        assert pool.map(meet, [3, 4]) == [9, 16]
        assert pool.threads <= 4
    finally:
        pool.shutdown()


def test_idle_threads_end_then_work_starts_them_again():
    pool = IdlePool(3, "t", idle=0.2)
    barrier = threading.Barrier(3, timeout=5)
    workers = pool.map(lambda _: (barrier.wait(), threading.current_thread())[1], range(3))
    assert pool.threads == 3 and len(set(workers)) == 3
    wait_until("idle threads gone", lambda: pool.threads == 0, timeout=5)
    assert not any(worker.is_alive() for worker in workers)
    [(answer, again)] = pool.map(lambda n: (n + 1, threading.current_thread()), [1])
    assert answer == 2 and again not in workers
    wait_until("gone again", lambda: pool.threads == 0, timeout=5)
    wait_until("its thread ended", lambda: not again.is_alive(), timeout=5)
    pool.shutdown()


def test_an_exception_reaches_the_caller_and_the_pool_goes_on():
    pool = IdlePool(2, "t", idle=5.0)

    def fail(n):
        raise ValueError(f"bad {n}")
    with pytest.raises(ValueError, match="bad 1"):
        pool.map(fail, [1])
    assert pool.map(str, [5]) == ["5"]
    pool.shutdown()


def test_shutdown_cancels_what_has_not_started_and_refuses_more():
    gate = threading.Event()
    pool = IdlePool(1, "t", idle=5.0)
    running = pool.submit(gate.wait, 5)
    queued = pool.submit(str, 1)
    wait_until("the first started", running.running)
    pool.shutdown()
    gate.set()
    assert running.result(5) is True and queued.cancelled()
    with pytest.raises(RuntimeError):
        pool.submit(str, 2)
    wait_until("its thread ended", lambda: pool.threads == 0, timeout=5)
