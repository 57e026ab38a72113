"""Lesson 7's figures: what each method sends, the methods against the control over seeds, and the
attack against the defence's cost. Every function returns a matplotlib Figure."""

import matplotlib.pyplot as plt
import numpy as np

from .plotting import COLOURS, paired_differences_figure

# one colour per method (the course's palette where the method already has one; the three new
# methods take Okabe-Ito colours no other lesson gives a method)
METHOD_COLOURS = {
    "private-only": COLOURS["local"],
    "control": COLOURS["control"],
    "FedMD": COLOURS["fedmd"],
    "FD": "#CC79A7",
    "FedDF": "#56B4E9",
    "DS-FL": "#882255",
    "upper bound": COLOURS["upper bound"],
}

# what crosses the network in one round, per method (the README's picture)
SENDS = (
    ("FedMD", "logits on S public images", "mean logits", "public"),
    ("DS-FL", "probabilities on S public images", "sharpened mean", "public"),
    ("FD", "mean logits per private label", "others' means per label", "none"),
    ("FedDF", "model weights", "averaged, distilled model", "public (server)"),
)


def methods_diagram():
    """Four rows, one per method: what each party uploads, what it gets back, and the public data it
    needs."""
    fig, ax = plt.subplots(figsize=(9, 3.4))
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.5, len(SENDS) - 0.3)
    ax.axis("off")
    for row, (method, up, down, public) in enumerate(reversed(SENDS)):
        colour = METHOD_COLOURS[method]
        ax.text(0.1, row, method, fontsize=11, fontweight="bold", va="center")
        ax.add_patch(plt.Rectangle((1.3, row - 0.3), 1.6, 0.6, color="#E69F00", alpha=0.3))
        ax.text(2.1, row, "party", ha="center", va="center", fontsize=9)
        ax.add_patch(plt.Rectangle((7.0, row - 0.3), 1.6, 0.6, color="#999999", alpha=0.3))
        ax.text(7.8, row, "server", ha="center", va="center", fontsize=9)
        ax.annotate("", xy=(7.0, row + 0.12), xytext=(2.9, row + 0.12), arrowprops=dict(arrowstyle="->", color=colour))
        ax.annotate("", xy=(2.9, row - 0.12), xytext=(7.0, row - 0.12), arrowprops=dict(arrowstyle="->", color=colour))
        ax.text(4.95, row + 0.2, up, ha="center", fontsize=8)
        ax.text(4.95, row - 0.32, down, ha="center", fontsize=8)
        ax.text(8.8, row, f"public data:\n{public}", va="center", fontsize=8)
    ax.set_title("After FedMD: what each method sends in one round")
    fig.tight_layout()
    return fig


def accuracy_by_method_figure(result):
    """Final mean test accuracy of every method at every seed (dots, seeds joined by grey lines),
    beside private-only (round 0) and the same-epochs control; the pooled upper bound (measured at
    the first seed) as a dashed line."""
    labels = ["private-only", "control", "FedMD", "FD", "FedDF", "DS-FL"]
    values = np.array([result.private_only] + [result.final(m) for m in labels[1:]])  # (methods, seeds)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for seed in range(values.shape[1]):
        ax.plot(range(len(labels)), values[:, seed], color="#999999", alpha=0.4, linewidth=0.8)
    for i, (label, row) in enumerate(zip(labels, values)):
        ax.plot([i] * len(row), row, "o", color=METHOD_COLOURS[label], markersize=5)
        ax.plot(i, row.mean(), "D", color="#000000", markersize=7)
    if result.upper_bound is not None:
        ax.axhline(result.upper_bound.mean(), color=METHOD_COLOURS["upper bound"], linestyle="--",
                   label="pooled upper bound (first seed)")
        ax.legend(fontsize=8, loc="lower left")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("mean test accuracy (fraction)")
    ax.set_title(f"Final mean accuracy on the letters: {values.shape[1]} seeds (dots, joined by seed) "
                 "and their mean (diamond)")
    fig.tight_layout()
    return fig


def against_control_figure(result):
    """Each method minus the same-epochs control, paired by seed, with 95 % intervals."""
    intervals = result.against_control()
    return paired_differences_figure({f"{m} - control": intervals[m] for m in intervals},
                                     "Each method against the control that trains as long without sharing "
                                     "(an interval that holds zero: no measurable difference)")


def leak_and_defence_figure(result, chance: float):
    """Left: how often the attack names a party's favourite letter, against the noise on the scores
    it publishes (chance dashed). Right: FedMD's final mean accuracy without noise and at the levels
    it also ran defended (``settings.defended_noise_stds``), with the control's mean (no sharing at
    all) dashed."""
    settings = result.settings
    stds = np.array(settings.attack_noise_stds)
    x = np.arange(len(stds))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for seed_row in result.attack:
        left.plot(x, seed_row, "o", color="#999999", markersize=4)
    left.plot(x, result.attack.mean(axis=0), "-D", color=COLOURS["dp"], label="mean over seeds")
    left.axhline(chance, color="#000000", linestyle="--", linewidth=1, label="chance (1 in 6)")
    left.set_xticks(x, [f"{s:g}" for s in stds])
    left.set_xlabel("noise std on the published logits")
    left.set_ylabel("favourite letter named (fraction)")
    left.set_ylim(0, 1)
    left.set_title("The attack against the noise")
    left.legend(fontsize=8)
    defended = (0.0, *settings.defended_noise_stds)
    accuracy = np.array([result.final("FedMD")] + [result.final(f"FedMD, noise {s:g}") for s in settings.defended_noise_stds])
    columns = np.arange(len(defended))
    for column, values in zip(columns, accuracy):
        right.plot([column] * len(values), values, "o", color="#999999", markersize=4)
    right.plot(columns, accuracy.mean(axis=1), "-D", color=METHOD_COLOURS["FedMD"], label="FedMD, mean over seeds")
    right.axhline(result.final("control").mean(), color=METHOD_COLOURS["control"], linestyle="--",
                  label="control (no sharing)")
    right.set_xticks(columns, [f"{s:g}" for s in defended])
    right.set_xlim(-0.5, len(defended) - 0.5)
    right.set_xlabel("noise std on the published logits")
    right.set_ylabel("final mean test accuracy (fraction)")
    right.set_title("What the noise costs FedMD")
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig
