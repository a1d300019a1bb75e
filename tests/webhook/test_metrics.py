"""`GET /metrics`: figures read from PostgreSQL at scrape time, HTTP counters, and the optional token."""
from __future__ import annotations

import io

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import garment_png, wait_for


def scrape(client, headers: dict | None = None) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of one scrape."""
    resp = client.get("/metrics", headers=headers or {})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(resp.get_data(as_text=True)) for s in fam.samples}


def total(samples: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def submit(client, key, n: int) -> dict:
    files = [(io.BytesIO(garment_png(fmt="JPEG")), f"{i}.jpg") for i in range(n)]
    resp = client.post("/v1/jobs", data={"files": files}, headers={"X-API-Key": key},
                       content_type="multipart/form-data")
    assert resp.status_code == 202
    return resp.get_json()


def test_a_job_shows_up_in_the_database_figures_and_the_http_counters(client, api_key, worker):
    # Given a scrape before anything happens
    before = scrape(client)
    assert total(before, "fashion_batch_database_up") == 1
    # When a 3-image job is submitted and a real worker finishes it
    job = submit(client, api_key, 3)
    wait_for(lambda: client.get(job["status_url"], headers={"X-API-Key": api_key}).get_json()["status"]
             == "succeeded", 60, "the job to succeed")
    after = scrape(client)
    # Then there is one more job, three more labelled items, and the chunk histogram counted its chunk
    assert total(after, "fashion_batch_jobs") == total(before, "fashion_batch_jobs") + 1
    assert total(after, "fashion_batch_items", outcome="labelled") >= total(before, "fashion_batch_items",
                                                                            outcome="labelled") + 3
    assert (total(after, "fashion_batch_chunk_duration_seconds_count", pool="cpu")
            > total(before, "fashion_batch_chunk_duration_seconds_count", pool="cpu"))
    assert total(after, "fashion_batch_chunk_duration_seconds_bucket", pool="cpu", le="+Inf") == \
        total(after, "fashion_batch_chunk_duration_seconds_count", pool="cpu")
    # And the HTTP counter saw the accepted submission under its route, not its raw path
    assert total(after, "fashion_batch_http_requests_total", route="/v1/jobs", method="POST", status="202") == \
        total(before, "fashion_batch_http_requests_total", route="/v1/jobs", method="POST", status="202") + 1
    assert total(after, "fashion_batch_http_requests_total", route="/v1/jobs/<uuid:job_id>") >= 1


def test_a_metrics_token_is_required_when_configured(settings):
    from webhook import create_app

    # Given the app configured with a metrics token
    client = create_app(settings.replace(metrics_token="s3cret-metrics-token")).test_client()
    # When scraped without it, or with a wrong one, Then it is refused
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    # And with it, it answers
    assert total(scrape(client, {"Authorization": "Bearer s3cret-metrics-token"}), "fashion_batch_database_up") == 1


def test_a_database_outage_is_a_metric_not_an_error(settings):
    from webhook import create_app

    # Given the app pointed at a database that is not there
    bad = settings.replace(database_url="postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    samples = scrape(create_app(bad).test_client())
    # Then the scrape still answers, saying the database is down
    assert total(samples, "fashion_batch_database_up") == 0


def test_cancelled_items_are_their_own_outcome_not_failed(client, api_key):
    # Given a scrape, then a 3-image job on a pool no test worker serves, cancelled while queued
    before = scrape(client)
    files = [(io.BytesIO(garment_png(fmt="JPEG")), f"{i}.jpg") for i in range(3)]
    job = client.post("/v1/jobs", data={"files": files, "pool": "gpu"}, headers={"X-API-Key": api_key},
                      content_type="multipart/form-data").get_json()
    assert client.delete(job["status_url"], headers={"X-API-Key": api_key}).status_code == 200
    after = scrape(client)
    # Then its three items count as cancelled, and not one as failed
    assert total(after, "fashion_batch_items", outcome="cancelled") == \
        total(before, "fashion_batch_items", outcome="cancelled") + 3
    assert total(after, "fashion_batch_items", outcome="failed") == total(before, "fashion_batch_items", outcome="failed")
