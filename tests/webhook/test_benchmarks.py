"""`GET /v1/benchmarks` and `fashion-batch bench --history`, over real HTTP."""
from __future__ import annotations

import uuid

from pipeline.inference.benchmark import BackendTiming
from pipeline.store import benchmarks as benchmark_store
from pipeline.tools.bench import run as bench


def test_latest_and_history_are_served_and_printed(live_url, api_key, engine, capsys, monkeypatch):
    # Given a stored run for a pool of its own
    pool = f"q{uuid.uuid4().hex[:6]}"
    run = uuid.uuid4()
    benchmark_store.record(engine, run_id=run, pool=pool, device="cpu", host="bench-host", timings=[
        BackendTiming("eager", 256, 15, 40.0, 45.0, 6400.0, 1.0, 0.93),
        BackendTiming("int8", 256, 15, None, None, None, None, None, "RuntimeError: broken"),
    ], model="fmnist")
    # When the API is asked for this pool's history
    import requests

    resp = requests.get(f"{live_url}/v1/benchmarks", params={"pool": pool}, headers={"X-API-Key": api_key},
                        timeout=10)
    # Then both rows come back in the history, and the latest list holds them too
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert {(r["backend"], r["run_id"]) for r in body["history"]} == {("eager", str(run)), ("int8", str(run))}
    assert {r["backend"] for r in body["latest"] if r["pool"] == pool} == {"eager", "int8"}
    # And the CLI prints them as a table, errors included
    monkeypatch.setenv("FB_URL", live_url)
    monkeypatch.setenv("FB_API_KEY", api_key)
    assert bench.main(["--history", "--limit", "100"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if pool in x and "eager" in x)
    assert "6400" in line and "1.00x" in line and "0.930" in line
    assert any(pool in x and "error: RuntimeError: broken" in x for x in out.splitlines())


def test_it_needs_an_api_key(client):
    assert client.get("/v1/benchmarks").status_code == 401
