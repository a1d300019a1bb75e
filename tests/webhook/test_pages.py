"""The job page (`/jobs/<id>`), rendered by a real headless Chromium after a real worker ran the job."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections import Counter
from html.parser import HTMLParser

import pytest
import requests

from tests.helpers import garment_png, make_zip, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1100,1000"]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium)")


def chromium(url: str, *extra: str, timeout_s: float = 60) -> str:
    """Run headless Chromium on `url` with a throw-away profile; return its stdout."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url],
                              capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Page(HTMLParser):
    """The text of elements with an id, the rows of each table (by id), and the progress bar's attributes."""

    def __init__(self, html: str):
        super().__init__()
        self.text: dict[str, str] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self.progress: dict[str, str] = {}
        self._stack: list[tuple[str, str | None]] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("role") == "progressbar":
            self.progress = a
        if tag == "table":
            self._table = a.get("id")
            self.tables.setdefault(self._table, [])
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        if tag not in VOID:
            self._stack.append((tag, a.get("id")))
            if a.get("id"):
                self.text.setdefault(a["id"], "")

    def handle_endtag(self, tag):
        while self._stack and self._stack.pop()[0] != tag:
            pass  # an element closed implicitly (HTML allows leaving out </td>, </tr>, </p>)
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        for _, ident in self._stack:
            if ident:
                self.text[ident] += data
        if self._cell is not None:
            self._cell.append(data)


@needs_chromium
def test_the_job_page_shows_status_counts_per_class_and_failures(live_url, worker, api_key, tmp_path):
    # Given a finished job: five garments, a truncated JPEG and a text file
    jpeg = garment_png("trouser", (300, 400), fmt="JPEG")
    archive = make_zip(tmp_path / "batch.zip", {
        **{f"tops/shirt-{i}.png": garment_png("shirt", (120 + 10 * i, 160)) for i in range(3)},
        **{f"bottoms/trouser-{i}.jpg": garment_png("trouser", (300, 400 + 10 * i), fmt="JPEG") for i in range(2)},
        "broken/truncated.jpg": jpeg[: len(jpeg) // 3],
        "readme.txt": b"not a photo",
    })
    headers = {"X-API-Key": api_key}
    with archive.open("rb") as z:
        job = requests.post(f"{live_url}/v1/jobs", headers=headers, timeout=60,
                            files=[("files", ("batch.zip", z, "application/zip"))]).json()
    wait_for(lambda: requests.get(job["status_url"], headers=headers, timeout=10).json()["status"] == "partial",
             120, "the job to end as partial")
    items = requests.get(job["results_url"], headers=headers, timeout=10).json()["items"]
    expected = Counter(i["class_name"] for i in items if i["class_name"])

    # When its page is opened in a real browser
    page = Page(chromium(job["page_url"], "--dump-dom"))
    shot = tmp_path / "job-page.png"
    chromium(job["page_url"], f"--screenshot={shot}")

    # Then it shows the final status and a full progress bar
    assert page.text["status"].strip() == "partial"
    assert page.progress["aria-valuenow"] == "100"
    assert " ".join(page.text["progress"].split()) == "7 / 7 items"
    assert "5 labelled" in page.text["labelled"] and "2 failed" in page.text["failed-count"]
    # And the counts per class agree with the API's results
    rows = page.tables["classes"][1:]
    assert {name: int(n) for name, n, *_ in rows} == dict(expected)
    assert "Trouser" in expected
    # And both failed items are listed with their reasons
    failures = {name: error for name, error in page.tables["failures"][1:]}
    assert set(failures) == {"batch.zip/broken/truncated.jpg", "batch.zip/readme.txt"}
    assert "truncated" in failures["batch.zip/broken/truncated.jpg"]
    # And a screenshot of it was saved for people to look at
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
