"""Lesson 1's experiment: one small trained MLP whose test logits the lesson softens, and what the
lesson claims about them (Hinton et al. 2015, Eq. 1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedkd_lessons.data.digits import ImageSplit, load_digits_split
from fedkd_lessons.engine.models import accuracy, make_mlp, predict_logits
from fedkd_lessons.temperature import entropy, softmax_with_temperature
from fedkd_lessons.engine.training import train
from fedkd_lessons.engine.validation import (POSITIVE, Each, Instance, Integer, Tensor, check_fields,
                                             checked_arguments)
from fedkd_lessons.experiments.claims import Claim, at_least, at_most


@dataclass(frozen=True)
class Settings:
    """Lesson 1's model and its training: one hidden layer, Adam, mini-batches."""

    seed: int = 0
    hidden_units: int = 64
    epochs: int = 20
    lr: float = 1e-2
    batch_size: int = 64
    # the temperatures of the entropy table and of the dark-knowledge comparison
    entropy_temperatures: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    dark_knowledge_temperature: float = 4.0

    def __post_init__(self):
        check_fields(self, seed=Integer(0), hidden_units=Integer(1), epochs=Integer(1), lr=POSITIVE,
                     batch_size=Integer(1), entropy_temperatures=Each(POSITIVE, min_length=2),
                     dark_knowledge_temperature=POSITIVE)
        if list(self.entropy_temperatures) != sorted(set(self.entropy_temperatures)):
            raise ValueError(f"entropy_temperatures must be increasing, got {self.entropy_temperatures!r}")


@dataclass
class TemperatureResult:
    """The trained model's test logits, what the claims are measured on."""

    settings: Settings
    logits: torch.Tensor  # (N, C) test logits
    test_labels: torch.Tensor
    test_accuracy: float


SETTINGS = Instance(Settings)
DIGITS = Instance(ImageSplit)


@checked_arguments(digits=DIGITS, settings=SETTINGS)
def train_model(digits: ImageSplit, settings: Settings, progress: bool | None = None) -> torch.nn.Module:
    """The lesson's MLP trained on the digits; ``settings.seed`` fixes its initial weights and batches."""
    torch.manual_seed(settings.seed)
    model = make_mlp(hidden=(settings.hidden_units,))
    train(model, digits.train_images, digits.train_labels, epochs=settings.epochs, lr=settings.lr,
          batch_size=settings.batch_size, generator=torch.Generator().manual_seed(settings.seed),
          progress=progress, description="MLP")
    return model


@checked_arguments(model=Instance(torch.nn.Module), digits=DIGITS, settings=SETTINGS)
def result_of(model: torch.nn.Module, digits: ImageSplit, settings: Settings) -> TemperatureResult:
    """What the claims need from a trained model."""
    return TemperatureResult(settings, predict_logits(model, digits.test_images), digits.test_labels,
                             accuracy(model, digits.test_images, digits.test_labels))


@checked_arguments(settings=SETTINGS)
def run_claims_experiment(settings: Settings) -> TemperatureResult:
    """Train the lesson's model at ``settings`` and return its test logits."""
    digits = load_digits_split()
    return result_of(train_model(digits, settings, progress=False), digits, settings)


