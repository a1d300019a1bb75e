"""The `fashion-batch` command, run as a real subprocess."""
from __future__ import annotations

import os
import subprocess
import sys

from pipeline.keys import authenticate, list_keys
from tests.helpers import ROOT


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_keys_create_prints_the_key_alone_on_the_last_line_then_list_and_revoke(env, engine):
    # When a key is created from the command line
    out = cli(env, "keys", "create", "cli-user")
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip().splitlines()[-1]
    # Then the last line is the key itself, and it works
    record = authenticate(engine, key)
    assert record is not None and record.name == "cli-user"
    # And `keys list` shows it without the key; `keys revoke` ends it
    listing = cli(env, "keys", "list").stdout
    assert record.prefix in listing and key not in listing
    assert cli(env, "keys", "revoke", str(record.id)).returncode == 0
    assert authenticate(engine, key) is None
    assert any(k.id == record.id and k.revoked_at for k in list_keys(engine))


def test_errors_are_one_line_not_a_traceback(env):
    out = cli({**env, "FB_API_KEY": "fb_nope", "FB_URL": "http://127.0.0.1:9"}, "status",
              "00000000-0000-0000-0000-000000000000")
    assert out.returncode == 1 and out.stderr.startswith("error: cannot reach") and "Traceback" not in out.stderr
