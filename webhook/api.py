"""HTTP API version 1: submit jobs, poll them, fetch results, cancel."""
from __future__ import annotations

import csv
import io
import logging
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from flask import Blueprint, Response, g, jsonify, request, stream_with_context
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError

from pipeline import pools
from pipeline.broker import CALLBACKS
from pipeline.callbacks import CallbackURLError, check_url
from pipeline.images.archive import ArchiveError, LimitExceeded
from pipeline.images.ingest import IngestError, Part, display_name, list_items
from pipeline.items import SourceUnavailable
from pipeline.settings import BACKENDS, POOLS
from pipeline.store import idempotency, jobs, reports
from pipeline.store.idempotency import Claim, request_hash
from webhook import auth
from webhook.errors import ApiError
from webhook.extensions import services
from webhook.links import external_url
from webhook.representation import CSV_HEADER, csv_row, item_json, job_json, job_report

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/v1")
bp.before_request(auth.require_key)
PRIORITIES = ("interactive", "bulk")
MAX_PAGE = 10_000
MAX_OFFSET = 2**31 - 1  # a job holds at most FB_MAX_ITEMS images; PostgreSQL's OFFSET is a bigint
MAX_JSON_BYTES = 64 * 1024  # a JSON submission names a source and a few options: refused (413) past this


def _live_workers(pool: str) -> int:
    try:
        return pools.live_workers(services().redis, pool)
    except RedisError:
        raise ApiError(503, "the job queue (Redis) is unavailable; nothing was recorded, try again shortly",
                       {"Retry-After": "10"}) from None


def _owned_job(job_id: uuid.UUID) -> dict:
    job = reports.job_status(services().engine, job_id, g.api_key.id)
    if job is None:
        raise ApiError(404, f"no job {job_id}")
    return job


def _fields() -> dict:
    """The submission's fields: the multipart form, or the JSON body of a job from a source."""
    if request.is_json:
        # Read whole into memory, so bounded far below the upload limit; a larger body (by its Content-Length,
        # or as a chunked body arrives) is refused with 413 before it is read.
        request.max_content_length = MAX_JSON_BYTES
        if len(request.get_data(cache=True)) >= MAX_JSON_BYTES:  # a chunked body stops being read at the limit
            raise ApiError(413, f"upload too large: the limit is {MAX_JSON_BYTES:,} bytes for a JSON body")
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object, e.g. {\"source\": \"s3://bucket/prefix/\"}")
        return body
    return request.form


def _choice(fields, field: str, default: str, allowed: tuple[str, ...]) -> str:
    value = str(fields.get(field) or default).strip()
    if value not in allowed:
        raise ApiError(400, f"unknown {field} {value!r}: choose one of {', '.join(allowed)}")
    return value


def publish_wakeups(n_chunks: int, pool: str) -> None:
    """Wake up to FB_WAKEUPS workers of `pool` over one connection, giving up quickly if the broker is down.

    Only a wake-up: workers lease the chunks from PostgreSQL, so if this process dies before (or while)
    publishing, beat's dispatch wakes them within FB_DISPATCH_EVERY_S anyway.
    """
    app = services().celery
    policy = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
    with app.producer_or_acquire() as producer:
        for _ in range(min(n_chunks, services().settings.wakeups)):
            app.send_task("workers.tasks.drain", args=(pool,), queue=pool, producer=producer,
                          retry=True, retry_policy=policy)


def _priority(fields, total: int) -> str:
    default = "interactive" if total <= services().settings.interactive_max_images else "bulk"
    return _choice(fields, "priority", default, PRIORITIES)


