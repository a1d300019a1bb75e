"""The HTTP API against real PostgreSQL and Redis (no worker needed: these tests stop at the queue)."""
from __future__ import annotations

import csv
import io
import uuid
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pipeline.store.keys import create_key, revoke_key
from pipeline.store.schema import jobs
from tests.helpers import garment_png, make_zip


def upload(client, key, files, **form):
    data = {**form, "files": [(io.BytesIO(body), name) for name, body in files]}
    return client.post("/v1/jobs", data=data, headers={"X-API-Key": key}, content_type="multipart/form-data")


def test_every_v1_route_needs_a_live_key(client, engine):
    # Given no key, a made-up key, and a revoked key
    record, revoked = create_key(engine, "to-revoke")
    revoke_key(engine, str(record.id))
    for headers in ({}, {"X-API-Key": "fb_not-a-real-key"}, {"X-API-Key": revoked}):
        # When they call the API, Then the answer is a JSON 401
        resp = client.get(f"/v1/jobs/{uuid.uuid4()}", headers=headers)
        assert resp.status_code == 401
        assert "API key" in resp.get_json()["error"]


def test_submit_answers_202_with_location_and_the_job_can_be_polled(client, api_key):
    # Given two images and a ZIP of two more
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("tops/a.png", garment_png())
        zf.writestr("b.jpg", garment_png(fmt="JPEG"))
    files = [("one.png", garment_png()), ("two.jpg", garment_png(fmt="JPEG")), ("pack.zip", z.getvalue())]
    # When they are submitted
    resp = upload(client, api_key, files, backend="onnx")
    # Then the job is accepted with four items, and its status URL answers
    assert resp.status_code == 202, resp.get_json()
    body = resp.get_json()
    assert body["total"] == 4 and body["status"] in ("queued", "running")
    assert resp.headers["Location"] == body["status_url"]
    status = client.get(body["status_url"], headers={"X-API-Key": api_key}).get_json()
    assert {"id", "status", "total", "done", "failed", "backend", "pool", "created_at", "started_at",
            "finished_at", "results_url"} <= set(status)
    assert status["backend"] == "onnx" and status["pool"] == "cpu"
    names = [i["name"] for i in client.get(body["results_url"], headers={"X-API-Key": api_key}).get_json()["items"]]
    assert names == ["one.png", "two.jpg", "pack.zip/tops/a.png", "pack.zip/b.jpg"]


@pytest.mark.parametrize("files, form, message", [
    ([], {}, "no files"),
    ([("notes.txt", b"hello world")], {}, "neither an image"),
    ([("empty.png", b"")], {}, "empty"),
    ([("docs.zip", None)], {}, "contains no images"),
    ([("a.png", garment_png())], {"backend": "tensorflow"}, "unknown backend"),
    ([("a.png", garment_png())], {"pool": "tpu"}, "unknown pool"),
    ([("a.png", garment_png())], {"callback_url": "ftp://example.com/x"}, "http"),
])
def test_bad_submissions_get_a_clear_400_and_record_nothing(client, api_key, engine, tmp_path, files, form, message):
    # Given a malformed submission (a ZIP placeholder becomes an archive holding only a text file)
    files = [(n, make_zip(tmp_path / n, {"readme.txt": b"no photos here"}).read_bytes() if b is None else b)
             for n, b in files]
    with engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(jobs)).scalar()
    # When it is submitted
    resp = upload(client, api_key, files, **form)
    # Then it is refused with a JSON message, and no job was recorded
    assert resp.status_code == 400
    assert message in resp.get_json()["error"]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(jobs)).scalar() == before


def test_another_keys_job_and_unknown_ids_answer_404(client, api_key, engine):
    job = upload(client, api_key, [("a.png", garment_png())]).get_json()
    other = create_key(engine, "other")[1]
    for key, path in ((other, job["status_url"]), (other, job["results_url"]), (api_key, f"/v1/jobs/{uuid.uuid4()}"),
                      (api_key, "/v1/jobs/not-a-uuid")):
        resp = client.get(path, headers={"X-API-Key": key})
        assert resp.status_code == 404 and "error" in resp.get_json()
    assert client.delete(job["status_url"], headers={"X-API-Key": other}).status_code == 404


def test_a_key_lists_only_its_own_jobs_newest_first(client, api_key, engine):
    mine = [upload(client, api_key, [("a.png", garment_png())]).get_json()["id"] for _ in range(2)]
    upload(client, create_key(engine, "someone-else")[1], [("b.png", garment_png())])
    listed = client.get("/v1/jobs", headers={"X-API-Key": api_key}).get_json()["jobs"]
    assert [j["id"] for j in listed] == mine[::-1]
    assert all({"status", "total", "done", "failed", "status_url"} <= set(j) for j in listed)


def test_cancel_ends_the_job_and_counts_pending_items_cancelled_not_failed(client, api_key):
    # Given a job on a pool no test worker serves, so that it is still queued when cancelled
    job = upload(client, api_key, [("a.png", garment_png()), ("b.png", garment_png())], pool="gpu").get_json()
    resp = client.delete(job["status_url"], headers={"X-API-Key": api_key})
    body = resp.get_json()
    assert resp.status_code == 200 and body["status"] == "cancelled"
    assert (body["failed"], body["cancelled"]) == (0, 2)
    items = client.get(job["results_url"], headers={"X-API-Key": api_key}).get_json()["items"]
    assert [(i["error"], i["outcome"]) for i in items] == [(None, "cancelled")] * 2
    csv_text = client.get(job["results_url"] + "?format=csv", headers={"X-API-Key": api_key}).get_data(as_text=True)
    assert [line.rsplit(",", 1)[-1] for line in csv_text.splitlines()[1:]] == ["cancelled"] * 2
    page = client.get(job["page_url"]).get_data(as_text=True)
    assert "2 cancelled" in page and "0 failed" in page
    assert client.delete(job["status_url"], headers={"X-API-Key": api_key}).status_code == 409


def test_results_csv_has_the_documented_header(client, api_key):
    job = upload(client, api_key, [("a,b.png", garment_png())]).get_json()
    resp = client.get(job["results_url"] + "?format=csv", headers={"X-API-Key": api_key})
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    lines = resp.get_data(as_text=True).splitlines()
    assert lines[0] == "name,label,class_name,confidence,error,true_label,true_class_name,model_version,outcome"
    assert lines[1].startswith('"a,b.png",')


def test_csv_cells_that_look_like_formulas_are_neutralised(client, api_key):
    # Given photos whose names a spreadsheet would run as formulas
    names = ["=1+2.jpg", "+cmd.png", "-2+3.png", "@SUM(A1).png", "plain=ok.png"]  # (control characters are
    # stripped from names on arrival, so a tab or carriage return never starts one)
    job = upload(client, api_key, [(n, garment_png()) for n in names]).get_json()
    # When the CSV is downloaded
    rows = list(csv.DictReader(io.StringIO(
        client.get(job["results_url"] + "?format=csv", headers={"X-API-Key": api_key}).get_data(as_text=True))))
    # Then each such cell starts with a quote, so it is text; other names are as sent
    assert [r["name"] for r in rows] == ["'=1+2.jpg", "'+cmd.png", "'-2+3.png", "'@SUM(A1).png", "plain=ok.png"]
    # And an error message or any cell is treated the same way, tab and carriage return included
    from webhook.representation import csv_cell

    assert [csv_cell(c) for c in ("\tcmd", "\rcmd", "ok")] == ["'\tcmd", "'\rcmd", "ok"]


def test_links_come_from_the_public_url_never_from_the_host_header(settings, api_key):
    from webhook import create_app

    # Given a service whose public URL is set, and a request that claims another host
    client = create_app(settings.replace(public_url="https://batch.example.com/fb")).test_client()
    resp = upload(client, api_key, [("a.png", garment_png())])
    body = client.get(resp.get_json()["status_url"].replace("https://batch.example.com/fb", ""),
                      headers={"X-API-Key": api_key, "Host": "evil.example"}).get_json()
    # Then every link the API hands out starts with the public URL
    for field in ("status_url", "results_url", "page_url"):
        assert body[field].startswith("https://batch.example.com/fb/"), body[field]
    assert "evil" not in resp.get_data(as_text=True) + str(body)


def test_healthz_reports_database_and_broker(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_broker_down_answers_503_and_records_nothing(settings, engine, api_key):
    from webhook import create_app

    # Given the web app pointed at a Redis that is not there
    app = create_app(settings.replace(redis_url="redis://127.0.0.1:1/0", rate_limit_per_minute=0))
    job_dirs = lambda: set((settings.storage_dir / "jobs").glob("*"))  # noqa: E731
    with engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(jobs)).scalar()
    dirs_before = job_dirs()
    # When a job is submitted
    resp = upload(app.test_client(), api_key, [("a.png", garment_png())])
    # Then the client is told to retry, and nothing half-made stays behind
    assert resp.status_code == 503 and "try again" in resp.get_json()["error"]
    assert resp.headers["Retry-After"]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(jobs)).scalar() == before
    assert not job_dirs() - dirs_before  # (earlier tests' jobs may be cleaned up meanwhile)


def test_absurd_offsets_are_a_400_not_a_server_error(client, api_key):
    # (schemathesis found this: an offset past PostgreSQL's bigint answered 500)
    resp = client.get("/v1/jobs?offset=2971583838708091458941383344128", headers={"X-API-Key": api_key})
    assert resp.status_code == 400 and "offset" in resp.get_json()["error"]


def test_uploads_work_when_the_store_is_on_another_filesystem_than_the_storage_dir(settings, api_key, tmp_path):
    import shutil

    from webhook import create_app

    # Given FB_STORAGE_URL on tmpfs (/dev/shm) and FB_STORAGE_DIR on the disk: two filesystems
    store = f"/dev/shm/fb-store-{uuid.uuid4().hex}"
    app = create_app(settings.replace(storage_dir=tmp_path / "scratch", storage_url=f"file://{store}"))
    try:
        # When an image is uploaded / Then the job is accepted (a spooled part moves by rename, never EXDEV)
        resp = upload(app.test_client(), api_key, [("a.png", garment_png())])
        assert resp.status_code == 202, resp.get_json()
        assert any((p / "part-00000").exists() or list(p.iterdir()) for p in (Path(store) / "jobs").iterdir())
    finally:
        shutil.rmtree(store, ignore_errors=True)


def test_folders_and_labels_named_with_unicode_digits_are_no_error(client, api_key, tmp_path):
    # Given a ZIP whose folders are named "²" and "٣" (digits to Unicode, not to int()), and a labels.csv saying "²"
    archive = make_zip(tmp_path / "digits.zip", {"²/a.png": garment_png(), "٣/b.png": garment_png()})
    labelled = make_zip(tmp_path / "csv.zip", {"a.png": garment_png(), "labels.csv": b"a.png,\xc2\xb2\n"})
    # When they are uploaded / Then the first is an unlabelled job, the second refused saying which line: no 500
    resp = upload(client, api_key, [("digits.zip", archive.read_bytes())])
    assert resp.status_code == 202, resp.get_json()
    resp = upload(client, api_key, [("csv.zip", labelled.read_bytes())])
    assert resp.status_code == 400 and "labels.csv line 1" in resp.get_json()["error"], resp.get_json()
