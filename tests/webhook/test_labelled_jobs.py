"""A job whose ZIP carries labels reports accuracy when it ends: status JSON, CSV, job page, CLI."""
from __future__ import annotations

import csv
import io

import requests

from tests.helpers import garment_png, make_zip, wait_for
from tests.pipeline.tools.test_cli import cli

FINAL = ("succeeded", "partial", "failed", "cancelled")


def labelled_zip(path):
    """Four trousers and four shirts in class folders; one of the shirts is a truncated JPEG."""
    jpeg = garment_png("shirt", (200, 260), fmt="JPEG")
    members = {f"my-photos/Trouser/t{i}.png": garment_png("trouser", (120 + 10 * i, 160)) for i in range(4)}
    members.update({f"my-photos/shirt/s{i}.jpg": jpeg for i in range(3)})
    members["my-photos/shirt/broken.jpg"] = jpeg[: len(jpeg) // 3]
    return make_zip(path, members)


def test_a_labelled_zip_reports_accuracy_per_class_and_a_confusion_matrix(live_url, worker, api_key, tmp_path):
    # Given a ZIP with one folder per class
    headers = {"X-API-Key": api_key}
    with labelled_zip(tmp_path / "labelled.zip").open("rb") as z:
        # (the Fashion-MNIST CNN: it is the model these drawn silhouettes resemble)
        job = requests.post(f"{live_url}/v1/jobs", headers=headers, timeout=60, data={"model": "fmnist"},
                            files=[("files", ("labelled.zip", z, "application/zip"))]).json()
    # When the job has ended
    final = wait_for(lambda: (j := requests.get(job["status_url"], headers=headers, timeout=10).json())["status"]
                     in FINAL and j, 120, "the job to end")
    report = final["accuracy"]
    # Then its status reports accuracy over the 8 labelled images, the unreadable one counting as wrong
    assert report["labelled"] == 8 and report["failed"] == 1
    rows = {c["class_name"]: c for c in report["per_class"]}
    assert set(rows) == {"Trouser", "Shirt"}
    assert (rows["Trouser"]["images"], rows["Trouser"]["correct"]) == (4, 4)  # plain trousers are easy
    assert rows["Shirt"]["images"] == 4 and rows["Shirt"]["failed"] == 1
    assert report["accuracy"] == report["correct"] / 8 == (4 + rows["Shirt"]["correct"]) / 8
    # And the confusion matrix holds every classified labelled image in the row of its true class
    names, matrix = report["classes"], report["confusion"]
    assert sum(map(sum, matrix)) == 7 and sum(matrix[names.index("Trouser")]) == 4
    # And the CSV has each image's true class beside the predicted one
    table = list(csv.DictReader(io.StringIO(requests.get(job["results_url"], params={"format": "csv"},
                                                         headers=headers, timeout=10).text)))
    assert {r["true_class_name"] for r in table} == {"Trouser", "Shirt"}
    assert all(r["true_class_name"] == ("Trouser" if "/Trouser/" in r["name"] else "Shirt") for r in table)
    # And the job page shows the accuracy and draws the confusion matrix
    page = requests.get(final["page_url"], timeout=10).text
    assert "Accuracy on the labelled images" in page and '<svg id="confusion"' in page
    assert f"{100 * report['accuracy']:.1f}%" in page


def test_an_unlabelled_job_reports_no_accuracy(live_url, worker, api_key):
    headers = {"X-API-Key": api_key}
    job = requests.post(f"{live_url}/v1/jobs", headers=headers, timeout=60,
                        files=[("files", ("a.png", garment_png(), "image/png"))]).json()
    final = wait_for(lambda: (j := requests.get(job["status_url"], headers=headers, timeout=10).json())["status"]
                     in FINAL and j, 60, "the job to end")
    assert final["accuracy"] is None
    assert "Accuracy on the labelled images" not in requests.get(final["page_url"], timeout=10).text


def test_submitting_a_labelled_folder_prints_its_accuracy(live_url, worker, api_key, tmp_path):
    # Given a folder with a sub-folder per class / When it is submitted with --wait
    (tmp_path / "set" / "Trouser").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "set" / "Trouser" / f"{i}.png").write_bytes(garment_png("trouser", (120 + 10 * i, 160)))
    out = cli({"FB_URL": live_url, "FB_API_KEY": api_key}, "submit", str(tmp_path / "set"), "--model", "fmnist",
              "--wait")
    # Then the job is the Fashion-MNIST CNN's, and the summary ends with the accuracy against those labels
    assert out.returncode == 0, out.stdout + out.stderr
    assert "model fmnist (int8)" in out.stdout
    assert "accuracy 100.0%: 3 of 3 labelled images" in out.stdout
