"""Hostile uploads through the real HTTP server: refused with a clear error, quickly, in bounded memory, and
nothing written outside the storage folder. Images that slip into a job fail as their own items."""
from __future__ import annotations

import io
import resource
import socket
import struct
import time
import zipfile
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.helpers import garment_png, wait_for
from tests.pipeline.images.test_archive import overlapping_zip

FINAL = ("succeeded", "partial", "failed", "cancelled")
MEMORY_BOUND_MB = 200  # no refusal may raise this process's peak memory by more than this
SAFETY_BOUND_S = 10  # a guard against expanding a bomb, not a speed target (each takes well under 1 s here)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def post(url: str, key: str, files: list[tuple[str, bytes]]) -> tuple[requests.Response, float, float]:
    """POST a job; return the response, the seconds it took and how much the peak RSS grew (MB)."""
    peak, start = peak_mb(), time.perf_counter()
    resp = requests.post(f"{url}/v1/jobs", headers={"X-API-Key": key}, timeout=60,
                         files=[("files", (name, data, "application/octet-stream")) for name, data in files])
    return resp, time.perf_counter() - start, peak_mb() - peak


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def ratio_bomb(megabytes: int = 300) -> bytes:
    """One member that inflates to `megabytes` of zeros (about 1000:1), written without holding it in memory."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("photo.png", "w", force_zip64=True) as f:
        block = b"\0" * (1 << 20)
        for _ in range(megabytes):
            f.write(block)
    return buf.getvalue()


def many_entries(n: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            zf.writestr(f"e{i}.png", b"")
    return buf.getvalue()


@pytest.mark.parametrize("case, files, status, message", [
    ("high-ratio zip bomb", lambda: [("bomb.zip", ratio_bomb())], 413, "compression ratio"),
    ("nested zip bomb", lambda: [("nested.zip", zip_of({f"layer{i}.zip": zip_of({"x.png": ratio_bomb(20)})
                                                        for i in range(3)}, zipfile.ZIP_STORED))], 400, "nested"),
    ("overlapping-entry zip bomb", lambda: [("fifield.zip", overlapping_zip(200))], 400, "overlap"),
    ("100,000 empty entries", lambda: [("many.zip", many_entries(100_000))], 413, "more than 50,000 entries"),
    ("zero-byte file", lambda: [("nothing.jpg", b"")], 400, "empty"),
    ("not an image", lambda: [("evil.exe", b"MZ\x90\x00" + b"\0" * 100)], 400, "neither an image"),
])
def test_hostile_archives_and_files_are_refused(live_url, api_key, case, files, status, message):
    # Given a hostile upload, When it is posted
    resp, seconds, grew_mb = post(live_url, api_key, files())
    # Then it is refused with a clear JSON error, quickly and without a memory spike
    assert resp.status_code == status, (case, resp.text)
    assert message in resp.json()["error"], case
    assert seconds < SAFETY_BOUND_S and grew_mb < MEMORY_BOUND_MB, (case, seconds, grew_mb)


def test_an_over_limit_body_is_refused_before_it_is_sent(live_url, api_key):
    # Given a request announcing a 5 GB body (over the 2 GB default limit), of which nothing is sent
    host, port = live_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nX-API-Key: " + api_key + "\r\n"
                   "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 5000000000\r\n\r\n").encode())
        # When the server answers, Then it is a 413 with a JSON message, sent without waiting for the body
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
        reply = reply.decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413") and "upload too large" in reply


def lying_member_zip(image: bytes) -> bytes:
    """A ZIP whose second member claims to be 10 bytes long but inflates to 3 MB."""
    data = bytearray(zip_of({"good.png": image, "liar.png": b"\x89PNG\r\n\x1a\n" + b"A" * 3_000_000}))
    cd = data.rfind(b"PK\x01\x02")
    struct.pack_into("<L", data, cd + 24, 10)
    lh = data.rfind(b"PK\x03\x04")
    struct.pack_into("<L", data, lh + 22, 10)
    return bytes(data)


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_bad_images_fail_as_their_own_items_and_names_never_become_paths(live_url, worker, api_key, settings):
    good = garment_png()
    jpeg = garment_png(fmt="JPEG")
    polyglot = jpeg + zip_of({"inner.txt": b"hello"})  # a JPEG that is also a ZIP
    huge = png_bytes(Image.new("L", (10_000, 10_000), 255))  # 100 megapixels, a few hundred kB
    archive = zip_of({
        "../../escape.png": good,
        "/tmp/fashion-batch-absolute.png": good,
        "ok.png": good,
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "truncated.png": good[: len(good) // 2],
        "huge.png": huge,
    })
    files = [("tricks.zip", archive), ("liar.zip", lying_member_zip(good)), ("polyglot.zip", polyglot),
             ("huge-direct.png", huge)]
    # When they are posted
    resp, seconds, grew_mb = post(live_url, api_key, files)
    assert resp.status_code == 202, resp.text
    job = resp.json()
    final = wait_for(lambda: (s := requests.get(job["status_url"], headers={"X-API-Key": api_key}, timeout=10)
                              .json())["status"] in FINAL and s, 120, "the job to end")
    items = {i["name"]: i for i in requests.get(job["results_url"], headers={"X-API-Key": api_key},
                                                timeout=10).json()["items"]}
    # Then the good images (and the polyglot, read as the JPEG it starts with) are labelled
    for name in ("tricks.zip/../../escape.png", "tricks.zip/tmp/fashion-batch-absolute.png", "tricks.zip/ok.png",
                 "liar.zip/good.png", "polyglot.zip"):
        assert items[name]["label"] is not None, (name, items[name])
    # And each bad one failed alone with a clear reason
    assert "truncated" in items["tricks.zip/truncated.jpg"]["error"]
    assert "truncated" in items["tricks.zip/truncated.png"]["error"]
    assert "too large" in items["tricks.zip/huge.png"]["error"]
    assert "too large" in items["huge-direct.png"]["error"]
    assert "corrupt archive member" in items["liar.zip/liar.png"]["error"]
    assert final["status"] == "partial" and final["failed"] == 5
    # And nothing was written anywhere but the job's storage folder, under names we chose
    assert not Path("/tmp/fashion-batch-absolute.png").exists()
    assert not (settings.storage_dir.parent.parent / "escape.png").exists()
    # (the job's own folder held only part-00000..3 and is deleted once every item has its result)
    assert not (settings.storage_dir / "jobs" / job["id"]).exists()
    assert {p.name for p in settings.storage_dir.iterdir()} <= {"incoming", "jobs"}
    assert grew_mb < MEMORY_BOUND_MB


def test_too_many_parts_is_refused(settings, api_key):
    from webhook import create_app

    app = create_app(settings.replace(limits=settings.limits.__class__(max_parts=3)))
    data = {"files": [(io.BytesIO(garment_png()), f"{i}.png") for i in range(30)]}
    resp = app.test_client().post("/v1/jobs", data=data, headers={"X-API-Key": api_key},
                                  content_type="multipart/form-data")
    assert resp.status_code == 413 and "too many parts" in resp.get_json()["error"]


def test_submissions_past_the_rate_limit_get_429_with_retry_after(settings, api_key):
    from webhook import create_app

    client = create_app(settings.replace(rate_limit_per_minute=2)).test_client()

    def submit():
        return client.post("/v1/jobs", data={"files": [(io.BytesIO(garment_png()), "a.png")]},
                           headers={"X-API-Key": api_key}, content_type="multipart/form-data")

    codes = [submit().status_code for _ in range(3)]
    if codes == [202, 202, 202]:  # the clock minute turned between the calls; try once more
        codes = [submit().status_code for _ in range(3)]
    assert codes[-1] == 429
    resp = submit()
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
    assert "rate limit" in resp.get_json()["error"]


@pytest.mark.parametrize("chunked", [False, True])
def test_a_large_json_body_is_refused_before_it_is_read(live_url, api_key, chunked):
    # Given a JSON submission of 8 MiB (a source needs a few hundred bytes), sized up front or sent chunked
    body = b'{"source": "s3://fb-sources/' + b"x" * (8 * 1024**2) + b'/"}'
    data = iter([body[i:i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    # When it is posted
    peak = peak_mb()
    resp = requests.post(f"{live_url}/v1/jobs", data=data, timeout=60,
                         headers={"X-API-Key": api_key, "Content-Type": "application/json"})
    # Then it is refused as too large, saying the limit, and was never held whole
    assert resp.status_code == 413 and "65,536" in resp.json()["error"], resp.text
    assert peak_mb() - peak < 8
