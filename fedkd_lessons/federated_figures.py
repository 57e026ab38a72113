"""Lesson 3's figures: partitions, training curves, per-client spread, what aggregators cost."""

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .data import class_mix_distances, dirichlet_partition, load_digits_split
from .federated import FedAvgHistory
from .plotting import COLOURS, show_digit


def plot_partition(client_indices, labels, ax=None, title: str | None = None, num_classes: int = 10) -> Figure:
    """A stacked bar per client of its class counts (one colour per class). Returns the figure."""
    labels = np.asarray(labels)
    counts = np.array([np.bincount(labels[np.asarray(idx, dtype=int)], minlength=num_classes) for idx in client_indices])
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3))
    fig = ax.figure
    bottom = np.zeros(len(counts))
    palette = plt.get_cmap("tab10")
    for c in range(num_classes):
        ax.bar(np.arange(len(counts)), counts[:, c], bottom=bottom, color=palette(c % 10), label=str(c), width=0.85)
        bottom += counts[:, c]
    ax.set_xlabel("client")
    ax.set_ylabel("examples (count)")
    ax.set_xticks(np.arange(len(counts)), [str(k) for k in range(len(counts))], fontsize=7)
    if title:
        ax.set_title(title)
    return fig


def plot_partitions_by_alpha(labels=None, alphas=(100, 1, 0.1), num_clients: int = 20, seed: int = 0,
                             min_samples: int = 25) -> Figure:
    """Lesson 3's README picture: Dirichlet partitions of the digits at each ``alpha`` side by side,
    each titled with its class skew (mean total-variation distance from the pooled mix).
    ``labels`` defaults to the training labels of :func:`load_digits_split`; the defaults draw the
    partitions of lesson 3's federations (:func:`fedkd_lessons.data.make_federation`)."""
    if labels is None:
        labels = load_digits_split().train_labels.numpy()
    labels = np.asarray(labels)
    num_classes = int(labels.max()) + 1
    fig, axes = plt.subplots(1, len(alphas), figsize=(4.2 * len(alphas), 3.2), sharey=True)
    for ax, alpha in zip(np.atleast_1d(axes), alphas):
        parts = dirichlet_partition(labels, num_clients, alpha, seed, min_samples=min_samples)
        skew = class_mix_distances([labels[p] for p in parts], num_classes).mean()
        plot_partition(parts, labels, ax=ax, title=f"alpha = {alpha:g}: class skew {skew:.2f}", num_classes=num_classes)
    for ax in np.atleast_1d(axes)[1:]:
        ax.set_ylabel("")
    handles, names = np.atleast_1d(axes)[0].get_legend_handles_labels()
    fig.legend(handles, names, title="class", loc="center right", fontsize=8)
    fig.suptitle("Smaller alpha, more skewed clients: Dirichlet partitions of the digits", y=1.0)
    fig.tight_layout(rect=(0, 0, 0.94, 1))
    return fig


