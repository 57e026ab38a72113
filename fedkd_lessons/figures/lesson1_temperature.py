"""Lesson 1's figures: how temperature reshapes a real model's class probabilities."""

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from fedkd_lessons.engine.validation import POSITIVE, Instance, Integer, Optional, Tensor, checked_arguments
from fedkd_lessons.figures.plotting import COLOURS, MappingOf, Numbers, check_lengths, draw_probability_bars, show_digit
from fedkd_lessons.temperature import entropy, resemblance_table, softmax_with_temperature, strongest_lookalikes

TEMPERATURE_GRID = np.geomspace(0.05, 100, 60)

# the declared forms of the arguments the figures share
IMAGE = Tensor(ndim=(2, 3))  # one (H, W) or (1, H, W) image
# logits may hold -inf (a masked class), as everywhere in the package: softmax_with_temperature checks the rest
ONE_LOGITS = Tensor(ndim=1, finite=False)  # one (C,) logit vector
LOGITS = Tensor(ndim=2, finite=False)  # (N, C)
TEMPERATURES = Numbers(within=POSITIVE)  # drawn on a log axis
CLASS_NAMES = Optional(Instance((list, tuple)))
ENTROPY_COLOURS = (COLOURS["distill"], COLOURS["local"], COLOURS["ewc"])


def _check_class_names(class_names, num_classes: int) -> None:
    if class_names is not None:
        check_lengths(num_classes, "class of the logits", class_names=class_names)


@checked_arguments(image=IMAGE, logits=ONE_LOGITS, temperatures=TEMPERATURES, class_names=CLASS_NAMES)
def temperature_figure(image, logits, temperatures=(0.5, 1, 2, 5, 20), class_names=None, label=None):
    """The lesson 1 picture: one digit, then its softened class probabilities at each temperature.

    ``logits`` is one ``(C,)`` vector. Each panel's title gives ``T`` and the entropy in nats;
    the dashed line is the uniform level ``1/C``. Returns the figure.
    """
    _check_class_names(class_names, len(logits))
    logits = torch.as_tensor(logits)
    class_names = class_names or [str(c) for c in range(len(logits))]
    fig, axes = plt.subplots(1, len(temperatures) + 1, figsize=(2.3 * (len(temperatures) + 1), 2.6),
                             gridspec_kw={"width_ratios": [0.8] + [1] * len(temperatures)})
    show_digit(axes[0], image, f"input (label {label})" if label is not None else "input")
    predicted = int(logits.argmax())
    for ax, temperature in zip(axes[1:], temperatures):
        probs = softmax_with_temperature(logits, temperature)
        draw_probability_bars(ax, probs, class_names, highlight=predicted)
        ax.set_title(f"T = {temperature:g}\nH = {float(entropy(probs)):.2f} nats")
        ax.tick_params(axis="x", labelsize=7)
    axes[1].set_ylabel("probability")
    fig.suptitle(
        f"Raising T softens the same logits towards uniform (dashed, 1/{len(logits)}; max H = {math.log(len(logits)):.2f})",
        y=1.02,
    )
    fig.tight_layout()
    return fig


@checked_arguments(logits=LOGITS, temperatures=TEMPERATURES)
def limits_figure(logits, temperatures=TEMPERATURE_GRID):
    """Worst-case distance (max over digits and classes) of ``softmax(z / T)`` from the one-hot
    argmax and from the uniform distribution, against ``T`` on a log axis. ``logits`` is ``(N, C)``."""
    logits = torch.as_tensor(logits)
    one_hot = torch.nn.functional.one_hot(logits.argmax(dim=1), logits.shape[1]).to(logits.dtype)
    uniform = torch.full_like(logits, 1 / logits.shape[1])
    to_one_hot, to_uniform = [], []
    for temperature in temperatures:
        probs = softmax_with_temperature(logits, float(temperature))
        to_one_hot.append(float((probs - one_hot).abs().max()))
        to_uniform.append(float((probs - uniform).abs().max()))
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.plot(temperatures, to_one_hot, color=COLOURS["distill"], label="distance to one-hot argmax")
    ax.plot(temperatures, to_uniform, color=COLOURS["uniform"], label="distance to uniform 1/C")
    ax.set_xscale("log")
    ax.set_xlabel("temperature T (log scale)")
    ax.set_ylabel("max |q - limit| over all digits")
    ax.set_title("T → 0 gives the argmax, T → ∞ the uniform distribution")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


