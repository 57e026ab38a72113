"""The offline data: scikit-learn's 1,797 real handwritten 8x8 digits, as tensors (lesson 1)."""

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from .validation import check_fraction

DIGIT_CLASSES = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class ImageSplit:
    """Images ``(N, 1, H, W)`` in [0, 1] (float32) and integer labels ``(N,)`` of a train/test split."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor

    def __repr__(self) -> str:
        return (
            f"ImageSplit(train={len(self.train_labels)}, test={len(self.test_labels)}, "
            f"image shape={tuple(self.train_images.shape[1:])})"
        )


def stratified_indices(labels, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(labels))`` into (kept, held out) with ``fraction`` held out per class."""
    fraction = check_fraction(fraction, "fraction")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be strictly between 0 and 1, got {fraction}")
    labels = np.asarray(labels)
    kept, held_out = train_test_split(
        np.arange(len(labels)), test_size=fraction, stratify=labels, random_state=seed
    )
    return np.sort(kept), np.sort(held_out)


def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> ImageSplit:
    """The scikit-learn digits as a fixed stratified train/test split.

    Pixels (0-16 in the original) are scaled to [0, 1]; images have shape ``(N, 1, 8, 8)``.
    The default gives 1,437 training and 360 test images, every class in the same proportion.
    Nothing is downloaded: the data ships inside scikit-learn.
    """
    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(digits.target, dtype=torch.long)
    train, test = stratified_indices(digits.target, test_fraction, seed)
    return ImageSplit(images[train], labels[train], images[test], labels[test])
