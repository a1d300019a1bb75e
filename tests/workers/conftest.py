"""Fixtures for the worker tests that run real processes on a Redis of their own: a worker, beat, the web app.

The Redis is theirs (so restarting it disturbs no other test), with short timeouts and the ONNX backend only
(so a killed pool process is replaced quickly).
"""
from __future__ import annotations

import pytest

from pipeline.settings import load_settings
from pipeline.tools.services import EmbeddedRedis
from tests.conftest import serve
from tests.helpers import WorkerProcess
from tests.workers.stack import start_beat


@pytest.fixture(scope="module")
def fault_env(env, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    redis = EmbeddedRedis(root / "redis")
    fenv = {
        **env,
        "REDIS_URL": redis.start(detached=True),
        "FB_DATA_DIR": str(root),
        "FB_STORAGE_DIR": str(root / "storage"),
        "FB_CPU_BACKENDS": "onnx",
        "FB_DEFAULT_BACKEND": "onnx",
        "FB_CHUNK_SIZE": "50",
        "FB_FIRST_CHUNK_SIZE": "10",
        "FB_TASK_TIME_LIMIT_S": "20",
        "FB_VISIBILITY_TIMEOUT_S": "30",
        "FB_LEASE_S": "6",
        "FB_ITEM_TIME_LIMIT_S": "2",
        "FB_STORAGE_RETRY_S": "2",
        "FB_DISPATCH_EVERY_S": "1",
        "FB_DRAIN_BUDGET_S": "10",
        "FB_RECONCILE_EVERY_S": "2",
        "FB_MAX_CHUNK_ATTEMPTS": "2",
    }
    yield {"env": fenv, "redis": redis}
    redis.stop()


@pytest.fixture(scope="module")
def fault_url(fault_env):
    from webhook import create_app

    yield from serve(create_app(load_settings(fault_env["env"])))


@pytest.fixture()
def beat(fault_env):
    # One per test: beat exits when Redis restarts under it (the launcher and compose start it again), and since
    # leases are judged by expiry alone, a crashed chunk is picked up again by beat's dispatch.
    proc = start_beat(fault_env["env"], "beat")
    yield proc
    proc.terminate()
    proc.wait(30)


@pytest.fixture()
def fault_worker(fault_env):
    started: list[WorkerProcess] = []

    def start(**overrides: str) -> WorkerProcess:
        w = WorkerProcess({**fault_env["env"], **overrides}, concurrency=2, name="fault")
        w.start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()
