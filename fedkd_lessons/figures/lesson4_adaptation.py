"""The figures of lesson 4 (local adaptation); each function returns a matplotlib Figure."""

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np

from fedkd_lessons.engine.validation import (FRACTION, POSITIVE, Each, Instance, Integer, Optional, Real,
                                             checked_arguments)
from fedkd_lessons.experiments.lesson4_springs import SpringToy
from fedkd_lessons.figures.plotting import ACCURACIES, COLOURS, GAINS, TITLE, MappingOf, Numbers, check_lengths

SIZES = Numbers(integer=True, within=Real(0))  # (K,) images per client

LABELS = {"global": "global model", "local": "local only", "finetune": "fine-tune", "freeze_base": "freeze-base",
          "ewc": "EWC", "distill": "distill"}


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _check_same_clients(name: str, per_method: Mapping[str, np.ndarray], clients: int | None = None) -> None:
    """Every array of ``per_method`` holds one entry per client (``clients``, or as many as the first)."""
    clients = len(next(iter(per_method.values()))) if clients is None else clients
    check_lengths(clients, "client", **{f"{name}[{method!r}]": values for method, values in per_method.items()})


@checked_arguments(global_accuracy=ACCURACIES, local_accuracy=ACCURACIES, train_sizes=SIZES, test_sizes=SIZES,
                   title=TITLE)
def client_spread_figure(global_accuracy, local_accuracy, train_sizes, test_sizes,
                         title: str = "One global model, very different clients"):
    """Lesson 4, Fig. 1: per client (sorted by the global model's accuracy), the global model's and
    the local-only model's accuracy (%) on the client's own test set as two dots joined by a line
    (dots, not bars: the axis does not start at zero); the tick labels give the client's number of
    local training / test images."""
    check_lengths(len(global_accuracy), "client", local_accuracy=local_accuracy, train_sizes=train_sizes,
                  test_sizes=test_sizes)
    order = np.argsort(global_accuracy)
    x = np.arange(len(order))
    global_values, local_values = 100 * np.asarray(global_accuracy)[order], 100 * np.asarray(local_accuracy)[order]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.vlines(x, np.minimum(global_values, local_values), np.maximum(global_values, local_values), color="black",
              alpha=0.3, linewidth=1)
    ax.plot(x, global_values, "o", color=COLOURS["global"], markersize=7, label=_label("global"))
    ax.plot(x, local_values, "s", color=COLOURS["local"], markersize=6, label=_label("local"))
    ax.set_xticks(x, [f"{k}\n{train_sizes[k]}/{test_sizes[k]}" for k in order], fontsize=8)
    ax.set_xlabel("client (local train / local test images), worst-served first")
    ax.set_ylabel("accuracy on the client's own test set (%)")
    low = min(global_values.min(), local_values.min())
    ax.set_ylim(max(0, low - 5), 101)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


@checked_arguments(accuracies=MappingOf(ACCURACIES), title=TITLE)
def method_comparison_figure(accuracies: Mapping[str, np.ndarray],
                             title: str = "Mean local accuracy per method, one dot per client"):
    """Lesson 4, Fig. 2: for each method (x) every client's local test accuracy (%) as a dot, the
    clients' mean as a wide dash with its value, a line joining each client's dots across methods (no
    bars: the axis does not start at zero). ``accuracies`` maps method names (``"global"`` first) to
    ``(K,)`` arrays in [0, 1]."""
    _check_same_clients("accuracies", accuracies)
    names = list(accuracies)
    values = 100 * np.array([accuracies[name] for name in names])
    fig, ax = plt.subplots(figsize=(8, 3.8))
    x = np.arange(len(names))
    ax.plot(x, values, color="black", alpha=0.15, linewidth=0.8)
    jitter = np.linspace(-0.12, 0.12, values.shape[1])
    for i, name in enumerate(names):
        colour = COLOURS.get(name, "grey")
        ax.scatter(x[i] + jitter, values[i], s=14, color=colour, zorder=3)
        ax.hlines(values[i].mean(), x[i] - 0.3, x[i] + 0.3, color=colour, linewidth=3, zorder=4)
        ax.text(x[i] + 0.32, values[i].mean(), f"{values[i].mean():.1f}", ha="left", va="center", fontsize=8)
    ax.set_xticks(x, [_label(name) for name in names])
    ax.set_ylabel("accuracy on the client's own test set (%)")
    ax.set_ylim(max(0, values.min() - 5), 101)
    ax.set_title(title)
    fig.tight_layout()
    return fig


