"""`fashion-batch up` / `down`: the local stack on embedded PostgreSQL and Redis (or given URLs).

Starts the database and broker when no URL is set (and, with `--storage s3`, an S3 server unless
FB_STORAGE_URL already names a bucket), migrates, creates a development API key, then runs the
web service (gunicorn), one CPU worker, beat and Flower as child processes until Ctrl-C or `down`.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import requests

from pipeline.settings import Settings, load_settings

if TYPE_CHECKING:
    from pipeline.tools.services import EmbeddedSeaweedFS


def run_dir(settings: Settings) -> Path:
    path = settings.data_dir / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_state(settings: Settings) -> dict | None:
    """The running stack's state (URLs, development key), or None if no stack is up."""
    path = settings.data_dir / "run" / "stack.json"  # reading creates nothing
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    try:
        os.kill(state["pid"], 0)
    except (ProcessLookupError, KeyError):
        return None
    return state


def write_state(settings: Settings, state: dict) -> None:
    """Record the running stack's state (URLs, development key) for the CLI."""
    path = run_dir(settings) / "stack.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.chmod(0o600)  # it holds the development API key and the Flower password
    tmp.replace(path)


def database_url(settings: Settings) -> str:
    """The database to administer: DATABASE_URL, else the running local stack's; never starts one."""
    url = settings.database_url or (read_state(settings) or {}).get("database_url")
    if not url:
        raise RuntimeError("no database: set DATABASE_URL, or start the local stack with `fashion-batch up`")
    return url


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The database URL: DATABASE_URL, else the embedded server (started and migrated if needed)."""
    from pipeline.store.migrate import upgrade, wait_for_database
    from pipeline.tools.services import EmbeddedPostgres

    if settings.database_url:
        wait_for_database(settings.database_url)
        upgrade(settings.database_url)
        yield settings.database_url
        return
    pg = EmbeddedPostgres(settings.data_dir / "pg")
    was_running = read_state(settings) is not None
    url = pg.start()
    upgrade(url)
    try:
        yield url
    finally:
        if not was_running:
            pg.stop()


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) != 0


def commands(settings: Settings) -> dict[str, list[str]]:
    """The command line of each process of the local stack (no secret is ever on one: `ps` shows them)."""
    py = sys.executable
    concurrency = settings.pool_processes
    return {
        "web": [py, "-m", "gunicorn", "webhook:create_app()", "-b", f"{settings.web_host}:{settings.web_port}",
                "-w", "2", "-k", "gthread", "--threads", "4", "--timeout", "300"],
        "worker": [py, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", "cpu", "-n", "cpu@%h",
                   "-c", str(concurrency), "--loglevel", "INFO"],
        # Dispatch, the reconciler and housekeeping: one process that loads no model.
        "control": [py, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", "control", "-n", "control@%h",
                    "-c", "1", "--loglevel", "INFO"],
        # Completion callbacks apart, on threads (deliveries wait on the network, not the CPU): a slow receiver
        # holds one thread, never the scheduling above.
        "callbacks": [py, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", "callbacks", "-n",
                      "callbacks@%h", "-P", "threads", "-c", "8", "--loglevel", "INFO"],
        "beat": [py, "-m", "celery", "-A", "workers.celery_app", "beat", "--loglevel", "INFO",
                 "-s", str(run_dir(settings) / "celerybeat-schedule")],
        # Its login comes from FB_FLOWER_USER / FB_FLOWER_PASSWORD in its environment, not its command line.
        "flower": [py, "-m", "workers.flower", f"--address={settings.web_host}", f"--port={settings.flower_port}"],
    }


def spawn(settings: Settings, name: str, env: dict[str, str], logs: Path) -> subprocess.Popen:
    """Start the stack's process `name` (commands()), its output appended to logs/NAME.log."""
    extra = {"web": {"PROMETHEUS_MULTIPROC_DIR": str(run_dir(settings) / "prometheus")},
             "control": {"FB_WORKER_POOL": "control"}, "callbacks": {"FB_WORKER_POOL": "control"}}
    with (logs / f"{name}.log").open("ab") as log:
        return subprocess.Popen(commands(settings)[name], env={**env, **extra.get(name, {})}, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def respawn(settings: Settings, procs: dict[str, subprocess.Popen], env: dict[str, str], logs: Path) -> list[str]:
    """Start again each process that exited (beat stops when Redis restarts under it, for one), as compose's
    `restart: unless-stopped` does; return their names."""
    dead = [name for name, p in procs.items() if p.poll() is not None]
    for name in dead:
        procs[name] = spawn(settings, name, env, logs)
    return dead


def _children(settings: Settings, env: dict[str, str], logs: Path) -> dict[str, subprocess.Popen]:
    # The web's gunicorn processes share HTTP metrics through files here (prometheus_client multiprocess mode);
    # emptied at each start so the counters of a previous run do not add up.
    metrics_dir = run_dir(settings) / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir()
    return {name: spawn(settings, name, env, logs) for name in commands(settings)}


def wait_ready(settings: Settings, procs: dict[str, subprocess.Popen], env: dict[str, str], timeout_s: float) -> None:
    """Wait until the web answers /healthz and a cpu worker answers a ping with its heartbeat in."""
    import redis
    from celery import Celery

    from pipeline import pools

    deadline = time.monotonic() + timeout_s
    probe = Celery(broker=env["REDIS_URL"])
    beats = redis.Redis.from_url(env["REDIS_URL"], socket_connect_timeout=2, socket_timeout=2)
    web_ok = worker_ok = False
    while not (web_ok and worker_ok):
        for name, p in procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with code {p.returncode}; see {settings.data_dir / 'logs' / name}.log")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the stack did not become ready within {timeout_s:.0f} s; see {settings.data_dir / 'logs'}")
        if not web_ok:
            try:
                web_ok = requests.get(f"{settings.base_url}/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                pass
        if not worker_ok:
            # Ready when it answers a ping and its heartbeat is in, so the API accepts jobs for its pool.
            worker_ok = bool(probe.control.ping(timeout=1.0)) and pools.live_workers(beats, "cpu") > 0
        time.sleep(0.3)


def stop(procs: dict[str, subprocess.Popen], timeout_s: float = 30.0) -> None:
    """SIGTERM the processes, then SIGKILL any still running after `timeout_s`."""
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for p in procs.values():
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _storage(settings: Settings, storage: str) -> tuple[dict[str, str], "EmbeddedSeaweedFS | None"]:
    """The children's storage variables, and the embedded S3 server started for `--storage s3` (or None)."""
    if storage != "s3" or settings.blob_url.startswith("s3://"):
        return {}, None
    from pipeline.tools.services import EmbeddedSeaweedFS

    s3 = EmbeddedSeaweedFS(settings.data_dir / "s3")
    endpoint = s3.start(detached=True)
    return {"FB_STORAGE_URL": f"s3://{s3.bucket}/", "FB_S3_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true",
            **s3.credentials}, s3


def up(settings: Settings | None = None, *, detach: bool = False, quiet: bool = False, storage: str = "local") -> dict:
    """Start the local stack; in the foreground block until Ctrl-C, detached return once it is ready.

    `storage="s3"` keeps uploads in S3: FB_STORAGE_URL's bucket if it names one, else an embedded SeaweedFS.
    """
    settings = settings or load_settings()
    if read_state(settings):
        raise RuntimeError(f"a stack is already running (see {run_dir(settings) / 'stack.json'}); "
                           "stop it with `fashion-batch down`")
    if detach:
        return _up_detached(settings, quiet=quiet, storage=storage)
    for port in (settings.web_port, settings.flower_port):
        if not _port_free(settings.web_host, port):
            raise RuntimeError(f"port {port} on {settings.web_host} is in use; set FB_WEB_PORT / FB_FLOWER_PORT")
    from pipeline.store.engine import get_engine
    from pipeline.store.migrate import upgrade
    from pipeline.tools.credentials import dev_credentials
    from pipeline.tools.services import EmbeddedPostgres, EmbeddedRedis

    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pg = redis = s3 = None
    procs: dict[str, subprocess.Popen] = {}
    signal.signal(signal.SIGTERM, _interrupt)  # `down` stops us like Ctrl-C does
    try:
        storage_env, s3 = _storage(settings, storage)
        db_url = settings.database_url
        if not db_url:
            pg = EmbeddedPostgres(settings.data_dir / "pg")
            db_url = pg.start()
        redis_url = settings.redis_url
        if not redis_url:
            redis = EmbeddedRedis(settings.data_dir / "redis")
            redis_url = redis.start(detached=True)
        upgrade(db_url)
        engine = get_engine(db_url)
        dev_key, password = dev_credentials(settings, engine)  # the same on every start of this data folder
        env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": redis_url, "FB_DATA_DIR": str(settings.data_dir),
               "FB_FLOWER_USER": settings.flower_user, "FB_FLOWER_PASSWORD": password, "FB_WORKER_POOL": "cpu",
               "PYTHONUNBUFFERED": "1", **storage_env}
        procs = _children(settings, env, logs)
        state = {
            "pid": os.getpid(), "ready": False, "web_url": settings.base_url,
            "flower_url": f"http://{settings.web_host}:{settings.flower_port}", "flower_user": settings.flower_user,
            "flower_password": password, "api_key": dev_key, "database_url": db_url, "redis_url": redis_url,
            "logs": str(logs), "storage_url": storage_env.get("FB_STORAGE_URL", settings.blob_url),
            "s3_endpoint_url": storage_env.get("FB_S3_ENDPOINT_URL", settings.s3_endpoint_url),
        }
        write_state(settings, state)
        wait_ready(settings, procs, env, timeout_s=300)
        write_state(settings, {**state, "ready": True})
        if not quiet:
            print(describe(state), flush=True)
            print("Press Ctrl-C to stop.", flush=True)
        restarts: list[float] = []
        while True:
            time.sleep(1)
            for name in respawn(settings, procs, env, logs):
                print(f"{name} stopped unexpectedly and was started again; see {logs / name}.log", flush=True)
                restarts = [t for t in restarts if t > time.monotonic() - 60] + [time.monotonic()]
            if len(restarts) > 5:
                raise RuntimeError(f"processes keep stopping (6 restarts within a minute); see {logs}")
    except KeyboardInterrupt:
        if not quiet:
            print("\nstopping...", flush=True)
    finally:
        stop(procs)
        (run_dir(settings) / "stack.json").unlink(missing_ok=True)
        if s3 is not None:
            s3.stop()
        if redis is not None:
            redis.stop()
        if pg is not None:
            pg.stop()
    return {}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _up_detached(settings: Settings, *, quiet: bool, storage: str) -> dict:
    log = (run_dir(settings) / "launcher.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.tools.cli", "up", "--quiet", "--storage", storage],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the stack failed to start; see {run_dir(settings) / 'launcher.log'}")
        state = read_state(settings)
        if state and state.get("ready"):
            if not quiet:
                print(describe(state), flush=True)
                print("Stop it with: fashion-batch down", flush=True)
            return state
        time.sleep(0.5)
    raise TimeoutError("the stack did not become ready within 10 minutes")


def down(settings: Settings | None = None) -> bool:
    """Stop a stack started with `--detach`; return False if none was running."""
    settings = settings or load_settings()
    state = read_state(settings)
    if state is None:
        return False
    os.kill(state["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            os.kill(state["pid"], 0)
        except ProcessLookupError:
            return True
        time.sleep(0.3)
    raise TimeoutError(f"the launcher (pid {state['pid']}) did not stop within 90 s")


def describe(state: dict) -> str:
    """The lines `up` prints: URLs, credentials, where the logs are."""
    return "\n".join([
        "fashion-batch is up:",
        f"  web API      {state['web_url']}   (health: {state['web_url']}/healthz)",
        f"  Flower       {state['flower_url']}   (user {state['flower_user']}, password {state['flower_password']})",
        f"  storage      {state.get('storage_url', 'local')}",
        f"  logs         {state['logs']}",
        f"  dev API key  {state['api_key']}",
    ])
