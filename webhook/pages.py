"""A small human page per job (`/jobs/<id>`): progress bar, counts per class, failed items, and for an upload
that carried labels, its accuracy and confusion matrix (an SVG picture drawn by the template).

Browsers cannot send the API key header, so the API hands the owner a link signed with the server's key.
"""
from __future__ import annotations

import hashlib
import hmac
import uuid

from flask import Blueprint, abort, render_template, request

from pipeline.store import reports
from webhook.extensions import services
from webhook.links import external_url

bp = Blueprint("pages", __name__)


def _token(job_id: str) -> str:
    key = services().settings.signing_key
    return hmac.new(key, f"job-page:{job_id}".encode(), hashlib.sha256).hexdigest()[:32]


def page_url(job_id: str) -> str:
    """The signed link to the job's page."""
    return external_url("pages.job_page", job_id=job_id, t=_token(job_id))


@bp.get("/jobs/<uuid:job_id>")
def job_page(job_id: uuid.UUID):
    """Render the job page; a missing or wrong signature is a 404, like an unknown job."""
    if not hmac.compare_digest(request.args.get("t", "").encode(), _token(str(job_id)).encode()):
        abort(404, description=f"no job {job_id}")
    svc = services()
    job = reports.job_status(svc.engine, job_id, None)
    if job is None:
        abort(404, description=f"no job {job_id}")
    counts = reports.class_counts(svc.engine, job_id)
    classes = svc.classes(job["model"])
    per_class = sorted(((classes[k], v) for k, v in counts.items()), key=lambda kv: -kv[1])
    finished = job["done"] + job["failed"]
    ended = job["status"] not in ("queued", "running")
    return render_template(
        "job.html", job=job, per_class=per_class, failed=reports.failed_items(svc.engine, job_id),
        accuracy=reports.accuracy(svc.engine, job_id, classes) if ended else None,
        percent=100.0 * finished / job["total"] if job["total"] else 100.0, finished=finished,
        refresh=job["status"] in ("queued", "running"),
    )
