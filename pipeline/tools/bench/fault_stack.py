"""The fault suite's stack: embedded PostgreSQL, Redis and (for `--storage s3`) SeaweedFS held by this process,
so they can be restarted mid-job, under the local stack's own processes (gunicorn web, cpu worker, control and
callbacks workers, beat), and a callback receiver on loopback that records every delivery.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Engine

from pipeline.settings import Settings, load_settings
from pipeline.tools import launcher

# Short timeouts, so a killed process's chunk is taken over in seconds, and the ONNX backend only (a killed pool
# process is replaced quickly). A chunk is bisected after 3 lost attempts, so a few random kills never corner
# a healthy image as poison.
OVERRIDES = {
    "FB_CPU_BACKENDS": "onnx", "FB_DEFAULT_BACKEND": "onnx", "FB_WORKER_CONCURRENCY": "2",
    "FB_CHUNK_SIZE": "256", "FB_FIRST_CHUNK_SIZE": "16", "FB_TASK_TIME_LIMIT_S": "60",
    "FB_VISIBILITY_TIMEOUT_S": "90", "FB_LEASE_S": "6", "FB_ITEM_TIME_LIMIT_S": "5", "FB_STORAGE_RETRY_S": "2",
    "FB_DISPATCH_EVERY_S": "1", "FB_DRAIN_BUDGET_S": "10", "FB_RECONCILE_EVERY_S": "2",
    "FB_MAX_CHUNK_ATTEMPTS": "3", "FB_CALLBACK_ALLOW_PRIVATE": "1", "FB_BENCHMARK_EVERY_S": "0",
    "FB_RATE_LIMIT_PER_MINUTE": "100000", "FB_QUEUE_WITHOUT_WORKERS": "1",
}
PROCESSES = ("web", "worker", "control", "callbacks", "beat")


class Receiver:
    """An HTTP endpoint on loopback answering 200 to every callback and counting deliveries per event id."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.calls[self.headers.get("webhook-id", "?")] += 1
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.server.shutdown()


@dataclass
class FaultStack:
    """The running stack: settings, servers this process can restart, the child processes, a key and a receiver."""

    settings: Settings
    env: dict[str, str]
    engine: Engine
    pg: Any
    redis: Any
    s3: Any
    procs: dict[str, subprocess.Popen]
    api_key: str
    receiver: Receiver
    storage: str
    log_dir: Path
    faults: Counter = field(default_factory=Counter)

    @property
    def url(self) -> str:
        return self.settings.base_url

    def pool_pids(self) -> list[int]:
        """The cpu worker's pool (child) processes."""
        import psutil

        try:
            return [c.pid for c in psutil.Process(self.procs["worker"].pid).children()]
        except psutil.NoSuchProcess:
            return []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def fault_stack(data_dir: Path, storage: str = "local", timeout_s: float = 300) -> Iterator[FaultStack]:
    """Start the servers and processes under `data_dir`; stop everything after."""
    from pipeline.store.engine import get_engine
    from pipeline.store.keys import create_key
    from pipeline.store.migrate import upgrade
    from pipeline.tools.services import EmbeddedPostgres, EmbeddedRedis, EmbeddedSeaweedFS

    data_dir.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL", "FB_URL", "FB_API_KEY", "FB_STORAGE_URL", "FB_S3_ENDPOINT_URL")}
    env = {**base, **OVERRIDES, "FB_DATA_DIR": str(data_dir), "FB_STORAGE_DIR": str(data_dir / "storage"),
           "FB_WEB_PORT": str(_free_port()), "FB_FLOWER_PORT": str(_free_port()), "PYTHONUNBUFFERED": "1"}
    pg = redis = s3 = None
    procs: dict[str, subprocess.Popen] = {}
    receiver = Receiver()
    stopping = threading.Event()
    log_dir = data_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    try:
        pg = EmbeddedPostgres(data_dir / "pg")
        redis = EmbeddedRedis(data_dir / "redis")
        env.update({"DATABASE_URL": pg.start(), "REDIS_URL": redis.start(detached=True)})
        if storage == "s3":
            s3 = EmbeddedSeaweedFS(data_dir / "s3")
            env.update({"FB_STORAGE_URL": f"s3://{s3.bucket}/", "FB_S3_ENDPOINT_URL": s3.start(detached=True),
                        "AWS_EC2_METADATA_DISABLED": "true", **s3.credentials})
        settings = load_settings(env)
        upgrade(env["DATABASE_URL"])
        engine = get_engine(env["DATABASE_URL"])
        _, key = create_key(engine, "faults")
        (launcher.run_dir(settings) / "prometheus").mkdir(exist_ok=True)
        for name in PROCESSES:
            procs[name] = launcher.spawn(settings, name, env, log_dir)
        launcher.wait_ready(settings, procs, env, timeout_s)
        stack = FaultStack(settings, env, engine, pg, redis, s3, procs, key, receiver, storage, log_dir)
        supervisor = threading.Thread(target=_supervise, args=(stack, stopping), daemon=True)
        supervisor.start()
        yield stack
    finally:
        stopping.set()
        launcher.stop(procs)
        receiver.close()
        for server in (s3, redis, pg):
            if server is not None:
                server.stop()


def _supervise(stack: FaultStack, stopping: threading.Event) -> None:
    # As the launcher (and compose's restart policy) does: a process that exits is started again, and counted.
    while not stopping.wait(1.0):
        for name in launcher.respawn(stack.settings, stack.procs, stack.env, stack.log_dir):
            stack.faults[f"{name} restarted by the supervisor"] += 1


def write_report(report: dict, path: Path) -> None:
    """Save the suite's figures as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
