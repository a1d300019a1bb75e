"""Worn-garment extent (pipeline/images/garment.py): a synthetic model's head and trousers are cut off the top."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from pipeline.images.preprocess import PreprocessConfig, prepare_image

SKIN = (224, 172, 140)


def person(top=(200, 30, 30), legs=(30, 40, 120)) -> Image.Image:
    """A white catalogue frame: a skin-coloured head, a red top with sleeves, blue trousers below."""
    img = Image.new("RGB", (300, 500), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.ellipse((125, 20, 175, 85), fill=SKIN)            # face
    d.rectangle((140, 80, 160, 100), fill=SKIN)         # neck
    d.rectangle((95, 100, 205, 260), fill=top)          # torso
    d.rectangle((70, 105, 95, 250), fill=top)           # sleeves
    d.rectangle((205, 105, 230, 250), fill=top)
    d.rectangle((105, 260, 195, 480), fill=legs)        # trousers
    return img


def extent(x: np.ndarray, cfg: PreprocessConfig) -> tuple[int, int]:
    ys, xs = np.nonzero(x * cfg.std + cfg.mean > 0.2)
    return ys.max() - ys.min() + 1, xs.max() - xs.min() + 1


def test_garment_mode_keeps_only_the_top_of_a_person():
    off, on = PreprocessConfig(), PreprocessConfig(garment=True)
    h_off, w_off = extent(prepare_image(person(), off), off)
    h_on, w_on = extent(prepare_image(person(), on), on)
    # Whole person: a tall narrow column. Top only: about as wide as tall, filling the frame.
    assert h_off >= 26 and w_off < 16
    assert w_on >= 24 and h_on <= 28 and h_on < 1.3 * w_on


def test_garment_mode_leaves_objects_without_a_face_alone():
    img = Image.new("RGB", (300, 500), (255, 255, 255))
    ImageDraw.Draw(img).rectangle((80, 60, 220, 440), fill=(30, 40, 120))
    a = prepare_image(img, PreprocessConfig())
    b = prepare_image(img, PreprocessConfig(garment=True, garment_min_aspect=0.9))
    assert np.array_equal(a, b)


def test_grey_images_never_trigger_it():
    # Fashion-MNIST through prepare: grey, no skin, so the output is unchanged.
    rng = np.random.default_rng(0)
    x = np.zeros((28, 28), np.uint8)
    x[4:24, 6:22] = rng.integers(100, 255, (20, 16))
    img = Image.fromarray(x)
    assert np.array_equal(prepare_image(img, PreprocessConfig()), prepare_image(img, PreprocessConfig(garment=True)))
