"""`POST /v1/classify`: one image, answered synchronously with its label."""
from __future__ import annotations

import io

from tests.helpers import garment_png


def post(client, key, body: bytes | None, name: str = "t.jpg", field: str = "file", **form):
    data = {**form, **({} if body is None else {field: (io.BytesIO(body), name)})}
    return client.post("/v1/classify", data=data, headers={"X-API-Key": key}, content_type="multipart/form-data")


def test_an_image_is_labelled_at_once(client, api_key):
    # Given a photo of trousers
    photo = garment_png("trouser", (300, 400), fmt="JPEG")
    # When it is posted for the Fashion-MNIST CNN
    resp = post(client, api_key, photo, name="photos/t.jpg", model="fmnist")
    # Then the answer is its label, with probabilities that sum to one, and the model and version that gave it
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert set(body) == {"name", "label", "class_name", "confidence", "probabilities", "model", "model_version"}
    assert body["model"] == "fmnist" and len(body["model_version"]) == 64
    assert body["name"] == "t.jpg" and body["class_name"] == "Trouser" and body["label"] == 1
    assert len(body["probabilities"]) == 10 and abs(sum(body["probabilities"]) - 1) < 1e-3
    assert abs(body["confidence"] - max(body["probabilities"])) < 1e-5


def test_a_bad_image_or_no_image_is_a_json_400(client, api_key):
    jpeg = garment_png(fmt="JPEG")
    for body, field, message in ((jpeg[: len(jpeg) // 3], "file", "truncated"),
                                 (b"just some text", "file", "not a supported image"),
                                 (jpeg, "files", "multipart part named 'file'"),
                                 (None, "file", "multipart part named 'file'")):
        # When an unusable upload is posted
        resp = post(client, api_key, body, field=field)
        # Then it is refused with a message that says why
        assert resp.status_code == 400, (field, resp.get_json())
        assert message in resp.get_json()["error"]


def test_it_needs_an_api_key(client):
    resp = client.post("/v1/classify", data={"file": (io.BytesIO(garment_png()), "a.png")},
                       content_type="multipart/form-data")
    assert resp.status_code == 401 and "API key" in resp.get_json()["error"]


def test_the_default_model_is_the_photo_model_and_an_unknown_one_is_a_400(client, api_key):
    photo = garment_png("trouser", (300, 400), fmt="JPEG")
    # When an image is posted without a model / Then the photo model labels it
    body = post(client, api_key, photo).get_json()
    assert body["model"] == "photo" and len(body["probabilities"]) == 10
    # When a model the server lacks is named / Then a JSON 400 names the ones it has
    resp = post(client, api_key, photo, model="resnet")
    assert resp.status_code == 400 and "unknown model 'resnet'" in resp.get_json()["error"]
    assert "fmnist" in resp.get_json()["error"] and "photo" in resp.get_json()["error"]
