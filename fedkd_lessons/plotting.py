"""The course's one look: colours per method, the style, a digit image, probability bars."""

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