def plot_accuracy_curves(histories: Mapping[str, FedAvgHistory], title: str, colours: Mapping[str, str] | None = None) -> Figure:
    """Global test accuracy (%) per round, one line per run (``{label: history}``). Returns the figure."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for label, history in histories.items():
        colour = (colours or COLOURS).get(label)
        ax.plot(range(len(history.global_accuracy)), 100 * np.array(history.global_accuracy),
                marker="o", markersize=3, label=label, color=colour)
    ax.set_xlabel("communication round")
    ax.set_ylabel("global test accuracy (%)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_client_accuracy_histogram(accuracies: Mapping[str, np.ndarray], title: str,
                                   colours: Mapping[str, str] | None = None) -> Figure:
    """Histogram of the global model's accuracy (%) on each client's own test set, one per run."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    lowest = min(float(np.min(values)) for values in accuracies.values())
    bins = np.arange(5 * max(0, int(20 * lowest) - 1), 101, 5)  # 5-point bins from just under the worst client
    for label, values in accuracies.items():
        values = 100 * np.asarray(values)
        colour = (colours or COLOURS).get(label)
        ax.hist(values, bins=bins, alpha=0.6, label=f"{label} (median {np.median(values):.0f} %)", color=colour,
                edgecolor="white")
    ax.set_xlabel("global model's accuracy on the client's own test set (%)")
    ax.set_ylabel("clients (count)")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def plot_aggregator_cost(per_class: Mapping[str, np.ndarray], per_client: Mapping[str, np.ndarray], title: str,
                         baseline: str = "mean", colours: Mapping[str, str] | None = None) -> Figure:
    """What a robust or private aggregator costs, and whom: left, the global model's accuracy (%)
    per class for each aggregator (``{label: (C,)}``); right, each client's accuracy under the
    ``baseline`` aggregator (x) against the others (y), ``{label: (K,)}``: points under the
    diagonal are clients the aggregator hurt."""
    colours = colours or COLOURS
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1.3, 1]})
    width = 0.8 / len(per_class)
    for i, (label, values) in enumerate(per_class.items()):
        left.bar(np.arange(len(values)) + (i - (len(per_class) - 1) / 2) * width, 100 * np.asarray(values), width,
                 label=label, color=colours.get(label))
    left.set_xticks(np.arange(len(next(iter(per_class.values())))))
    left.set_xlabel("digit class")
    left.set_ylabel("global test accuracy (%)")
    left.set_title("Per class: which digits each global model still knows")
    left.legend(fontsize=8, ncols=len(per_class))
    left.set_ylim(0, 115)
    reference = 100 * np.asarray(per_client[baseline])
    right.plot([0, 100], [0, 100], color=colours.get(baseline, "grey"), linewidth=1, linestyle="--")
    for label, values in per_client.items():
        if label != baseline:
            change = 100 * np.asarray(values) - reference
            right.scatter(reference, 100 * np.asarray(values), color=colours.get(label), alpha=0.8,
                          label=f"{label}: mean {change.mean():+.1f}, worst {change.min():+.0f} points")
    right.set_xlabel(f"client's accuracy under {baseline} (%)")
    right.set_ylabel("under the other aggregator (%)")
    right.set_title("Per client: under the diagonal = hurt")
    right.legend(fontsize=8, loc="upper left")
    fig.suptitle(title, y=1.0)
    fig.tight_layout()
    return fig


def plot_client_examples(client_sets, clients=(0, 1, 2), per_client: int = 8) -> Figure:
    """A row of each chosen client's first ``per_client`` images, titled with their labels: what
    each client holds, and what the server never sees."""
    fig, axes = plt.subplots(len(clients), per_client, figsize=(0.9 * per_client, 1.05 * len(clients)), squeeze=False)
    for row, client in zip(axes, clients):
        images, labels = client_sets[client]
        for column, ax in enumerate(row):
            if column < len(labels):
                show_digit(ax, images[column], str(int(labels[column])))
            else:
                ax.axis("off")
        row[0].set_ylabel(f"client {client}", rotation=0, ha="right", va="center")
    fig.suptitle("Each client sees only its own digits; the server sees none of them", y=1.02)
    fig.tight_layout()
    return fig


def plot_federation_partitions(federations, labels, title: str | None = None) -> Figure:
    """:func:`plot_partitions_by_alpha` for federations already made (``{alpha: Federation}``):
    each client's bar counts all it holds, local train and local test together, so the picture is
    the Dirichlet partition as dealt out, whatever seed and retries produced it."""
    labels = np.asarray(labels)
    num_classes = int(labels.max()) + 1
    fig, axes = plt.subplots(1, len(federations), figsize=(4.2 * len(federations), 3.2), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, (alpha, federation) in zip(axes, federations.items()):
        parts = [np.sort(np.concatenate([train, test]))
                 for train, test in zip(federation.train_indices, federation.test_indices)]
        skew = class_mix_distances([labels[p] for p in parts], num_classes).mean()
        plot_partition(parts, labels, ax=ax, title=f"alpha = {alpha:g}: class skew {skew:.2f}", num_classes=num_classes)
    for ax in axes[1:]:
        ax.set_ylabel("")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, title="class", loc="center right", fontsize=8)
    fig.suptitle(title or "Smaller alpha, more skewed clients: Dirichlet partitions of the digits", y=1.0)
    fig.tight_layout(rect=(0, 0, 0.94, 1))
    return fig
