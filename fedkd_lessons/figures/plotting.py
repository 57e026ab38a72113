"""The course's one look: colours per method, the style, a digit image, probability bars."""

import textwrap

import matplotlib.pyplot as plt
import torch

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


def show_digit(ax, image, title: str | None = None) -> None:
    """Draw one ``(1, H, W)`` or ``(H, W)`` image in grey on ``ax``, without ticks."""
    pixels = torch.as_tensor(image, dtype=torch.float32)
    ax.imshow(pixels.reshape(-1, pixels.shape[-1]).numpy(), cmap="gray_r", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if title:
        ax.set_title(title)


def draw_probability_bars(ax, probs, class_names, highlight: int | None = None) -> None:
    """Bars of one probability vector with the uniform level dashed; ``highlight`` in dark blue."""
    probs = torch.as_tensor(probs, dtype=torch.float64).numpy()
    colours = ["#56B4E9"] * len(probs)
    if highlight is not None:
        colours[highlight] = "#0072B2"
    ax.bar(range(len(probs)), probs, color=colours)
    ax.axhline(1 / len(probs), color=COLOURS["uniform"], linestyle="--", linewidth=1)
    ax.set_xticks(range(len(probs)), class_names)
    ax.set_ylim(0, 1.05)


def save_figure(fig, path) -> None:
    """Save ``fig`` as a PNG without the creation time, so the same figure gives the same bytes."""
    fig.savefig(path, format="png", bbox_inches="tight", metadata={"Software": None})



def paired_differences_figure(comparisons: dict, title: str, xlabel: str = "difference in test accuracy (points)"):
    """Every lesson's headline over seeds: one row per comparison ``label -> PairedInterval``
    (:mod:`fedkd_lessons.experiments.intervals`), each seed's paired difference as a dot, the mean
    as a diamond and its 95 % interval as a bar, against a line at zero. Differences of accuracies
    are drawn in points (x 100). ``title`` should state what the intervals show."""
    if not comparisons:
        raise ValueError("comparisons is empty: give at least one label -> PairedInterval")
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
