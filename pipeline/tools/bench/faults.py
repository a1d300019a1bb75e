"""`fashion-batch bench --faults`: one large job through a private stack while faults are injected, then every
outcome checked, and the counts printed so they can be quoted.

    fashion-batch bench --faults --images 20000 [--storage s3] [--json bench-out/faults.json]

During the job: pool processes SIGKILLed, Redis and PostgreSQL (and, with `--storage s3`, SeaweedFS) restarted,
one of its objects deleted (that item must fail, saying why), and a storm of small jobs cancelled at random
moments. Afterwards: every item of every job has exactly one outcome (labelled, failed with a reason, or
cancelled), every job ended, and every job's callback was delivered once. tests/test_fault_suite.py runs it.
"""
from __future__ import annotations

import argparse
import io
import os
import random
import signal
import threading
import time
import uuid
import zipfile
from pathlib import Path

import requests
from sqlalchemy import text

from pipeline.tools.bench.fault_stack import FaultStack, fault_stack, write_report

FINAL = ("succeeded", "partial", "failed", "cancelled")


def _photo() -> bytes:
    """A small garment-like JPEG (a dark shape on a light ground); every image of the job is this one."""
    import numpy as np
    from PIL import Image

    a = np.full((48, 40), 235, np.uint8)
    a[10:42, 12:28] = 50
    a[10:18, 4:36] = 50
    buf = io.BytesIO()
    Image.fromarray(a).convert("RGB").save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _zip(n: int) -> bytes:
    photo, buf = _photo(), io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            zf.writestr(f"photos/{i:06d}.jpg", photo)
    return buf.getvalue()


def _submit(stack: FaultStack, files: list[tuple[str, bytes]], **form: str) -> dict:
    """POST a job; a 503 or a lost connection (a server restarting) is retried for up to a minute, as a client
    following Retry-After would."""
    deadline = time.monotonic() + 60
    while True:
        try:
            resp = requests.post(f"{stack.url}/v1/jobs", headers={"X-API-Key": stack.api_key}, timeout=600,
                                 data={"callback_url": stack.receiver.url, **form},
                                 files=[("files", (name, body, "application/octet-stream")) for name, body in files])
            if resp.status_code == 202:
                return resp.json()
            if resp.status_code < 500 or time.monotonic() > deadline:
                raise RuntimeError(f"submission refused: HTTP {resp.status_code} {resp.text[:300]}")
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
        time.sleep(1)