@checked_arguments(global_accuracy=ACCURACIES, gains=MappingOf(GAINS), title=TITLE)
def who_gains_figure(global_accuracy, gains: Mapping[str, np.ndarray],
                     title: str = "Who gains from adaptation?"):
    """Lesson 4, Fig. 3: per client, the global model's local accuracy (x, %) against each
    method's gain over it (y, percentage points), one colour per method; dashed line: no gain."""
    _check_same_clients("gains", gains, len(global_accuracy))
    fig, ax = plt.subplots(figsize=(6.4, 4))
    x = 100 * np.asarray(global_accuracy)
    offsets = np.linspace(-0.3, 0.3, len(gains))
    for offset, (name, gain) in zip(offsets, gains.items()):
        ax.scatter(x + offset, 100 * np.asarray(gain), s=22, color=COLOURS.get(name, "grey"), label=_label(name),
                   alpha=0.85)
    ax.axhline(0, color=COLOURS["global"], linestyle="--", linewidth=1)
    ax.set_xlabel("global model's accuracy on the client's test set (%)")
    ax.set_ylabel("gain over the global model (points)")
    ax.set_title(title)
    ax.legend(fontsize=8, ncols=2)
    fig.tight_layout()
    return fig


@checked_arguments(epochs_grid=Numbers(within=Real(0)), curves=MappingOf(Numbers(ndim=2, within=Real(0, 1))),
                   global_level=FRACTION, shots=Integer(1), sizes=Instance((list, tuple)), size_gains=MappingOf(GAINS),
                   size_labels=Optional(Instance((list, tuple))), title=TITLE)
def overfitting_figure(epochs_grid, curves: Mapping[str, np.ndarray], global_level: float, shots: int,
                       sizes, size_gains: Mapping[str, np.ndarray], size_labels=None,
                       title: str = "Few local images: fine-tuning against distillation"):
    """Lesson 4, Fig. 4. Left: mean local test accuracy (%) over clients holding ``shots`` training
    images each, against adaptation epochs (``curves[method]`` is ``(len(epochs_grid), K)``), the
    global model dashed. Right: the mean gain over the global model (points) of each method against
    the number of local training images (``size_gains[method]`` is ``(len(sizes),)``)."""
    for name, curve in curves.items():
        if len(curve) != len(epochs_grid):
            raise ValueError(f"curves[{name!r}] must hold one row per entry of epochs_grid ({len(epochs_grid)}), "
                             f"got shape {curve.shape}")
    check_lengths(len(sizes), "size", **{f"size_gains[{name!r}]": gain for name, gain in size_gains.items()})
    if size_labels is not None:
        check_lengths(len(sizes), "size", size_labels=size_labels)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    x = np.array(epochs_grid, dtype=float)
    for name, curve in curves.items():
        curve = 100 * np.asarray(curve)
        left.plot(x, curve.mean(axis=1), "o-", color=COLOURS.get(name, "grey"), label=_label(name))
    left.axhline(100 * global_level, color=COLOURS["global"], linestyle="--", label=_label("global"))
    left.set_xscale("symlog", linthresh=1)
    left.set_xticks(x, [f"{e:g}" for e in x])
    left.minorticks_off()
    left.set_xlabel("adaptation epochs")
    left.set_ylabel("mean accuracy on clients' tests (%)")
    left.set_title(f"Clients with {shots} training images each")
    left.legend(fontsize=8)
    positions = np.arange(len(sizes))
    for name, gain in size_gains.items():
        right.plot(positions, 100 * np.asarray(gain), "o-", color=COLOURS.get(name, "grey"), label=_label(name))
    right.axhline(0, color=COLOURS["global"], linestyle="--", linewidth=1)
    right.set_xticks(positions, size_labels or [str(s) for s in sizes])
    right.set_xlabel("local training images per client")
    right.set_ylabel("mean gain over global (points)")
    right.set_title("Gain as local data shrinks")
    finite = [100 * np.asarray(g) for name, g in size_gains.items() if name != "local"]
    if finite:
        low, high = min(v.min() for v in finite), max(v.max() for v in finite)
        right.set_ylim(low - 2, high + 2)
    right.legend(fontsize=8, ncols=2)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


@checked_arguments(results=MappingOf(MappingOf(ACCURACIES)), title=TITLE)
def aggregator_recovery_figure(results: Mapping[str, Mapping[str, np.ndarray]],
                               title: str = "After median or DP aggregation, adaptation recovers"):
    """Lesson 4, Fig. 5: for each aggregator (x), the mean local accuracy (%) of the global model and of
    every adaptation method, one dot per method in the method's colour, the dots of one method joined
    across aggregators (dots and lines, not bars: the axis does not start at zero);
    ``results[aggregator][method]`` are ``(K,)`` arrays in [0, 1]."""
    methods = list(next(iter(results.values())))
    for aggregator, per_method in results.items():
        if set(per_method) != set(methods):
            raise ValueError(f"results[{aggregator!r}] must hold the methods of the first aggregator {methods}, "
                             f"got {list(per_method)}")
    aggregators = list(results)
    methods = list(next(iter(results.values())))
    width = 0.5 / max(1, len(methods) - 1)
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for m, method in enumerate(methods):
        means = [100 * np.mean(results[aggregator][method]) for aggregator in aggregators]
        positions = np.arange(len(aggregators)) + (m - (len(methods) - 1) / 2) * width
        ax.plot(positions, means, "o-", color=COLOURS.get(method, "grey"), label=_label(method), markersize=7,
                linewidth=1, alpha=0.9)
    ax.set_xticks(np.arange(len(aggregators)), aggregators)
    ax.set_xlabel("how the global model was aggregated")
    ax.set_ylabel("mean accuracy on clients' tests (%)")
    ax.set_title(title)
    ax.legend(fontsize=8, ncols=3, loc="best")
    fig.tight_layout()
    return fig


