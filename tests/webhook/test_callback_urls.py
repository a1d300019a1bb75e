"""POST /v1/jobs checks a callback URL before it accepts the job."""
from __future__ import annotations

from tests.helpers import garment_png


def test_the_api_refuses_private_callback_urls_unless_allowed(settings, api_key):
    import io

    from webhook import create_app

    client = create_app(settings.replace(callback_allow_private=False)).test_client()
    resp = client.post("/v1/jobs", data={"callback_url": "http://127.0.0.1:9/hook",
                                         "files": [(io.BytesIO(garment_png()), "a.png")]},
                       headers={"X-API-Key": api_key}, content_type="multipart/form-data")
    assert resp.status_code == 400 and "non-public" in resp.get_json()["error"]
