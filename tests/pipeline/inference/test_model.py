"""pipeline.inference.model: the network's mirror averaging, in eager mode and in the exported graphs."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pipeline.inference.model import build_model  # noqa: E402


def _pair(seed: int = 0):
    torch.manual_seed(seed)
    plain = build_model(args={"channels": [4, 8, 16]}).eval()
    mirrored = build_model(args={"channels": [4, 8, 16], "mirror": True}).eval()
    mirrored.load_state_dict(plain.state_dict())
    return plain, mirrored


def test_mirror_averages_the_logits_of_the_image_and_its_mirror():
    # Given the same weights with and without mirror, and a batch of odd size
    plain, mirrored = _pair()
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        # When both label it / Then the mirrored output is the mean of the two views' logits
        expected = (plain(x) + plain(x.flip(3))) / 2
        got = mirrored(x)
        # and an image and its mirror get the same answer
        assert torch.allclose(mirrored(x.flip(3)), got, atol=1e-5)
    assert got.shape == (5, 10) and torch.allclose(got, expected, atol=1e-5)


def test_training_sees_one_view():
    # Given a mirror model in training mode (dropout off, so the output is deterministic)
    plain, mirrored = _pair()
    plain.train(), mirrored.train()
    plain.dropout.p = mirrored.dropout.p = 0.0
    x = torch.randn(4, 1, 28, 28)
    # When it runs / Then it is the plain network's forward pass
    assert torch.allclose(mirrored(x), plain(x), atol=1e-5)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.load's deprecation notice
def test_exported_graphs_keep_the_mirror_at_any_batch_size(tmp_path):
    # Given a mirror model exported as TorchScript and ONNX (traced at batch 2)
    import onnxruntime as ort

    from training.export import FILES, export_onnx, export_torch

    _, mirrored = _pair(seed=3)
    fused = export_torch(mirrored, tmp_path)
    export_onnx(fused, tmp_path / FILES["onnx"])
    ts = torch.jit.load(str(tmp_path / FILES["torchscript"]))
    sess = ort.InferenceSession(str(tmp_path / FILES["onnx"]), providers=["CPUExecutionProvider"])
    for n in (1, 7):
        x = torch.randn(n, 1, 28, 28)
        with torch.no_grad():
            want = mirrored(x).numpy()
            # When each labels a batch of another size / Then they give the eager model's logits
            assert np.allclose(ts(x).numpy(), want, atol=1e-4)
        assert np.allclose(sess.run(None, {"input": x.numpy()})[0], want, atol=1e-4)
