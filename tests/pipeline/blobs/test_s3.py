"""The S3 store against a real S3 server (SeaweedFS, started by the session): publish, ranged reads, removal,
and what an unreachable endpoint or a missing object does. No mocks: requests are counted by boto3's own
event hooks on a real client."""
from __future__ import annotations

import socket
import uuid
import zipfile

import pytest

from pipeline.blobs import open_store
from pipeline.blobs.s3_reader import RangedFile
from pipeline.images.archive import ArchiveError, scan_archive
from pipeline.images.ingest import Part, list_items
from pipeline.items import ItemSpec, SourceUnavailable
from pipeline.settings import load_settings
from tests.helpers import garment_png, make_zip


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gets(store) -> list[str]:
    """The Range header of every GET the store's client sends from now on."""
    ranges: list[str] = []
    store.s3.meta.events.register("before-call.s3.GetObject",
                                  lambda params, **_: ranges.append(params["headers"].get("Range", "")))
    return ranges


@pytest.fixture()
def store(s3_env):
    return open_store(load_settings(s3_env))


def _published(store, tmp_path, members: dict[str, bytes], compression=zipfile.ZIP_STORED):
    job_id = uuid.uuid4()
    folder = store.scratch_dir(job_id)
    folder.mkdir(parents=True)
    path = make_zip(folder / "part-00000", members, compression)
    specs = list_items([Part(path, "photos.zip")], store.settings.limits)
    store.publish(job_id, [path])
    store.discard_scratch(job_id)
    return job_id, specs


def test_members_are_read_with_ranged_gets_neighbours_together(store, tmp_path):
    # Given a 40-photo stored ZIP published to S3 (and no copy left on the web host)
    photos = {f"p/{i}.png": garment_png("shirt" if i % 2 else "trouser", (60 + i, 80)) for i in range(40)}
    job_id, specs = _published(store, tmp_path, photos)
    assert not store.scratch_dir(job_id).exists()
    reader = store.reader(store.settings.limits)
    ranges = _gets(store)
    # When a worker reads a chunk of 30 of them
    reader.plan(job_id, specs[5:35])
    got = [reader.read(job_id, s) for s in specs[5:35]]
    # Then each has its exact bytes, read by one ranged GET for the run, never the whole archive
    assert got == [photos[f"p/{i}.png"] for i in range(5, 35)]
    assert len(ranges) == 1 and ranges[0].startswith("bytes=")
    start, end = map(int, ranges[0][6:].split("-"))
    whole = store.s3.head_object(Bucket=store.bucket, Key=store.key(job_id, "part-00000"))["ContentLength"]
    assert end - start + 1 < whole * 0.8


def test_deflated_members_are_inflated_and_checked(store, tmp_path):
    # Given a deflated ZIP in S3
    photos = {"a.png": garment_png("shirt"), "b.bmp": garment_png("trouser", fmt="BMP")}
    job_id, specs = _published(store, tmp_path, photos, zipfile.ZIP_DEFLATED)
    reader = store.reader(store.settings.limits)
    # When each member is read on its own (no plan)
    # Then it is inflated to the original bytes
    assert [reader.read(job_id, s) for s in specs] == list(photos.values())
    # And a span that disagrees with the data (a lying directory) fails that item only
    lying = ItemSpec(specs[0].name, specs[0].source, specs[0].member,
                     span=specs[0].span.__class__(**{**specs[0].span.__dict__, "crc32": 1}))
    with pytest.raises(ArchiveError, match="corrupt"):
        reader.read(job_id, lying)


def test_a_zip_in_a_bucket_scans_in_place_as_on_disk(store, tmp_path):
    # Given the same ZIP on disk and as an object
    path = make_zip(tmp_path / "x.zip", {f"{i}.png": garment_png() for i in range(25)}, zipfile.ZIP_DEFLATED)
    store.s3.upload_file(str(path), store.bucket, f"{store.prefix}loose/x.zip")
    # When it is scanned through ranged reads
    with path.open("rb") as f:
        on_disk = scan_archive(f, store.settings.limits)
    in_bucket = scan_archive(RangedFile(store.s3, store.bucket, f"{store.prefix}loose/x.zip", path.stat().st_size),
                             store.settings.limits)
    # Then it finds the same members at the same places
    assert in_bucket == on_disk


