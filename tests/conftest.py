"""Test fixtures: real PostgreSQL and Redis (embedded unless DATABASE_URL / REDIS_URL are set), the Flask
app, a real HTTP server, and real Celery worker processes. No eager mode, no fakes."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest
from werkzeug.serving import make_server

from pipeline.settings import Settings, load_settings
from pipeline.store.engine import get_engine
from pipeline.store.keys import create_key
from pipeline.store.migrate import upgrade
from tests.helpers import WorkerProcess


@pytest.fixture(scope="session")
def servers(tmp_path_factory) -> Iterator[dict]:
    """URLs of a migrated PostgreSQL database and a Redis server, plus their handles when embedded."""
    from pipeline.tools.services import EmbeddedPostgres, EmbeddedRedis

    root = tmp_path_factory.mktemp("servers")
    pg = redis = None
    db_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if not db_url:
        pg = EmbeddedPostgres(root / "pg")
        db_url = pg.start()
    if not redis_url:
        redis = EmbeddedRedis(root / "redis")
        redis_url = redis.start(detached=True)
    upgrade(db_url)
    yield {"database_url": db_url, "redis_url": redis_url, "pg": pg, "redis": redis, "root": root}
    if redis is not None:
        redis.stop()
    if pg is not None:
        pg.stop()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory) -> Iterator[dict]:
    """A real S3 server: SeaweedFS embedded under the session's temporary folder on free loopback ports (or the
    one FB_TEST_S3_ENDPOINT_URL names, with the AWS_* credentials of the environment); stopped after."""
    from pipeline.tools.services import EmbeddedSeaweedFS

    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_EC2_METADATA_DISABLED")}
    server = None
    endpoint = os.environ.get("FB_TEST_S3_ENDPOINT_URL")
    if not endpoint:
        server = EmbeddedSeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
        endpoint = server.start()
        # boto3 reads the standard variables itself: the test process and the workers it starts get them.
        os.environ.update(server.credentials)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    credentials = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    s3 = _s3_client(endpoint)
    for bucket in ("fashion-batch", "fb-sources"):
        try:
            s3.create_bucket(Bucket=bucket)
        except s3.exceptions.ClientError:
            pass  # exists already
    yield {"endpoint": endpoint, "server": server, "credentials": credentials, "client": s3}
    if server is not None:
        server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _s3_client(endpoint: str):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}))


@pytest.fixture()
def s3_env(env, seaweedfs, tmp_path) -> dict[str, str]:
    """The session's environment with uploads in S3 under a prefix of this test's own, sources allowed from
    the `fb-sources` bucket, and a storage folder (scratch only) of its own."""
    return {**env, "FB_STORAGE_URL": f"s3://fashion-batch/t-{tmp_path.name}/", "FB_S3_SOURCE_BUCKETS": "fb-sources",
            "FB_STORAGE_DIR": str(tmp_path / "web-storage")}


@pytest.fixture(scope="session")
def env(servers, seaweedfs, tmp_path_factory) -> dict[str, str]:
    """The environment shared by the test process and the worker processes it starts (uploads in the local
    folder, the default; the S3 server's address too, so that any worker reads jobs whose parts are in S3)."""
    data = tmp_path_factory.mktemp("data")
    passthrough = {k: os.environ[k] for k in ("FB_WEIGHTS_DIR",) if k in os.environ}
    if "FB_WEIGHTS_DIR" not in passthrough and not (WEIGHTS / "photo" / "manifest.json").exists():
        passthrough["FB_WEIGHTS_DIR"] = str(stand_in_weights(tmp_path_factory.mktemp("weights-root")))
    return {
        **passthrough,
        **seaweedfs["credentials"],
        "AWS_EC2_METADATA_DISABLED": "true",
        "FB_S3_ENDPOINT_URL": seaweedfs["endpoint"],
        "FB_ENV": "test",
        "DATABASE_URL": servers["database_url"],
        "REDIS_URL": servers["redis_url"],
        "FB_DATA_DIR": str(data),
        "FB_STORAGE_DIR": str(data / "storage"),
        "FB_RATE_LIMIT_PER_MINUTE": "100000",
        "FB_CALLBACK_ALLOW_PRIVATE": "1",
        # Most API tests stop at the queue, with no worker running; tests/webhook/test_pools.py turns it off.
        "FB_QUEUE_WITHOUT_WORKERS": "1",
        "FB_WORKER_POOL": "cpu",
    }


WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


def stand_in_weights(root: Path) -> Path:
    """A weights folder for a checkout without the photo model's weights yet: the shipped models, plus a random-head
    photo model (tests/photo_export.py), so every test runs; the tests of shipped accuracy skip the photo model."""
    import sys

    for folder in WEIGHTS.iterdir():
        if (folder / "manifest.json").exists():
            (root / folder.name).symlink_to(folder, target_is_directory=True)
    print("weights/photo is missing: the tests use a random-head stand-in", file=sys.stderr)
    from tests.photo_export import export_photo

    export_photo(root / "photo")
    return root


@pytest.fixture(scope="session")
def settings(env) -> Settings:
    return load_settings(env)


@pytest.fixture(scope="session")
def engine(settings):
    return get_engine(settings.database_url)


@pytest.fixture(scope="session")
def app(settings):
    from webhook import create_app

    return create_app(settings)


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def api_key(engine) -> str:
    """A fresh API key (each test gets its own, so it sees only its own jobs)."""
    return create_key(engine, "test")[1]


def serve(app) -> Iterator[str]:
    """Serve `app` over real HTTP on a free loopback port; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture(scope="session")
def live_url(app) -> Iterator[str]:
    """The web app behind a real HTTP server."""
    yield from serve(app)


@pytest.fixture(scope="session")
def worker(env) -> Iterator[WorkerProcess]:
    """One real Celery worker process (prefork, 2 pool processes) on the cpu and control queues."""
    w = WorkerProcess(env, concurrency=2, name="session")
    w.start()
    yield w
    w.stop()


@pytest.fixture()
def make_worker(env) -> Iterator[Callable[..., WorkerProcess]]:
    """Start extra workers with environment overrides; all are stopped after the test."""
    started: list[WorkerProcess] = []

    def factory(overrides: dict[str, str] | None = None, **kw) -> WorkerProcess:
        w = WorkerProcess({**env, **(overrides or {})}, **kw)
        w.start()
        started.append(w)
        return w

    yield factory
    for w in started:
        w.stop()


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "weights"
