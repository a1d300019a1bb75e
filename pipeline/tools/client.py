"""The command-line client: submit files and archives, wait with a progress bar, fetch results."""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import requests

from pipeline.tools.upload import Multipart, UploadError, collect


class ClientError(RuntimeError):
    """The service refused a request or could not be reached; the message says why."""


class Client:
    """A thin wrapper over the HTTP API."""

    def __init__(self, base_url: str, api_key: str, timeout_s: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["X-API-Key"] = api_key
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, **kw) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        try:
            resp = self.session.request(method, url, timeout=kw.pop("timeout", self.timeout_s), **kw)
        except requests.RequestException as exc:
            raise ClientError(f"cannot reach {self.base_url}: {exc}") from None
        if resp.status_code >= 400:
            try:
                message = resp.json().get("error", resp.text)
            except ValueError:
                message = resp.text[:300]
            raise ClientError(f"HTTP {resp.status_code}: {message}")
        return resp

    def submit(self, paths: list[Path], *, backend: str | None = None, pool: str | None = None,
               callback_url: str | None = None) -> dict:
        """Upload files, archives and folders (walked, zipped on the fly) as one job; return the job, with
        `left_out`: the folders' files that were not sent, each `(path, why)`."""
        try:
            upload = collect(paths)
        except UploadError as exc:
            raise ClientError(str(exc)) from None
        fields = {k: v for k, v in (("backend", backend), ("pool", pool), ("callback_url", callback_url)) if v}
        body = Multipart(fields, upload.parts)
        job = self._call("POST", "/v1/jobs", data=body, headers={"Content-Type": body.content_type},
                         timeout=3600).json()
        return {**job, "left_out": [(str(s.path), s.reason) for s in upload.skipped]}

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/jobs/{job_id}").json()

    def cancel(self, job_id: str) -> dict:
        return self._call("DELETE", f"/v1/jobs/{job_id}").json()

    def results(self, job_id: str) -> Iterator[dict]:
        """Every item's result, following the pages."""
        url: str | None = f"/v1/jobs/{job_id}/results?limit=10000"
        while url:
            page = self._call("GET", url).json()
            yield from page["items"]
            url = page["next"]

    def results_csv(self, job_id: str, target: Path) -> None:
        resp = self._call("GET", f"/v1/jobs/{job_id}/results?format=csv", stream=True)
        with target.open("wb") as f:
            for block in resp.iter_content(1 << 16):
                f.write(block)

    def wait(self, job_id: str, *, progress: bool = True, poll_s: float = 0.5) -> dict:
        """Poll until the job ends, showing a progress bar; return its final status."""
        from tqdm import tqdm

        job = self.job(job_id)
        with tqdm(total=job["total"], unit="img", disable=not progress, dynamic_ncols=True) as bar:
            while True:
                bar.n = job["done"] + job["failed"]
                bar.set_postfix_str(f"{job['status']}, {job['failed']} failed")
                if job["status"] not in ("queued", "running"):
                    bar.refresh()
                    return job
                time.sleep(poll_s)
                job = self.job(job_id)


def summary(items: list[dict]) -> str:
    """A table of counts per class, then the failed items with their errors."""
    counts = Counter(i["class_name"] for i in items if i["class_name"])
    failed = [i for i in items if i["error"]]
    width = max([len(c) for c in counts] + [5])
    lines = [f"{'class':<{width}}  items", f"{'-' * width}  -----"]
    lines += [f"{name:<{width}}  {n:>5}" for name, n in counts.most_common()]
    lines.append(f"{'failed':<{width}}  {len(failed):>5}")
    for i in failed[:20]:
        lines.append(f"  ! {i['name']}: {i['error']}")
    if len(failed) > 20:
        lines.append(f"  ... and {len(failed) - 20} more failures")
    return "\n".join(lines)


def status_summary(job: dict) -> str:
    """A job's status for people: state, progress and outcome counts, timing, links, and its accuracy report."""
    finished = job["done"] + job["failed"] + job.get("cancelled", 0)
    percent = 100.0 * finished / job["total"] if job["total"] else 100.0
    counts = f"{job['done']} labelled, {job['failed']} failed"
    if job.get("cancelled"):
        counts += f", {job['cancelled']} cancelled"
    lines = [f"job {job['id']}: {job['status']}",
             f"  items     {finished} of {job['total']} finished ({percent:.0f}%): {counts}",
             f"  model     {job['backend']} on the {job['pool']} pool, {job['priority']} priority"]
    times = [f"{name} {job[key][:19].replace('T', ' ')}" for name, key in
             (("created", "created_at"), ("started", "started_at"), ("finished", "finished_at")) if job.get(key)]
    lines.append("  times     " + ", ".join(times) + " (UTC)")
    if job.get("not_before"):
        lines.append(f"  starts    not before {job['not_before']}")
    if job.get("queued_behind"):
        lines.append(f"  queue     {job['queued_behind']} chunk(s) are served before this job's first")
    if job.get("waiting_for"):
        lines.append(f"  waiting   for {job['waiting_for']}")
    if job.get("model_note"):
        lines.append(f"  note      {job['model_note']}")
    lines += [f"  page      {job['page_url']}", f"  results   {job['results_url']}"]
    if job.get("accuracy"):
        lines.append(accuracy_summary(job["accuracy"]))
    return "\n".join(lines)


def accuracy_summary(report: dict) -> str:
    """Accuracy against the upload's own labels: overall, then per true class, then the most common mix-ups."""
    lines = [f"accuracy {100 * report['accuracy']:.1f}%: {report['correct']} of {report['labelled']} labelled images"]
    width = max(len(c["class_name"]) for c in report["per_class"])
    lines += [f"  {c['class_name']:<{width}}  {100 * c['accuracy']:5.1f}%  ({c['correct']}/{c['images']})"
              for c in report["per_class"]]
    names, m = report["classes"], report["confusion"]
    pairs = sorted(((m[i][j], i, j) for i in range(len(m)) for j in range(len(m)) if i != j and m[i][j]), reverse=True)
    if pairs:
        lines.append("most common mix-ups: " + ", ".join(f"{names[i]} as {names[j]} ({n})" for n, i, j in pairs[:5]))
    return "\n".join(lines)


def from_environment(url: str | None = None, api_key: str | None = None) -> Client:
    """A client for `url`/`api_key`, else FB_URL/FB_API_KEY, else the local stack started by `up`."""
    from pipeline.settings import load_settings
    from pipeline.tools.launcher import read_state

    settings = load_settings()
    state = read_state(settings) or {}
    url = url or settings.url or state.get("web_url") or settings.base_url
    api_key = api_key or settings.api_key or state.get("api_key")
    if not api_key:
        raise ClientError("no API key: pass --api-key, set FB_API_KEY, or start the local stack with `fashion-batch up`")
    return Client(url, api_key)
