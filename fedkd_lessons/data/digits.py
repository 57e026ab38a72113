"""The offline public data: scikit-learn's 1,797 real handwritten 8x8 digits, as tensors (lesson 1)."""

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from fedkd_lessons.engine.validation import Integer, Real, Tensor, checked_arguments

OPEN_FRACTION = Real(0, 1, closed="neither")  # a share to hold out: something on each side
LABELS = Tensor(ndim=1)

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


@checked_arguments(labels=LABELS, fraction=OPEN_FRACTION, seed=Integer(0))
def stratified_indices(labels, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(labels))`` into (kept, held out) with ``fraction`` held out per class."""
    labels = np.asarray(labels)
    kept, held_out = train_test_split(
        np.arange(len(labels)), test_size=fraction, stratify=labels, random_state=seed
    )
    return np.sort(kept), np.sort(held_out)


@checked_arguments(test_fraction=OPEN_FRACTION, seed=Integer(0))
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
