"""Synthetic handwritten-like letters a-f, one "writer" per FedMD party (lesson 5).

FedMD's private task (Li & Wang 2019) is FEMNIST letters a-f with one real writer per
party. The course runs offline, so it renders its own stand-in: each writer is a font that ships
with matplotlib plus a fixed style (slant, stroke weight, size, a small rotation), and every sample
gets its own seeded jitter (shift, scale, rotation). Glyphs are rasterised at 4x resolution and
averaged down to 8x8, pixels in [0, 1] like the scikit-learn digits. Labels are 10..15 (a..f),
after the 10 public digit classes, as in the paper.
"""

from dataclasses import dataclass
from functools import lru_cache
import pathlib

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.font_manager import FontProperties
from matplotlib.path import Path
from matplotlib.textpath import TextPath

from fedkd_lessons.engine.validation import Instance, Integer, OneOf, Optional, checked_arguments

LETTERS = "abcdef"
LETTER_LABELS = tuple(range(10, 16))
FEDMD_CLASSES = tuple(str(d) for d in range(10)) + tuple(LETTERS)
IMAGE_SIZE = 8
_SUPERSAMPLE = 4  # rasterise on a 32x32 grid, then average 4x4 blocks: anti-aliased 8x8 pixels
_FONT_FOLDER = pathlib.Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@dataclass(frozen=True)
class Writer:
    """One party's fixed hand: a matplotlib font file and a style applied to every glyph.

    ``slant`` is a horizontal shear (x += slant * y), ``weight`` a stroke thickening in pixels of
    the 32x32 raster, ``size`` the glyph's height as a fraction of the image, ``rotation`` in degrees.
    """

    name: str
    font: str
    slant: float
    weight: int
    size: float
    rotation: float


WRITERS = (
    Writer("sans", "DejaVuSans.ttf", 0.0, 1, 0.80, 0.0),
    Writer("sans bold", "DejaVuSans-Bold.ttf", 0.15, 0, 0.85, -4.0),
    Writer("serif", "DejaVuSerif.ttf", 0.0, 1, 0.75, 3.0),
    Writer("serif italic", "DejaVuSerif-Italic.ttf", 0.10, 1, 0.80, 0.0),
    Writer("mono", "DejaVuSansMono.ttf", -0.10, 1, 0.85, 5.0),
    Writer("computer modern", "cmr10.ttf", 0.0, 1, 0.80, -3.0),
    Writer("cm sans", "cmss10.ttf", 0.20, 2, 0.75, 0.0),
    Writer("typewriter", "cmtt10.ttf", 0.0, 1, 0.85, -6.0),
    Writer("stix", "STIXGeneral.ttf", -0.15, 1, 0.80, 4.0),
    Writer("stix italic", "STIXGeneralItalic.ttf", 0.05, 1, 0.90, -2.0),
)


@dataclass(frozen=True)
class LetterData:
    """FedMD's private side: one ``(images (n, 1, 8, 8), labels (n,))`` pair per writer (= party),
    plus a validation and a test set that draw letters from every writer."""

    private: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    validation_images: torch.Tensor
    validation_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    writers: tuple  # the parties' Writer styles (or, for EMNIST, names of the random shares)

    def __repr__(self) -> str:
        sizes = sorted({len(labels) for _, labels in self.private})
        return (
            f"LetterData({len(self.private)} writers with {'/'.join(map(str, sizes))} letters each, "
            f"validation={len(self.validation_labels)}, test={len(self.test_labels)})"
        )


@lru_cache(maxsize=None)
def _glyph_polygons(font: str, letter: str) -> tuple[np.ndarray, ...]:
    """The outline of ``letter`` in ``font`` as closed polygons, centred, height 1."""
    path = TextPath((0, 0), letter, size=1, prop=FontProperties(fname=str(_FONT_FOLDER / font)))
    polygons = [np.asarray(p, dtype=np.float64) for p in path.to_polygons() if len(p) >= 3]
    points = np.concatenate(polygons)
    low, high = points.min(axis=0), points.max(axis=0)
    centre, scale = (low + high) / 2, (high - low).max()
    return tuple((p - centre) / scale for p in polygons)


