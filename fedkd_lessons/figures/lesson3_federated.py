"""Lesson 3's figures: partitions, training curves, per-client spread, what aggregators cost."""

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from fedkd_lessons.data.partition import Federation, class_mix_distances, dirichlet_partition
from fedkd_lessons.data.digits import load_digits_split
from fedkd_lessons.engine.validation import POSITIVE, Each, Instance, Integer, Optional, Real, checked_arguments
from fedkd_lessons.experiments.lesson3_client_drift import (DriftSettings, fedavg_fixed_point, fedavg_path,
                                                            global_optimum, local_steps)
from fedkd_lessons.fedavg import FedAvgHistory
from fedkd_lessons.figures.plotting import (ACCURACIES, AXES, COLOUR_MAP, COLOURS, STYLE_MAP, TITLE, MappingOf, Numbers,
                                            check_lengths, show_digit)

LABELS = Numbers(integer=True, within=Real(0))  # (N,) class labels


@checked_arguments(client_indices=Each(Numbers(integer=True, within=Real(0), min_length=0)), labels=LABELS,
                   ax=Optional(AXES), title=Optional(TITLE), num_classes=Integer(1))
def plot_partition(client_indices, labels, ax=None, title: str | None = None, num_classes: int = 10) -> Figure:
    """A stacked bar per client of its class counts (one colour per class). Returns the figure."""
    if labels.max() >= num_classes:
        raise ValueError(f"labels must be classes below num_classes = {num_classes}, got {int(labels.max())}")
    for k, indices in enumerate(client_indices):
        if len(indices) and indices.max() >= len(labels):
            raise ValueError(f"client_indices[{k}] must index labels (below {len(labels)}), got {int(indices.max())}")
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


PARTITIONS_TITLE = "Smaller concentration α, more skewed clients: Dirichlet partitions of the digits"


def _plot_partitions(partitions, labels, title: str) -> Figure:
    """One :func:`plot_partition` per ``{concentration: client index arrays}``, side by side, each
    titled with its concentration and class skew (mean total-variation distance from the pooled mix)."""
    labels = np.asarray(labels)
    num_classes = int(labels.max()) + 1
    fig, axes = plt.subplots(1, len(partitions), figsize=(4.2 * len(partitions), 3.2), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, (concentration, parts) in zip(axes, partitions.items()):
        skew = class_mix_distances([labels[p] for p in parts], num_classes).mean()
        plot_partition(parts, labels, ax=ax, title=f"α = {concentration:g}: class skew {skew:.2f}",
                       num_classes=num_classes)
    for ax in axes[1:]:
        ax.set_ylabel("")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, title="class", loc="center right", fontsize=8)
    fig.suptitle(title, y=1.0)
    fig.tight_layout(rect=(0, 0, 0.94, 1))
    return fig


@checked_arguments(labels=Optional(LABELS), concentrations=Numbers(within=POSITIVE), num_clients=Integer(1),
                   seed=Integer(0), min_samples=Integer(0))
def plot_partitions_by_concentration(labels=None, concentrations=(100, 1, 0.1), num_clients: int = 20, seed: int = 0,
                                     min_samples: int = 25) -> Figure:
    """Lesson 3's README picture: Dirichlet partitions of the digits at each concentration side by
    side, each titled with its class skew. ``labels`` defaults to the training labels of
    :func:`load_digits_split`; the defaults draw the partitions of lesson 3's federations
    (:func:`fedkd_lessons.data.partition.make_federation`)."""
    if labels is None:
        labels = load_digits_split().train_labels.numpy()
    partitions = {c: dirichlet_partition(labels, num_clients, c, seed, min_samples=min_samples) for c in concentrations}
    return _plot_partitions(partitions, labels, PARTITIONS_TITLE)


