"""FedMD at the paper's scale: MNIST public, EMNIST letters a-f private, via torchvision (lesson 5).

Li & Wang 2019 use MNIST as public data and FEMNIST letters a-f as private data. This
module loads the nearest torchvision datasets with torchvision's own classes: ``MNIST`` and
``EMNIST(split="letters")``. They are downloaded once into ``FEDKD_DATA`` (default
``~/.cache/fedkd-lessons``) and read from there afterwards; nothing is ever written into the
repository. Raw files may also be copied in by hand, gzipped or not, into
``<FEDKD_DATA>/MNIST/raw`` and ``<FEDKD_DATA>/EMNIST/raw``.

EMNIST has no writer ids (FEMNIST's writers come from LEAF), so here the parties' letters are a
random disjoint split: the paper's i.i.d. setting rather than one writer per party.
"""

import gzip
import os
import shutil
from pathlib import Path

import torch

from fedkd_lessons.data.digits import ImageSplit
from fedkd_lessons.data.letters import LETTER_LABELS, LetterData
from fedkd_lessons.engine.validation import Integer, checked_arguments

_EMNIST_LETTER_A = 1  # EMNIST "letters" labels run 1 (a) .. 26 (z); 0 is unused ("N/A")


def data_folder() -> Path:
    """Where paper-scale data live: ``$FEDKD_DATA``, else ``~/.cache/fedkd-lessons``."""
    return Path(os.environ.get("FEDKD_DATA") or Path.home() / ".cache" / "fedkd-lessons")


def _gunzip_raw_files(raw_folder: Path) -> None:
    """torchvision reads the uncompressed idx files; unpack any ``.gz`` copy that lacks one."""
    if not raw_folder.is_dir():
        return
    for packed in raw_folder.glob("*-ubyte.gz"):
        unpacked = packed.with_suffix("")
        if not unpacked.exists():
            with gzip.open(packed, "rb") as source, open(unpacked, "wb") as target:
                shutil.copyfileobj(source, target)


def _open(dataset_class, root: Path, download: bool, **kwargs):
    _gunzip_raw_files(root / dataset_class.__name__ / "raw")
    try:
        return dataset_class(str(root), download=False, **kwargs)
    except RuntimeError:
        if not download:
            raise RuntimeError(
                f"{dataset_class.__name__} is not in {root}: call with download=True once while online, "
                f"or copy its raw idx files into {root / dataset_class.__name__ / 'raw'}"
            ) from None
    try:
        return dataset_class(str(root), download=True, **kwargs)
    except (RuntimeError, OSError) as error:
        raise RuntimeError(
            f"could not download {dataset_class.__name__} into {root} ({type(error).__name__}); connect to the "
            f"internet once, or copy its raw idx files into {root / dataset_class.__name__ / 'raw'}, "
            "or use the offline default (DATA = 'offline')"
        ) from None


def _as_images(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels.float() / 255.0).unsqueeze(1)


def load_mnist(root=None, download: bool = True) -> ImageSplit:
    """MNIST as an :class:`ImageSplit`: 60,000 training and 10,000 test images ``(N, 1, 28, 28)`` in [0, 1]."""
    from torchvision.datasets import MNIST

    root = Path(root) if root is not None else data_folder()
    train, test = (_open(MNIST, root, download, train=flag) for flag in (True, False))
    return ImageSplit(_as_images(train.data), train.targets.long(), _as_images(test.data), test.targets.long())


def _letters_a_to_f(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    labels = dataset.targets.long()
    keep = (labels >= _EMNIST_LETTER_A) & (labels < _EMNIST_LETTER_A + len(LETTER_LABELS))
    # EMNIST stores every image transposed; flip rows and columns back so the letters read upright.
    images = _as_images(dataset.data[keep].transpose(1, 2))
    return images, labels[keep] - _EMNIST_LETTER_A + LETTER_LABELS[0]


@checked_arguments(num_parties=Integer(1), per_class=Integer(1), seed=Integer(0))
def load_emnist_letter_parties(num_parties: int = 10, per_class: int = 20, seed: int = 0, root=None,
                               download: bool = True) -> LetterData:
    """EMNIST letters a-f (labels 10..15) as FedMD's private data.

    Party ``k`` gets ``per_class`` distinct training letters of each class, drawn at random
    (seeded); EMNIST's test letters a-f are split in two halves, validation and test.
    """
    from torchvision.datasets import EMNIST

    root = Path(root) if root is not None else data_folder()
    train_images, train_labels = _letters_a_to_f(_open(EMNIST, root, download, split="letters", train=True))
    test_images, test_labels = _letters_a_to_f(_open(EMNIST, root, download, split="letters", train=False))
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in LETTER_LABELS:
        of_class = torch.nonzero(train_labels == label).flatten()
        if len(of_class) < num_parties * per_class:
            raise ValueError(f"per_class: EMNIST has only {len(of_class)} training images of class {label}, "
                             f"fewer than {num_parties} parties x {per_class}")
        chosen.append(of_class[torch.randperm(len(of_class), generator=generator)][: num_parties * per_class])
    private = tuple(
        (train_images[idx], train_labels[idx])
        for idx in (torch.cat([c[k * per_class : (k + 1) * per_class] for c in chosen]) for k in range(num_parties))
    )
    order = torch.randperm(len(test_labels), generator=generator)
    validation, test = order[: len(order) // 2], order[len(order) // 2 :]
    return LetterData(private, test_images[validation], test_labels[validation], test_images[test],
                      test_labels[test], tuple(f"EMNIST share {k}" for k in range(num_parties)))


@checked_arguments(num_parties=Integer(1), per_class=Integer(1), seed=Integer(0))
def load_paper_scale(num_parties: int = 10, per_class: int = 20, seed: int = 0, root=None,
                     download: bool = True) -> tuple[ImageSplit, LetterData]:
    """The paper-scale pair the lesson 5 notebook switches to: (MNIST, EMNIST letter parties)."""
    return (load_mnist(root, download),
            load_emnist_letter_parties(num_parties, per_class, seed, root, download))
