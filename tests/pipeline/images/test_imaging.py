"""Safe decoding: accepted formats only, bounded pixels, and fuzzed files that fail cleanly."""
from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image, ImageFilter

from pipeline.images.imaging import (
    SNIFF_BYTES,
    ImageError,
    decode_image,
    decode_jpeg_rgb,
    sniff_format,
)
from tests.helpers import garment_png, phone_photo


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_every_listed_format_decodes(fmt):
    data = garment_png(fmt=fmt)
    assert sniff_format(data[:16]) == fmt
    assert decode_image(data).size == (120, 160)


def test_other_formats_are_refused_before_decoding():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PPM")
    for data in (buf.getvalue(), b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"%PDF-1.4"):
        with pytest.raises(ImageError, match="not a supported image"):
            decode_image(data)


def test_pixel_cap_refuses_large_images_from_their_header():
    buf = io.BytesIO()
    Image.new("L", (4000, 3000)).save(buf, "PNG")
    with pytest.raises(ImageError, match="too large"):
        decode_image(buf.getvalue(), max_pixels=10_000_000)


def test_fuzzed_images_fail_with_image_error_only():
    # Given valid files of every format, randomly corrupted (bytes flipped, cut, duplicated)
    rng = random.Random(1234)
    seeds = [garment_png(fmt=f) for f in ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")]
    seeds += [phone_photo("HEIC"), phone_photo("AVIF")]
    outcomes = {"decoded": 0, "refused": 0}
    for i in range(600):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 12)):
            pos = rng.randrange(len(data))
            op = rng.random()
            if op < 0.6:
                data[pos] = rng.randrange(256)
            elif op < 0.8:
                del data[pos: pos + rng.randint(1, 64)]
            else:
                data[pos:pos] = data[pos: pos + rng.randint(1, 64)]
        # When each is decoded, Then it either decodes or raises ImageError: never anything else
        try:
            decode_image(bytes(data), max_pixels=5_000_000)
            outcomes["decoded"] += 1
        except ImageError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 50 and sum(outcomes.values()) == 600


@pytest.mark.parametrize("fmt, name", [("HEIC", "HEIF"), ("AVIF", "AVIF")])
def test_phone_formats_are_recognised_by_content_and_decoded_upright(fmt, name):
    # Given a portrait photo stored on its side with EXIF orientation 6, as a phone saves it
    data = phone_photo(fmt, orientation=6, size=(120, 160))
    # When it is sniffed and decoded
    assert sniff_format(data[:SNIFF_BYTES]) == name
    img = decode_image(data)
    # Then it is upright: portrait again, the garment's waistband at the top as in the PNG it was made from
    assert img.size == (120, 160)
    upright = np.asarray(decode_image(garment_png("trouser", (120, 160))).convert("L"), np.float32)
    assert np.abs(np.asarray(img.convert("L"), np.float32) - upright).mean() < 12


@pytest.mark.parametrize("fmt", ["HEIC", "AVIF"])
def test_truncated_phone_photos_are_image_errors(fmt):
    data = phone_photo(fmt)
    with pytest.raises(ImageError):
        decode_image(data[: len(data) // 2])


def test_other_iso_media_files_are_not_images():
    # An MP4 video starts with a ftyp box too; it is not a photo
    assert sniff_format(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom") is None


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, **kw)
    return buf.getvalue()


def _scene(size=(401, 517)) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).filter(
        ImageFilter.GaussianBlur(2))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_fast_jpeg_path_gives_pillows_pixels_upright(orientation):
    # Given a JPEG with an EXIF orientation (odd sizes, so a wrong scale or turn shows)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _jpeg(_scene(), exif=exif)
    # When decoded straight to numpy for a 128 px working size
    fast = decode_jpeg_rgb(data, box=(128, 128))
    # Then it is exactly Pillow's draft decode, turned upright
    slow = np.asarray(decode_image(data, draft_size=(128, 128)).convert("RGB"))
    assert fast is not None and fast.shape == slow.shape and np.array_equal(fast, slow)


@pytest.mark.parametrize("kind", ["grey", "progressive", "small", "large"])
def test_the_fast_jpeg_path_matches_pillow_on_other_jpegs(kind):
    img = {"grey": _scene().convert("L"), "small": _scene((90, 70)), "large": _scene((2100, 1500))}.get(kind, _scene())
    data = _jpeg(img, progressive=kind == "progressive")
    fast = decode_jpeg_rgb(data, box=(128, 128))
    slow = np.asarray(decode_image(data, draft_size=(128, 128)).convert("RGB"))
    assert fast is not None and np.array_equal(fast, slow)


def test_jpegs_the_fast_path_does_not_take_go_to_pillow():
    # CMYK, truncated and corrupt JPEGs, and other formats: None (the caller asks Pillow, which says what is wrong)
    cmyk = _jpeg(_scene().convert("CMYK"))
    good = _jpeg(_scene())
    for data in (cmyk, good[: len(good) // 2], good[:200] + b"\x00" * 500 + good[700:], b"\x89PNG\r\n\x1a\n" + good):
        assert decode_jpeg_rgb(data, box=(128, 128)) is None
    # and an image over the pixel limit is refused from its header
    with pytest.raises(ImageError, match="too large"):
        decode_jpeg_rgb(good, box=(128, 128), max_pixels=1000)