@checked_arguments(gains=Numbers(ndim=2, within=Real(-1, 1)), temperatures=Numbers(within=POSITIVE),
                   alphas=Numbers(within=Real(0, 1)), marked=Optional(Each(Each(Real()), min_length=0)),
                   title=TITLE)
def distill_sweep_figure(gains, temperatures, alphas, marked=None,
                         title: str = "Distillation's gain over T and alpha"):
    """Lesson 4, Fig. 6: heatmap of the mean gain over the global model (points) of distillation,
    ``gains`` ``(len(alphas), len(temperatures))`` in accuracy units; ``marked`` ``(alpha, T)`` pairs get a box."""
    if gains.shape != (len(alphas), len(temperatures)):
        raise ValueError(f"gains must have shape (len(alphas), len(temperatures)) = "
                         f"{(len(alphas), len(temperatures))}, got {gains.shape}")
    for pair in marked or ():
        if len(pair) != 2 or pair[0] not in list(alphas) or pair[1] not in list(temperatures):
            raise ValueError(f"marked must hold (alpha, T) pairs of the grid, alphas {[float(a) for a in alphas]} and "
                             f"temperatures {[float(t) for t in temperatures]}, got {tuple(pair)}")
    grid = 100 * np.asarray(gains, dtype=float)
    limit = max(np.abs(grid).max(), 0.5)
    fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
    image = ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        ax.text(j, i, f"{value:+.1f}", ha="center", va="center", fontsize=8,
                color="white" if abs(value) > 0.6 * limit else "black")
    for alpha, temperature in marked or ():
        i, j = list(alphas).index(alpha), list(temperatures).index(temperature)
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2))
    ax.set_xticks(range(len(temperatures)), [f"{t:g}" for t in temperatures])
    ax.set_yticks(range(len(alphas)), [f"{a:.3g}" for a in alphas])
    ax.set_xlabel("temperature T")
    ax.set_ylabel("alpha (soft weight)")
    ax.grid(False)
    fig.colorbar(image, ax=ax, label="mean gain over global (points)")
    ax.set_title(title)
    return fig


def readme_figure():
    """The lesson 4 picture for the README: the gain in mean local test accuracy over the global model
    (points, zero = the global model) against adaptation epochs for fine-tuning and distillation on
    clients with 10 training images each (federates the offline
    digits and adapts, seeded, in a few seconds; the same picture every time)."""
    from fedkd_lessons.adaptation import (AdaptationSettings, adaptation_curve, code_equivalent_alpha,
                                          run_adaptation_experiment, subsample_clients)
    from fedkd_lessons.data.digits import load_digits_split
    from fedkd_lessons.engine.seeding import seed_everything

    seed_everything(0)
    experiment = run_adaptation_experiment(load_digits_split(), methods=(), progress=False)
    few = subsample_clients(experiment.federation.train, 10, seed=0)
    grid = (0, 1, 2, 5, 10, 20, 50)
    settings = AdaptationSettings(alpha=code_equivalent_alpha()[0])
    curves = {method: adaptation_curve(method, experiment.global_model, few, experiment.federation.test, grid, settings,
                                       progress=False)
              for method in ("finetune", "distill")}
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    level = experiment.accuracies["global"].mean()
    for name, curve in curves.items():
        ax.plot(grid, 100 * (curve.mean(axis=1) - level), "o-", color=COLOURS[name], label=_label(name))
    ax.axhline(0, color=COLOURS["global"], linestyle="--", label=f"{_label('global')} ({100 * level:.1f} %)")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xticks(grid, [str(e) for e in grid])
    ax.minorticks_off()
    ax.set_xlabel("adaptation epochs (10 local images per client)")
    ax.set_ylabel("gain over the global model (points)")
    # one seed: over seeds distillation never falls below the global model, while fine-tuning's
    # fall varies (tests/claims/test_claims_lesson4.py), so the title claims no more than that
    ax.set_title("10 images per client: distillation stays at the global model;\nfine-tuning's path depends on the seed")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@checked_arguments(toy=Instance(SpringToy), ewc_lambda=Real(0), temperature=POSITIVE, alpha=FRACTION, steps=Integer(1),
                   lr=POSITIVE, title=TITLE)