def _ink(polygons, points) -> np.ndarray:
    """Which ``points`` lie inside the glyph, by the even-odd rule: a point is ink if an odd number
    of contours enclose it, so the holes of a, b, d, e come out empty."""
    inside = np.zeros(len(points), dtype=bool)
    for polygon in polygons:
        inside ^= Path(polygon, closed=True).contains_points(points)
    return inside


@checked_arguments(letter=OneOf(*LETTERS), writer=Instance(Writer),
                   generator=Optional(Instance(np.random.Generator)))
def render_letter(letter: str, writer: Writer, generator: np.random.Generator | None = None) -> torch.Tensor:
    """One ``(1, 8, 8)`` image of ``letter`` in ``writer``'s hand, pixels in [0, 1].

    Without ``generator`` the glyph is drawn in the writer's exact style; with one, it adds this
    sample's jitter: shift of up to half a pixel, scale x0.9-1.1, rotation +-8 degrees.
    """
    shift, scale, turn = np.zeros(2), 1.0, 0.0
    if generator is not None:
        shift = generator.uniform(-0.5, 0.5, size=2) / IMAGE_SIZE
        scale = generator.uniform(0.9, 1.1)
        turn = generator.uniform(-8.0, 8.0)
    angle = np.deg2rad(writer.rotation + turn)
    rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shear = np.array([[1.0, writer.slant], [0.0, 1.0]])
    transform = writer.size * scale * rotate @ shear
    polygons = [p @ transform.T + shift for p in _glyph_polygons(writer.font, letter)]

    fine = IMAGE_SIZE * _SUPERSAMPLE
    centres = (np.arange(fine) + 0.5) / fine - 0.5
    grid_x, grid_y = np.meshgrid(centres, -centres)  # image rows run top to bottom
    inside = _ink(polygons, np.column_stack([grid_x.ravel(), grid_y.ravel()])).reshape(fine, fine)
    ink = torch.tensor(inside, dtype=torch.float32)[None, None]
    if writer.weight:
        ink = F.max_pool2d(ink, 2 * writer.weight + 1, stride=1, padding=writer.weight)
    return F.avg_pool2d(ink, _SUPERSAMPLE)[0]


@checked_arguments(writer=Instance(Writer), per_class=Integer(1), seed=Integer(0))
def make_letters(writer: Writer, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` jittered samples of each letter a-f by ``writer``: images ``(6 per_class, 1, 8, 8)``
    and labels ``(6 per_class,)`` in 10..15, in class order. The same seed gives the same images."""
    generator = np.random.default_rng(seed)
    images = [render_letter(letter, writer, generator) for letter in LETTERS for _ in range(per_class)]
    labels = torch.tensor(LETTER_LABELS).repeat_interleave(per_class)
    return torch.stack(images), labels


def _from_every_writer(writers, per_class, seed):
    parts = [make_letters(writer, per_class, seed + index) for index, writer in enumerate(writers)]
    return torch.cat([images for images, _ in parts]), torch.cat([labels for _, labels in parts])


@checked_arguments(num_parties=Integer(1, len(WRITERS)), per_class=Integer(1), evaluation_per_class=Integer(1),
                   seed=Integer(0))
def make_letter_parties(
    num_parties: int = 10, per_class: int = 20, evaluation_per_class: int = 10, seed: int = 0
) -> LetterData:
    """The private data of FedMD's non-i.i.d. setting (the paper: one writer per party, about 20
    letters per class), made offline.

    Party ``k`` gets ``per_class`` letters of each class by writer ``WRITERS[k]``. The validation
    and test sets each hold ``evaluation_per_class`` letters of each class from *every* party's
    writer, with their own jitter (disjoint seeds), so a party is judged on hands it never saw.
    """
    writers = WRITERS[:num_parties]
    base = 1000 * seed
    private = tuple(make_letters(w, per_class, base + k) for k, w in enumerate(writers))
    validation = _from_every_writer(writers, evaluation_per_class, base + 100)
    test = _from_every_writer(writers, evaluation_per_class, base + 200)
    return LetterData(private, *validation, *test, writers)


