"""`fashion-batch up --detach`, `submit --wait`, `down`: the local stack as a user runs it."""
from __future__ import annotations

import json
import socket

import pytest
import requests

from tests.helpers import wait_for
from tests.pipeline.tools.test_cli import cli

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_up_submit_wait_down(tmp_path, env):
    # Given a fresh data folder and no URLs: the launcher starts embedded PostgreSQL and Redis itself
    stack_env = {k: v for k, v in env.items() if k not in ("DATABASE_URL", "REDIS_URL", "FB_STORAGE_DIR")}
    stack_env.update(FB_DATA_DIR=str(tmp_path / "data"), FB_WEB_PORT=str(free_port()),
                     FB_FLOWER_PORT=str(free_port()), FB_ENV="development", FB_CPU_BACKENDS="onnx,int8")
    up = cli(stack_env, "up", "--detach")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "dev API key" in up.stdout and "Flower" in up.stdout
        web = f"http://127.0.0.1:{stack_env['FB_WEB_PORT']}"
        assert requests.get(f"{web}/healthz", timeout=5).json()["status"] == "ok"
        flower = f"http://127.0.0.1:{stack_env['FB_FLOWER_PORT']}"
        assert requests.get(flower, timeout=5).status_code == 401  # Flower needs its login
        assert requests.get(f"{flower}/metrics", timeout=5).status_code == 401  # its metrics too
        state = json.loads((tmp_path / "data" / "run" / "stack.json").read_text())
        login = (state["flower_user"], state["flower_password"])
        metrics = requests.get(f"{flower}/metrics", auth=login, timeout=5)
        assert metrics.status_code == 200 and "flower_" in metrics.text
        # When the bundled sample ZIP is submitted and waited for
        from pipeline.tools.cli import SAMPLE_ZIP

        out = cli(stack_env, "submit", str(SAMPLE_ZIP), "--wait")
        # Then every photo comes back labelled, with a summary per class
        assert out.returncode == 0, out.stdout + out.stderr
        assert "succeeded: 40 labelled, 0 failed" in out.stdout
        assert "Trouser" in out.stdout and "failed" in out.stdout
    finally:
        # And `down` stops everything it started
        down = cli(stack_env, "down")
    assert down.returncode == 0 and "stopped" in down.stdout
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{stack_env['FB_WEB_PORT']}/healthz", timeout=2)
    # And `up` right after `down` (same data folder, Redis' persisted data and all) starts at once, beat included
    again = cli(stack_env, "up", "--detach")
    try:
        assert again.returncode == 0, again.stdout + again.stderr
        beat_log = tmp_path / "data" / "logs" / "beat.log"
        wait_for(lambda: beat_log.read_text(errors="replace").count("Acquired lock") >= 2, 30,
                 "the new beat to take its lock")
    finally:
        assert cli(stack_env, "down").returncode == 0


def test_up_with_s3_storage_runs_on_an_embedded_seaweedfs(tmp_path, env):
    # Given a fresh data folder, no URLs and no FB_STORAGE_URL
    stack_env = {k: v for k, v in env.items() if k not in ("DATABASE_URL", "REDIS_URL", "FB_STORAGE_DIR",
                                                           "FB_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                                           "AWS_SECRET_ACCESS_KEY")}
    stack_env.update(FB_DATA_DIR=str(tmp_path / "data"), FB_WEB_PORT=str(free_port()),
                     FB_FLOWER_PORT=str(free_port()), FB_ENV="development", FB_CPU_BACKENDS="onnx")
    # When the stack is started with S3 storage and the sample ZIP is submitted
    up = cli(stack_env, "up", "--detach", "--storage", "s3")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "storage      s3://fashion-batch/" in up.stdout
        from pipeline.tools.cli import SAMPLE_ZIP

        out = cli(stack_env, "submit", str(SAMPLE_ZIP), "--wait")
        # Then every photo is labelled, and the uploads went to the SeaweedFS under the data folder
        assert out.returncode == 0, out.stdout + out.stderr
        assert "succeeded: 40 labelled, 0 failed" in out.stdout
        assert (tmp_path / "data" / "s3" / "weed.log").exists()
        jobs_dir = tmp_path / "data" / "storage" / "jobs"
        assert not jobs_dir.exists() or list(jobs_dir.iterdir()) == []
    finally:
        down = cli(stack_env, "down")
    # And `down` stops the S3 server too
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not (tmp_path / "data" / "s3" / "weed.pid").exists()


def test_no_secret_is_on_a_command_line(settings):
    from pipeline.tools.launcher import commands

    # Given the local stack's processes, with a Flower password set
    with_password = settings.replace(flower_password="hunter2-flower-secret")
    # Then none of their command lines (which `ps` shows every user of the host) carries it
    assert not [name for name, cmd in commands(with_password).items()
                if any("hunter2" in arg or "basic-auth" in arg for arg in cmd)]


def test_the_development_key_and_flower_password_survive_restarts_until_rotated(settings, engine, tmp_path):
    from pipeline.store.keys import authenticate
    from pipeline.tools.credentials import dev_credentials, rotate

    # Given a data folder of its own
    folder = settings.replace(data_dir=tmp_path / "data", flower_password=None)
    # When the stack starts twice on it / Then both starts have the same live key and the same Flower password
    first = dev_credentials(folder, engine)
    assert dev_credentials(folder, engine) == first and authenticate(engine, first[0]) is not None
    # When the key is rotated / Then the old one is revoked, and the next start uses the new one
    new = rotate(folder, engine)
    assert new != first[0] and authenticate(engine, first[0]) is None
    assert dev_credentials(folder, engine) == (new, first[1])
    # And a data folder whose key was revoked some other way gets a new live one
    from pipeline.store.keys import revoke_key

    revoke_key(engine, "dev")
    again, _ = dev_credentials(folder, engine)
    assert again != new and authenticate(engine, again) is not None


def test_a_process_of_the_stack_that_exits_is_started_again(env, tmp_path):
    import os
    import subprocess

    from pipeline.settings import load_settings
    from pipeline.tools.launcher import respawn, stop

    # Given the stack's beat, which has exited (as it does when Redis restarts under it)
    stack_env = {**os.environ, **env, "FB_DATA_DIR": str(tmp_path)}
    settings = load_settings(stack_env)
    gone = subprocess.Popen(["true"])
    gone.wait()
    procs = {"beat": gone}
    # When the launcher looks / Then it starts it again, rather than leaving the stack without a scheduler
    try:
        assert respawn(settings, procs, stack_env, tmp_path) == ["beat"]
        assert procs["beat"] is not gone and procs["beat"].poll() is None
    finally:
        stop(procs)
