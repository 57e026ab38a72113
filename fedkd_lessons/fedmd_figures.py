"""Lesson 5's figures: the FedMD algorithm drawn, the model zoo, accuracy per round, bytes sent."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .fedmd import FedMDHistory, bytes_per_round
from .models import count_parameters
from .plotting import COLOURS


def fedmd_diagram(model_names=("mlp 32", "cnn 8-16", "mlp 128-64", "cnn 16-16-32")):
    """Algorithm 1 drawn: the public data, parties with different models and private letters,
    the server, and the four steps of a round. Returns the figure."""

    fig, ax = plt.subplots(figsize=(10, 5.2))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 5.6)
    ax.axis("off")

    def box(x, y, w, h, text, colour, size=9):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", facecolor=colour, edgecolor="#333333",
                                    alpha=0.9))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)

    def arrow(start, end, text, colour, offset=(0, 0)):
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color=colour, linewidth=1.6))
        middle = ((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1])
        ax.text(*middle, text, fontsize=8, color=colour, ha="center", va="center",
                bbox=dict(facecolor="white", edgecolor="none", pad=0.5))

    box(3.6, 4.4, 2.8, 0.9, "server\n2. aggregate: $\\tilde f = \\frac{1}{m}\\sum_k f_k$", "#F0F0F0")
    box(0.1, 4.4, 2.6, 0.9, "public data $D_0$ (digits 0-9)\na fresh random subset\neach round", "#FFF3D6", 8)
    names = list(model_names)
    width = 9.6 / len(names)
    for k, name in enumerate(names):
        x = 0.2 + k * width
        label = f"party {k + 1}" if k < len(names) - 1 else "party m"
        box(x, 1.5, width - 0.4, 1.0, f"{label}\nmodel: {name}", "#DCEBF7", 8)
        box(x, 0.2, width - 0.4, 0.75, "private data $D_k$\nletters a-f, own hand", "#FDE3CF", 8)
        centre = x + (width - 0.4) / 2
        arrow((centre - 0.35, 2.55), (4.4 + 0.4 * k, 4.35), "1. communicate\nlogits $f_k$" if k == 0 else "",
              COLOURS["fedmd"], offset=(-0.5, 0))
        arrow((5.2 + 0.3 * k, 4.35), (centre + 0.35, 2.55), "3. digest:\nfit $\\tilde f$ on $D_0$" if k == len(names) - 1 else "",
              COLOURS["upper bound"], offset=(0.6, 0))
        arrow((centre, 0.97), (centre, 1.47), "4. revisit" if k == 0 else "", COLOURS["local"], offset=(0.45, 0))
    ax.set_title("FedMD: parties with different models share only class scores on public data", fontsize=12)
    ax.text(5.0, 3.1, "0. transfer learning first: every party trains on $D_0$, then on its $D_k$",
            ha="center", fontsize=8, style="italic", color="#444444",
            bbox=dict(facecolor="white", edgecolor="none", pad=1))
    fig.tight_layout()
    return fig


def zoo_figure(parties):
    """Parameter count of each party's model (log scale), MLPs and CNNs coloured apart."""
    names = [p.name for p in parties]
    counts = [count_parameters(p.model) for p in parties]
    colours = [COLOURS["fedmd"] if name.startswith("cnn") else COLOURS["local"] for name in names]
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar(range(len(names)), counts, color=colours)
    ax.set_xticks(range(len(names)), [f"{k}: {n}" for k, n in enumerate(names)], rotation=35, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("parameters (log scale)")
    ax.set_title(f"Ten parties, {len(set(names))} architectures from {min(counts):,} to {max(counts):,} parameters")
    fig.tight_layout()
    return fig


def accuracy_rounds_figure(fedmd: FedMDHistory, control: FedMDHistory, upper_bound: np.ndarray):
    """Left: mean test accuracy per round of FedMD and the no-consensus control, with the
    private-only start and the pooled upper bound as lines. Right: every party's final accuracy."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 1.4]})
    rounds = np.arange(len(fedmd.mean_accuracy))
    for k in range(fedmd.accuracy.shape[1]):
        left.plot(rounds, fedmd.accuracy[:, k], color=COLOURS["fedmd"], alpha=0.15, linewidth=1)
    left.plot(rounds, fedmd.mean_accuracy, color=COLOURS["fedmd"], linewidth=2.5, marker="o", label="FedMD (mean)")
    left.plot(rounds, control.mean_accuracy, color=COLOURS["control"], linewidth=2, marker="s",
              label="control: same epochs, no consensus")
    left.axhline(fedmd.mean_accuracy[0], color=COLOURS["local"], linestyle="--", label="private-only (round 0)")
    left.axhline(upper_bound.mean(), color=COLOURS["upper bound"], linestyle=":", linewidth=2, label="pooled upper bound")
    left.set_xlabel("round")
    left.set_ylabel("test accuracy on letters (fraction)")
    left.legend(fontsize=8, loc="lower right")
    left.set_title("Most of the climb is more training; the consensus adds a little")

    parties = np.arange(fedmd.accuracy.shape[1])
    width = 0.2
    bars = [("private-only", fedmd.accuracy[0], COLOURS["local"]), ("control", control.accuracy[-1], COLOURS["control"]),
            ("FedMD", fedmd.accuracy[-1], COLOURS["fedmd"]), ("upper bound", upper_bound, COLOURS["upper bound"])]
    for i, (label, values, colour) in enumerate(bars):
        right.bar(parties + (i - 1.5) * width, values, width, color=colour, label=label)
    right.set_xticks(parties, [f"{k}: {n}" for k, n in enumerate(fedmd.party_names)], fontsize=7, rotation=35, ha="right")
    right.set_ylabel("test accuracy (fraction)")
    right.set_ylim(0, 1.05)
    right.legend(fontsize=8, ncols=4, loc="upper center", bbox_to_anchor=(0.5, 1.13), frameon=False)
    right.set_title("Per party after the last round", pad=24)
    fig.tight_layout()
    return fig


def bytes_figure(parties, subset_sizes=(100, 500, 1437)):
    """Bytes one round moves: FedMD at several public subset sizes against FedAvg's weights for
    the same models (log scale)."""
    models = [p.model for p in parties]
    fedavg = bytes_per_round(models, 1).fedavg
    labels = [f"FedMD\nS = {s:,}" for s in subset_sizes] + ["FedAvg\n(weights)"]
    values = [bytes_per_round(models, s).fedmd for s in subset_sizes] + [fedavg]
    colours = [COLOURS["fedmd"]] * len(subset_sizes) + [COLOURS["global"]]
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    ax.bar(range(len(values)), values, color=colours)
    for i, value in enumerate(values):
        ax.text(i, value * 1.1, f"{value / 1e6:.2f} MB", ha="center", fontsize=8)
    ax.set_xticks(range(len(values)), labels)
    ax.set_yscale("log")
    ax.set_ylabel("bytes per round (log scale)")
    ax.set_title("FedMD's traffic grows with the subset, not with the models")
    fig.tight_layout()
    return fig


def compare_runs_figure(runs: dict, title: str, reference: float | None = None):
    """Mean test accuracy per round of several labelled runs (``{label: FedMDHistory}``);
    ``reference`` is drawn as the dashed private-only level."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    palette = [COLOURS["fedmd"], COLOURS["control"], COLOURS["ewc"], COLOURS["upper bound"], COLOURS["finetune"],
               COLOURS["teacher"]]
    for (label, history), colour in zip(runs.items(), palette):
        ax.plot(history.mean_accuracy, marker="o", markersize=3, color=colour, label=label)
    if reference is not None:
        ax.axhline(reference, color=COLOURS["local"], linestyle="--", label="private-only")
    ax.set_xlabel("round")
    ax.set_ylabel("mean test accuracy (fraction)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
