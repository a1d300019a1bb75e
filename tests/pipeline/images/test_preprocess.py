"""Preprocessing on synthetic photos: polarity, transparency, EXIF, aspect, blanks, broken files, pass-through."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipeline.images.imaging import ImageError, decode_image
from pipeline.images.preprocess import (
    PreprocessConfig,
    prepare,
    prepare_image,
    to_batch,
)

CFG = PreprocessConfig()


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def unit(x: np.ndarray) -> np.ndarray:
    """Back from the normalized network input to [0, 1] pixel values."""
    return x * CFG.std + CFG.mean


def garment(bg: tuple[int, int, int], fg: tuple[int, int, int], size=(400, 500), box=(120, 100, 280, 420)) -> Image.Image:
    img = Image.new("RGB", size, bg)
    ImageDraw.Draw(img).rectangle(box, fill=fg)
    return img


def extent(x01: np.ndarray, thr: float = 0.2) -> tuple[int, int]:
    ys, xs = np.nonzero(x01 > thr)
    return ys.max() - ys.min() + 1, xs.max() - xs.min() + 1


def test_dark_garment_on_white_becomes_light_on_black_and_fills_the_long_side():
    # Given a catalogue-style photo: a dark, tall garment on a white background
    data = encode(garment((255, 255, 255), (40, 40, 60)), "JPEG", quality=85)
    # When it is prepared
    x = prepare(data, CFG)
    # Then the garment is bright on a zero background, its long side spans the frame, aspect kept
    u = unit(x)
    assert x.shape == (28, 28) and x.dtype == np.float32
    assert u[:, :3].max() < 0.05 and u[14, 14] > 0.9
    h, w = extent(u)
    assert h >= 27 and 12 <= w <= 16


def test_light_garment_on_dark_background_gives_the_same_picture():
    # Given the same garment light-on-dark, and dark-on-light
    light_on_dark = prepare(encode(garment((15, 15, 15), (230, 230, 230))), CFG)
    dark_on_light = prepare(encode(garment((240, 240, 240), (25, 25, 25))), CFG)
    # Then both come out as the same light-on-black silhouette
    assert np.abs(unit(light_on_dark) - unit(dark_on_light)).mean() < 0.05


def test_off_white_noisy_background_is_brought_to_zero():
    # Given an off-white, noisy, slightly shaded background (a phone photo of a bedsheet)
    rng = np.random.default_rng(0)
    bg = 200 + 20 * np.linspace(0, 1, 500)[:, None] + rng.normal(0, 6, (500, 400))
    arr = np.repeat(bg[..., None], 3, axis=2)
    arr[100:420, 120:280] = (90, 60, 50)
    data = encode(Image.fromarray(arr.clip(0, 255).astype(np.uint8)), "JPEG", quality=80)
    # When prepared
    u = unit(prepare(data, CFG))
    # Then the background is zero, not a grey haze, and the garment is found
    assert u[:, :4].mean() < 0.02 and u[:, -4:].mean() < 0.02
    assert u[14, 14] > 0.7


def test_colour_difference_counts_when_tones_are_equal():
    # Given a red garment on a grey floor of about the same luminance
    data = encode(garment((90, 90, 90), (200, 50, 30)))
    # Then it still stands out and fills the frame's long side
    h, _ = extent(unit(prepare(data, CFG)))
    assert h >= 26


@pytest.mark.parametrize("fg", [(20, 20, 20, 255), (235, 235, 235, 255)])
def test_transparent_cutout_is_flattened_so_the_garment_stands_out(fg):
    # Given a PNG cut-out: a dark or light garment on a fully transparent background
    img = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    ImageDraw.Draw(img).ellipse((100, 30, 200, 270), fill=fg)
    # When prepared
    u = unit(prepare(encode(img), CFG))
    # Then the garment is bright, the background zero, whatever the hidden colour of transparent pixels
    assert u[14, 14] > 0.9 and u[:, :3].max() < 0.05
    assert extent(u)[0] >= 27


def test_exif_orientation_is_honoured():
    # Given a tall garment stored sideways with EXIF orientation 6 ("rotate 90 CW to view")
    upright = garment((255, 255, 255), (30, 30, 30), size=(300, 400), box=(110, 40, 190, 360))
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(stored, "JPEG", quality=90, exif=exif)
    # When prepared
    u = unit(prepare(data, CFG))
    # Then it is upright again: taller than wide
    h, w = extent(u)
    assert h > 2 * w


@pytest.mark.parametrize("size", [(2000, 6), (5, 1500), (1, 1), (3, 3)])
def test_extreme_aspect_ratios_and_tiny_images_give_a_valid_array(size):
    # Given very thin, very long or tiny images
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).line((0, 0, size[0], size[1]), fill="black", width=3)
    # When prepared
    x = prepare(encode(img), CFG)
    # Then the result is a finite 28x28 array
    assert x.shape == (28, 28) and np.isfinite(x).all()


def test_blank_image_labels_the_whole_frame_without_error():
    # Given a plain white image: nothing stands out
    x = prepare(encode(Image.new("RGB", (200, 300), "white")), CFG)
    # Then preprocessing still gives an input (all background), not an exception
    assert x.shape == (28, 28) and np.allclose(unit(x), 0, atol=1e-5)


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\xff\xd8\xff" + b"\x00" * 100])
def test_undecodable_bytes_raise_image_error(data):
    # Given empty, foreign or corrupt bytes / Then a readable ImageError, nothing else
    with pytest.raises(ImageError):
        prepare(data, CFG)


def test_truncated_jpeg_raises_image_error():
    # Given a JPEG cut in half
    data = encode(garment((255, 255, 255), (0, 0, 0)), "JPEG")
    # Then it is refused as truncated
    with pytest.raises(ImageError, match="truncated|corrupt"):
        prepare(data[: len(data) // 2], CFG)


def test_fuzzed_files_raise_only_image_error():
    # Given valid headers followed by garbage
    rng = np.random.default_rng(1)
    good = encode(garment((255, 255, 255), (0, 0, 0)), "PNG")
    for i in range(20):
        data = bytearray(good)
        pos = rng.integers(16, len(data), 8)
        data[pos[0]:pos[0] + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        # When prepared / Then it either works or fails with ImageError
        try:
            assert prepare(bytes(data), CFG).shape == (28, 28)
        except ImageError:
            pass


def test_large_jpeg_is_decoded_at_reduced_scale():
    # Given a 12-megapixel JPEG
    data = encode(garment((250, 250, 250), (20, 20, 20), size=(4000, 3000), box=(1500, 500, 2500, 2500)), "JPEG")
    # When decoded with the draft size preprocessing asks for
    img = decode_image(data, draft_size=(CFG.work_long_side, CFG.work_long_side))
    # Then the decoder scaled it down (DCT scaling) instead of producing 12 MP
    assert max(img.size) <= 4000 // 4
    assert extent(unit(prepare(data, CFG)))[0] >= 27


def test_fashion_mnist_images_pass_through_unchanged_in_effect(shipped_manifest):
    # Given Fashion-MNIST test images (weights/sample.npz) as PNG files
    sample = np.load(shipped_manifest.root / shipped_manifest.files["sample"]["path"])
    images = sample["images"][:300]
    cfg = shipped_manifest.preprocess
    # When each goes through the full preprocessing
    prepared = np.stack([prepare(encode(Image.fromarray(im)), cfg) for im in images])
    # Then it is almost the raw normalized image
    raw = (images.astype(np.float32) / 255 - cfg.mean) / cfg.std
    diff = np.abs(unit(prepared) - unit(raw)).mean(axis=(1, 2))
    assert np.median(diff) < 0.01 and diff.mean() < 0.03


def test_to_batch_stacks_into_contiguous_float32():
    # Given two prepared arrays / When batched / Then (N,1,28,28) float32, C-contiguous
    batch = to_batch([np.zeros((28, 28), np.float32), np.ones((28, 28), np.float64)])
    assert batch.shape == (2, 1, 28, 28) and batch.dtype == np.float32 and batch.flags.c_contiguous
    assert to_batch([]).shape == (0, 1, 28, 28)


def test_config_round_trips_and_refuses_unknown_keys():
    # Given a config / When written and read back / Then equal; an unknown key is an error
    assert PreprocessConfig.from_dict(CFG.to_dict()) == CFG
    with pytest.raises(ValueError, match="unknown"):
        PreprocessConfig.from_dict({**CFG.to_dict(), "bogus": 1})


def test_prepare_image_accepts_greyscale_and_16_bit_images():
    # Given already-decoded images in unusual modes
    for img in (Image.new("L", (50, 80), 255), Image.new("I;16", (40, 40), 1000), Image.new("P", (30, 30))):
        # Then they are prepared like any other
        assert prepare_image(img, CFG).shape == (28, 28)


SKIN = (224, 172, 140)


def test_skin_of_a_model_wearing_the_garment_is_treated_as_background():
    # Given a catalogue shot: a navy T-shirt worn by a model (head and arms showing) on white
    shirt_only = garment((255, 255, 255), (30, 40, 90), size=(300, 400), box=(90, 110, 210, 300))
    worn = shirt_only.copy()
    d = ImageDraw.Draw(worn)
    d.ellipse((120, 20, 180, 100), fill=SKIN)
    d.rectangle((72, 120, 88, 280), fill=SKIN)
    d.rectangle((212, 120, 228, 280), fill=SKIN)
    # When both are prepared
    with_model, alone = unit(prepare(encode(worn), CFG)), unit(prepare(encode(shirt_only), CFG))
    # Then the model's skin is dropped and the garment alone remains (about the same shape)
    assert np.abs(with_model - alone).mean() < 0.1
    assert abs(extent(with_model)[1] - extent(alone)[1]) <= 1


def test_an_object_that_is_all_skin_coloured_is_kept():
    # Given a tan leather boot: every pixel that stands out is "skin-coloured"
    data = encode(garment((255, 255, 255), SKIN))
    # Then it is still the object, not background
    assert extent(unit(prepare(data, CFG)))[0] >= 27


@pytest.mark.parametrize("filt", [Image.Resampling.BOX, Image.Resampling.BILINEAR])
def test_the_fit_resizes_exactly_as_pillow_does(filt):
    # Given Pillow's own resize of identity images (what the fit step did before OpenCV)
    from pipeline.images.preprocess import _resize_matrix

    for n_in in range(1, 140, 3):
        for n_out in range(1, 36):
            eye = Image.fromarray(np.eye(n_in, dtype=np.float32), mode="F")
            ref = np.asarray(eye.resize((n_out, n_in), filt), dtype=np.float32).T
            # Then the weight matrices the fit multiplies with are the same
            assert np.abs(ref - _resize_matrix(n_in, n_out, filt)).max() < 1e-6, (n_in, n_out)
