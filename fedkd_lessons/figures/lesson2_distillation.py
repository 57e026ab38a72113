"""The figures of lesson 2 (knowledge distillation); each function returns a matplotlib Figure."""

import matplotlib.pyplot as plt
import numpy as np
import torch

from fedkd_lessons.engine.validation import (POSITIVE, Each, Instance, Integer, Optional, Real, Tensor,
                                             checked_arguments)
from fedkd_lessons.figures.plotting import (ACCURACIES, COLOURS, TITLE, MappingOf, Numbers, check_lengths,
                                            draw_probability_bars, show_digit)

# per group (hidden units, labelled digits), per method (a key of COLOURS): the accuracies over seeds
STUDENTS = MappingOf(MappingOf(ACCURACIES))
from fedkd_lessons.temperature import softmax_with_temperature


@checked_arguments(images=Tensor(ndim=(3, 4)), teacher_logits=Tensor(ndim=2, finite=False),
                   labels=Tensor(ndim=1, dtype="integer"), temperature=POSITIVE,
                   class_names=Optional(Instance((list, tuple))))
def soft_targets_figure(images, teacher_logits, labels, temperature: float = 4.0, class_names=None):
    """Top row: a few digits; below each, the teacher's probabilities at ``T = 1`` and at
    ``temperature`` (the soft targets), each panel titled with its runner-up class and probability.

    ``images`` ``(K, 1, H, W)``, ``teacher_logits`` ``(K, C)``, ``labels`` ``(K,)``. Lesson 2, Fig. 1.
    """
    check_lengths(len(teacher_logits), "row of teacher_logits", images=images, labels=labels)
    if labels.min() < 0 or labels.max() >= teacher_logits.shape[1]:
        raise ValueError(f"labels must be classes in [0, {teacher_logits.shape[1]}) (the logits' width), "
                         f"got {labels.tolist()}")
    if class_names is not None:
        check_lengths(teacher_logits.shape[1], "class of the logits", class_names=class_names)
    teacher_logits = torch.as_tensor(teacher_logits)
    count, num_classes = teacher_logits.shape
    class_names = class_names or [str(c) for c in range(num_classes)]
    fig, axes = plt.subplots(3, count, figsize=(2.2 * count, 5.6), gridspec_kw={"height_ratios": [1, 1.1, 1.1]})
    axes = np.asarray(axes).reshape(3, count)
    for k in range(count):
        show_digit(axes[0, k], images[k], f"label {int(labels[k])}")
        for row, t in ((1, 1.0), (2, temperature)):
            probs = softmax_with_temperature(teacher_logits[k], t)
            draw_probability_bars(axes[row, k], probs, class_names, highlight=int(labels[k]))
            axes[row, k].tick_params(axis="x", labelsize=7)
            second = int(probs.argsort(descending=True)[1])
            axes[row, k].set_title(f"T = {t:g}: runner-up {class_names[second]} ({float(probs[second]):.2f})", fontsize=8)
    axes[1, 0].set_ylabel("teacher probability")
    axes[2, 0].set_ylabel("teacher probability")
    fig.suptitle(f"The teacher's probabilities at T = 1 and at T = {temperature:g}: the runner-up classes say what "
                 "each digit resembles")
    fig.tight_layout()
    return fig


@checked_arguments(temperatures=Numbers(within=POSITIVE), norms_without=Numbers(within=POSITIVE),
                   norms_with=Numbers(within=POSITIVE))
def gradient_scale_figure(temperatures, norms_without, norms_with):
    """Norm of the soft term's gradient w.r.t. the student logits against ``T`` (log-log), without and
    with the ``T^2`` factor (Hinton et al. 2015, section 2). Lesson 2, Fig. 2."""
    check_lengths(len(temperatures), "temperature", norms_without=norms_without, norms_with=norms_with)
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    ax.loglog(temperatures, norms_without, "o-", color=COLOURS["hard labels"], label="KL alone: falls as 1/T²")
    ax.loglog(temperatures, norms_with, "s-", color=COLOURS["soft targets"], label="T² · KL: stays on one scale")
    ax.set_xticks(temperatures, [f"{t:g}" for t in temperatures])
    ax.minorticks_off()
    ax.set_xlabel("temperature T")
    ax.set_ylabel("‖∂ soft term / ∂z‖ (per batch)")
    ax.set_title("Only with the T² factor does the soft gradient keep its size as T grows")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def _accuracy_panel(ax, groups, methods, accuracies, title):
    """Each seed (small dots) and the mean ± std over seeds (large dot with whiskers) of
    ``accuracies[group][method]`` (lists over seeds, in [0, 1]; drawn in %). Dots, not bars: the
    axis does not start at zero, and a bar's length would exaggerate the differences."""
    width = 0.8 / len(methods)
    for m, method in enumerate(methods):
        for g, group in enumerate(groups):
            values = 100 * np.asarray(accuracies[group][method], dtype=float)
            x = g + (m - (len(methods) - 1) / 2) * width
            ax.plot(np.full(len(values), x), values, ".", color=COLOURS[method], markersize=4, alpha=0.6)
            ax.errorbar(x, values.mean(), yerr=values.std(), fmt="o", color=COLOURS[method], markersize=7,
                        capsize=3, label=method if g == 0 else None)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_xlim(-0.5, len(groups) - 0.5)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)