@checked_arguments(histories=MappingOf(Instance(FedAvgHistory)), title=TITLE, colours=COLOUR_MAP, styles=STYLE_MAP)
def plot_accuracy_curves(histories: Mapping[str, FedAvgHistory], title: str, colours: Mapping[str, str] | None = None,
                         styles: Mapping[str, Mapping] | None = None) -> Figure:
    """Global test accuracy (%) per round, one line per run (``{label: history}``). ``styles`` gives
    a run extra line options (e.g. ``{"linestyle": "--"}``): two settings of one method share its
    colour and differ in style. Returns the figure."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for label, history in histories.items():
        colour = (colours or COLOURS).get(label)
        options = {"marker": "o", "markersize": 3, **(styles or {}).get(label, {})}
        ax.plot(range(len(history.global_accuracy)), 100 * np.array(history.global_accuracy),
                label=label, color=colour, **options)
    ax.set_xlabel("communication round")
    ax.set_ylabel("global test accuracy (%)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


@checked_arguments(accuracies=MappingOf(ACCURACIES), title=TITLE, colours=COLOUR_MAP)
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


@checked_arguments(per_class=MappingOf(ACCURACIES), per_client=MappingOf(ACCURACIES), title=TITLE,
                   baseline=Instance(str), colours=COLOUR_MAP, styles=STYLE_MAP)
def plot_aggregator_cost(per_class: Mapping[str, np.ndarray], per_client: Mapping[str, np.ndarray], title: str,
                         baseline: str = "mean", colours: Mapping[str, str] | None = None,
                         styles: Mapping[str, Mapping] | None = None) -> Figure:
    """What a robust or private aggregator costs, and whom: left, the global model's accuracy (%)
    per class for each aggregator (``{label: (C,)}``), one dot per class; right, each client's
    accuracy under the ``baseline`` aggregator (x) against the others (y), ``{label: (K,)}``: points
    under the diagonal are clients the aggregator hurt. ``styles`` gives an aggregator extra marker
    options (e.g. ``{"fillstyle": "none"}``), so two settings of one method can share its colour."""
    if baseline not in per_client:
        raise ValueError(f"baseline must be one of per_client's aggregators {list(per_client)}, got {baseline!r}")
    first = next(iter(per_class.values()))
    check_lengths(len(first), "class", **{f"per_class[{label!r}]": values for label, values in per_class.items()})
    check_lengths(len(per_client[baseline]), "client",
                  **{f"per_client[{label!r}]": values for label, values in per_client.items()})
    colours, styles = colours or COLOURS, styles or {}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1.3, 1]})
    width = 0.7 / len(per_class)
    for i, (label, values) in enumerate(per_class.items()):
        options = {"marker": "o", "markersize": 6, **styles.get(label, {})}
        left.plot(np.arange(len(values)) + (i - (len(per_class) - 1) / 2) * width, 100 * np.asarray(values),
                  linestyle="none", label=label, color=colours.get(label), **options)
    left.set_xticks(np.arange(len(next(iter(per_class.values())))))
    left.set_xlabel("digit class")
    left.set_ylabel("global test accuracy (%)")
    left.set_title("Per class: which digits each global model still knows")
    left.legend(fontsize=8, ncols=len(per_class), loc="upper center")
    left.set_ylim(0, 118)  # room above 100 % for the legend
    reference = 100 * np.asarray(per_client[baseline])
    right.plot([0, 100], [0, 100], color=colours.get(baseline, "grey"), linewidth=1, linestyle="--")
    for label, values in per_client.items():
        if label != baseline:
            change = 100 * np.asarray(values) - reference
            options = {"marker": "o", "markersize": 5, **styles.get(label, {})}
            right.plot(reference, 100 * np.asarray(values), linestyle="none", color=colours.get(label), alpha=0.8,
                       label=f"{label}: mean {change.mean():+.1f}, worst {change.min():+.0f} points", **options)
    right.set_xlabel(f"client's accuracy under {baseline} (%)")
    right.set_ylabel("under the other aggregator (%)")
    right.set_title("Per client: under the diagonal = hurt")
    right.legend(fontsize=8, loc="upper left")
    fig.suptitle(title, y=1.0)
    fig.tight_layout()
    return fig


@checked_arguments(client_sets=Each(Instance((tuple, list))), clients=Each(Integer(0)), per_client=Integer(1))
def plot_client_examples(client_sets, clients=(0, 1, 2), per_client: int = 8) -> Figure:
    """A row of each chosen client's first ``per_client`` images, titled with their labels: what
    each client holds, and what the server never sees."""
    for client in clients:
        if client >= len(client_sets):
            raise ValueError(f"clients must be clients below {len(client_sets)} (client_sets' length), got {client}")
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


@checked_arguments(federations=MappingOf(Instance(Federation)), labels=LABELS, title=Optional(TITLE))
def plot_federation_partitions(federations, labels, title: str | None = None) -> Figure:
    """:func:`plot_partitions_by_concentration` for federations already made (``{concentration:
    Federation}``): each client's bar counts all it holds, local train and local test together, so
    the picture is the Dirichlet partition as dealt out, whatever seed and retries produced it."""
    partitions = {concentration: [np.sort(np.concatenate([train, test]))
                                  for train, test in zip(federation.train_indices, federation.test_indices)]
                  for concentration, federation in federations.items()}
    return _plot_partitions(partitions, labels, title or PARTITIONS_TITLE)


@checked_arguments(settings=Optional(Instance(DriftSettings)))
def plot_client_drift(settings=None) -> Figure:
    """Client drift on lesson 3's toy (:mod:`fedkd_lessons.experiments.lesson3_client_drift`).
    Left: the two clients' loss contours, their optima, the optimum of the federation's loss, one
    round's local steps from the start (the clients drift towards their own optima) and FedAvg's
    path with the fewest and the most local steps. Right: the distance of FedAvg's global weights
    from the federation's optimum, round by round, for each number of local steps, with the fixed
    point the closed form predicts (dotted)."""
    settings = settings or DriftSettings()
    clients, start = settings.clients, np.asarray(settings.start, dtype=float)
    if len(start) != 2:
        raise ValueError(f"the picture needs 2-d weights, got start of length {len(start)}")
    best = global_optimum(clients)
    fewest, most = min(settings.local_steps), max(settings.local_steps)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), gridspec_kw={"width_ratios": [1.1, 1]})
    grid = np.stack(np.meshgrid(np.linspace(-3, 3, 121), np.linspace(-2.2, 3, 121)), axis=-1)
    for client, style in zip(clients, ("solid", "dashed")):
        left.contour(grid[..., 0], grid[..., 1], client.loss(grid), levels=[0.25, 1, 2.5, 5], colors=COLOURS["local"],
                     linestyles=style, linewidths=0.8, alpha=0.6)
    for number, (client, marker) in enumerate(zip(clients, ("s", "D")), start=1):
        left.plot(*client.optimum, marker, color=COLOURS["local"], markersize=8, label=f"client {number}'s optimum")
        path = local_steps(client, start, most, settings.lr)
        left.plot(path[:, 0], path[:, 1], ".-", color=COLOURS["local"], markersize=3, linewidth=1,
                  label=f"round 1: {most} local steps" if number == 1 else None)
    for steps, style in ((fewest, "solid"), (most, "dashed")):
        path = fedavg_path(settings, steps)
        left.plot(path[:, 0], path[:, 1], "o", linestyle=style, color=COLOURS["global"], markersize=3, linewidth=1.2,
                  label=f"FedAvg, {steps} local step{'s' if steps > 1 else ''} a round")
    left.plot(*start, "o", color="black", markersize=5)
    left.annotate("start", start, textcoords="offset points", xytext=(6, 4), fontsize=8)
    left.plot(*best, "*", color="black", markersize=14, label="optimum of the federation's loss")
    left.set_xlabel("weight $w_1$")
    left.set_ylabel("weight $w_2$")
    left.set_aspect("equal")
    left.set_title("Local steps pull each client to its own optimum")
    left.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2)
    for steps, style in zip(sorted(settings.local_steps), ("solid", "dashdot", "dashed", "dotted")):
        path = fedavg_path(settings, steps)
        distance = np.linalg.norm(path - best, axis=1)
        line, = right.plot(range(len(path)), distance, linestyle=style, color=COLOURS["global"],
                           label=f"{steps} local step{'s' if steps > 1 else ''} a round")
        settles = np.linalg.norm(fedavg_fixed_point(clients, steps, settings.lr) - best)
        right.axhline(settles, color=line.get_color(), linestyle=":", linewidth=0.8)
    right.set_xlabel("communication round")
    right.set_ylabel("distance from the federation's optimum")
    right.set_title("Where FedAvg settles (dotted: the closed form)")
    right.legend(fontsize=8)
    fig.suptitle(f"Client drift: with {most} local steps a round FedAvg settles away from the optimum "
                 f"that {fewest} step{'s' if fewest > 1 else ''} a round reaches", y=1.0)
    fig.tight_layout()
    return fig