def _remove_part(stack: FaultStack, job_id: str, name: str) -> None:
    """Delete one stored part of a job (its object in S3, or its file): the item it holds is now missing."""
    from pipeline.blobs import open_store

    store = open_store(stack.settings)
    if stack.storage == "s3":
        import boto3
        from botocore.config import Config

        # The stack's credentials are in its processes' environment, not necessarily in this one's.
        s3 = boto3.client("s3", endpoint_url=stack.env["FB_S3_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=stack.env["AWS_SECRET_ACCESS_KEY"],
                          config=Config(s3={"addressing_style": "path"}))
        s3.delete_object(Bucket=store.bucket, Key=store.key(uuid.UUID(job_id), name))
    else:
        (store.scratch_dir(uuid.UUID(job_id)) / name).unlink()


def _status(stack: FaultStack, job_id: str) -> dict | None:
    try:
        resp = requests.get(f"{stack.url}/v1/jobs/{job_id}", headers={"X-API-Key": stack.api_key}, timeout=10)
        return resp.json() if resp.status_code == 200 else None
    except (requests.RequestException, ValueError):
        return None  # the database may be restarting


def _wait(predicate, timeout_s: float, what: str, interval_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)
    return value


def _cancel_storm(stack: FaultStack, n: int, size: int, seed: int) -> list[str]:
    """Submit `n` small jobs and cancel each at a random moment of its life; return their ids."""
    rng, body, ids = random.Random(seed), _zip(size), []
    for i in range(n):
        job = _submit(stack, [(f"storm-{i}.zip", body)])
        ids.append(job["id"])
        time.sleep(rng.uniform(0, 1.5))
        try:
            requests.delete(job["status_url"], headers={"X-API-Key": stack.api_key}, timeout=60)
        except requests.RequestException:
            pass  # a restart at that moment: the job then ends on its own, which the checks allow
    return ids


def _running(stack: FaultStack, job_id: str) -> bool:
    status = _status(stack, job_id)
    return status is None or status["status"] not in FINAL


def _restart(stack: FaultStack, name: str, server, down_s: float = 2.0) -> None:
    server.stop()
    time.sleep(down_s)
    server.start(**({"detached": True} if name != "postgresql" else {}))
    stack.faults[f"{name} restarts"] += 1


def _inject(stack: FaultStack, main_id: str, storm: threading.Thread) -> None:
    """Pool kills between server restarts, while the main job runs; the cancel storm starts after the first."""
    restarts = [("redis", stack.redis), ("postgresql", stack.pg)] + ([("seaweedfs", stack.s3)] if stack.s3 else [])
    steps = [None] + restarts
    for step in steps:
        if not _running(stack, main_id):
            return
        if pids := stack.pool_pids():
            os.kill(random.choice(pids), signal.SIGKILL)
            stack.faults["pool SIGKILLs"] += 1
        if step is None:
            storm.start()
        time.sleep(2.0)
        if step is not None and _running(stack, main_id):
            _restart(stack, *step)
        time.sleep(2.0)


def run(stack: FaultStack, images: int, storm_jobs: int = 8, storm_size: int = 300, seed: int = 0,
        timeout_s: float = 900) -> dict:
    """Run the main job of `images` under faults, wait for everything to end, and return the counts."""
    started = time.monotonic()
    # The main job: a ZIP of images - 1 photos and one loose photo whose stored object is deleted before the job
    # may start (not_before holds it back until then).
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    main = _submit(stack, [("missing.jpg", _photo()), ("photos.zip", _zip(images - 1))], not_before=later)
    _remove_part(stack, main["id"], "part-00000")
    stack.faults["missing objects"] += 1
    with stack.engine.begin() as conn:
        conn.execute(text("update jobs set not_before = null where id = :j"), {"j": main["id"]})
    _wait(lambda: (s := _status(stack, main["id"])) and s["done"] > 0, 300, "the main job's first results")
    storm_ids: list[str] = []
    storm = threading.Thread(target=lambda: storm_ids.extend(_cancel_storm(stack, storm_jobs, storm_size, seed)),
                             daemon=True)
    _inject(stack, main["id"], storm)
    if storm.is_alive() or storm.ident is not None:
        storm.join(timeout_s)
    else:
        storm.run()
    stack.faults["cancel storm jobs"] = len(storm_ids)
    ids = [main["id"], *storm_ids]
    _wait(lambda: all((s := _status(stack, j)) and s["status"] in FINAL for j in ids), timeout_s, "every job to end")
    _wait(lambda: _callbacks_settled(stack, ids), 120, "every callback to be delivered")
    report = _counts(stack, ids, main["id"])
    report.update(images=images, seconds=round(time.monotonic() - started, 1), faults=dict(stack.faults),
                  storage=stack.storage)
    return report


def _callbacks_settled(stack: FaultStack, ids: list[str]) -> bool:
    with stack.engine.connect() as conn:
        return conn.execute(text("select count(*) from callbacks where job_id = any(cast(:ids as uuid[])) "
                                 "and status = 'delivered'"), {"ids": ids}).scalar() == len(ids)


def _counts(stack: FaultStack, ids: list[str], main_id: str) -> dict:
    with stack.engine.connect() as conn:
        rows = conn.execute(text("""
            select j.id::text, j.status, j.total, count(r.seq) as rows, count(distinct r.seq) as seqs,
                   count(r.label) as labelled, count(r.error) as failed,
                   count(*) filter (where r.seq is not null and r.label is null and coalesce(r.error, '') = '')
                     as empty
            from jobs j left join results r on r.job_id = j.id
            where j.id = any(cast(:ids as uuid[])) group by j.id"""), {"ids": ids}).mappings().all()
        errors = conn.execute(text("select error from results where job_id = :j and error is not null"),
                              {"j": main_id}).scalars().all()
        delivered = dict(conn.execute(text("select job_id::text, attempts from callbacks where job_id = "
                                           "any(cast(:ids as uuid[]))"), {"ids": ids}).all())
    jobs = {}
    for r in rows:
        cancelled = r["total"] - r["labelled"] - r["failed"] if r["status"] == "cancelled" else 0
        jobs[r["id"]] = {**dict(r), "cancelled": cancelled, "callback_attempts": delivered.get(r["id"])}
    main = jobs[main_id]
    return {
        "main_job": {k: main[k] for k in ("status", "total", "labelled", "failed", "cancelled")},
        "main_job_errors": sorted(set(errors)),
        "storm_jobs": {s: sum(1 for j in jobs.values() if j["id"] != main_id and j["status"] == s) for s in FINAL},
        "items": {"total": sum(j["total"] for j in jobs.values()), "labelled": sum(j["labelled"] for j in jobs.values()),
                  "failed": sum(j["failed"] for j in jobs.values()),
                  "cancelled": sum(j["cancelled"] for j in jobs.values())},
        "callbacks": {"jobs": len(ids), "delivered_events": len(stack.receiver.calls),
                      "deliveries": sum(stack.receiver.calls.values())},
        "jobs": jobs,
    }


def problems(report: dict) -> list[str]:
    """Every broken promise in a report: an item with no or several outcomes, a job not ended, a lost or repeated
    callback, the missing object not failed with a reason."""
    found = []
    for job_id, j in report["jobs"].items():
        if j["status"] not in FINAL:
            found.append(f"job {job_id} did not end ({j['status']})")
        if j["rows"] != j["seqs"] or j["empty"]:
            found.append(f"job {job_id}: {j['rows']} result rows for {j['seqs']} items, {j['empty']} without outcome")
        if j["labelled"] + j["failed"] + j["cancelled"] != j["total"]:
            found.append(f"job {job_id}: {j['labelled']} labelled + {j['failed']} failed + {j['cancelled']} "
                         f"cancelled != {j['total']} items")
    main = report["main_job"]
    if (main["failed"], main["labelled"]) != (1, main["total"] - 1):
        found.append(f"main job: expected the one missing object failed and the rest labelled, got {main}")
    if not any("no such" in e.lower() or "not found" in e.lower() for e in report["main_job_errors"]):
        found.append(f"main job: the missing object's error does not say it is missing: {report['main_job_errors']}")
    cb = report["callbacks"]
    if not cb["jobs"] == cb["delivered_events"] == cb["deliveries"]:
        found.append(f"callbacks: {cb['jobs']} jobs, {cb['delivered_events']} events received, "
                     f"{cb['deliveries']} deliveries")
    return found


def summary(report: dict) -> str:
    """The figures, for people."""
    items, main, cb = report["items"], report["main_job"], report["callbacks"]
    lines = [f"fault suite: {report['images']:,}-image job ({report['storage']} storage) in {report['seconds']} s",
             "faults: " + ", ".join(f"{n} {what}" for what, n in report["faults"].items()),
             f"main job: {main['status']}, {main['labelled']:,} labelled, {main['failed']} failed "
             f"({'; '.join(report['main_job_errors'])})",
             "cancel storm: " + ", ".join(f"{n} {s}" for s, n in report["storm_jobs"].items() if n),
             f"items: {items['total']:,} in all: {items['labelled']:,} labelled, {items['failed']} failed, "
             f"{items['cancelled']:,} cancelled; each exactly one outcome",
             f"callbacks: {cb['deliveries']} deliveries of {cb['delivered_events']} events for {cb['jobs']} jobs"]
    broken = problems(report)
    lines.append("problems: " + ("; ".join(broken) if broken else "none"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`fashion-batch bench --faults ...`: run the suite on a private stack and print its figures."""
    import tempfile

    p = argparse.ArgumentParser(prog="fashion-batch bench --faults", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=20_000, help="images in the main job (default 20000)")
    p.add_argument("--storage", choices=("local", "s3"), default="local", help="where uploads are kept")
    p.add_argument("--storm-jobs", type=int, default=8, help="small jobs cancelled during the run (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write the figures as JSON to this file")
    args = p.parse_args(argv)
    random.seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="fb-faults-") as tmp, fault_stack(Path(tmp), args.storage) as stack:
        report = run(stack, args.images, storm_jobs=args.storm_jobs, seed=args.seed)
    print(summary(report))
    if args.json:
        write_report(report, args.json)
        print(f"wrote {args.json}")
    return 1 if problems(report) else 0