def springs_figure(toy, ewc_lambda: float = 3.0, temperature: float = 2.0, alpha: float = 0.7, steps: int = 300,
                   lr: float = 0.5, title: str = "EWC holds each weight near its global value; distillation holds "
                                                   "only the outputs on the client's inputs"):
    """Lesson 4's spring picture on :mod:`fedkd_lessons.experiments.lesson4_springs`' two-weight toy. Left: the
    contours of EWC's penalty in the weight plane (a spring on each weight, stiffness ``lambda F_i``);
    right: those of distillation's soft term on the client's inputs (a spring on the outputs). On both,
    the path of plain fine-tuning from the global weights and the path of the panel's method."""
    from fedkd_lessons.experiments.lesson4_springs import (adaptation_path, client_accuracy, distillation_spring,
                                                           ewc_spring)

    w1, w2 = np.meshgrid(np.linspace(-1, 5, 61), np.linspace(-2, 5, 71))
    grid = np.stack([w1, w2], axis=-1)
    springs = {"ewc": ewc_spring(toy, grid, ewc_lambda), "distill": distillation_spring(toy, grid, temperature, alpha)}
    paths = {method: adaptation_path(toy, method, steps=steps, lr=lr, ewc_lambda=ewc_lambda, temperature=temperature,
                                     alpha=alpha) for method in ("finetune", "ewc", "distill")}
    captions = {"ewc": f"EWC: a spring on each weight (lambda = {ewc_lambda:g})",
                "distill": f"Distillation: a spring on the outputs (T = {temperature:g}, alpha = {alpha:g})"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    start = toy.global_weights.numpy()
    for ax, method in zip(axes, ("ewc", "distill")):
        levels = np.quantile(springs[method], [0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7])
        # the spring's contours in black, so that colour stays the methods' own
        ax.contour(w1, w2, springs[method], levels=np.unique(levels), colors="black", alpha=0.3, linewidths=1)
        for name in ("finetune", method):
            path = paths[name]
            ax.plot(path[:, 0], path[:, 1], "-", color=COLOURS[name], linewidth=2,
                    label=f"{_label(name)}: ends at client accuracy {100 * client_accuracy(toy, path[-1]):.0f} %")
            ax.plot(*path[-1], "o", color=COLOURS[name], markersize=7)
        ax.plot(*start, "*", color="black", markersize=14,
                label=f"global weights w_fed: client accuracy {100 * client_accuracy(toy, start):.0f} %")
        ax.set_xlabel("weight 1 (the feature the federation relied on)")
        ax.set_title(captions[method], fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
        ax.set_xlim(-1, 5)
        ax.set_ylim(-2, 5)
    axes[0].set_ylabel("weight 2 (the feature the client's labels follow)")
    fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    return fig


@checked_arguments(local_accuracy=ACCURACIES, gains=MappingOf(GAINS), mirrored=Numbers(), title=TITLE)
def who_gains_by_local_figure(local_accuracy, gains: Mapping[str, np.ndarray], mirrored,
                              title: str = "Who gains, against how good each client's local-only model is"):
    """Lesson 4, section 4b: one panel per model (``gains[name]`` ``(N,)``: its accuracy minus the client's
    local-only model's, in [-1, 1]), every client of every seed as a dot at its local-only model's
    accuracy (x, %) and that gain (y, points), mirrored clients (``mirrored`` ``(N,)`` bool) as open
    circles; dashed: no gain over staying alone."""
    _check_same_clients("gains", gains, len(local_accuracy))
    check_lengths(len(local_accuracy), "client", mirrored=mirrored)
    x = 100 * np.asarray(local_accuracy)
    mirrored = np.asarray(mirrored, dtype=bool)
    fig, axes = plt.subplots(1, len(gains), figsize=(2.6 * len(gains) + 0.6, 3.6), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, (name, gain) in zip(axes, gains.items()):
        y = 100 * np.asarray(gain)
        colour = COLOURS.get(name, "grey")
        ax.scatter(x[~mirrored], y[~mirrored], s=18, color=colour, alpha=0.8, label="digits as written")
        ax.scatter(x[mirrored], y[mirrored], s=24, facecolors="none", edgecolors=colour, linewidths=1.3,
                   label="mirrored digits")
        ax.axhline(0, color="black", linestyle="--", linewidth=1)
        ax.set_title(f"{_label(name)} - local only", fontsize=10)
        ax.set_xlabel("local-only accuracy (%)")
    axes[0].set_ylabel("gain over the local-only model (points)")
    axes[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    return fig
