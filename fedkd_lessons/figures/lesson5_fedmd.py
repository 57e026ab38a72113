"""Lesson 5's figures: the FedMD algorithm drawn, the model zoo, the private half scored on
validation, accuracy per round over seeds, each party's gain, what the consensus carries, bytes sent."""

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from fedkd_lessons.fedmd import (NUM_PUBLIC_CLASSES, FedMDHistory, Party, bytes_per_round, compute_consensus,
                                  party_logits)
from fedkd_lessons.data.letters import LETTER_LABELS, LETTERS, LetterData
from fedkd_lessons.engine.models import count_parameters
from fedkd_lessons.engine.validation import FRACTION, Each, Instance, Integer, Optional, Real, Tensor, checked_arguments
from fedkd_lessons.figures.plotting import COLOURS, TITLE, MappingOf, Numbers, check_lengths, show_digit

ZOO_COLOURS = {"mlp": "#E69F00", "cnn": "#0072B2"}  # the kinds of model, not methods
PARTIES = Each(Instance(Party))
HISTORIES = Each(Instance(FedMDHistory))
RUN_COLOURS = (COLOURS["fedmd"], COLOURS["control"], COLOURS["ewc"], COLOURS["upper bound"], COLOURS["finetune"],
               COLOURS["teacher"])  # compare_runs_figure's, one per run


@checked_arguments(model_names=Each(TITLE))
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