@checked_arguments(same_set=STUDENTS, few_labels=STUDENTS, title=TITLE, bottom=Real(0, 100))
def student_comparison_figure(same_set, few_labels, title: str = "Students trained with and without a teacher",
                              bottom: float = 70.0):
    """Lesson 2: scratch vs distilled students, each seed as a small dot and the mean ± std over
    seeds as a large one (no bars: the accuracy axis is cut).

    ``same_set[size][method]`` and ``few_labels[n_labelled][method]`` are lists of accuracies in
    [0, 1] over seeds; methods are keys of :data:`fedkd_lessons.figures.plotting.COLOURS`. ``title`` should
    state the finding; the y axis starts at ``bottom`` % (or lower if a seed falls below it).
    """
    for name, results in (("same_set", same_set), ("few_labels", few_labels)):
        methods = list(next(iter(results.values())))
        for group, accuracies in results.items():
            if set(accuracies) != set(methods):
                raise ValueError(f"{name}[{group!r}] must hold the methods of the first group {methods}, "
                                 f"got {list(accuracies)}")
        unknown = [method for method in methods if method not in COLOURS]
        if unknown:
            raise ValueError(f"{name} names methods without a course colour {unknown}; the methods are keys of "
                             f"COLOURS: {sorted(COLOURS)}")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 3.9), gridspec_kw={"width_ratios": [1, 1.4]})
    for ax, results, panel_title in (
        (left, same_set, "(a) the same labelled transfer set"),
        (right, few_labels, "(b) few labels + unlabelled digits the teacher labels"),
    ):
        groups = list(results)
        _accuracy_panel(ax, groups, list(results[groups[0]]), results, panel_title)
        ax.legend(frameon=False, fontsize=8, loc="lower right")
    left.set_xlabel("student hidden units")
    right.set_xlabel("labelled digits the student has")
    lows = [100 * min(min(v) for v in r.values()) for res in (same_set, few_labels) for r in res.values()]
    for ax in (left, right):
        ax.set_ylim(max(bottom, min(lows) - 5), 100)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


@checked_arguments(grids=Each(Numbers(ndim=2, within=Real(0, 1))), temperatures=Numbers(within=POSITIVE),
                   alphas=Numbers(within=Real(0, 1)), titles=Each(TITLE), suptitle=TITLE)
def sweep_heatmap_figure(grids, temperatures, alphas, titles, suptitle: str = "Validation accuracy over T and alpha"):
    """Lesson 2, Fig. 4: one heatmap per student of validation accuracy (%) over ``alphas`` (rows)
    and ``temperatures`` (columns); ``grids`` are arrays ``(len(alphas), len(temperatures))`` in [0, 1]."""
    check_lengths(len(grids), "grid", titles=titles)
    for k, grid in enumerate(grids):
        if grid.shape != (len(alphas), len(temperatures)):
            raise ValueError(f"grids[{k}] must have shape (len(alphas), len(temperatures)) = "
                             f"{(len(alphas), len(temperatures))}, got {grid.shape}")
    grids = [100 * np.asarray(grid, dtype=float) for grid in grids]
    low, high = min(g.min() for g in grids), max(g.max() for g in grids)
    fig, axes = plt.subplots(1, len(grids), figsize=(4.8 * len(grids), 3.6), layout="constrained")
    axes = np.atleast_1d(axes)
    for ax, grid, title in zip(axes, grids, titles):
        image = ax.imshow(grid, cmap="viridis", vmin=low, vmax=high, aspect="auto")
        for (i, j), value in np.ndenumerate(grid):
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=8,
                    color="white" if value < (low + high) / 2 else "black")
        ax.set_xticks(range(len(temperatures)), [f"{t:g}" for t in temperatures])
        ax.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
        ax.set_xlabel("temperature T")
        ax.set_ylabel("alpha (soft weight)")
        ax.set_title(title)
        ax.grid(False)
    fig.colorbar(image, ax=list(axes), label="validation accuracy (%)")
    fig.suptitle(suptitle)
    return fig


@checked_arguments(shifts=Numbers(), validation_accuracy=ACCURACIES, chosen_shift=Real(), class_index=Integer(0),
                   title=Optional(TITLE))
def bias_shift_figure(shifts, validation_accuracy, chosen_shift, class_index: int = 3, title: str | None = None):
    """Lesson 2, Fig. 5: validation accuracy against the bias shift of the omitted class, the chosen
    shift marked. ``validation_accuracy`` in [0, 1], one per shift; ``title`` should state the finding."""
    check_lengths(len(shifts), "shift", validation_accuracy=validation_accuracy)
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    ax.plot(shifts, 100 * np.asarray(validation_accuracy, dtype=float), "o-", color=COLOURS["distill"])
    ax.axvline(chosen_shift, color=COLOURS["control"], linestyle="--", label=f"chosen on validation: {chosen_shift:g}")
    ax.set_xlabel(f"added to the class-{class_index} bias (logit units)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title or f"Validation accuracy against the class-{class_index} bias shift")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def readme_figure():
    """The lesson 2 picture for the README: a teacher's soft targets on four test digits (trains a
    small teacher on the offline digits in a few seconds, seeded, so it is the same every time)."""
    from fedkd_lessons.data.digits import load_digits_split
    from fedkd_lessons.engine.models import make_mlp, predict_logits
    from fedkd_lessons.engine.seeding import seed_everything
    from fedkd_lessons.engine.training import train

    generator = seed_everything(0)
    digits = load_digits_split()
    teacher = make_mlp((256, 256), dropout=0.3)
    train(teacher, digits.train_images, digits.train_labels, epochs=30, lr=3e-3, batch_size=128,
          generator=generator, progress=False)
    picks = [int((digits.test_labels == d).nonzero()[0]) for d in (3, 5, 7, 9)]
    logits = predict_logits(teacher, digits.test_images[picks])
    return soft_targets_figure(digits.test_images[picks], logits, digits.test_labels[picks], temperature=4.0)