def _not_before(fields) -> datetime | None:
    raw = str(fields.get("not_before") or "").strip()
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"not_before must be an ISO 8601 time (2026-12-24T22:00:00Z), got {raw!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@bp.post("/jobs")
def create_job():
    """Accept images and ZIP archives as a job; answer 202 once it is recorded and enqueued."""
    svc = services()
    settings = svc.settings
    auth.check_rate_limit()
    fields = _fields()
    files = request.files.getlist("files")
    pool = _choice(fields, "pool", "cpu", POOLS)
    backend = _choice(fields, "backend", settings.default_backend_for(pool), BACKENDS)
    if backend not in settings.backends_for(pool):
        raise ApiError(400, f"backend {backend!r} is not served by the {pool} pool")
    if not settings.queue_without_workers and _live_workers(pool) == 0:
        raise ApiError(503, f"no worker serves the {pool} pool right now; nothing was recorded (start one, or set "
                            "FB_QUEUE_WITHOUT_WORKERS=1 to queue jobs for workers that are yet to come)",
                       {"Retry-After": "30"})
    callback_url = str(fields.get("callback_url") or "").strip() or None
    if callback_url:
        try:
            check_url(callback_url, allow_private=settings.callback_allow_private)
        except CallbackURLError as exc:
            raise ApiError(400, str(exc)) from None
    source = fields.get("source") if request.is_json else None
    if source is None and not files:
        raise ApiError(400, "no files uploaded: send one or more multipart parts named 'files', or a JSON body "
                            "{\"source\": \"s3://bucket/prefix/\"}")
    idem_key = (request.headers.get("Idempotency-Key") or "").strip() or None
    if idem_key is not None and (len(idem_key) > 255 or not idem_key.isprintable()):
        raise ApiError(400, "Idempotency-Key must be at most 255 printable characters")
    options = {"backend": backend, "pool": pool, "callback_url": callback_url or ""}

    job_id = request.job_id  # the parts' object keys, if any were uploaded as they arrived, carry it
    claim = None
    store = svc.store if source is None else None  # a source's objects are never copied, nor ever deleted
    try:
        if source is not None:
            claim = Claim(idem_key, request_hash({**options, "source": str(source)}, [])) if idem_key else None
            if claim is not None and (earlier := idempotency.find(svc.engine, g.api_key.id, idem_key)) is not None:
                return _replay(earlier, claim)
            specs = _source_items(str(source))
        else:
            folder = store.scratch_dir(job_id)
            folder.mkdir(parents=True)
            parts = []
            for i, fs in enumerate(files):
                fs.stream.flush()
                target = folder / (getattr(fs.stream, "part_name", None) or f"part-{i:05d}")
                os.replace(fs.stream.name, target)
                parts.append(Part(target, display_name(fs.filename, f"file-{i + 1}"),
                                  source=store.item_source(job_id, target.name)))
            if idem_key is not None:
                claim = Claim(idem_key, request_hash(options, [(p.filename, p.path) for p in parts]))
                if (earlier := idempotency.find(svc.engine, g.api_key.id, idem_key)) is not None:
                    _forget_files(job_id)
                    return _replay(earlier, claim)
            specs = _scan_and_publish(job_id, parts, [fs.stream for fs in files])
        chunk_ids = jobs.create_job(
            svc.engine, job_id=job_id, api_key_id=g.api_key.id, backend=backend, pool=pool,
            callback_url=callback_url, specs=specs, chunk_size=settings.chunk_size,
            first_chunk_size=settings.first_chunk_size, idempotency=claim,
            priority=_priority(fields, len(specs)), not_before=_not_before(fields),
        )
    except IntegrityError:
        # A twin request with the same Idempotency-Key committed first: answer with its job.
        if store is not None:
            _forget_files(job_id)
        if claim is None or (earlier := idempotency.find(svc.engine, g.api_key.id, claim.key)) is None:
            raise
        return _replay(earlier, claim)
    except Exception:
        if store is not None:
            _forget_files(job_id)
        raise
    finally:
        if store is not None:
            store.discard_scratch(job_id)
    try:
        publish_wakeups(len(chunk_ids), pool)
    except (BrokerError, RedisError, OSError):
        # Not enqueued means not accepted: forget the job so the client can simply send it again.
        jobs.delete_job(svc.engine, job_id)
        if store is not None:
            _forget_files(job_id)
        raise ApiError(503, "the job queue (Redis) is unavailable; nothing was recorded, try again shortly",
                       {"Retry-After": "10"}) from None
    body = job_json(reports.job_status(svc.engine, job_id, g.api_key.id))
    return jsonify(body), 202, {"Location": body["status_url"]}


def _forget_files(job_id: uuid.UUID) -> None:
    """Delete a refused job's parts; an unreachable store leaves them to the bucket's lifecycle rule."""
    try:
        services().store.remove_job(job_id)
    except SourceUnavailable as exc:
        log.warning("could not delete the parts of refused job %s: %s", job_id, exc)


def _store_down(exc: Exception) -> ApiError:
    log.warning("the object store is unavailable: %s", exc)  # its details (endpoint, botocore) stay in the log
    return ApiError(503, "the object store is unavailable; nothing was recorded, try again shortly",
                    {"Retry-After": "10"})


def _scan_and_publish(job_id: uuid.UUID, parts: list[Part], streams: list) -> list:
    """List the upload's images while its parts are published to the store (S3: their uploads completed)."""
    svc = services()
    with ThreadPoolExecutor(max_workers=1) as pool:
        published = pool.submit(svc.store.publish, job_id, [p.path for p in parts], streams)
        error: ApiError | None = None
        try:
            specs = list_items(parts, svc.settings.limits, svc.classes)
        except LimitExceeded as exc:
            error = ApiError(413, str(exc))
        except (IngestError, ArchiveError) as exc:
            error = ApiError(400, str(exc))
        try:
            published.result()
        except SourceUnavailable as exc:
            error = error or _store_down(exc)
    if error is not None:
        raise error
    return specs


