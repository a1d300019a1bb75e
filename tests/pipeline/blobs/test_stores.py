"""`open_store` picks the implementation by FB_STORAGE_URL's scheme; the local store keeps today's folders."""
from __future__ import annotations

import uuid

import pytest

from pipeline.blobs import open_store
from pipeline.blobs.local import LocalStore, job_dir
from pipeline.images.ingest import Part, list_items
from pipeline.settings import SettingsError, load_settings
from tests.helpers import garment_png, make_zip


def test_the_scheme_chooses_the_store(tmp_path):
    # Given no FB_STORAGE_URL, a file:// one and an s3:// one
    default = open_store(load_settings({"FB_DATA_DIR": str(tmp_path)}))
    folder = open_store(load_settings({"FB_STORAGE_URL": (tmp_path / "blobs").as_uri()}))
    bucket = open_store(load_settings({"FB_STORAGE_URL": "s3://photos/batch"}))
    # Then the first two are local folders (the storage folder by default), the third the bucket and prefix
    assert isinstance(default, LocalStore) and default.root == tmp_path / "storage"
    assert isinstance(folder, LocalStore) and folder.root == tmp_path / "blobs"
    assert (type(bucket).__name__, bucket.bucket, bucket.prefix) == ("S3Store", "photos", "batch/")


@pytest.mark.parametrize("url", ["ftp://host/x", "s3://", "/just/a/path"])
def test_an_unknown_storage_url_stops_the_start(url):
    with pytest.raises(SettingsError, match="FB_STORAGE_URL"):
        load_settings({"FB_STORAGE_URL": url})


def test_the_local_store_reads_in_place_and_removes_the_job_folder(tmp_path):
    # Given a ZIP spooled into a job's folder of the local store
    store = open_store(load_settings({"FB_DATA_DIR": str(tmp_path)}))
    job_id = uuid.uuid4()
    folder = store.scratch_dir(job_id)
    folder.mkdir(parents=True)
    path = make_zip(folder / "part-00000", {"a.png": garment_png()})
    limits = load_settings({}).limits
    specs = list_items([Part(path, "a.zip", source=store.item_source(job_id, path.name))], limits)
    store.publish(job_id, [path])
    store.discard_scratch(job_id)
    # Then the workers read it where it was spooled, and removing the job deletes its folder
    assert store.reader(limits).read(job_id, specs[0]) == garment_png()
    store.remove_job(job_id)
    assert not job_dir(store.root, job_id).exists()