@checked_arguments(parties=PARTIES)
def zoo_figure(parties):
    """Parameter count of each party's model as a dot on a log axis (a bar's length means nothing
    on a log axis), MLPs and CNNs coloured apart."""
    names = [p.name for p in parties]
    counts = [count_parameters(p.model) for p in parties]
    fig, ax = plt.subplots(figsize=(8, 3))
    convolutional = [any(isinstance(layer, torch.nn.Conv2d) for layer in p.model.modules()) for p in parties]
    for kind, is_cnn in (("mlp", False), ("cnn", True)):
        where = [k for k in range(len(names)) if convolutional[k] == is_cnn]
        ax.plot(where, [counts[k] for k in where], "o", color=ZOO_COLOURS[kind], markersize=8, label=kind.upper() + "s")
    ax.set_xticks(range(len(names)), [f"{k}: {n}" for k, n in enumerate(names)], rotation=35, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("parameters (log scale)")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(f"{len(names)} parties, {len(names)} models from {min(counts):,} to {max(counts):,} parameters")
    fig.tight_layout()
    return fig


@checked_arguments(checkpoints=Numbers(within=Real(0)), with_digits=Numbers(ndim=2, within=Real(0, 1)),
                   without_digits=Numbers(ndim=2, within=Real(0, 1)), fixed_epochs=Integer(0))
def validation_curves_figure(checkpoints, with_digits: np.ndarray, without_digits: np.ndarray, fixed_epochs: int):
    """The private half of transfer learning, scored on the validation letters: the parties' mean
    validation accuracy at each checkpoint, one thin line per seed and the mean over seeds thick,
    for parties that learned the public digits first and for the ablation that never saw them.
    ``with_digits`` and ``without_digits`` are ``(seeds, checkpoints)``; ``fixed_epochs`` (a fixed
    private half) is marked."""
    for name, values in (("with_digits", with_digits), ("without_digits", without_digits)):
        if values.shape[1] != len(checkpoints):
            raise ValueError(f"{name} must hold one column per checkpoint ({len(checkpoints)}), got shape "
                             f"{values.shape}")
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for values, colour, label in ((with_digits, COLOURS["local"], "after the public digits"),
                                  (without_digits, COLOURS["no digits"], "letters only (no public digits)")):
        for row in values:
            ax.plot(checkpoints, row, color=colour, alpha=0.3, linewidth=1)
        ax.plot(checkpoints, values.mean(axis=0), color=colour, linewidth=2.5, marker="o", markersize=4, label=label)
    ax.axvline(fixed_epochs, color=COLOURS["global"], linestyle="--", linewidth=1)
    ax.annotate(f"a fixed {fixed_epochs} epochs", (fixed_epochs, 0.05), xytext=(5, 0), textcoords="offset points",
                fontsize=8, color="#444444")
    ax.set_xlabel("private epochs")
    ax.set_ylabel("mean validation accuracy")
    ax.set_ylim(0, 1)
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    ax.set_title("Private training scored on the validation letters (thin: one seed, thick: their mean)")
    fig.tight_layout()
    return fig


@checked_arguments(fedmd=HISTORIES, control=HISTORIES, no_digits=FRACTION, upper_bound=Optional(FRACTION))
def rounds_over_seeds_figure(fedmd: list[FedMDHistory], control: list[FedMDHistory], no_digits: float,
                             upper_bound: float | None = None):
    """The parties' mean test accuracy per round, FedMD against the same-epochs control, one thin
    line per seed and the mean over seeds thick; the private-only baseline (round 0) and the
    private-only parties that never saw the digits (``no_digits``, mean over seeds) as levels;
    ``upper_bound``, where given, the pooled upper bound of the first seed."""
    rounds = len(fedmd[0].mean_accuracy)
    for name, runs in (("fedmd", fedmd), ("control", control)):
        for seed, run in enumerate(runs):
            if len(run.mean_accuracy) != rounds:
                raise ValueError(f"{name}[{seed}] must have the {rounds} rounds of fedmd[0] (round 0 included), got "
                                 f"{len(run.mean_accuracy)}")
    fig, ax = plt.subplots(figsize=(8, 3.9))
    rounds = np.arange(len(fedmd[0].mean_accuracy))
    for runs, colour, marker, label in ((fedmd, COLOURS["fedmd"], "o", "FedMD"),
                                        (control, COLOURS["control"], "s", "control: same rounds, no digest")):
        curves = np.array([run.mean_accuracy for run in runs])
        for curve in curves:
            ax.plot(rounds, curve, color=colour, alpha=0.25, linewidth=1)
        ax.plot(rounds, curves.mean(axis=0), color=colour, linewidth=2.5, marker=marker, markersize=4, label=label)
    start = np.mean([run.mean_accuracy[0] for run in fedmd])
    ax.axhline(start, color=COLOURS["local"], linestyle="--", label="private-only (round 0)")
    ax.axhline(no_digits, color=COLOURS["no digits"], linestyle="-.", label="private-only, no public digits")
    if upper_bound is not None:
        ax.axhline(upper_bound, color=COLOURS["upper bound"], linestyle=":", linewidth=2,
                   label="pooled upper bound (first seed)")
    ax.set_xlabel("round")
    ax.set_ylabel("mean test accuracy on letters")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title(f"FedMD and its control per round, {len(fedmd)} seeds (thin: one seed, thick: their mean)")
    fig.tight_layout()
    return fig


@checked_arguments(gains=Numbers(ndim=2, within=Real(-1, 1)), party_names=Instance((list, tuple)), title=TITLE)
def party_gains_figure(gains: np.ndarray, party_names, title: str):
    """Each party's gain ``gains[seed, party]`` (a difference of accuracies, drawn in points) as one
    dot per seed, gains in blue and losses in vermilion, the mean over seeds as a diamond."""
    check_lengths(gains.shape[1], "party (column of gains)", party_names=party_names)
    gains = 100 * np.asarray(gains, dtype=float)
    fig, ax = plt.subplots(figsize=(9, 3.8))
    for k in range(gains.shape[1]):
        column = gains[:, k]
        ax.plot(np.full(len(column), k)[column >= 0], column[column >= 0], "o", color=COLOURS["fedmd"], alpha=0.7)
        ax.plot(np.full(len(column), k)[column < 0], column[column < 0], "o", color=COLOURS["control"], alpha=0.7)
        ax.plot(k + 0.25, column.mean(), "D", color="#000000", markersize=6, label="mean over seeds" if k == 0 else None)
    ax.axhline(0, color="#000000", linewidth=1)
    ax.set_xticks(range(gains.shape[1]), [f"{k}: {name}" for k, name in enumerate(party_names)], rotation=35,
                  ha="right")
    ax.set_ylabel("gain (points)")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


@checked_arguments(parties=PARTIES, public_images=Tensor(), public_labels=Tensor(ndim=1, dtype="integer"),
                   per_digit=Integer(1))
def letter_reading(parties, public_images, public_labels, per_digit: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """What the parties' scores on public digits say about the letters: on the first ``per_digit``
    public images of each digit, ``mass[k, d]``, the mean probability (softmax of the logits) that
    party ``k`` puts on the six letter classes for digit ``d`` (the last row: the consensus, the
    softmax of the mean logits), and ``reading[d, l]``, how the consensus spreads that probability
    over the letters (renormalised over a-f, averaged over the digit's images)."""
    check_lengths(len(public_images), "public image", public_labels=public_labels)
    counts = torch.bincount(public_labels[(public_labels >= 0) & (public_labels < NUM_PUBLIC_CLASSES)],
                            minlength=NUM_PUBLIC_CLASSES)
    if counts.min() < per_digit:
        raise ValueError(f"per_digit must be at most the fewest images of any public digit in public_labels "
                         f"({int(counts.min())}, of digit {int(counts.argmin())}), got {per_digit}")
    labels = torch.as_tensor(public_labels)
    chosen = torch.cat([torch.nonzero(labels == digit).flatten()[:per_digit] for digit in range(NUM_PUBLIC_CLASSES)])
    scores = torch.stack([party_logits(party, public_images, chosen) for party in parties])  # (m, S, C)
    probabilities = torch.cat([scores.softmax(dim=-1), compute_consensus(scores).softmax(dim=-1).unsqueeze(0)])
    mass = probabilities[..., NUM_PUBLIC_CLASSES:].sum(dim=-1).view(len(parties) + 1, NUM_PUBLIC_CLASSES, -1)
    letters = probabilities[-1, :, NUM_PUBLIC_CLASSES:]
    reading = (letters / letters.sum(dim=-1, keepdim=True)).view(NUM_PUBLIC_CLASSES, -1, len(LETTERS)).mean(dim=1)
    return mass.mean(dim=-1).numpy(), reading.numpy()


@checked_arguments(parties=PARTIES, public_images=Tensor(), public_labels=Tensor(ndim=1, dtype="integer"),
                   per_digit=Integer(1))
def consensus_letters_figure(parties, public_images, public_labels, per_digit: int = 20):
    """:func:`letter_reading` drawn: left, the probability each party (grey) and the consensus
    (blue) put on the letters, per digit; right, which letter the consensus sees in each digit."""
    mass, reading = letter_reading(parties, public_images, public_labels, per_digit)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.9), gridspec_kw={"width_ratios": [1.2, 1]})
    digits = np.arange(NUM_PUBLIC_CLASSES)
    for row in mass[:-1]:
        left.plot(digits, row, "o", color=COLOURS["global"], alpha=0.6, markersize=4)
    left.plot([], [], "o", color=COLOURS["global"], label="one party")
    left.plot(digits, mass[-1], "D", color=COLOURS["fedmd"], markersize=7, label="consensus (mean logits)")
    left.set_ylim(0, 1.02)
    left.set_xticks(digits)
    left.set_xlabel("public digit")
    left.set_ylabel("probability on the letters a-f")
    left.legend(frameon=False, fontsize=8, loc="lower right")
    left.set_title("How much of each score on a digit is about letters")
    image = right.imshow(reading, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for digit in digits:
        for letter in range(len(LETTERS)):
            value = float(reading[digit, letter])
            right.text(letter, digit, f"{value:.2f}", ha="center", va="center", fontsize=7,
                       color="white" if value > 0.6 else "#000000")
    right.set_xticks(range(len(LETTERS)), list(LETTERS))
    right.set_yticks(digits)
    right.set_xlabel("letter")
    right.set_ylabel("public digit")
    right.grid(False)
    fig.colorbar(image, ax=right, fraction=0.05, label="share of the letters' probability")
    right.set_title("Which letter the consensus sees in each digit")
    fig.tight_layout()
    return fig


@checked_arguments(parties=PARTIES, subset_sizes=Each(Integer(1)))
def bytes_figure(parties, subset_sizes=(100, 500, 1437)):
    """Bytes one round moves, as dots on a log axis: FedMD at several public subset sizes against
    FedAvg's weights for the same models."""
    models = [p.model for p in parties]
    fedavg = bytes_per_round(models, 1).fedavg
    labels = [f"FedMD\nS = {s:,}" for s in subset_sizes] + ["FedAvg\n(weights)"]
    values = [bytes_per_round(models, s).fedmd for s in subset_sizes] + [fedavg]
    colours = [COLOURS["fedmd"]] * len(subset_sizes) + [COLOURS["global"]]
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for i, (value, colour) in enumerate(zip(values, colours)):
        ax.plot(i, value, "o", color=colour, markersize=10)
        ax.annotate(f"{value / 1e6:.2f} MB", (i, value), textcoords="offset points", xytext=(0, 9), ha="center",
                    fontsize=8)
    ax.set_xticks(range(len(values)), labels)
    ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set_yscale("log")
    ax.margins(y=0.3)  # room for the labels above the dots
    ax.set_ylabel("bytes per round (log scale)")
    ax.set_title("FedMD's traffic grows with the subset, not with the models")
    fig.tight_layout()
    return fig


@checked_arguments(runs=MappingOf(Instance(FedMDHistory)), title=TITLE, reference=Optional(FRACTION))
def compare_runs_figure(runs: dict, title: str, reference: float | None = None):
    """Mean test accuracy per round of several labelled runs (``{label: FedMDHistory}``);
    ``reference`` is drawn as the dashed private-only level."""
    if len(runs) > len(RUN_COLOURS):
        raise ValueError(f"runs must hold at most {len(RUN_COLOURS)} runs (one colour each), got {len(runs)}")
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for (label, history), colour in zip(runs.items(), RUN_COLOURS):
        ax.plot(history.mean_accuracy, marker="o", markersize=3, color=colour, label=label)
    if reference is not None:
        ax.axhline(reference, color=COLOURS["local"], linestyle="--", label="private-only")
    ax.set_xlabel("round")
    ax.set_ylabel("mean test accuracy (fraction)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@checked_arguments(data=Instance(LetterData), samples_per_letter=Integer(1))
def letters_grid_figure(data: LetterData, samples_per_letter: int = 2):
    """One row per writer (party): its first ``samples_per_letter`` private samples of each letter
    a-f. Returns the figure."""
    rows, columns = len(data.private), len(LETTERS) * samples_per_letter
    fig, axes = plt.subplots(rows, columns, figsize=(0.62 * columns + 1.4, 0.62 * rows + 0.6), squeeze=False)
    for row, ((images, labels), writer) in enumerate(zip(data.private, data.writers)):
        for index, label in enumerate(LETTER_LABELS):
            of_class = images[labels == label]
            for sample in range(samples_per_letter):
                ax = axes[row, index * samples_per_letter + sample]
                show_digit(ax, of_class[sample % len(of_class)])
                if row == 0 and sample == 0:
                    ax.set_title(LETTERS[index], fontsize=10)
        axes[row, 0].set_ylabel(f"party {row}\n{getattr(writer, 'name', writer)}", rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("Each party holds letters a-f of its own hand", y=1.0)
    fig.tight_layout()
    return fig
