"""How a job and its results look on the wire: status JSON (with its reports), result items, CSV rows."""
from __future__ import annotations

from redis.exceptions import RedisError

from pipeline import pools
from pipeline.store import jobs, leases, reports
from webhook import pages
from webhook.extensions import services
from webhook.links import external_url

CSV_HEADER = ("name", "label", "class_name", "confidence", "error", "true_label", "true_class_name", "model_version",
              "outcome")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """A text cell a spreadsheet will not run: one that starts like a formula gets a leading quote (OWASP)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _iso(ts) -> str | None:
    return ts.isoformat() if ts is not None else None


def job_json(job: dict) -> dict:
    """The public view of a job row (with `done` and `failed` counts)."""
    jid = str(job["id"])
    return {
        "id": jid, "status": job["status"], "total": job["total"], "done": job["done"], "failed": job["failed"],
        "cancelled": job["cancelled"],
        "backend": job["backend"], "pool": job["pool"], "priority": job["priority"],
        "not_before": _iso(job["not_before"]), "created_at": _iso(job["created_at"]),
        "started_at": _iso(job["started_at"]), "finished_at": _iso(job["finished_at"]),
        "status_url": external_url("api.get_job", job_id=jid),
        "results_url": external_url("api.get_results", job_id=jid),
        "page_url": pages.page_url(jid),
    }


def job_report(job: dict) -> dict:
    """`job_json` plus, once a job whose upload carried labels has ended, its accuracy report."""
    svc = services()
    body = job_json(job)
    if job["status"] == "queued":
        body["queued_behind"] = leases.queued_behind(svc.engine, job)  # chunks served before its first
        try:
            if pools.live_workers(svc.redis, job["pool"]) == 0:
                body["waiting_for"] = f"no worker serves the {job['pool']} pool yet"
        except RedisError:
            body["waiting_for"] = "the job queue (Redis) is unavailable"
    versions = reports.model_versions(svc.engine, job["id"])
    body["model_versions"] = versions  # {manifest sha256: results it gave}; normally one
    if len(versions) > 1:
        body["model_note"] = (f"this job was labelled by {len(versions)} model versions (a rolling deploy); "
                              "set FB_PIN_MODEL_VERSION=1 to finish each job with the weights it started with")
    if job["status"] not in jobs.FINAL and job["model_version"]:
        try:
            if job["model_version"] not in pools.live_versions(svc.redis, job["pool"]):
                body["waiting_for"] = (f"no live worker of the {job['pool']} pool has model version "
                                       f"{job['model_version'][:12]}, which this job is pinned to")
        except RedisError:
            pass
    if job["status"] in jobs.FINAL:
        body["accuracy"] = reports.accuracy(svc.engine, job["id"], svc.classes)
    return body


def outcome(row: dict, job_status: str) -> str:
    """What became of an item: labelled, failed, cancelled (skipped by a cancel) or pending."""
    if row["label"] is not None:
        return "labelled"
    if row["error"] is not None:
        return "failed"
    return "cancelled" if job_status == "cancelled" else "pending"


def item_json(row: dict, classes: list[str], job_status: str = "running") -> dict:
    """One result as JSON: the predicted and (if the upload gave one) true class, the model version, and its
    outcome."""
    label, truth = row["label"], row["true_label"]
    return {"outcome": outcome(row, job_status),
        "name": row["name"], "label": label, "class_name": classes[label] if label is not None else None,
        "confidence": row["confidence"], "probabilities": row["probabilities"], "error": row["error"],
        "true_label": truth, "true_class_name": classes[truth] if truth is not None else None,
        "model_version": row["model_version"],
    }


def csv_row(row: dict, classes: list[str], job_status: str = "running") -> tuple:
    """One result as a CSV row (CSV_HEADER's columns), its free-text cells neutralised."""
    label, truth = row["label"], row["true_label"]
    return (csv_cell(row["name"]), "" if label is None else label, classes[label] if label is not None else "",
            "" if row["confidence"] is None else f"{row['confidence']:.6f}", csv_cell(row["error"] or ""),
            "" if truth is None else truth, classes[truth] if truth is not None else "", row["model_version"] or "",
            outcome(row, job_status))
