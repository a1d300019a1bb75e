"""Choosing the model of a job: the photo model by default, another on request, an unknown one refused."""
from __future__ import annotations

import io

from tests.helpers import garment_png


def upload(client, key, **form):
    data = {**form, "files": [(io.BytesIO(garment_png()), "a.png")]}
    return client.post("/v1/jobs", data=data, headers={"X-API-Key": key}, content_type="multipart/form-data")


def test_a_job_gets_the_photo_model_unless_it_names_another(client, api_key, app):
    catalogue = app.extensions["fashion_batch"].catalogue
    settings = app.extensions["fashion_batch"].settings
    # When a job names no model / Then it is the photo model's, on that model's CPU backend
    job = upload(client, api_key).get_json()
    assert job["model"] == "photo" and job["model_version"] is None  # pinned when a worker first takes it
    assert job["backend"] == settings.default_backend_for("cpu", catalogue.get("photo").serving)
    # When a job asks for the Fashion-MNIST CNN / Then it gets it, on its preferred CPU backend (INT8)
    resp = upload(client, api_key, model="fmnist")
    assert resp.status_code == 202 and resp.get_json()["model"] == "fmnist" and resp.get_json()["backend"] == "int8"
    # And the status and result pages name it too
    status = client.get(resp.get_json()["status_url"], headers={"X-API-Key": api_key}).get_json()
    results = client.get(resp.get_json()["results_url"], headers={"X-API-Key": api_key}).get_json()
    assert status["model"] == "fmnist" and results["model"] == "fmnist"


def test_an_unknown_model_is_a_400_that_names_the_models(client, api_key):
    # When a form or a JSON body names a model this server does not have
    form = upload(client, api_key, model="resnet")
    body = client.post("/v1/jobs", json={"source": "s3://fb-sources/x/", "model": "resnet"},
                       headers={"X-API-Key": api_key})
    # Then both are refused, saying which models there are
    for resp in (form, body):
        assert resp.status_code == 400, resp.get_json()
        assert resp.get_json()["error"] == "unknown model 'resnet': choose one of fmnist, photo"


def test_the_openapi_document_lists_the_models(client):
    spec = client.get("/openapi.json").get_json()
    form = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["model"]["enum"] == ["fmnist", "photo"]
    assert "model" in spec["components"]["schemas"]["Job"]["properties"]