def _source_items(source: str) -> list:
    """The items of a job from objects already in a bucket (400 for a refused source, 503 if unreachable)."""
    from pipeline.blobs.sources import SourceRefused, source_items

    svc = services()
    try:
        return source_items(svc.settings, source, svc.classes, granted=g.api_key.sources)
    except LimitExceeded as exc:
        raise ApiError(413, str(exc)) from None
    except (SourceRefused, IngestError, ArchiveError) as exc:
        raise ApiError(400, str(exc)) from None
    except SourceUnavailable as exc:
        raise _store_down(exc) from None


def _replay(earlier: tuple[uuid.UUID, str], claim: Claim):
    """The answer to a submission whose Idempotency-Key was used before: that job, or 422 if the upload differs."""
    job_id, digest = earlier
    if digest != claim.request_hash:
        raise ApiError(422, f"Idempotency-Key {claim.key!r} was already used for another upload (job {job_id}); "
                            "use a new key for a new job")
    body = job_json(reports.job_status(services().engine, job_id, g.api_key.id))
    return jsonify(body), 200, {"Location": body["status_url"], "Idempotent-Replayed": "true"}


@bp.get("/jobs")
def list_jobs():
    """This key's jobs, newest first (`offset`, `limit` up to 200)."""
    offset, limit = _page_args(default_limit=50, max_limit=200)
    rows = reports.list_jobs(services().engine, g.api_key.id, offset, limit)
    return jsonify(offset=offset, limit=limit, jobs=[job_json(r) for r in rows])


def _page_args(default_limit: int, max_limit: int) -> tuple[int, int]:
    try:
        offset = max(0, int(request.args.get("offset", 0)))
        limit = min(max_limit, max(1, int(request.args.get("limit", default_limit))))
    except ValueError:
        raise ApiError(400, "offset and limit must be integers") from None
    if offset > MAX_OFFSET:
        raise ApiError(400, f"offset must be at most {MAX_OFFSET:,}")
    return offset, limit


@bp.get("/jobs/<uuid:job_id>")
def get_job(job_id: uuid.UUID):
    """The job's status and progress; once ended, accuracy against the labels the upload carried, if any."""
    return jsonify(job_report(_owned_job(job_id)))


@bp.delete("/jobs/<uuid:job_id>")
def cancel_job(job_id: uuid.UUID):
    """Cancel a job: queued work is skipped, labelled items keep their results."""
    job = _owned_job(job_id)
    if job["status"] in jobs.FINAL:
        raise ApiError(409, f"job {job_id} has already ended ({job['status']})")
    svc = services()
    jobs.cancel_job(svc.engine, job_id)
    if not svc.settings.keep_uploads:
        _forget_files(job_id)
    if (cb := jobs.callback_id(svc.engine, job_id)) is not None:
        try:
            svc.celery.send_task("workers.tasks.deliver_callback", args=(cb,), queue=CALLBACKS,
                                 retry=True, retry_policy={"max_retries": 1})
        except (BrokerError, RedisError, OSError):
            pass  # the reconciler delivers it once the broker is back
    return jsonify(job_report(_owned_job(job_id)))


@bp.get("/jobs/<uuid:job_id>/results")
def get_results(job_id: uuid.UUID):
    """Results in upload order: paginated JSON (`offset`, `limit`), or `?format=csv` streamed whole."""
    job = _owned_job(job_id)
    svc = services()
    classes = svc.classes
    if request.args.get("format") == "csv":
        def rows():
            buf = io.StringIO()
            writer = csv.writer(buf)
            writer.writerow(CSV_HEADER)
            for r in reports.iter_results(svc.engine, job_id):
                writer.writerow(csv_row(r, classes, job["status"]))
                if buf.tell() > 65536:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
            yield buf.getvalue()

        headers = {"Content-Disposition": f'attachment; filename="job-{job_id}.csv"'}
        return Response(stream_with_context(rows()), mimetype="text/csv", headers=headers)
    offset, limit = _page_args(default_limit=1000, max_limit=MAX_PAGE)
    page = reports.result_page(svc.engine, job_id, offset, limit)
    nxt = offset + limit
    return jsonify(
        id=str(job_id), status=job["status"], total=job["total"], offset=offset, limit=limit,
        items=[item_json(r, classes, job["status"]) for r in page],
        next=external_url("api.get_results", job_id=str(job_id), offset=nxt, limit=limit)
        if nxt < job["total"] else None,
    )
