"""Lesson 7's figures: what each method sends, the methods against the control over seeds, and the
noise defence's privacy-utility trade-off (the attack and the accuracy it costs, per noise level). Every function returns a matplotlib Figure."""

import matplotlib.pyplot as plt
import numpy as np

from fedkd_lessons.engine.validation import FRACTION, Instance, checked_arguments
from fedkd_lessons.experiments.lesson7_after_fedmd import AfterFedMDResult
from fedkd_lessons.figures.plotting import COLOURS, paired_differences_figure

RESULT = Instance(AfterFedMDResult)

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


@checked_arguments(result=RESULT)
def accuracy_by_method_figure(result):
    """Final mean test accuracy of every method at every seed (dots, seeds joined by grey lines),
    beside the shared start (round 0: private-only after a fixed 30 epochs, undertrained, not a
    baseline) and the same-epochs control (the fair reference); the pooled upper bound (measured at
    the first seed) as a dashed line."""
    labels = ["private-only", "control", "FedMD", "FD", "FedDF", "DS-FL"]
    ticks = ["round 0\n(start)", "control\n(reference)", "FedMD", "FD", "FedDF", "DS-FL"]
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
    ax.set_xticks(range(len(labels)), ticks)
    ax.set_ylabel("mean test accuracy (fraction)")
    ax.set_title(f"Final mean accuracy on the letters, {values.shape[1]} seeds (dots, joined by seed; diamond: mean)\n"
                 "round 0 is the shared, undertrained start; the control is the fair reference", fontsize=10)
    fig.tight_layout()
    return fig


@checked_arguments(result=RESULT)
def against_control_figure(result):
    """Each method minus the same-epochs control, paired by seed, with 95 % intervals."""
    intervals = result.against_control()
    return paired_differences_figure({f"{m} - control": intervals[m] for m in intervals},
                                     "Each method against the control that trains as long without sharing "
                                     "(an interval that holds zero: no measurable difference)")


@checked_arguments(result=RESULT, chance=FRACTION)
def defence_curve_figure(result, chance: float):
    """The privacy-utility trade-off of the noise defence, one column per noise level ``sigma`` on the
    published logits (evenly spaced, labelled; no log axis). Left: the share of parties whose
    favourite letter the attack names, every seed (dots), the mean (diamond) and its 95 % interval,
    against chance (dashed). Right: FedMD's final mean accuracy with noise minus without, paired by
    seed, at the levels FedMD also ran defended, with the level of the same-epochs control (FedMD's
    whole gain lost) dashed."""
    stds = result.settings.attack_noise_stds
    columns = {std: column for column, std in enumerate(stds)}
    attack = result.attack_above_chance()
    cost = result.defence_cost()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 3.8), sharex=True)
    colour = METHOD_COLOURS["FedMD"]
    for std, interval in attack.items():
        x = columns[std]
        left.plot([x] * len(interval.differences), chance + interval.differences, "o", color="#999999",
                  markersize=4, zorder=3, label="one seed" if x == 0 else None)
        left.plot([x, x], [chance + interval.low, chance + interval.high], "-", color="#000000", linewidth=2,
                  zorder=2, label="95 % interval of the mean" if x == 0 else None)
        left.plot(x, chance + interval.mean, "D", color=colour, markersize=7, zorder=4,
                  label="mean over seeds" if x == 0 else None)
    left.axhline(chance, color="#000000", linestyle="--", linewidth=1, label="chance (1 in 6)")
    left.set_ylim(0, 1)
    left.set_ylabel("favourite letter named (fraction of parties)")
    left.set_title("The attack on a party's published scores")
    left.legend(fontsize=7, loc="upper right")
    for std, interval in cost.items():
        x = columns[std]
        right.plot([x] * len(interval.differences), 100 * interval.differences, "o", color="#999999", markersize=4,
                   zorder=3)
        right.plot([x, x], [100 * interval.low, 100 * interval.high], "-", color="#000000", linewidth=2, zorder=2)
        right.plot(x, 100 * interval.mean, "D", color=colour, markersize=7, zorder=4)
    right.axhline(0, color="#000000", linewidth=1, label="FedMD without noise")
    gain = result.against_control()["FedMD"].mean
    right.axhline(-100 * gain, color=METHOD_COLOURS["control"], linestyle="--", linewidth=1,
                  label="the control's level (FedMD's gain all lost)")
    right.set_ylabel("FedMD with noise - without (points)")
    right.set_title("What the noise costs FedMD (where it ran defended)")
    right.legend(fontsize=7, loc="lower left")
    for ax in (left, right):
        ax.set_xticks(range(len(stds)), [f"{s:g}" for s in stds])
        ax.set_xlim(-0.5, len(stds) - 0.5)
        ax.set_xlabel("noise std on the published logits")
    fig.suptitle(f"Noise on the scores: the attack falls towards chance as the noise grows, and FedMD loses "
                 f"accuracy ({result.settings.seeds} seeds)", fontsize=11)
    fig.tight_layout()
    return fig