@checked_arguments(named_logits=MappingOf(ONE_LOGITS), temperatures=TEMPERATURES)
def entropy_curves_figure(named_logits: dict, temperatures=TEMPERATURE_GRID):
    """Entropy of ``softmax(z / T)`` against ``T`` for each ``{name: (C,) logits}`` (up to three,
    one colour each), with the ``log C`` ceiling dashed."""
    if len(named_logits) > len(ENTROPY_COLOURS):
        raise ValueError(f"named_logits must hold at most {len(ENTROPY_COLOURS)} curves (one colour each), "
                         f"got {len(named_logits)}")
    if len({len(logits) for logits in named_logits.values()}) > 1:
        raise ValueError("named_logits must hold logits over the same classes (one log C ceiling), got lengths "
                         f"{[len(logits) for logits in named_logits.values()]}")
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for (name, logits), colour in zip(named_logits.items(), ENTROPY_COLOURS):
        values = [float(entropy(softmax_with_temperature(logits, float(t)))) for t in temperatures]
        ax.plot(temperatures, values, color=colour, label=name)
    num_classes = len(next(iter(named_logits.values())))
    ax.axhline(math.log(num_classes), color=COLOURS["uniform"], linestyle="--", linewidth=1,
               label=f"uniform: log {num_classes} = {math.log(num_classes):.2f}")
    ax.set_xscale("log")
    ax.set_xlabel("temperature T (log scale)")
    ax.set_ylabel("entropy H (nats)")
    ax.set_title("An ambiguous digit softens at a far lower T than a confident one")
    ax.legend(frameon=False, fontsize=9)
    fig.tight_layout()
    return fig


@checked_arguments(image=IMAGE, logits=ONE_LOGITS, label=Integer(0), highlight=Integer(0), temperatures=TEMPERATURES)
def wrong_class_curves_figure(image, logits, label: int, highlight: int, temperatures=TEMPERATURE_GRID):
    """For one digit: its image, then the probability of every *wrong* class against ``T``,
    ``highlight`` (a wrong class) drawn bold. ``logits`` is ``(C,)``."""
    for name, value in (("label", label), ("highlight", highlight)):
        if value >= len(logits):
            raise ValueError(f"{name} must be a class below {len(logits)} (the logits' length), got {value}")
    if highlight == label:
        raise ValueError(f"highlight must be a wrong class, not the label {label}")
    logits = torch.as_tensor(logits)
    probs = torch.stack([softmax_with_temperature(logits, float(t)) for t in temperatures])
    fig, (image_ax, ax) = plt.subplots(1, 2, figsize=(8.4, 3.4), gridspec_kw={"width_ratios": [1, 3]})
    show_digit(image_ax, image, f"a test {label}")
    others = [c for c in range(len(logits)) if c not in (label, highlight)]
    ax.plot(temperatures, probs[:, others], color="#BBBBBB", linewidth=1)
    ax.plot([], [], color="#BBBBBB", linewidth=1, label="the other wrong classes")
    ax.plot(temperatures, probs[:, highlight], color=COLOURS["distill"], linewidth=2.5, label=f"P({highlight})")
    ax.legend(frameon=False)
    ax.set_xscale("log")
    ax.set_xlabel("temperature T (log scale)")
    ax.set_ylabel("probability of a wrong class")
    ax.set_title(f"Dark knowledge: as T rises, '{highlight}' surfaces first")
    fig.tight_layout()
    return fig


@checked_arguments(logits=LOGITS, labels=Tensor(ndim=1, dtype="integer"), temperature=POSITIVE,
                   class_names=CLASS_NAMES)
def dark_knowledge_figure(logits, labels, temperature: float, class_names=None):
    """Mean softened probability that digits of each true class (rows) give to each *wrong*
    class (columns) at ``temperature`` (:func:`resemblance_table`); the diagonal (the right answer)
    is left blank. The title names the strongest look-alike the table measured."""
    table = resemblance_table(logits, labels, temperature)
    num_classes = table.shape[0]
    _check_class_names(class_names, num_classes)
    class_names = class_names or [str(c) for c in range(num_classes)]
    true_class, lookalike, probability = strongest_lookalikes(table)[0]
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    shown = ax.imshow(table.numpy(), cmap="Blues")
    ax.set_xticks(range(num_classes), class_names)
    ax.set_yticks(range(num_classes), class_names)
    ax.grid(False)
    ax.set_xlabel("wrong class")
    ax.set_ylabel("true class")
    fig.colorbar(shown, ax=ax, label=f"mean probability at T = {temperature:g}")
    ax.set_title(f"What the model thinks each digit resembles:\nstrongest, the {class_names[true_class]}s "
                 f"lean to {class_names[lookalike]} ({probability:.2f} on average)")
    fig.tight_layout()
    return fig
