"""The web service is a lean process: answering requests imports neither torch nor ONNX Runtime."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import requests

from tests.helpers import ROOT, garment_png

# The web service in a process of its own, as gunicorn would run it (one process, request threads);
# it prints its port, serves until told to stop on stdin, then reports what it imported and its RSS.
SERVE = r"""
import json, sys, threading
from werkzeug.serving import make_server
from webhook import create_app

server = make_server("127.0.0.1", 0, create_app(), threaded=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(server.server_port, flush=True)
sys.stdin.readline()
import psutil
loaded = sorted(m for m in ("torch", "torchvision", "onnxruntime", "onnx", "training") if m in sys.modules)
print(json.dumps({"loaded": loaded, "rss": psutil.Process().memory_info().rss}), flush=True)
"""


def test_the_web_process_answers_requests_without_torch_or_onnxruntime(env, api_key, record_property):
    # Given the web service started in its own process
    proc = subprocess.Popen([sys.executable, "-c", SERVE], env={**os.environ, **env}, cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{proc.stdout.readline().strip()}"
        headers = {"X-API-Key": api_key}
        # When it answers health, a job submission, the job's status, results and page, and its metrics
        assert requests.get(f"{base}/healthz", timeout=30).status_code == 200
        resp = requests.post(f"{base}/v1/jobs", headers=headers, timeout=60,
                             files=[("files", ("a.png", garment_png(), "image/png"))])
        assert resp.status_code == 202, resp.text
        job = resp.json()
        assert requests.get(job["status_url"], headers=headers, timeout=30).status_code == 200
        assert requests.get(job["results_url"], headers=headers, timeout=30).status_code == 200
        assert requests.get(job["page_url"], timeout=30).status_code == 200
        assert requests.get(f"{base}/metrics", timeout=30).status_code == 200
        requests.delete(job["status_url"], headers=headers, timeout=30)
        proc.stdin.write("report\n")
        proc.stdin.flush()
        report = json.loads(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()
    # Then it has imported neither torch nor ONNX Runtime (nor the training code)
    assert report["loaded"] == [], report
    # And it stays small: the README reports this figure (target < 150 MB); torch alone would add hundreds
    rss_mb = report["rss"] / 2**20
    record_property("web_rss_mb", round(rss_mb, 1))
    print(f"\nweb process RSS after answering requests: {rss_mb:.1f} MB")
    assert rss_mb < 250, f"the web process uses {rss_mb:.0f} MB"
