"""The `fashion-batch` command, run as a real subprocess."""
from __future__ import annotations

import os
import subprocess
import sys

from pipeline.store.keys import authenticate, list_keys
from tests.helpers import ROOT


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.tools.cli", *args], env={**os.environ, **env}, cwd=ROOT,
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


def test_submit_a_folder_and_wait_talks_only_to_the_api(live_url, worker, api_key, tmp_path):
    # Given a folder of photos in sub-folders, and a CLI environment that names no database or broker
    from tests.pipeline.tools.test_upload import photo_folder

    folder = photo_folder(tmp_path / "photos")
    data_dir = tmp_path / "cli-data"
    cli_env = {"FB_URL": live_url, "FB_API_KEY": api_key, "FB_DATA_DIR": str(data_dir), "DATABASE_URL": "",
               "REDIS_URL": ""}
    # When the folder is submitted and waited for
    out = cli(cli_env, "submit", str(folder), "--wait")
    # Then the folder is one job: its three images and the ZIP's one, every one labelled
    assert out.returncode == 0, out.stdout + out.stderr
    assert ": 4 images" in out.stdout and "succeeded: 4 labelled, 0 failed" in out.stdout
    # And the command started no server and wrote nothing (no embedded database, no state)
    assert not data_dir.exists()


def test_submit_a_labelled_folder_makes_a_labelled_job_and_says_what_it_left_out(live_url, api_key, tmp_path):
    # Given a folder with a root labels.csv, two photos, notes and a fake .jpg
    from tests.helpers import garment_png

    folder = tmp_path / "labelled"
    folder.mkdir()
    (folder / "labels.csv").write_text("name,label\na.png,Shirt\nb.png,Trouser\n")
    (folder / "a.png").write_bytes(garment_png())
    (folder / "b.png").write_bytes(garment_png("trouser"))
    (folder / "notes.txt").write_text("sizes")
    (folder / "fake.jpg").write_bytes(b"this is not a JPEG")
    cli_env = {"FB_URL": live_url, "FB_API_KEY": api_key, "DATABASE_URL": "", "REDIS_URL": ""}
    # When it is submitted
    out = cli(cli_env, "submit", str(folder))
    # Then the job holds the two photos with their true labels, and the output names what was left out and why
    assert out.returncode == 0, out.stdout + out.stderr
    assert ": 2 images" in out.stdout and "left out 2 file(s)" in out.stdout
    assert "notes.txt: not an image" in out.stdout and "fake.jpg: named like an image" in out.stdout
    job_id = out.stdout.split()[1]
    items = cli(cli_env, "results", job_id).stdout
    import requests

    listed = requests.get(f"{live_url}/v1/jobs/{job_id}/results", headers={"X-API-Key": api_key}, timeout=30).json()
    assert [(i["name"], i["true_class_name"]) for i in listed["items"]] == \
        [("labelled/a.png", "Shirt"), ("labelled/b.png", "Trouser")], items


def test_keys_never_start_a_database(tmp_path):
    # Given no DATABASE_URL and no running stack / When keys are listed / Then it says so, starting nothing
    data_dir = tmp_path / "data"
    out = cli({"FB_DATA_DIR": str(data_dir), "DATABASE_URL": ""}, "keys", "list")
    assert out.returncode == 1 and "no database" in out.stderr and "Traceback" not in out.stderr
    assert not (data_dir / "pg").exists()


def test_every_command_has_help():
    for command in ("up", "down", "migrate", "demo", "keys", "keys create", "keys grant", "keys rotate", "submit",
                    "status", "results",
                    "cancel", "train", "evaluate", "bench"):
        out = cli({}, *command.split(), "--help")
        assert out.returncode == 0 and "usage" in out.stdout.lower(), (command, out.stderr)


def test_status_is_readable_with_json_for_machines_and_bad_ids_get_our_message(live_url, api_key, tmp_path):
    import json

    from tests.helpers import garment_png

    # Given a job (on a pool no test worker serves, cancelled so that it has ended)
    (tmp_path / "a.png").write_bytes(garment_png())
    cli_env = {"FB_URL": live_url, "FB_API_KEY": api_key, "DATABASE_URL": "", "REDIS_URL": ""}
    job_id = cli(cli_env, "submit", str(tmp_path / "a.png"), "--pool", "gpu").stdout.split()[1]
    assert cli(cli_env, "cancel", job_id).returncode == 0
    # When its status is shown / Then it reads as a summary, with no Python repr in it
    out = cli(cli_env, "status", job_id)
    assert out.returncode == 0, out.stderr
    assert f"job {job_id}: cancelled" in out.stdout and "0 labelled, 0 failed, 1 cancelled" in out.stdout
    assert "{" not in out.stdout and "=" not in out.stdout.replace("?t=", "")
    # And --json gives the API's JSON
    assert json.loads(cli(cli_env, "status", job_id, "--json").stdout)["cancelled"] == 1
    # And a non-UUID, or an unknown job, gets a message of ours, on one line
    bad = cli(cli_env, "status", "nope")
    assert bad.returncode != 0 and "not a job id" in bad.stderr and "Traceback" not in bad.stderr
    unknown = cli(cli_env, "status", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 1 and "no job 00000000-0000-0000-0000-000000000000" in unknown.stderr
    # And the API, asked for a non-UUID job, says what a job id is (not Flask's page-not-found text)
    import requests

    resp = requests.get(f"{live_url}/v1/jobs/nope", headers={"X-API-Key": api_key}, timeout=10)
    assert resp.status_code == 404 and "a job id is a UUID" in resp.json()["error"]