def test_remove_job_deletes_its_objects_only(store, tmp_path):
    # Given two jobs' parts in S3
    first, _ = _published(store, tmp_path, {"a.png": garment_png()})
    second, _ = _published(store, tmp_path, {"b.png": garment_png()})
    # When the first is removed
    store.remove_job(first)
    # Then its objects are gone and the other job's remain
    def keys(job):
        return store.s3.list_objects_v2(Bucket=store.bucket, Prefix=store.key(job, "x")[:-1]).get("KeyCount")

    assert (keys(first), keys(second)) == (0, 1)


def test_a_missing_object_fails_the_item_and_an_unreachable_store_does_not(store, s3_env, tmp_path):
    # Given an item whose object does not exist, and a store whose endpoint nobody listens on
    missing = ItemSpec("gone.png", "part-00009")
    down = open_store(load_settings({**s3_env, "FB_S3_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}"}))
    job_id, specs = _published(store, tmp_path, {"a.png": garment_png()})
    # Then the missing object is a FileNotFoundError (the item fails) ...
    with pytest.raises(FileNotFoundError):
        store.reader(store.settings.limits).read(job_id, missing)
    # ... and the unreachable store SourceUnavailable, when reading and when publishing (the chunk is retried,
    # the upload answered 503)
    with pytest.raises(SourceUnavailable):
        down.reader(store.settings.limits).read(job_id, specs[0])
    part = tmp_path / "part-00000"
    part.write_bytes(garment_png())
    with pytest.raises(SourceUnavailable):
        down.publish(uuid.uuid4(), [part])


def test_plain_images_are_fetched_ahead_and_each_once(store):
    # Given 20 loose photos as objects (a job from a bucket), one of them missing
    job_id = uuid.uuid4()
    photos = {f"loose-{i}.png": garment_png(size=(50 + i, 70)) for i in range(20)}
    for name, data in photos.items():
        if name != "loose-7.png":
            store.s3.put_object(Bucket=store.bucket, Key=f"{store.prefix}src/{name}", Body=data)
    specs = [ItemSpec(name, f"s3://{store.bucket}/{store.prefix}src/{name}") for name in photos]
    reader = store.reader(store.settings.limits)
    ranges = _gets(store)
    # When a worker reads them as one chunk
    reader.plan(job_id, specs)
    got = {}
    for spec in specs:
        try:
            got[spec.name] = reader.read(job_id, spec)
        except FileNotFoundError:
            got[spec.name] = None
    reader.close()
    # Then each has its bytes (the missing one fails alone), and each object was fetched exactly once
    assert got == {name: (None if name == "loose-7.png" else data) for name, data in photos.items()}
    assert len(ranges) == 20


def test_an_object_shorter_than_its_listing_fails_at_once(store):
    import threading

    # Given an object of 100 bytes that a listing said had 3 MB
    key = f"{store.prefix}short-{uuid.uuid4().hex}"
    store.s3.put_object(Bucket=store.bucket, Key=key, Body=b"x" * 100)
    errors: list[Exception] = []

    def read() -> None:
        try:
            RangedFile(store.s3, store.bucket, key, 3_000_000).read()
        except OSError as exc:
            errors.append(exc)

    # When it is read through a RangedFile (as a ZIP in a bucket is scanned)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(20)
    # Then the read ends with an error the item fails for, instead of looping for ever
    assert not reader.is_alive(), "the ranged read is looping"
    assert len(errors) == 1 and "shorter than" in str(errors[0])


@pytest.mark.parametrize("code, error", [("NoSuchKey", FileNotFoundError), ("AccessDenied", PermissionError),
                                         ("InvalidObjectState", "ItemUnreadable"), ("InvalidRange", "ItemUnreadable"),
                                         ("SlowDown", SourceUnavailable), ("InternalError", SourceUnavailable)])
def test_an_objects_own_faults_fail_its_item_and_only_the_stores_defer(code, error):
    from botocore.exceptions import ClientError

    from pipeline.blobs.s3 import translate
    from pipeline.items import ItemUnreadable

    # Given the error the S3 API answers for one object
    exc = ClientError({"Error": {"Code": code, "Message": "..."}}, "GetObject")
    # Then a missing, denied, archived or out-of-range object is the item's (it fails alone, saying why), and
    # throttling or a server error is the store's (its chunk is deferred)
    expected = ItemUnreadable if error == "ItemUnreadable" else error
    assert type(translate(exc, "s3://b/k")) is expected
