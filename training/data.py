"""Fashion-MNIST from the IDX gz files in a local directory; nothing is downloaded unless asked for."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CANDIDATE_DIRS = ("data/fashion-mnist", "../shared/datasets/fashion-mnist")
# Training-time normalization; the preprocessing config records the same numbers for inference.
MEAN, STD = 0.2860, 0.3530


def default_data_dir() -> Path:
    """`FB_FASHION_MNIST_DIR`, else the first existing candidate directory (the first one if none exists)."""
    from pipeline.settings import load_settings

    configured = load_settings().fashion_mnist_dir
    if configured:
        return configured
    for cand in CANDIDATE_DIRS:
        if (Path(cand) / FILES["train"][0]).exists():
            return Path(cand)
    return Path(CANDIDATE_DIRS[0])


def _read_idx(path: Path, magic: int, dims: int) -> np.ndarray:
    raw = gzip.open(path, "rb").read()
    if int.from_bytes(raw[:4], "big") != magic:
        raise ValueError(f"{path}: not an IDX file with magic {magic}")
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_split(split: str, data_dir: Path | None = None, download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 (N,28,28), labels int64 (N,)) for 'train' or 'test'."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    img_name, lbl_name = FILES[split]
    if not (data_dir / img_name).exists():
        if not download:
            raise FileNotFoundError(
                f"Fashion-MNIST not found in {data_dir} (expected {img_name}); pass --data-dir, set "
                "FB_FASHION_MNIST_DIR, or pass --download to fetch it with torchvision"
            )
        _download(data_dir)
    images = _read_idx(data_dir / img_name, 2051, 3)
    labels = _read_idx(data_dir / lbl_name, 2049, 1).astype(np.int64)
    return images, labels


def _download(data_dir: Path) -> None:
    # Only on explicit request: torchvision fetches the same gz files into <root>/FashionMNIST/raw.
    from torchvision.datasets import FashionMNIST

    root = data_dir / "_torchvision"
    for train in (True, False):
        FashionMNIST(str(root), train=train, download=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    for names in FILES.values():
        for name in names:
            (data_dir / name).write_bytes((root / "FashionMNIST" / "raw" / name).read_bytes())


def split_train_val(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic disjoint index arrays (train, validation) over `n` training samples."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[val_size:]), np.sort(perm[:val_size])


def to_tensor_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N,28,28) -> normalized float32 (N,1,28,28), the network's input."""
    x = images.astype(np.float32)[:, None] / 255.0
    return (x - MEAN) / STD
