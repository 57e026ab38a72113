import gzip
import struct

import numpy as np
import pytest
import torch
from torchvision.datasets import EMNIST, MNIST

from fedkd_lessons.data.paper_scale import data_folder, load_emnist_letter_parties, load_mnist


def write_idx(path, array, packed=False):
    """An idx ubyte file as LeCun's format defines it: magic 0x0000 08 <ndim>, big-endian sizes, bytes."""
    array = np.asarray(array, dtype=np.uint8)
    payload = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    opener = gzip.open if packed else open
    with opener(str(path) + (".gz" if packed else ""), "wb") as handle:
        handle.write(payload)


def fake_mnist(root, count=12, packed=True):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28)), packed)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(count) % 10, packed)


def fake_emnist(root, per_letter=6):
    raw = root / "EMNIST" / "raw"
    raw.mkdir(parents=True)
    labels = np.repeat(np.arange(1, 9), per_letter)  # a..h: g and h must be dropped
    images = np.zeros((len(labels), 28, 28), dtype=np.uint8)
    images[:, 0, 5] = 255  # stored transposed: this pixel must come back at row 5, column 0
    for split in ("train", "test"):
        write_idx(raw / f"emnist-letters-{split}-images-idx3-ubyte", images)
        write_idx(raw / f"emnist-letters-{split}-labels-idx1-ubyte", labels)


def test_data_folder_follows_fedkd_data(monkeypatch, tmp_path):
    monkeypatch.setenv("FEDKD_DATA", str(tmp_path))
    assert data_folder() == tmp_path
    monkeypatch.delenv("FEDKD_DATA")
    assert data_folder().name == "fedkd-lessons"


def test_mnist_loads_gzipped_raw_files_through_torchvision(tmp_path):
    fake_mnist(tmp_path, packed=True)
    split = load_mnist(tmp_path, download=False)
    assert split.train_images.shape == (12, 1, 28, 28) and split.test_images.shape == (12, 1, 28, 28)
    assert 0.0 <= split.train_images.min() and split.train_images.max() <= 1.0
    assert split.train_labels.tolist() == [i % 10 for i in range(12)]
    raw = MNIST(str(tmp_path), train=True).data  # torchvision's own reading of the same files
    torch.testing.assert_close(split.train_images[:, 0], raw.float() / 255)


def test_emnist_letters_a_to_f_become_labels_10_to_15_upright(tmp_path):
    fake_emnist(tmp_path)
    data = load_emnist_letter_parties(num_parties=2, per_class=3, root=tmp_path, download=False)
    assert len(data.private) == 2
    for images, labels in data.private:
        assert images.shape == (18, 1, 28, 28)
        assert sorted(labels.tolist()) == sorted(list(range(10, 16)) * 3)
        assert images[:, 0, 5, 0].eq(1.0).all() and images[:, 0, 0, 5].eq(0.0).all()
    assert len(data.validation_labels) + len(data.test_labels) == 36  # a-f of the test file, g-h dropped
    assert set(data.test_labels.tolist()) <= set(range(10, 16))
    assert len(EMNIST(str(tmp_path), split="letters", train=True)) == 48


def test_too_few_letters_for_the_parties_is_a_clear_error(tmp_path):
    fake_emnist(tmp_path)
    with pytest.raises(ValueError, match="per_class: EMNIST has only 6"):
        load_emnist_letter_parties(num_parties=2, per_class=4, root=tmp_path, download=False)


def test_missing_data_without_download_says_what_to_do(tmp_path):
    with pytest.raises(RuntimeError, match="call with download=True once while online, or copy"):
        load_mnist(tmp_path, download=False)


def test_offline_download_is_one_clear_line(tmp_path, monkeypatch):
    def no_network(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(MNIST, "download", no_network)
    with pytest.raises(RuntimeError) as caught:
        load_mnist(tmp_path, download=True)
    message = str(caught.value)
    assert "\n" not in message and "connect to the internet once" in message and str(tmp_path) in message
