"""Beat on celery-redbeat: one beat sends the periodic tasks, a second stands by and takes over after a SIGKILL.

On a Redis of its own (tests/workers/conftest.py), so no other beat holds the lock.
"""
from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from tests.helpers import wait_for
from tests.workers.stack import start_beat

pytestmark = pytest.mark.slow


def beat_log(env: dict, name: str) -> str:
    path = os.path.join(env["FB_DATA_DIR"], f"{name}.log")
    return open(path, errors="replace").read() if os.path.exists(path) else ""


def test_a_second_beat_stands_by_and_takes_over_when_the_first_is_killed(fault_env):
    env = fault_env["env"]
    client = redis.Redis.from_url(env["REDIS_URL"])
    # Given a beat sending the periodic tasks
    first = start_beat(env, "beat-a")
    second = None
    try:
        wait_for(lambda: "Acquired lock" in beat_log(env, "beat-a"), 60, "the first beat to take the lock")
        # When a second beat starts on the same broker / Then it waits, sending nothing, without exiting
        second = start_beat(env, "beat-b")
        time.sleep(5)
        assert second.poll() is None and "Acquired lock" not in beat_log(env, "beat-b")
        # When the first is SIGKILLed (it releases nothing)
        killed = time.monotonic()
        os.kill(first.pid, signal.SIGKILL)
        # Then the second takes the lock within the lock timeout and the periodic tasks go on
        wait_for(lambda: "Acquired lock" in beat_log(env, "beat-b"), 60, "the stand-by to take over")
        took = time.monotonic() - killed
        assert took <= 15 + 5, took
        llen = client.llen("control")
        wait_for(lambda: client.llen("control") > llen or "Sending due task" in beat_log(env, "beat-b"), 30,
                 "the stand-by to send a periodic task")
        print(f"\nbeat fail-over: the stand-by took over {took:.1f} s after the SIGKILL (lock timeout 15 s)")
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)


def test_a_stopped_beat_releases_its_lock_so_a_new_one_starts_at_once(fault_env):
    env = fault_env["env"]
    # Given a beat stopped cleanly (as `fashion-batch down` stops it)
    first = start_beat(env, "beat-c")
    wait_for(lambda: "Acquired lock" in beat_log(env, "beat-c"), 60, "the beat to take the lock")
    first.terminate()
    first.wait(30)
    # When a new beat starts right away / Then it takes the lock at once (no stale lock to wait out)
    started = time.monotonic()
    again = start_beat(env, "beat-d")
    try:
        wait_for(lambda: "Acquired lock" in beat_log(env, "beat-d"), 60, "the new beat to take the lock")
        assert time.monotonic() - started < 10
    finally:
        again.terminate()
        again.wait(30)
