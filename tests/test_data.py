import numpy as np
import pytest
import torch

from fedkd_lessons.data import load_digits_split, stratified_indices


def test_digits_split_shapes_ranges_and_determinism(digits):
    assert digits.train_images.shape == (1437, 1, 8, 8) and digits.test_images.shape == (360, 1, 8, 8)
    assert digits.train_images.dtype == torch.float32 and digits.train_labels.dtype == torch.long
    assert 0.0 == digits.train_images.min() and digits.train_images.max() == 1.0
    again = load_digits_split()
    assert torch.equal(again.test_labels, digits.test_labels)
    assert "train=1437" in repr(digits)


def test_split_is_stratified_and_disjoint(digits):
    train_share = np.bincount(digits.train_labels.numpy()) / len(digits.train_labels)
    test_share = np.bincount(digits.test_labels.numpy()) / len(digits.test_labels)
    np.testing.assert_allclose(train_share, test_share, atol=0.01)
    train_rows = {tuple(x) for x in digits.train_images.flatten(1).tolist()}
    test_rows = [tuple(x) for x in digits.test_images.flatten(1).tolist()]
    # load_digits holds a few exact duplicate images; nearly every test image is unseen
    assert sum(row in train_rows for row in test_rows) < 5


def test_stratified_indices_cover_everything_once():
    labels = np.repeat(np.arange(4), 25)
    kept, held = stratified_indices(labels, 0.2, seed=0)
    assert len(held) == 20 and np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(100))
    assert np.all(np.bincount(labels[held]) == 5)


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -0.1])
def test_bad_fraction_is_rejected(bad):
    with pytest.raises(ValueError, match="fraction"):
        stratified_indices(np.arange(10) % 2, bad, seed=0)
