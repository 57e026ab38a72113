"""The course's one look: colours per method, the style, a digit image, probability bars; and the
checks every figure declares on the numbers it is given (a figure is an entry point a learner calls
from a notebook: a wrong argument is named before matplotlib sees it)."""

import os
import textwrap
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fedkd_lessons.engine.validation import Constraint, Instance, Integer, Optional, Real, Tensor, checked_arguments
from fedkd_lessons.experiments.intervals import PairedInterval


class Numbers(Constraint):
    """Numbers a figure draws: a list, tuple, numpy array or tensor of real numbers with ``ndim``
    dimensions (an int or a tuple of allowed counts), at least ``min_length`` entries along the
    first, whole numbers only when ``integer``, each finite and, when ``within`` (a :class:`Real`)
    is given, in its range. ``check`` returns it as a numpy array, its dtype kept."""

    def __init__(self, ndim: int | tuple[int, ...] = 1, *, min_length: int = 1, within: Real | None = None,
                 integer: bool = False):
        self._counts = ndim if isinstance(ndim, tuple) else (ndim,)
        self.min_length, self.within, self.integer = min_length, within, integer
        self.description = (f"an array of {'whole ' if integer else ''}numbers with "
                            f"{' or '.join(str(c) for c in self._counts)} dimension(s) and at least {min_length} entr"
                            f"{'y' if min_length == 1 else 'ies'}"
                            + (f", each {within.description}" if within is not None else ", each finite"))

    def check(self, value, name: str):
        try:
            array = np.asarray(value.detach() if isinstance(value, torch.Tensor) else value)
        except (TypeError, ValueError, RuntimeError):
            array = None
        if array is None or array.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be {self.description}, got {_shown_briefly(value)}")
        if array.ndim not in self._counts:
            raise ValueError(f"{name} must have {' or '.join(str(c) for c in self._counts)} dimension(s), "
                             f"got shape {array.shape}")
        if len(array) < self.min_length:
            raise ValueError(f"{name} must have at least {self.min_length} entr"
                             f"{'y' if self.min_length == 1 else 'ies'}, got shape {array.shape}")
        numbers = array.astype(float)
        if not np.isfinite(numbers).all():
            raise ValueError(f"{name} contains NaN or infinity at {int((~np.isfinite(numbers)).sum())} place(s)")
        if self.integer and not (numbers == np.round(numbers)).all():
            raise ValueError(f"{name} must hold whole numbers, got {_shown_briefly(value)}")
        if self.within is not None:
            outside = [x for x in np.unique(numbers) if not self.within.accepts(float(x))]
            if outside:
                raise ValueError(f"{name} must hold numbers each {self.within.description}, got {outside[0]:g} "
                                 f"among them")
        return array

    def bad_examples(self) -> list:
        shape = (2,) * self._counts[0]
        bad = ["not numbers", np.full(shape, np.nan), np.zeros((2,) * (max(self._counts) + 1))]
        if self.min_length:
            bad.append(np.zeros((0,) + (2,) * (self._counts[0] - 1)))
        if self.integer:
            bad.append(np.full(shape, 0.5))
        if self.within is not None and self.within.low is not None:
            bad.append(np.full(shape, self.within.low - 1.0))
        if self.within is not None and self.within.high is not None:
            bad.append(np.full(shape, self.within.high + 1.0))
        return bad


class MappingOf(Constraint):
    """A mapping (a dict) of at least ``min_length`` labels, each to a value ``inner`` accepts;
    ``check`` returns a dict of the checked (converted) values, in the same order."""

    def __init__(self, inner: Constraint, min_length: int = 1):
        self.inner, self.min_length = inner, min_length
        self.description = f"a dict of at least {min_length} label(s), each to {inner.description}"

    def check(self, value, name: str):
        if not isinstance(value, Mapping):
            raise ValueError(f"{name} must be {self.description}, got {_shown_briefly(value)}")
        if len(value) < self.min_length:
            raise ValueError(f"{name} is empty: give at least {self.min_length} label(s), each to "
                             f"{self.inner.description}")
        return {label: self.inner.check(item, f"{name}[{label!r}]") for label, item in value.items()}

    def bad_examples(self) -> list:
        empty = [{}] if self.min_length else []
        return ["not a dict"] + empty + [{"x": bad} for bad in self.inner.bad_examples()[:2]]


def _shown_briefly(value) -> str:
    text = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_lengths(expected: int, counted: str, **named) -> None:
    """Each of ``named`` (a name -> sequence) holds ``expected`` entries, one per ``counted``; else a
    ``ValueError`` naming it (matplotlib would draw a mismatch wrongly or fail deep inside)."""
    for name, value in named.items():
        if len(value) != expected:
            raise ValueError(f"{name} must hold {expected} entries, one per {counted}, got {len(value)}")


# the checks the figures share
AXES = Instance(Axes)
TITLE = Instance(str)
ACCURACIES = Numbers(within=Real(0, 1))  # (K,) accuracies in [0, 1], drawn in %
GAINS = Numbers(within=Real(-1, 1))  # (K,) differences of accuracies, drawn in points
COLOUR_MAP = Optional(Instance(Mapping))  # label -> matplotlib colour
STYLE_MAP = Optional(MappingOf(Instance(Mapping), min_length=0))  # label -> extra line options

# One colour per method, the same in every lesson (colour-blind-safe Okabe-Ito palette).
COLOURS = {
    "teacher": "#000000",
    "global": "#999999",
    "local": "#E69F00",
    "scratch": "#E69F00",
    "hard labels": "#E69F00",
    "finetune": "#56B4E9",
    "pseudo-labels": "#56B4E9",
    "freeze_base": "#009E73",
    "ewc": "#CC79A7",
    "distill": "#0072B2",
    "soft targets": "#0072B2",
    "fedmd": "#0072B2",
    "upper bound": "#009E73",
    "no digits": "#56B4E9",  # lesson 5's ablation: private-only without the public digits
    "control": "#D55E00",
    "uniform": "#D55E00",
    "iid": "#009E73",
    "mild non-iid": "#56B4E9",
    "non-iid": "#0072B2",
    "median": "#CC79A7",
    "dp": "#D55E00",
}

COURSE_STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.titleweight": "bold",
    "axes.titlesize": 11,
    "font.size": 10,
}


def use_course_style() -> None:
    """Apply the course's matplotlib defaults (called once at the top of each lesson)."""
    plt.rcParams.update(COURSE_STYLE)


@checked_arguments(ax=AXES, image=Tensor(ndim=(2, 3)), title=Optional(TITLE))
def show_digit(ax, image, title: str | None = None) -> None:
    """Draw one ``(1, H, W)`` or ``(H, W)`` image in grey on ``ax``, without ticks."""
    pixels = torch.as_tensor(image, dtype=torch.float32)
    ax.imshow(pixels.reshape(-1, pixels.shape[-1]).numpy(), cmap="gray_r", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if title:
        ax.set_title(title)


@checked_arguments(ax=AXES, probs=Numbers(within=Real(0, 1)), class_names=Instance((list, tuple)),
                   highlight=Optional(Integer(0)))
def draw_probability_bars(ax, probs, class_names, highlight: int | None = None) -> None:
    """Bars of one probability vector with the uniform level dashed; ``highlight`` in dark blue."""
    check_lengths(len(probs), "class", class_names=class_names)
    if highlight is not None and highlight >= len(probs):
        raise ValueError(f"highlight must be a class below {len(probs)}, got {highlight}")
    probs = torch.as_tensor(probs, dtype=torch.float64).numpy()
    colours = ["#56B4E9"] * len(probs)
    if highlight is not None:
        colours[highlight] = "#0072B2"
    ax.bar(range(len(probs)), probs, color=colours)
    ax.axhline(1 / len(probs), color=COLOURS["uniform"], linestyle="--", linewidth=1)
    ax.set_xticks(range(len(probs)), class_names)
    ax.set_ylim(0, 1.05)


@checked_arguments(fig=Instance(Figure), path=Instance((str, os.PathLike)))
def save_figure(fig, path) -> None:
    """Save ``fig`` as a PNG without the creation time, so the same figure gives the same bytes."""
    fig.savefig(path, format="png", bbox_inches="tight", metadata={"Software": None})



@checked_arguments(comparisons=MappingOf(Instance(PairedInterval)), title=TITLE, xlabel=TITLE)
def paired_differences_figure(comparisons: dict, title: str, xlabel: str = "difference in test accuracy (points)"):
    """Every lesson's headline over seeds: one row per comparison ``label -> PairedInterval``
    (:mod:`fedkd_lessons.experiments.intervals`), each seed's paired difference as a dot, the mean
    as a diamond and its 95 % interval as a bar, against a line at zero. Differences of accuracies
    are drawn in points (x 100). ``title`` should state what the intervals show."""
    fig, ax = plt.subplots(figsize=(10.5, 0.6 * len(comparisons) + 1.6))
    for row, (label, interval) in enumerate(reversed(list(comparisons.items()))):
        ax.plot([100 * interval.low, 100 * interval.high], [row, row], "-", color="#000000", linewidth=2, zorder=2,
                label=f"{100 * interval.confidence:.0f} % interval of the mean" if row == 0 else None)
        ax.plot(100 * interval.differences, [row + 0.12] * len(interval.differences), "o", color="#999999",
                markersize=5, zorder=3, label="one seed" if row == 0 else None)  # just above the bar, all visible
        ax.plot(100 * interval.mean, row, "D", color="#0072B2", markersize=8, zorder=4, label="mean" if row == 0 else None)
    ax.axvline(0, color="#D55E00", linewidth=1, linestyle="--")
    ax.set_yticks(range(len(comparisons)), list(reversed(list(comparisons))))
    ax.set_ylim(-0.7, len(comparisons) - 0.3)
    ax.set_xlabel(xlabel)
    ax.legend(frameon=False, fontsize=8, loc="best")
    ax.set_title(textwrap.fill(title, 90))
    fig.tight_layout()
    return fig
