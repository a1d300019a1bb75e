"""The catalogue: one folder per model under FB_WEIGHTS_DIR, each built from its manifest alone."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from pipeline.images.config import PreprocessConfig
from pipeline.images.letterbox import LetterboxConfig
from pipeline.inference.backends import load_backend
from pipeline.inference.catalogue import UnknownModel, load_catalogue
from pipeline.inference.manifest import WeightsError
from tests.helpers import ROOT


@pytest.fixture()
def root(tmp_path, exported_weights, exported_photo):
    """A weights folder with both models, as FB_WEIGHTS_DIR has them."""
    out = tmp_path / "weights"
    shutil.copytree(exported_weights, out / "fmnist")
    shutil.copytree(exported_photo, out / "photo")
    return out


def test_both_models_are_found_with_their_own_preprocessing_and_input(root):
    # When the catalogue reads the weights folder
    cat = load_catalogue(root)
    # Then it names both models, each with the preprocessing and input shape its manifest says
    assert cat.names == ("fmnist", "photo")
    assert isinstance(cat.get("fmnist").preprocess, PreprocessConfig) and cat.get("fmnist").input_shape == (1, 28, 28)
    assert isinstance(cat.get("photo").preprocess, LetterboxConfig) and cat.get("photo").input_shape == (3, 64, 64)
    assert set(cat.versions()) == {"fmnist", "photo"} and len(set(cat.versions().values())) == 2


def test_an_unknown_model_names_the_ones_there_are(root):
    with pytest.raises(UnknownModel, match="unknown model 'nope': choose one of fmnist, photo"):
        load_catalogue(root).get("nope")


def test_the_old_single_model_layout_is_explained(exported_weights, tmp_path):
    # Given a weights folder that is itself a model folder (the layout before there were several models)
    old = shutil.copytree(exported_weights, tmp_path / "weights")
    # Then the error says where models go now
    with pytest.raises(WeightsError, match="one folder each"):
        load_catalogue(old)


def test_a_third_model_is_a_folder_and_nothing_else(root):
    # Given a third model folder (here: the CNN again under another name)
    third = shutil.copytree(root / "fmnist", root / "fmnist-b")
    raw = json.loads((third / "manifest.json").read_text())
    (third / "manifest.json").write_text(json.dumps({**raw, "name": "fmnist-b"}))
    # When the catalogue is read / Then it serves it like the others, from its manifest alone
    cat = load_catalogue(root)
    assert "fmnist-b" in cat.names
    probs = load_backend("onnx", manifest=cat.get("fmnist-b"), threads=1).predict(np.zeros((2, 1, 28, 28), np.float32))
    assert probs.shape == (2, 10)


def test_an_unknown_preprocessing_kind_or_architecture_is_refused(root):
    raw = json.loads((root / "photo" / "manifest.json").read_text())
    (root / "photo" / "manifest.json").write_text(json.dumps({**raw, "arch": {"name": "resnet999", "args": {}}}))
    with pytest.raises(ValueError, match="unknown architecture 'resnet999'"):
        load_backend("eager", manifest=load_catalogue(root).get("photo"))
    (root / "photo" / "manifest.json").write_text(json.dumps({**raw, "preprocess": {"kind": "crop", "size": 9}}))
    with pytest.raises(WeightsError, match="unknown preprocessing kind 'crop'"):
        load_catalogue(root)


def test_reading_the_catalogue_imports_no_ml_runtime_nor_opencv():
    # Given a fresh interpreter / When it reads the repository's catalogue (what the web service does)
    code = ("import sys; from pipeline.inference.catalogue import load_catalogue; load_catalogue('weights'); "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    # Then neither torch, ONNX Runtime nor OpenCV was imported
    assert out.strip() == "[]"