@checked_arguments(result=Instance(TemperatureResult))
def claims(result: TemperatureResult) -> list[Claim]:
    """What lesson 1's prose says about the softened softmax of its trained model."""
    logits, settings = result.logits, result.settings
    num_classes = logits.shape[1]
    one_hot = torch.nn.functional.one_hot(logits.argmax(dim=1), num_classes).float()
    ordinary_gap = (softmax_with_temperature(logits, 1.0) - torch.softmax(logits, dim=1)).abs().max().item()
    hot_gap = (softmax_with_temperature(logits, 1e5) - 1 / num_classes).abs().max().item()
    cold_gaps = [(softmax_with_temperature(logits, t) - one_hot).abs().max().item() for t in (1.0, 0.1, 0.01)]
    mean_entropy = [entropy(softmax_with_temperature(logits, t)).mean().item() for t in settings.entropy_temperatures]
    # Probability mass on the wrong classes (all but the predicted one), averaged over the test set.
    wrong_mass = [1 - softmax_with_temperature(logits, t).max(dim=1).values.mean().item()
                  for t in (1.0, settings.dark_knowledge_temperature)]
    lean = similarity_margins(logits, result.test_labels, settings.dark_knowledge_temperature, LOOKALIKES)
    return [
        # seeds 0-9: test accuracy 0.956-0.978
        at_least("the small MLP is a real classifier of the digits (test accuracy of 90 % or more)",
                 result.test_accuracy, 0.90),
        # float rounding only: exactly the same formula
        at_most("at T = 1 the softened softmax is the ordinary softmax", ordinary_gap, 1e-6),
        # seeds 0-9: the smaller of the two steps is -0.054 to -0.241
        at_most("as T falls the softmax approaches the one-hot argmax (T = 1, 0.1, 0.01: ever closer)",
                max(cold_gaps[1] - cold_gaps[0], cold_gaps[2] - cold_gaps[1]), -1e-3),
        # |q - 1/C| <= max|z| / T at first order; seeds 0-9: 2.4e-5 to 2.6e-5
        at_most("at T = 1e5 every digit's distribution is uniform to within 1e-3", hot_gap, 1e-3),
        # monotone for every single distribution (dH/dT = Var_q(z) / T^3 >= 0), so for the mean;
        # seeds 0-9: the smallest rise between neighbouring temperatures is 0.225-0.248 nats
        at_least("the mean entropy over the test set rises with T",
                 min(b - a for a, b in zip(mean_entropy, mean_entropy[1:])), 1e-3, unit="nats"),
        # seeds 0-9: 10.0x-12.5x
        at_least(f"raising T to {settings.dark_knowledge_temperature:g} brings the wrong classes' probabilities "
                 "up at least fivefold", wrong_mass[1] / max(wrong_mass[0], 1e-12), 5.0, unit="x"),
        # seeds 0-9: the smaller margin is 0.018-0.055 (other pairs, e.g. 3 -> 8 or 3 -> 9, change with the seed)
        at_least("on average the test 1s lean most to 8 and the 2s most to 3", min(lean), 0.0),
    ]


# The look-alike pairs that every seed's model shows (class, the wrong class it leans to most).
LOOKALIKES = ((1, 8), (2, 3))


@checked_arguments(logits=Tensor(ndim=2, dtype="float"), labels=Tensor(ndim=1, dtype="integer"), temperature=POSITIVE,
                   pairs=Each(Each(Integer(0), min_length=2)))
def similarity_margins(logits: torch.Tensor, labels: torch.Tensor, temperature: float,
                       pairs=LOOKALIKES) -> list[float]:
    """For each ``(c, d)`` in ``pairs``: the mean softened probability of class ``d`` over the test
    digits of class ``c``, minus the largest such mean of any other wrong class."""
    if len(labels) != len(logits):
        raise ValueError(f"labels must give one label per row of logits ({len(logits)}), got {len(labels)}")
    num_classes = logits.shape[1]
    if num_classes < 3:
        raise ValueError(f"logits must have 3 or more classes (a pair and another wrong class), got {num_classes}")
    for true_class, lookalike, *rest in pairs:
        if rest or true_class == lookalike or max(true_class, lookalike) >= num_classes:
            raise ValueError(f"pairs must be (class, another class) pairs of classes in [0, {num_classes - 1}], got "
                             f"{(true_class, lookalike, *rest)}")
        if not (labels == true_class).any():
            raise ValueError(f"labels must hold a digit of class {true_class} (pairs averages over them), got none")
    probabilities = softmax_with_temperature(logits, temperature)
    margins = []
    for true_class, lookalike in pairs:
        mean = probabilities[labels == true_class].mean(dim=0)
        others = [mean[k].item() for k in range(len(mean)) if k not in (true_class, lookalike)]
        margins.append(mean[lookalike].item() - max(others))
    return margins
